"""Exp. 3 output: the protocol in words, Fig. 4-style figures and `report.md`.

Figures are drawn for scored (simulated) cases and for real thick-slice volumes; the numbers
come from `srgan_tf.evaluation.throughplane.score_throughplane`.
"""
import json
import re
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import numpy as np

from srgan_tf.data.intensity import normalize, robust_range
from srgan_tf.evaluation.throughplane_volumes import (DIRECTION_KEYS, ThroughPlaneCase, as_model,
                                                      crop_in_plane, cubic_along_slices)
from srgan_tf.io.volume import Volume
from srgan_tf.files import atomic_write_text
from srgan_tf.run_directory import RunDirectory

METHOD_LABELS = {"bicubic": "Cubic (slice axis)", "sr": "SR (average)",
                 "sr_sagittal": "SR sagittal only", "sr_coronal": "SR coronal only",
                 "sr_self_supervised": "SR self-supervised"}


def throughplane_protocol_text(protocol: dict) -> str:
    """The Exp. 3 protocol in words, for report.md."""
    factor = protocol.get("factor", "s")
    crop = protocol.get("crop")
    return "\n".join([
        "- **Volumes**: isotropic HR reference volumes"
        + (f", centred {crop}x{crop} in-plane crop" if crop else "")
        + "; the slab is cut to a whole number of thick slices.",
        f"- **Thick slices**: `slice_profile_degrade(hr, axis=0, factor={factor}, profile="
        f"SliceProfile(\"{protocol.get('profile')}\", {protocol.get('thickness')}))` (width in HR "
        f"slices): LR slice i is centred on HR slice i·{factor} + ({factor}−1)/2.",
        "- **SR**: `super_resolve_volume` (the `srgan-tf infer` path): coronal (slices × cols) "
        "and sagittal (slices × rows) images through the anisotropic generator, stacked and "
        "averaged; *sagittal only* / *coronal only* are the two stacks before averaging. "
        "SR slice j lands on HR slice j.",
        "- **Cubic baseline**: Keys cubic (a = −0.5) along the slice axis only, half-pixel "
        "centres (the Exp. 1/2 bicubic op with scale (factor, 1)), so its slice j is HR slice j.",
        "- **Intensities**: every volume mapped to [-1, 1] with the HR volume's robust range "
        "(0.5/99.5 percentiles); outputs clipped to [-1, 1]; data range 2.0.",
        "- **Planes**: main table: through-plane planes (coronal and sagittal, pooled); second "
        "table: axial slices. Planes with less than "
        f"{100 * protocol.get('min_foreground', 0.05):g}% tissue (> −0.9) are skipped; at most "
        f"{protocol.get('max_planes') or 'all'} evenly spaced planes per orientation.",
        f"- **Border crop**: {protocol.get('border')} px from every side of every plane: the "
        "edge thick slice at each end of the slab (no neighbour on one side) and the same "
        "margin in-plane, for every method alike.",
        "- **Metrics**: PSNR, SSIM (Gaussian 11×11, σ 1.5), HFEN (15×15 LoG, σ 1.5), GMSD, "
        "edge F1, as in Exp. 1/2 (`srgan_tf.evaluation.metrics`).",
        "- **Averaging**: planes → mean per volume → mean ± std over patients.",
    ])


# ------------------------------------------------------------------------- figures (Fig. 4)

def views_figure(panels: Sequence, spacing, axial_index: Optional[int] = None,
                 coronal_row: Optional[int] = None, superior_up: bool = False):
    """Fig. 4 layout: top row axial slices, bottom row coronal planes, one column per panel.

    Args:
        panels: (title, volume (slices, rows, cols) in [-1, 1]) pairs on one grid; LR volumes
            are passed nearest-upsampled along the slices so their thick slices show.
        spacing: voxel spacing (mm) of that grid; panels are drawn with physical aspect.
        axial_index: axial slice shown; default the first slice of the middle thick slice
            group when the grid is a thick-slice subdivision (see `save_case_figure`).
        coronal_row: coronal plane shown; default the middle row.
        superior_up: draw the coronal plane with the last slice on top (slices stacked
            towards the head, as `superior_up_of(direction)` tells).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from srgan_tf.evaluation.figures import INSET_COLOR, PANEL_INCHES

    slices, rows, cols = panels[0][1].shape
    axial_index = slices // 2 if axial_index is None else int(axial_index)
    coronal_row = rows // 2 if coronal_row is None else int(coronal_row)
    axial_aspect, coronal_aspect = spacing[1] / spacing[2], spacing[0] / spacing[2]
    heights = [rows * axial_aspect / cols, slices * coronal_aspect / cols]
    figure = Figure(figsize=(PANEL_INCHES * len(panels), PANEL_INCHES * sum(heights) + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.subplots(2, len(panels), squeeze=False, gridspec_kw={"height_ratios": heights})
    order = slice(None, None, -1) if superior_up else slice(None)
    marker = slices - 1 - axial_index if superior_up else axial_index
    for column, (title, volume) in enumerate(panels):
        views = ((f"{title}: axial {axial_index}", volume[axial_index], axial_aspect, coronal_row),
                 (f"{title}: coronal {coronal_row}", volume[order, coronal_row, :], coronal_aspect,
                  marker))
        for row, (label, image, aspect, marker) in enumerate(views):
            axes = grid[row, column]
            axes.imshow(np.clip(image, -1.0, 1.0), cmap="gray", vmin=-1.0, vmax=1.0,
                        aspect=aspect, interpolation="nearest")
            axes.axhline(marker, color=INSET_COLOR, linewidth=0.6, linestyle="--")  # the other view
            axes.set_title(label, fontsize=8)
            axes.set_xticks([])
            axes.set_yticks([])
    figure.tight_layout()
    return figure


def superior_up_of(direction) -> bool:
    """Whether the slices are stacked towards the head (LPS +z), so superior is drawn on top."""
    return bool(np.asarray(direction)[0][2] > 0)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(str(path), dpi=100)
    return path


def _file_name(patient: str, suffix: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(patient)) + suffix


def _thick_boundary(slices: int, factor: int) -> int:
    """An SR slice that starts a thick slice near the middle: the farthest from LR centres."""
    return min(slices - 1, (slices // (2 * factor)) * factor)


def save_case_figure(directory, case: ThroughPlaneCase) -> Path:
    """Fig. 4 for a scored volume: HR | SR | LR (nearest along slices) | cubic | others."""
    lr = np.repeat(case.lr, case.factor, axis=0)
    order = ["sr", *[m for m in case.outputs if m not in ("sr", "bicubic") and m not in
                     DIRECTION_KEYS.values()]]
    panels = [("HR", case.hr)]
    panels += [(METHOD_LABELS.get(m, m), case.outputs[m]) for m in order[:1] if m in case.outputs]
    panels += [("LR", lr), ("Cubic", case.outputs["bicubic"])]
    panels += [(METHOD_LABELS.get(m, m), case.outputs[m]) for m in order[1:]]
    figure = views_figure(panels, case.spacing, _thick_boundary(len(case.hr), case.factor),
                          superior_up=superior_up_of(case.direction))
    return _save(figure, Path(directory) / _file_name(case.patient, "_exp3.png"))


def qualitative_throughplane(model, volumes: Sequence[Volume], output_dir, *,
                             extra_models: Optional[Mapping] = None, crop: Optional[int] = None,
                             batch_size: int = 8, save_volumes: bool = False,
                             progress: bool = False) -> List[Path]:
    """Fig. 4 on real thick-slice volumes (the paper's setting): LR input | cubic | SR | ...

    Args:
        model: anisotropic export (directory or `ExportedModel`).
        volumes: thick-slice `Volume`s (e.g. the cache's test series).
        output_dir: figures/<patient>_real.png (and volumes/<patient>_sr.nii.gz) go here.
        extra_models: {method: model or {patient id: model}} shown beside "SR".
        crop: centred in-plane crop size (None: whole slices).
        batch_size: images per model call.
        save_volumes: also write each SR volume as NIfTI.
        progress: progress bars.

    Returns:
        The written figure paths.
    """
    from srgan_tf.inference.volume_sr import super_resolve_volume

    main = as_model(model)
    factor = main.scale_hw[0]
    paths = []
    for volume in volumes:
        volume = crop_in_plane(volume, crop)
        intensity_range = robust_range(volume.array)
        models = {"sr": main}
        for name, extra in (extra_models or {}).items():
            if not isinstance(extra, Mapping):
                models[name] = as_model(extra)
            elif volume.patient_id in extra:
                models[name] = as_model(extra[volume.patient_id])
        panels = [("LR input", normalize(np.repeat(volume.array, factor, axis=0), intensity_range)),
                  ("Cubic", normalize(cubic_along_slices(volume.array, factor), intensity_range))]
        for name, item in models.items():
            result = super_resolve_volume(item, volume, "through-plane", batch_size=batch_size,
                                          progress=progress)
            panels.append(("SR" if name == "sr" else METHOD_LABELS.get(name, name),
                           normalize(result.volume.array, intensity_range)))
            if save_volumes:
                from srgan_tf.io.nifti import write_nifti

                write_nifti(result.volume, Path(output_dir) / "volumes" /
                            _file_name(volume.patient_id, f"_{name}.nii.gz"))
        spacing = (volume.spacing[0] / factor, *volume.spacing[1:])
        figure = views_figure(panels, spacing, _thick_boundary(len(panels[0][1]), factor),
                              superior_up=superior_up_of(volume.direction))
        paths.append(_save(figure, RunDirectory(output_dir).figures /
                           _file_name(volume.patient_id, "_real.png")))
    return paths


# ------------------------------------------------------------------------------ report.md

def _per_patient_table(per_patient: dict, methods: Sequence[str]) -> str:
    """Patients x methods; methods scored on some patients only (self-supervised) show "–"."""
    lines = ["| Patient | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |",
             "|" + "---|" * (len(methods) + 1)]
    for patient, entry in per_patient.items():
        cells = [f"{entry[m]['psnr']:.2f} / {entry[m]['ssim']:.3f} / {entry[m]['hfen']:.3f}"
                 if m in entry else "–" for m in methods]
        lines.append(f"| {patient} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_throughplane_report(run_dir, title: str, metrics: dict, config_dict: Optional[dict] = None,
                              figures: Sequence = (), notes: Optional[str] = None) -> Path:
    """`run_dir/report.md`: through-plane and axial tables, protocol, figures, notes, config.

    Args:
        run_dir: run directory (figure links are relative to it).
        title: heading.
        metrics: `score_throughplane`'s dict (may lack methods: qualitative-only runs).
        config_dict: `ExperimentConfig.to_dict()` of the model's training.
        figures: PNGs to embed (quantitative and qualitative).
        notes: markdown appended under "Notes".
    """
    from srgan_tf.evaluation.report import figure_section, metrics_table

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    order = ["bicubic", "sr", "sr_sagittal", "sr_coronal"]
    order += [key for key in metrics if key not in order]
    methods = [key for key in order if key != "protocol" and isinstance(metrics.get(key), dict)
               and isinstance(metrics[key].get("psnr"), (int, float))]
    parts = [f"# {title}", ""]
    if methods:
        first = metrics[methods[0]]
        parts += [f"## Through-plane planes (coronal + sagittal; {first.get('patients')} volumes, "
                  f"{first.get('slices')} planes; mean ± std over patients)", "",
                  metrics_table([(METHOD_LABELS.get(m, m), metrics[m]) for m in methods],
                                highlight_best=True),
                  "## Axial slices (between and on the thick-slice centres)", "",
                  metrics_table([(METHOD_LABELS.get(m, m), metrics[m]["axial"]) for m in methods
                                 if "axial" in metrics[m]], highlight_best=True),
                  "## Per volume (through-plane planes: PSNR / SSIM / HFEN)", "",
                  _per_patient_table(metrics.get("per_patient", {}), methods),
                  "## Protocol", "", throughplane_protocol_text(metrics.get("protocol", {})), ""]
    else:
        parts += ["No isotropic reference volumes: only the qualitative part (figures on the "
                  "real thick-slice input) ran; no scores.", ""]
    parts += figure_section(figures, run_dir)
    loss_note = (config_dict or {}).get("loss", {}).get("content_loss_note")
    if notes or loss_note:
        parts += ["## Notes", ""] + [text for text in (loss_note, notes) if text] + [""]
    if config_dict:
        parts += ["## Configuration", "", "```json", json.dumps(config_dict, indent=2, sort_keys=True),
                  "```", ""]
    path = RunDirectory(run_dir).report
    atomic_write_text(path, "\n".join(parts))
    return path
