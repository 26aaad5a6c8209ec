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
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from srgan_tf.data.intensity import FOREGROUND_LEVEL
from srgan_tf.evaluation import metrics as metrics_lib
from srgan_tf.evaluation.evaluate import write_metrics
from srgan_tf.evaluation.throughplane_report import save_case_figure
from srgan_tf.evaluation.throughplane_volumes import ThroughPlaneCase, as_model, reconstruct
from srgan_tf.io.errors import InputError
from srgan_tf.io.volume import Volume
from srgan_tf.run_directory import RunDirectory



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
        _check_scorable(volume, sources[-1], factor, border, crop)
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
                                **{m: metrics_lib.patient_mean(v["through_plane"])
                                   for m, v in case_scores.items()}}
        if output_dir is not None and figures:
            figure_paths.append(save_case_figure(RunDirectory(output_dir).figures, case))
    result = {method: {**metrics_lib.summarize_patients(views["through_plane"]),
                       "axial": metrics_lib.summarize_patients(views["axial"])}
              for method, views in scores.items()}
    result["protocol"] = throughplane_protocol(factor, profile, thickness, crop, border, max_planes,
                                               min_foreground, main, extras, sources)
    result["per_patient"] = per_patient
    return write_metrics(result, output_dir, figure_paths)


def _check_scorable(volume: Volume, source: str, factor: int, border: int, crop) -> None:
    """InputError when the volume's planes are too small to score (SSIM's window after the
    border crop), naming the file, instead of a metric error deep inside the scoring."""
    slices = (volume.shape[0] // factor) * factor
    in_plane = [min(crop, size) if crop else size for size in volume.shape[1:]]
    needed = 2 * metrics_lib.SSIM_RADIUS + 1 + 2 * border
    if min(slices, *in_plane) < needed:
        raise InputError(source, f"{volume.shape[0]} x {volume.shape[1]} x {volume.shape[2]} "
                                 f"voxels are too few to score through-plane x{factor}: every "
                                 f"axis needs at least {needed} (SSIM's 11-pixel window plus "
                                 f"the {border}-pixel border crop on each side)")


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
