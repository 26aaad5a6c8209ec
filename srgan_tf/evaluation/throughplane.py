"""Exp. 3 (Sood & Rusu, Sec. 3, third experiment; Fig. 4): through-plane SR of whole volumes.

Quantitative protocol (beyond the paper, which shows Exp. 3 only as pictures), per isotropic
HR volume (the built-in sample's `hr/<patient>.nii.gz`):

1. optional centred in-plane crop; the slab is cut to a whole number of thick slices;
2. thick slices: `slice_profile_degrade(hr, axis=0, factor, profile)` in scanner units, so LR
   sample i sits at HR slice coordinate i * factor + (factor - 1) / 2, slice spacing x factor;
3. SR: `srgan_tf.inference.volume_sr.super_resolve_volume` of that LR volume (the `infer`
   path: its own normalisation, both through-plane directions, averaged); SR voxel j lands on
   HR slice j (`sr_geometry`), so no resampling is needed before scoring;
4. cubic baseline: Keys cubic (a = -0.5) along the slice axis only, with half-pixel centres
   (`degrade.upsample_bicubic`, the Exp. 1/2 bicubic op), so interpolated sample j also sits
   at HR slice j;
5. every volume mapped to [-1, 1] with the HR volume's robust range; outputs clipped;
6. scored on 2-D planes: through-plane planes (coronal volume[:, r, :] and sagittal
   volume[:, :, c], pooled), and axial slices separately; `border` px (default: factor)
   cropped from every side of every plane, i.e. the edge thick slice at each end of the slab
   (no neighbour on one side) and the same margin in-plane, for every method alike; planes
   with less than `min_foreground` tissue are skipped; at most `max_planes` evenly spaced
   planes per orientation;
7. mean over planes per volume, then mean and std over patients.
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from srgan_tf.data.degrade import slice_profile_degrade, upsample_bicubic
from srgan_tf.data.intensity import normalize, robust_range
from srgan_tf.data.pipeline import FOREGROUND_LEVEL
from srgan_tf.evaluation import metrics as metrics_lib
from srgan_tf.io.volume import Volume

METHOD_LABELS = {"bicubic": "Cubic (slice axis)", "sr": "SR (average)",
                 "sr_sagittal": "SR sagittal only", "sr_coronal": "SR coronal only",
                 "sr_self_supervised": "SR self-supervised"}
DIRECTION_KEYS = {"coronal": "sr_coronal", "sagittal": "sr_sagittal"}


@dataclass
class ThroughPlaneCase:
    """One volume's reconstructions on the HR grid, in [-1, 1] units of the HR range.

    Attributes:
        patient: patient id.
        hr: normalised HR (slices, rows, cols), clipped.
        lr: the thick-slice volume (slices / factor, rows, cols), unclipped.
        outputs: method -> volume of the HR shape, unclipped ("bicubic", "sr", ...).
        spacing: HR voxel spacing (mm).
        factor: through-plane factor.
        direction: the volume's direction matrix (figures put superior up).
    """

    patient: str
    hr: np.ndarray
    lr: np.ndarray
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)
    spacing: tuple = (1.0, 1.0, 1.0)
    factor: int = 4
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))


def as_model(model):
    """An `ExportedModel` (returned as is) or an export directory (loaded)."""
    if hasattr(model, "predict") and hasattr(model, "scale_hw"):
        return model
    from srgan_tf.inference.export import load_exported

    return load_exported(model)


def crop_in_plane(volume: Volume, size: Optional[int]) -> Volume:
    """The centred size x size in-plane window (each axis kept whole when shorter)."""
    if not size:
        return volume
    _, rows, cols = volume.shape
    top, left = max(0, (rows - size) // 2), max(0, (cols - size) // 2)
    origin = (np.asarray(volume.origin) + top * volume.spacing[1] * volume.direction[1]
              + left * volume.spacing[2] * volume.direction[2])
    return volume.with_array(volume.array[:, top:top + size, left:left + size], origin=tuple(origin))


def simulate_thick_slices(hr: Volume, factor: int, profile: str = "gaussian", thickness=None):
    """(HR cut to a whole number of thick slices, its thick-slice LR volume with geometry).

    LR slice i is the slice profile centred at HR slice i * factor + (factor - 1) / 2, so its
    origin moves by (factor - 1) / 2 HR slices and its spacing is factor HR slices.
    """
    count = hr.shape[0] // factor
    if count < 2:
        raise ValueError(f"Need at least 2 thick slices of {factor} HR slices. "
                         f"Received: {hr.shape[0]} HR slices")
    hr = hr.with_array(np.asarray(hr.array[:count * factor], np.float32))
    thick = slice_profile_degrade(hr.array, 0, factor, profile, thickness)
    origin = np.asarray(hr.origin) + (factor - 1) / 2 * hr.spacing[0] * hr.direction[0]
    lr = hr.with_array(thick, spacing=(hr.spacing[0] * factor, *hr.spacing[1:]), origin=tuple(origin),
                       series_description=f"{hr.series_description} thick x{factor} ({profile})")
    return hr, lr


def cubic_along_slices(lr: np.ndarray, factor: int) -> np.ndarray:
    """Keys cubic interpolation along axis 0 only: (n, rows, cols) -> (n * factor, rows, cols).

    Half-pixel centres (edge clamp): output j sits at input coordinate (j - (factor - 1) / 2) /
    factor, the inverse of the degradation's sampling phase.
    """
    images = np.asarray(lr, np.float32).transpose(1, 0, 2)[..., None]  # rows of (slices x cols)
    up = upsample_bicubic(images, (factor, 1)).numpy()[..., 0]
    return np.ascontiguousarray(up.transpose(1, 0, 2))


def _unit(array, intensity_range) -> np.ndarray:
    low, high = intensity_range
    return ((np.asarray(array, np.float32) - low) * (2.0 / (high - low)) - 1.0).astype(np.float32)


def reconstruct(hr_volume: Volume, models: Mapping, factor: int, profile: str = "gaussian", *,
                thickness=None, crop: Optional[int] = None, batch_size: int = 8,
                progress: bool = False) -> ThroughPlaneCase:
    """Simulate thick slices from `hr_volume` and bring them back with cubic and each model.

    The model named "sr" also contributes its directional volumes ("sr_coronal", "sr_sagittal").
    """
    from srgan_tf.inference.volume_sr import super_resolve_volume

    hr, lr = simulate_thick_slices(crop_in_plane(hr_volume, crop), factor, profile, thickness)
    intensity_range = robust_range(hr.array)
    case = ThroughPlaneCase(hr_volume.patient_id, normalize(hr.array, intensity_range),
                            _unit(lr.array, intensity_range), spacing=hr.spacing, factor=factor,
                            direction=hr.direction)
    case.outputs["bicubic"] = _unit(cubic_along_slices(lr.array, factor), intensity_range)
    for name, model in models.items():
        result = super_resolve_volume(model, lr, "through-plane", batch_size=batch_size,
                                      return_directions=name == "sr", progress=progress)
        case.outputs[name] = _unit(result.volume.array, intensity_range)
        for direction, volume in result.directions.items():
            case.outputs[DIRECTION_KEYS[direction]] = _unit(volume.array, intensity_range)
    return case


def _planes(tissue: np.ndarray, border: int, min_foreground: float, limit: Optional[int]):
    """Indices in [border, n - border) with enough tissue, at most `limit`, evenly spaced."""
    inside = np.arange(border, len(tissue) - border)
    kept = inside[tissue[inside] >= min_foreground]
    if limit and len(kept) > limit:
        kept = kept[np.unique(np.linspace(0, len(kept) - 1, int(limit)).round().astype(int))]
    return kept


def score_case(case: ThroughPlaneCase, border: int, min_foreground: float = 0.05,
               max_planes: Optional[int] = 32) -> Dict[str, Dict[str, List[dict]]]:
    """Per-plane metrics: {method: {"through_plane": [...], "axial": [...]}}."""
    tissue = case.hr > FOREGROUND_LEVEL
    coronal = _planes(tissue.mean(axis=(0, 2)), border, min_foreground, max_planes)
    sagittal = _planes(tissue.mean(axis=(0, 1)), border, min_foreground, max_planes)
    axial = _planes(tissue.mean(axis=(1, 2)), border, min_foreground, max_planes)
    views = {"through_plane": [(slice(None), r, slice(None)) for r in coronal]
             + [(slice(None), slice(None), c) for c in sagittal],
             "axial": [(j,) for j in axial]}
    scores = {}
    for method, output in case.outputs.items():
        output = np.clip(output, -1.0, 1.0)
        scores[method] = {view: [metrics_lib.all_metrics(case.hr[index], output[index], border=border)
                                 for index in indices] for view, indices in views.items()}
    return scores


def _mean(plane_scores: List[dict]) -> Dict[str, float]:
    return {spec.name: float(np.mean([s[spec.name] for s in plane_scores]))
            for spec in metrics_lib.METRICS}


def _summary(per_patient: Dict[str, List[dict]]) -> dict:
    """Mean over patients of per-patient plane means, std over patients, counts."""
    means = [_mean(scores) for scores in per_patient.values() if scores]
    summary = {}
    for spec in metrics_lib.METRICS:
        values = np.array([m[spec.name] for m in means])
        finite = values[np.isfinite(values)]
        summary[spec.name] = float(values.mean()) if values.size else float("nan")
        summary[f"{spec.name}_std"] = float(finite.std()) if finite.size else 0.0
    summary["patients"] = len(means)
    summary["slices"] = int(sum(len(s) for s in per_patient.values()))
    return summary


def score_throughplane(model, hr_volumes: Sequence, factor: Optional[int] = None,
                       profile: str = "gaussian", *, extra_models: Optional[Mapping] = None,
                       thickness=None, crop: Optional[int] = None, border: Optional[int] = None,
                       max_planes: Optional[int] = 32, min_foreground: float = 0.05,
                       batch_size: int = 8, output_dir=None, figures: bool = True,
                       progress: bool = False) -> dict:
    """Exp. 3 scores against isotropic HR volumes (protocol: module docstring).

    Args:
        model: anisotropic export (directory or `ExportedModel`); None scores cubic only.
        hr_volumes: isotropic HR `Volume`s or paths (`srgan_tf.io.read_volume`).
        factor: through-plane factor; default (and required equal to) the model's scale_h.
        profile: slice profile of the simulated thick slices ("gaussian" or "box").
        extra_models: {method: model, or {patient id: model}} scored beside "sr" (e.g.
            "sr_self_supervised" trained per volume); a per-patient mapping scores only those.
        thickness: slice thickness in HR slices; default factor.
        crop: centred in-plane crop size (None: whole slices).
        border: pixels cropped from every side of every plane; default factor.
        max_planes: planes per orientation scored at most (None: all).
        min_foreground: skip planes with a smaller fraction of HR pixels above -0.9.
        batch_size: images per model call.
        output_dir: if given, metrics.json and figures/<patient>_exp3.png are written there.
        figures: draw a Fig. 4-style figure per volume (with output_dir).
        progress: progress bars.

    Returns:
        {"bicubic", "sr", "sr_coronal", "sr_sagittal", extra methods: {"psnr", "ssim", "hfen",
        "gmsd", "edge_f1", "<metric>_std", "patients", "slices" (planes), "axial": {...}},
        "protocol": {...}, "per_patient": {...}, "figures": [...]}.

    Example:
        >>> scores = score_throughplane("runs/exp2/export", ["data/sample/hr/SAMPLE-0003.nii.gz"])
        >>> scores["sr"]["psnr"], scores["bicubic"]["psnr"]
    """
    from srgan_tf.io.reader import read_volume

    main = None if model is None else as_model(model)
    if main is not None:
        if factor is not None and int(factor) != main.scale_hw[0]:
            raise ValueError(f"factor must equal the model's through-plane scale {main.scale_hw[0]}. "
                             f"Received: factor={factor}")
        factor = main.scale_hw[0]
    if factor is None:
        raise ValueError("factor is needed when no model is given. Received: factor=None")
    factor, border = int(factor), int(factor if border is None else border)
    extras = {name: ({key: as_model(m) for key, m in item.items()} if isinstance(item, Mapping)
                     else as_model(item)) for name, item in (extra_models or {}).items()}
    scores: Dict[str, Dict[str, Dict[str, list]]] = {}
    per_patient, figure_paths, sources = {}, [], []
    for item in hr_volumes:
        volume = item if isinstance(item, Volume) else read_volume(item)
        sources.append(str(item) if not isinstance(item, Volume) else volume.patient_id)
        patient = volume.patient_id
        models = {} if main is None else {"sr": main}
        for name, extra in extras.items():
            if not isinstance(extra, Mapping):
                models[name] = extra
            elif patient in extra:
                models[name] = extra[patient]
        case = reconstruct(volume, models, factor, profile, thickness=thickness, crop=crop,
                           batch_size=batch_size, progress=progress)
        case_scores = score_case(case, border, min_foreground, max_planes)
        for method, views in case_scores.items():
            for view, values in views.items():
                scores.setdefault(method, {}).setdefault(view, {})[patient] = values
        per_patient[patient] = {"planes": len(case_scores["bicubic"]["through_plane"]),
                                "axial_slices": len(case_scores["bicubic"]["axial"]),
                                **{m: _mean(v["through_plane"]) for m, v in case_scores.items()}}
        if output_dir is not None and figures:
            figure_paths.append(save_case_figure(Path(output_dir) / "figures", case))
    result = {method: {**_summary(views["through_plane"]), "axial": _summary(views["axial"])}
              for method, views in scores.items()}
    result["protocol"] = throughplane_protocol(factor, profile, thickness, crop, border, max_planes,
                                               min_foreground, main, extras, sources)
    result["per_patient"] = per_patient
    if figure_paths:
        result["figures"] = [str(path) for path in figure_paths]
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def throughplane_protocol(factor, profile, thickness, crop, border, max_planes, min_foreground,
                          main=None, extras=None, sources=()) -> dict:
    """The scoring settings as a JSON-ready dict (metrics.json "protocol")."""
    protocol = metrics_lib.metric_protocol()
    protocol.update({
        "experiment": "exp3", "factor": factor, "scale_hw": [factor, 1], "mode": "through-plane",
        "profile": profile, "thickness": factor if thickness is None else thickness,
        "simulation": "slice_profile_degrade(hr, axis=0): LR slice i centred on HR slice "
                      "i*factor + (factor-1)/2; HR cut to a whole number of thick slices",
        "crop": crop, "border": border,
        "border_rule": "border px off every side of every plane (default factor: the edge "
                       "thick slice at each slab end, and the same in-plane margin)",
        "planes": "through_plane = coronal volume[:, r, :] + sagittal volume[:, :, c], pooled; "
                  "axial = volume[j] (reported separately)",
        "max_planes": max_planes, "min_foreground": min_foreground,
        "intensity": "HR robust range (0.5/99.5 percentiles) -> [-1, 1]; outputs clipped",
        "sr": "srgan_tf.inference.volume_sr.super_resolve_volume (both directions averaged)",
        "bicubic": "Keys cubic (a=-0.5) along the slice axis, half-pixel centres "
                   "(degrade.upsample_bicubic with scale (factor, 1))",
        "averaging": "planes -> mean per volume -> mean and std over patients",
        "models": {"sr": str(getattr(main, "path", "")) if main is not None else None,
                   **{name: (str(getattr(m, "path", "")) if not isinstance(m, Mapping) else
                             {p: str(getattr(x, "path", "")) for p, x in m.items()})
                      for name, m in (extras or {}).items()}},
        "volumes": list(sources),
    })
    return protocol


def throughplane_protocol_text(protocol: dict) -> str:
    """The Exp. 3 protocol in words, for report.md."""
    factor = protocol.get("factor", "s")
    crop = protocol.get("crop")
    return "\n".join([
        "- **Volumes**: isotropic HR reference volumes"
        + (f", centred {crop}x{crop} in-plane crop" if crop else "")
        + "; the slab is cut to a whole number of thick slices.",
        f"- **Thick slices**: `slice_profile_degrade(hr, axis=0, factor={factor}, "
        f"profile=\"{protocol.get('profile')}\")` (thickness {protocol.get('thickness')} HR "
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
        panels = [("LR input", _unit(np.repeat(volume.array, factor, axis=0), intensity_range)),
                  ("Cubic", _unit(cubic_along_slices(volume.array, factor), intensity_range))]
        for name, item in models.items():
            result = super_resolve_volume(item, volume, "through-plane", batch_size=batch_size,
                                          progress=progress)
            panels.append(("SR" if name == "sr" else METHOD_LABELS.get(name, name),
                           _unit(result.volume.array, intensity_range)))
            if save_volumes:
                from srgan_tf.io.nifti import write_nifti

                write_nifti(result.volume, Path(output_dir) / "volumes" /
                            _file_name(volume.patient_id, f"_{name}.nii.gz"))
        spacing = (volume.spacing[0] / factor, *volume.spacing[1:])
        figure = views_figure(panels, spacing, _thick_boundary(len(panels[0][1]), factor),
                              superior_up=superior_up_of(volume.direction))
        paths.append(_save(figure, Path(output_dir) / "figures" /
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
    from srgan_tf.evaluation.report import metrics_table

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
    if figures:
        parts += ["## Figures", ""]
        for figure in figures:
            figure = Path(figure)
            link = figure.relative_to(run_dir) if figure.is_relative_to(run_dir) else figure
            parts += [f"![{figure.stem}]({link.as_posix()})", ""]
    loss_note = (config_dict or {}).get("loss", {}).get("content_loss_note")
    if notes or loss_note:
        parts += ["## Notes", ""] + [text for text in (loss_note, notes) if text] + [""]
    if config_dict:
        parts += ["## Configuration", "", "```json", json.dumps(config_dict, indent=2, sort_keys=True),
                  "```", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(parts))
    return path
