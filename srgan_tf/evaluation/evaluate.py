"""Score SR and bicubic on the test split under one protocol; write `metrics.json`.

Per patient of the split: the HR slices the evaluation pipeline uses (normalised, centred
`hr_size` crop via `pipeline.prepare_slices`, foreground slices only), LR = `degrade(hr)`,
bicubic = `upsample_bicubic(lr)`, SR = the model on that same LR. Every slice is scored with
`metrics.all_metrics` (border crop), slices are averaged per patient, patients are averaged
(mean and std) so each patient counts once.
"""
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from srgan_tf.config import DataConfig, mode_of
from srgan_tf.evaluation import metrics as metrics_lib
from srgan_tf.files import atomic_write_text
from srgan_tf.run_directory import RunDirectory

ModelLike = Union[str, Path, Callable[[np.ndarray], np.ndarray]]
METHOD_TITLES = {"bicubic": "Bicubic", "sr": "SR", "srresnet": "SRResNet", "srgan": "SRGAN"}


def evaluate_model(model: Union[ModelLike, Mapping], cache_path, *, split: str = "test",
                   scale_hw: Optional[Sequence[int]] = None,
                   data_config: Optional[DataConfig] = None, batch_size: int = 8,
                   border: Optional[int] = None, max_slices_per_patient: Optional[int] = None,
                   output_dir=None, figures: int = 0, progress: bool = False) -> dict:
    """Scores of a model and of bicubic interpolation on the same LR slices.

    Args:
        model: an export directory (`srgan_tf.inference.exported_model.load_exported`), a callable
            `predict_fn(lr_batch NHWC numpy) -> sr_batch` (e.g. an in-memory Keras generator),
            or a mapping {method name: either} to score several models on the same slices
            (e.g. {"srresnet": ..., "sr": ...}).
        cache_path: HDF5 slice cache.
        split: "test" (default) or "train".
        scale_hw: (scale_h, scale_w); default the export's metadata or `data_config.scale_hw`.
        data_config: the `DataConfig` the model was trained with: its hr_size (the pipeline's
            centred crop), min_foreground (slices with less tissue are skipped, as in
            training), scale_hw and LR degradation (`pipeline.lr_images`). None: the
            `DataConfig()` defaults for hr_size and min_foreground, and bicubic `degrade` at
            scale_hw.
        batch_size: slices per model call.
        border: pixels cropped on every side; default max(scale_h, scale_w).
        max_slices_per_patient: score at most this many evenly spaced slices per patient.
        output_dir: where `metrics.json` (and figures) go; default the run directory holding
            the export directory (its parent), nothing written for a bare callable.
        figures: number of comparison figures (one slice from each of the first patients).
        progress: show a progress bar over patients.

    Returns:
        {"sr": {...}, "bicubic": {...}, "protocol": {...}, "per_patient": {...}} where each
        method has "psnr", "ssim", "hfen", "gmsd", "edge_f1" (means over patients),
        "<metric>_std", "patients" and "slices"; "figures" lists written PNGs.

    Example:
        >>> scores = evaluate_model("runs/exp2/export", "cache.h5")
        >>> scores["sr"]["psnr"], scores["bicubic"]["psnr"]
    """
    models = dict(model) if isinstance(model, Mapping) else {"sr": model}
    if not models or "bicubic" in models:
        raise ValueError(f"Expected at least one model, none named 'bicubic'. Received: {list(models)}")
    predictors, sources, exported_scale = {}, {}, None
    for name, item in models.items():
        predictors[name], sources[name], item_scale = _predictor(item, batch_size)
        exported_scale = exported_scale or item_scale
        if output_dir is None and isinstance(item, (str, Path)):
            output_dir = Path(item).parent
    scale_hw = scale_hw or exported_scale or (data_config.scale_hw if data_config else None)
    if scale_hw is None:
        raise ValueError("scale_hw is needed when the model is a callable. Received: scale_hw=None")
    return _evaluate(predictors, sources, cache_path, split=split, scale_hw=scale_hw,
                     data_config=data_config, batch_size=batch_size, border=border,
                     max_slices_per_patient=max_slices_per_patient, output_dir=output_dir,
                     figures=figures, progress=progress)


def _predictor(item, batch_size) -> Tuple[Callable, str, Optional[Tuple[int, int]]]:
    """(predict_fn, description, scale_hw from export metadata or None)."""
    if hasattr(item, "predict") and hasattr(item, "scale_hw"):  # an already loaded export
        exported, item = item, str(getattr(item, "path", "exported model"))
    elif callable(item):
        return (lambda lr: np.asarray(item(lr), np.float32)), getattr(item, "__name__", "callable"), None
    else:
        from srgan_tf.inference.exported_model import load_exported

        exported = load_exported(item)
    return ((lambda lr: np.asarray(exported.predict(lr, batch_size=batch_size), np.float32)),
            str(item), tuple(int(s) for s in exported.scale_hw))


def _patient_slices(cache_path, split, hr_size, min_foreground) -> Dict[str, np.ndarray]:
    """{patient id: [S, hr_size, hr_size, 1] HR slices} exactly as the evaluation pipeline."""
    from srgan_tf.data.slice_cache.cache import SliceCache
    from srgan_tf.data.pipelines.pipeline import foreground, prepare_slices

    patients: Dict[str, list] = {}
    with SliceCache(cache_path) as cache:
        series = cache.series(split)
        if not series:
            raise ValueError(f"The cache has no series in the {split!r} split. Received: {cache_path}")
        for info in series:
            hr = prepare_slices(cache.read_normalized(info.key), hr_size)
            keep = foreground(hr, min_foreground).numpy()
            if keep.any():
                patients.setdefault(info.patient_id, []).append(hr.numpy()[keep])
    return {patient: np.concatenate(parts) for patient, parts in patients.items()}


def _evenly_spaced(count: int, limit: Optional[int]) -> np.ndarray:
    if not limit or count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, int(limit)).round().astype(int))


def _evaluate(predictors, sources, cache_path, *, split, scale_hw, data_config, batch_size, border,
              max_slices_per_patient, output_dir, figures, progress):
    from tqdm.auto import tqdm

    from srgan_tf.data.degradation.degrade import upsample_bicubic
    from srgan_tf.data.pipelines.pipeline import lr_images

    scale_hw = tuple(int(s) for s in scale_hw)
    if data_config is not None and tuple(data_config.scale_hw) != scale_hw:
        raise ValueError(f"the models upsample by {scale_hw}, but the data config makes LR for "
                         f"{tuple(data_config.scale_hw)}. Received: scale_hw={scale_hw}, "
                         f"data_config.scale_hw={tuple(data_config.scale_hw)}")
    # the training pipeline's HR slices and LR (without a config: config.py's defaults, bicubic)
    slices = data_config or DataConfig(mode=mode_of(scale_hw), scale=scale_hw[0])
    hr_size, min_foreground = slices.hr_size, slices.min_foreground
    if hr_size % scale_hw[0] or hr_size % scale_hw[1]:
        raise ValueError(f"hr_size must be divisible by the scale. Received: hr_size={hr_size}, "
                         f"scale_hw={scale_hw}")
    border = max(scale_hw) if border is None else int(border)
    methods = ["bicubic", *predictors]
    scores = {method: {} for method in methods}  # method -> patient -> [per-slice dicts]
    figure_paths = []
    patients = _patient_slices(cache_path, split, hr_size, min_foreground)
    if not patients:
        raise ValueError(f"No {split!r} slice has {min_foreground:g} foreground. Received: {cache_path}")
    for number, (patient, hr_all) in enumerate(tqdm(patients.items(), desc=f"evaluate {split}",
                                                    unit="patient", disable=not progress)):
        hr_all = hr_all[_evenly_spaced(len(hr_all), max_slices_per_patient)]
        for start in range(0, len(hr_all), batch_size):
            hr = hr_all[start:start + batch_size]
            lr = lr_images(hr, slices).numpy()  # slice-profile models: thick slices
            outputs = {"bicubic": upsample_bicubic(lr, scale_hw).numpy()}
            outputs.update({name: predict(lr) for name, predict in predictors.items()})
            for method in methods:
                sr = np.clip(outputs[method], -1.0, 1.0)  # the HR range; tanh models already are
                if sr.shape != hr.shape:
                    raise ValueError(f"{method} output must have the HR shape {hr.shape}. "
                                     f"Received: {sr.shape}")
                scores[method].setdefault(patient, []).extend(
                    metrics_lib.all_metrics(h[..., 0], s[..., 0], border=border) for h, s in zip(hr, sr))
            middle = len(hr_all) // 2 - start  # the patient's middle scored slice
            if 0 <= middle < len(hr) and number < figures and output_dir is not None:
                figure_paths.append(_save_figure(RunDirectory(output_dir).figures, patient, hr, lr,
                                                 outputs, middle))
    result = {method: metrics_lib.summarize_patients(scores[method]) for method in methods}
    result["protocol"] = _protocol(split, scale_hw, slices, border, max_slices_per_patient,
                                   cache_path, sources)
    result["per_patient"] = {
        patient: {"slices": len(scores["bicubic"][patient]),
                  **{method: metrics_lib.patient_mean(scores[method][patient]) for method in methods}}
        for patient in scores["bicubic"]}
    return write_metrics(result, output_dir, figure_paths)


def write_metrics(result: dict, output_dir=None, figure_paths=()) -> dict:
    """Adds the figure paths to `result` and writes it as output_dir/metrics.json (atomically)
    when output_dir is given. Returns `result`."""
    if figure_paths:
        result["figures"] = [str(path) for path in figure_paths]
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        # Identical images give psnr = inf, written as JSON `Infinity` (Python reads it back).
        atomic_write_text(RunDirectory(output_dir).metrics, json.dumps(result, indent=2) + "\n")
    return result


def _protocol(split, scale_hw, slices, border, max_slices, cache_path, sources):
    from srgan_tf.data.pipelines.pipeline import describe_lr

    hr_size, min_foreground = slices.hr_size, slices.min_foreground
    protocol = metrics_lib.metric_protocol()
    protocol.update({
        "split": split, "scale_hw": list(scale_hw),
        "mode": mode_of(scale_hw),
        "hr_size": hr_size, "border": border, "border_rule": "max(scale_h, scale_w) px per side",
        "mask": None, "min_foreground": min_foreground, "max_slices_per_patient": max_slices,
        "hr": "pipeline.prepare_slices: normalised [-1, 1], centred hr_size crop",
        "degradation": describe_lr(slices),
        "bicubic": "srgan_tf.data.degradation.degrade.upsample_bicubic of the same LR",
        "clipping": "outputs clipped to [-1, 1] before scoring",
        "averaging": "slices -> mean per patient -> mean and std over patients",
        "cache": str(cache_path), "models": sources,
    })
    return protocol


def _save_figure(directory: Path, patient, hr, lr, outputs, index) -> Path:
    from srgan_tf.evaluation.figures import save_comparison_figure

    panels = [("HR", hr[index, ..., 0]), ("LR", lr[index, ..., 0])]
    titles = [METHOD_TITLES.get(name, name) for name in outputs]
    panels += [(title, outputs[name][index, ..., 0]) for title, name in zip(titles, outputs)]
    path = directory / (re.sub(r"[^A-Za-z0-9._-]+", "_", str(patient)) + ".png")
    save_comparison_figure(path, panels, error_map_of=[titles[0], titles[-1]] if len(titles) > 1
                           else titles)
    return path
