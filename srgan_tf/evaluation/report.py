"""The written evaluation protocol, Table-1-style markdown tables and `report.md`."""
import json
import math
from pathlib import Path
from typing import Optional, Sequence, Tuple

from srgan_tf.config import mode_of
from srgan_tf.evaluation.metrics import METRICS
from srgan_tf.files import atomic_write_text
from srgan_tf.run_directory import RunDirectory

# Sood & Rusu, Table 1 (prostate T2, TCIA): PSNR [dB] / SSIM. Keys as `method_key` builds them.
PAPER_TABLE1 = {
    "bicubic iso x4": {"psnr": 21.68, "ssim": 0.71},
    "srgan iso x4": {"psnr": 21.27, "ssim": 0.66},
    "srgan iso x8": {"psnr": 18.73, "ssim": 0.47},
    "bicubic aniso x8": {"psnr": 25.72, "ssim": 0.76},
    "srgan aniso x4": {"psnr": 29.51, "ssim": 0.82},
    "srgan aniso x8": {"psnr": 25.72, "ssim": 0.70},
}
DECIMALS = {"psnr": 2}  # every other metric: 3


def method_key(method: str, mode: str, scale: int) -> str:
    """Column name that matches `PAPER_TABLE1`, e.g. method_key("SRGAN", "aniso", 4)."""
    return f"{method} {mode} x{scale}"


def _normalized(name: str) -> str:
    return " ".join(name.lower().replace("×", "x").split())


def protocol_text(protocol: Optional[dict] = None) -> str:
    """The evaluation protocol in words (for report.md and the README).

    Args:
        protocol: the "protocol" entry of metrics.json; None gives the general text.
    """
    protocol = protocol or {}
    scale_hw = protocol.get("scale_hw")
    border = protocol.get("border")
    border_text = ("max(scale_h, scale_w) pixels" if border is None
                   else f"{border} pixels (max(scale_h, scale_w))")
    setting = ""
    if scale_hw:
        axes = "height only (Exp. 2)" if mode_of(scale_hw) == "aniso" else "both axes (Exp. 1)"
        setting = (f" Setting: scale (h, w) = ({scale_hw[0]}, {scale_hw[1]}), {axes}, "
                   f"split `{protocol.get('split', 'test')}`, HR {protocol.get('hr_size', 224)} px.")
    selection = protocol.get("max_slices_per_patient")
    selection_text = (f" At most {selection} evenly spaced slices per patient are scored."
                      if selection else "")
    lines = [
        "- **Images**: test-split slices, HR cropped/resized exactly as in training; intensities "
        "per volume clipped to the 0.5/99.5 percentiles and mapped to [-1, 1]. Slices with less "
        f"than {100 * protocol.get('min_foreground', 0.05):g}% of pixels above -0.9 (tissue) are "
        "skipped, as in training."
        + selection_text,
        f"- **Degradation**: LR = {protocol.get('degradation') or 'the training degradation'}, "
        "the op the model was trained with (`srgan_tf.data.pipelines.pipeline.lr_images`); bicubic "
        "baseline = `upsample_bicubic(lr, scale_hw)` of that same LR." + setting,
        "- **Data range**: 2.0 (metrics on the [-1, 1] images; SR and bicubic outputs clipped to "
        "[-1, 1], the HR range).",
        f"- **Border crop**: {border_text} removed from every side before scoring (BasicSR's "
        "crop_border = scale).",
        "- **Masking**: none; background air is scored like tissue, as in the paper.",
        "- **PSNR**: 10 log10(2.0² / MSE), equal to `skimage.metrics.peak_signal_noise_ratio`.",
        "- **SSIM**: Gaussian window 11×11, σ 1.5, K1 0.01, K2 0.03, population covariance "
        "(Wang et al. 2004), mean over the map without its 5-px filter-radius strip; equal to "
        "`skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5, "
        "use_sample_covariance=False)`.",
        "- **HFEN** (lower is better): ‖LoG(SR) − LoG(HR)‖₂ / ‖LoG(HR)‖₂, 15×15 Laplacian of "
        "Gaussian, σ 1.5 (Ravishankar & Bresler 2011).",
        "- **GMSD** (lower is better): standard deviation of the gradient magnitude similarity "
        "(Xue et al. 2014), Prewitt filters on images rescaled to [0, 1], c = 170/255², "
        "no downsampling.",
        "- **Edge F1**: Canny edges (uint8 images, Gaussian pre-smoothing σ 1.0, hysteresis "
        "thresholds 50/100, Sobel 3×3 L2 gradient) of SR vs HR; precision = SR edge pixels "
        f"within {protocol.get('edge_tolerance', 1)} px of an HR edge, recall = HR edge pixels "
        "within that distance of an SR edge.",
        "- **Averaging**: per slice, then mean per patient, then mean ± standard deviation over "
        "patients (each patient counts once, however many slices it has).",
    ]
    return "\n".join(lines)


def _cell(metrics: dict, name: str, show_std: bool) -> str:
    value = metrics.get(name)
    if value is None:
        return "–"
    if math.isinf(value):
        return "∞"
    decimals = DECIMALS.get(name, 3)
    text = f"{value:.{decimals}f}"
    std = metrics.get(f"{name}_std")
    if show_std and std is not None and math.isfinite(std):
        text += f" ± {std:.{decimals}f}"
    return text


def _best(rows, spec) -> Optional[float]:
    values = [m.get(spec.name) for _, m in rows if m.get(spec.name) is not None]
    if len(values) < 2 or len(set(values)) == 1:  # nothing to single out
        return None
    return max(values) if spec.higher_is_better else min(values)


def metrics_table(rows: Sequence[Tuple[str, dict]], paper: Optional[dict] = None,
                  show_std: bool = True, highlight_best: bool = False) -> str:
    """Markdown table in the form of the paper's Table 1: one column per method.

    Args:
        rows: (method name, metrics dict with "psnr", "ssim", ... and optional "<name>_std",
            "patients", "slices") pairs, one per column.
        paper: e.g. `PAPER_TABLE1`; a method whose name matches a key (case-insensitive, "×"
            or "x") gets a "(paper)" column beside it.
        show_std: append "± std over patients" to our numbers.
        highlight_best: bold the best of our numbers in each metric row.

    Example:
        >>> print(metrics_table([("Bicubic aniso x4", bicubic), ("SRGAN aniso x4", sr)],
        ...                     paper=PAPER_TABLE1))
    """
    paper = {_normalized(k): v for k, v in (paper or {}).items()}
    header, columns = ["Metric"], []
    for name, metrics in rows:
        header.append(name)
        columns.append(("ours", metrics))
        if _normalized(name) in paper:
            header.append(f"{name} (paper)")
            columns.append(("paper", paper[_normalized(name)]))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for spec in METRICS:
        best = _best(rows, spec) if highlight_best else None
        arrow = "↑" if spec.higher_is_better else "↓"
        cells = [f"{spec.label} {arrow}"]
        for kind, metrics in columns:
            if kind == "paper":  # the paper's own precision
                value = metrics.get(spec.name)
                cells.append("–" if value is None else f"{value:g}")
                continue
            text = _cell(metrics, spec.name, show_std)
            if kind == "ours" and best is not None and metrics.get(spec.name) == best:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    if any("patients" in metrics for _, metrics in rows):
        cells = ["Patients / slices"]
        for kind, metrics in columns:
            cells.append(f"{metrics.get('patients', '–')} / {metrics.get('slices', '–')}"
                         if kind == "ours" else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _method_rows(metrics: dict, mode: Optional[str], scale: Optional[int]):
    labels = {"bicubic": "Bicubic", "sr": "SRGAN", "srresnet": "SRResNet"}
    ordered = ["bicubic"] + [k for k in metrics if k != "bicubic"]
    rows = []
    for key in ordered:
        entry = metrics.get(key)
        if key != "protocol" and isinstance(entry, dict) and isinstance(entry.get("psnr"), (int, float)):
            label = labels.get(key, key)
            name = method_key(label, mode, scale) if mode and scale else label
            rows.append((name, entry))
    return rows


def write_report(run_dir, title: str, metrics: dict, config_dict: Optional[dict] = None,
                 figures: Sequence = (), notes: Optional[str] = None,
                 paper: Optional[dict] = PAPER_TABLE1) -> Path:
    """Write `run_dir/report.md`: results table, protocol, figures, configuration, notes.

    Args:
        run_dir: run directory; figure paths are linked relative to it.
        title: report heading.
        metrics: the dict `evaluate_model` returns ("bicubic", "sr", other methods, "protocol").
        config_dict: `ExperimentConfig.to_dict()`; gives the mode/scale for the paper columns.
        figures: PNG paths to embed.
        notes: free markdown appended at the end.
        paper: paper numbers shown beside ours (None to leave them out).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_dict = config_dict or {}
    data = config_dict.get("data", {})
    protocol = metrics.get("protocol", {})
    scale_hw = protocol.get("scale_hw")
    mode = data.get("mode") or (mode_of(scale_hw) if scale_hw else None)
    scale = data.get("scale") or (scale_hw[0] if scale_hw else None)
    rows = _method_rows(metrics, mode, scale)
    parts = [f"# {title}", ""]
    synthetic = scored_on_sample(metrics, data)
    if synthetic:
        parts += ["**Data: the built-in synthetic phantom** (not patient MR): these numbers show "
                  "that the pipeline works and where it stands against bicubic, not what it does "
                  "on patients.", ""]
    first = rows[0][1] if rows else {}
    parts += [f"## Results ({protocol.get('split', 'test')} split: {first.get('patients', '?')} "
              f"patients, {first.get('slices', '?')} slices; mean ± std over patients)", "",
              metrics_table(rows, paper=paper, highlight_best=True)]
    if paper:
        parts += ["Paper numbers: Sood & Rusu, Table 1 (TCIA prostate T2; their data, split "
                  "and protocol, not ours" + ("; ours are on the synthetic phantom, so compare "
                  "each with its own bicubic, not across sources" if synthetic else "") + ").", ""]
    parts += ["## Protocol", "", protocol_text(protocol), ""]
    parts += figure_section(figures, run_dir)
    loss_note = config_dict.get("loss", {}).get("content_loss_note")
    if notes or loss_note:
        parts += ["## Notes", ""] + [text for text in (loss_note, notes) if text] + [""]
    if config_dict:
        parts += ["## Configuration", "", "```json",
                  json.dumps(config_dict, indent=2, sort_keys=True), "```", ""]
    path = RunDirectory(run_dir).report
    atomic_write_text(path, "\n".join(parts))
    return path


def scored_on_sample(metrics: dict, data_config: dict) -> bool:
    """True when the scored cache is the built-in synthetic sample (its folder holds the
    sample's sample.json, or every patient is a SAMPLE-#### phantom)."""
    cache = metrics.get("protocol", {}).get("cache") or data_config.get("cache")
    if cache and (Path(cache).parent / "sample.json").is_file():
        return True
    patients = list(metrics.get("per_patient", {}))
    return bool(patients) and all(str(p).startswith("SAMPLE-") for p in patients)


def figure_section(figures, run_dir) -> list:
    """Markdown lines of a "Figures" section, links relative to `run_dir` where possible."""
    if not figures:
        return []
    parts = ["## Figures", ""]
    for figure in figures:
        figure = Path(figure)
        link = figure.relative_to(run_dir) if figure.is_relative_to(run_dir) else figure
        parts += [f"![{figure.stem}]({link.as_posix()})", ""]
    return parts
