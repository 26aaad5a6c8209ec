"""The report of a `srgan-tf self-supervised` run in its work dir: report.md (decisions,
timings, figures), summary.json, the slice-profile estimate (JSON and plot) and the loss curve."""
import json
from pathlib import Path

from srgan_tf.evaluation.figures import save_loss_curve, save_profile_estimate
from srgan_tf.files import atomic_write_text
from srgan_tf.run_directory import RunDirectory


def write_self_supervised_report(work_dir, summary: dict, choice) -> Path:
    """report.md, summary.json and figures (profile estimate, loss) of a run in `work_dir`.

    Args:
        work_dir: the run's work folder (it exists).
        summary: the run's summary (`self_supervised_run.command.run_self_supervised`).
        choice: the run's `ProfileChoice`, or None when the profile was given.

    Returns:
        The path of report.md.
    """
    work_dir = Path(work_dir)
    figures = []
    estimate = choice.estimate if choice is not None else None
    if estimate is not None:
        save_profile_estimate(estimate, work_dir / "slice_profile.png")
        figures.append("slice_profile.png")
        atomic_write_text(work_dir / "slice_profile_estimate.json",
                          json.dumps(estimate.to_dict(), indent=2) + "\n")
    history = RunDirectory(Path(summary["model_export"]).parent).history
    if history.is_file() and save_loss_curve(history, work_dir / "loss.png"):
        figures.append("loss.png")
    atomic_write_text(work_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    warning = choice.warning if choice is not None else None
    report = work_dir / "report.md"
    atomic_write_text(report, render_report(summary, figures, warning))
    return report


def render_report(summary: dict, figures, profile_warning=None) -> str:
    """report.md's text: input and output, the decisions, timings and figures."""
    acquisition = summary["acquisition"]
    lines = [
        "# Self-supervised through-plane SR", "",
        f"Input `{summary['input']}`: shape {tuple(summary['input_shape'])}, spacing "
        f"{tuple(summary['input_spacing_mm'])} mm.",
        f"Output `{summary['output']}`: shape {tuple(summary['output_shape'])}, spacing "
        f"{tuple(summary['output_spacing_mm'])} mm"
        + (f"; DICOM series `{summary['dicom_output']}`" if summary["dicom_output"] else "") + ".",
        "", "## Decisions", "",
        f"- Low-resolution axis: array axis {acquisition['slice_axis']} (largest spacing); factor "
        f"{acquisition['factor']:.4g}; model x{acquisition['model_factor']}; output slice spacing "
        f"{acquisition['target_spacing']:.4g} mm.",
        f"- Slice thickness {acquisition['thickness']:.4g} mm (from {acquisition['thickness_source']}), "
        f"gap {acquisition['gap']:.4g} mm.",
        f"- Slice profile: {summary['slice_profile']['shape']}, width {summary['slice_profile']['fwhm_mm']:.3g} mm "
        f"({summary['slice_profile_reason']}).",
    ] + ([f"- Slice profile warning: {profile_warning}."] if profile_warning else []) + [
        f"- Intensities clipped to the input's range: {summary['clipped_to_input_range']}.",
        f"- Trained model: `{summary['model_export']}`.",
        "", "## Timings (s)", "",
        "| " + " | ".join(summary["seconds"]) + " |",
        "|" + "---|" * len(summary["seconds"]),
        "| " + " | ".join(str(v) for v in summary["seconds"].values()) + " |",
        "", "## Figures", "",
    ] + [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"
