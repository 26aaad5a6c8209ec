"""Self-supervised through-plane training data from one thick-slice volume (SMORE-like).

Beyond the paper (Exp. 3 trains on an HR training set): following SMORE (Zhao et al.), the
in-plane (axial) slices of the very volume to be super-resolved are the HR examples, and
their LR partners are made by thickening ONE in-plane axis with the through-plane slice
profile. A model trained on such pairs learns exactly the degradation it must undo through
the plane, so a user with thick-slice scans only still gets a model.

Geometry (the choice documented here): the SR volume will have slice spacing
`target = slice_spacing / factor`. By default the axial slices are first resampled in-plane
to `target` mm pixels (cv2 INTER_AREA when shrinking, INTER_CUBIC when enlarging), so that one
HR pixel of a training pair is one SR voxel, the LR spacing is `factor` pixels and the slice
thickness is `thickness_mm / target` pixels (= `factor` for contiguous slices), exactly the
through-plane situation. With `resample_in_plane=False` the native pixels are kept, so the
profile is `thickness_mm / pixel_spacing` pixels wide (e.g. 3.6 / 0.5 = 7.2) while the
subsampling is still by `factor`.

Both in-plane axes serve as the degraded "height": each example is transposed at random
(square patches keep their shape), then flipped, then thickened along its height.
"""
import dataclasses
import json
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

import cv2
import numpy as np
import tensorflow as tf

from srgan_tf.data.degrade import slice_profile_degrade
from srgan_tf.data.intensity import normalize, robust_range
from srgan_tf.data.pipeline import FOREGROUND_LEVEL
from srgan_tf.io.volume import Volume

SPACING_TOLERANCE = 1e-3  # relative: closer than this, in-plane pixels are used as they are


class SelfSupervisedGeometry(NamedTuple):
    """How the training pairs relate to the volume, in pixels of the training images.

    Attributes:
        factor: subsampling along the degraded axis (the model's through-plane factor).
        target_spacing: SR slice spacing in mm (slice spacing / factor).
        pixel_spacing: (rows, cols) mm of the training images after any resampling.
        thickness: slice-profile width in training pixels for (rows, cols) as the height.
        resampled: whether the axial slices were resampled in-plane.
    """

    factor: int
    target_spacing: float
    pixel_spacing: Tuple[float, float]
    thickness: Tuple[float, float]
    resampled: bool


def self_supervised_geometry(volume: Volume, factor: int, thickness_mm: Optional[float] = None,
                             resample_in_plane: bool = True) -> SelfSupervisedGeometry:
    """Target spacing, training pixel size and slice-profile width for `volume`.

    Args:
        volume: the thick-slice volume (slices, rows, cols); spacing[0] is the slice spacing.
        factor: the model's through-plane factor.
        thickness_mm: slice thickness; default the slice spacing (contiguous slices).
        resample_in_plane: resample axial slices to target-spacing pixels (see module doc).
    """
    if int(factor) != factor or factor < 2:
        raise ValueError(f"factor must be an integer >= 2. Received: factor={factor!r}")
    slice_spacing, row_spacing, col_spacing = (float(s) for s in volume.spacing)
    thickness_mm = slice_spacing if thickness_mm is None else float(thickness_mm)
    if thickness_mm <= 0:
        raise ValueError(f"thickness_mm must be > 0. Received: thickness_mm={thickness_mm}")
    target = slice_spacing / factor
    native = (row_spacing, col_spacing)
    resampled = resample_in_plane and any(abs(s / target - 1) > SPACING_TOLERANCE for s in native)
    pixels = (target, target) if resampled else native
    return SelfSupervisedGeometry(int(factor), target, pixels,
                                  tuple(thickness_mm / s for s in pixels), bool(resampled))


def training_slices(volume: Volume, geometry: SelfSupervisedGeometry, min_foreground: float,
                    min_size: int) -> np.ndarray:
    """Normalised axial slices with tissue, resampled per `geometry`, at least `min_size` px.

    Intensities: the volume's robust range mapped to [-1, 1] (as at inference). Slices with
    less than `min_foreground` of their pixels above -0.9 are dropped (all kept if none
    passes); slices smaller than `min_size` are padded by reflection.
    """
    normalized = normalize(volume.array, robust_range(volume.array))
    slices, rows, cols = normalized.shape
    if geometry.resampled:
        size = (max(1, round(cols * volume.spacing[2] / geometry.target_spacing)),
                max(1, round(rows * volume.spacing[1] / geometry.target_spacing)))
        shrink = size[0] * size[1] < rows * cols
        method = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        normalized = np.stack([cv2.resize(image, size, interpolation=method) for image in normalized])
        np.clip(normalized, -1.0, 1.0, out=normalized)
    tissue = (normalized > FOREGROUND_LEVEL).mean(axis=(1, 2))
    keep = tissue >= min_foreground
    images = normalized[keep] if keep.any() else normalized
    pad_rows, pad_cols = max(0, min_size - images.shape[1]), max(0, min_size - images.shape[2])
    if pad_rows or pad_cols:
        images = np.pad(images, ((0, 0), (pad_rows // 2, pad_rows - pad_rows // 2),
                                 (pad_cols // 2, pad_cols - pad_cols // 2)), mode="reflect")
    return np.ascontiguousarray(images, np.float32)


def _degrade_height(hr, geometry, transposed, profile):
    """Thicken the height of one HWC patch (transposed: the original cols are the height)."""
    def degrade(thickness):
        return slice_profile_degrade(hr, 0, geometry.factor, profile, thickness)

    rows, cols = geometry.thickness
    if rows == cols:
        return degrade(rows)
    return tf.cond(transposed, lambda: degrade(cols), lambda: degrade(rows))


def self_supervised_dataset(volume: Volume, factor: int, data_config, profile: str = "gaussian",
                            seed: int = 0, *, thickness_mm: Optional[float] = None,
                            resample_in_plane: bool = True):
    """Endless `(lr, hr)` training batches and fixed validation pairs from one volume.

    hr [B, P, P, 1], lr [B, P / factor, P, 1] float32 in [-1, 1], P = `data_config.train_size`,
    B = `data_config.batch_size` (pass the GLOBAL batch). Each element: a random axial slice,
    a random P x P patch, a random transpose (either in-plane axis becomes the height), random
    up-down / left-right flips (`data_config.flips`), then
    `slice_profile_degrade(hr, axis=0, factor, profile, thickness)` along the height. Draws are
    stateless in (seed, element number): the same seed gives the same batches.

    Validation: `data_config.val_slices` evenly spaced slices, their centred square of side
    min(rows, cols, hr_size) (a multiple of factor), alternately as is and transposed.

    Args:
        volume: the thick-slice input volume in scanner units.
        factor: through-plane factor of the model (the LR height is P / factor).
        data_config: `DataConfig` (train_size, hr_size, batch_size, flips, min_foreground,
            val_slices).
        profile: slice profile, "gaussian" (FWHM = thickness) or "box".
        seed: random seed.
        thickness_mm, resample_in_plane: see `self_supervised_geometry`.

    Returns:
        (dataset, (val_lr, val_hr)) with numpy validation arrays.

    Example:
        >>> dataset, validation = self_supervised_dataset(thick, 4, config.data)
    """
    geometry = self_supervised_geometry(volume, factor, thickness_mm, resample_in_plane)
    patch = int(data_config.train_size)
    if patch % geometry.factor:
        raise ValueError(f"patch size must be divisible by the factor {geometry.factor}. "
                         f"Received: patch_size={patch}")
    images = training_slices(volume, geometry, data_config.min_foreground, patch)
    count, rows, cols = images.shape
    slices = tf.constant(images[..., None])
    flips = bool(data_config.flips)

    def example(number):
        draw = tf.random.stateless_uniform([6], seed=tf.stack([tf.constant(seed, tf.int64), number]),
                                           alg="philox")
        index = tf.minimum(tf.cast(draw[0] * count, tf.int32), count - 1)
        top = tf.cast(draw[1] * (rows - patch + 1), tf.int32)
        left = tf.cast(draw[2] * (cols - patch + 1), tf.int32)
        hr = slices[index, top:top + patch, left:left + patch, :]
        transposed = draw[3] < 0.5
        hr = tf.cond(transposed, lambda: tf.transpose(hr, [1, 0, 2]), lambda: hr)
        if flips:
            hr = tf.cond(draw[4] < 0.5, lambda: hr[::-1], lambda: hr)
            hr = tf.cond(draw[5] < 0.5, lambda: hr[:, ::-1], lambda: hr)
        hr = tf.ensure_shape(hr, [patch, patch, 1])
        lr = _degrade_height(hr, geometry, transposed, profile)
        return tf.ensure_shape(lr, [patch // geometry.factor, patch, 1]), hr

    dataset = (tf.data.Dataset.counter()
               .map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .batch(int(data_config.batch_size), drop_remainder=True)
               .prefetch(tf.data.AUTOTUNE))
    return dataset, _validation(images, geometry, data_config, profile)


def _validation(images, geometry, data_config, profile):
    count, rows, cols = images.shape
    side = min(rows, cols, int(data_config.hr_size))
    side -= side % geometry.factor
    top, left = (rows - side) // 2, (cols - side) // 2
    picks = max(1, int(data_config.val_slices))
    indices = np.linspace(0, count - 1, picks + 2)[1:-1].round().astype(int)
    lr, hr = [], []
    for number, index in enumerate(indices):
        image = images[index, top:top + side, left:left + side, None]
        transposed = number % 2 == 1
        image = image.transpose(1, 0, 2) if transposed else image
        thickness = geometry.thickness[1 if transposed else 0]
        hr.append(image)
        lr.append(slice_profile_degrade(image, 0, geometry.factor, profile, thickness))
    return np.stack(lr).astype(np.float32), np.stack(hr).astype(np.float32)


def default_steps_per_epoch(volume: Volume, data_config, global_batch: int, factor: int) -> int:
    """About one pass over the volume's in-plane area (both orientations) per epoch."""
    geometry = self_supervised_geometry(volume, factor)
    slices, rows, cols = volume.shape
    scale = (volume.spacing[1] / geometry.pixel_spacing[0]) * (volume.spacing[2] / geometry.pixel_spacing[1])
    patches = 2 * slices * rows * cols * scale / float(data_config.train_size) ** 2
    return max(1, int(patches // global_batch))


def train_self_supervised(volume: Volume, config, run_dir, *, profile: str = "gaussian",
                          thickness_mm: Optional[float] = None, resample_in_plane: bool = True,
                          content_extractor=None, progress: bool = True):
    """Train an anisotropic (Exp. 2-shaped) model on `volume`'s own axial slices and export it.

    The schedule, networks and losses come from `config` (its `data.mode` must be "aniso";
    `data.scale` is the through-plane factor); only the data differ. `run_dir` receives the
    trainer's usual outputs plus `self_supervised.json` (source volume and geometry).

    Args:
        volume: the thick-slice volume to be super-resolved later.
        config: `ExperimentConfig`.
        run_dir: the training run directory.
        profile, thickness_mm, resample_in_plane: see `self_supervised_dataset`.
        content_extractor: passed to the trainer (offline VGG policy of the caller).
        progress: Keras progress bars.

    Returns:
        The trainer's `TrainResult` (export directory included).
    """
    from srgan_tf.training.strategy import global_batch_size, make_strategy
    from srgan_tf.training.trainer import train

    if config.data.mode != "aniso":
        raise ValueError(f"self-supervised through-plane training needs an anisotropic model. "
                         f"Received: mode={config.data.mode!r}")
    factor = config.data.scale
    strategy = make_strategy(config.train.strategy)
    global_batch = global_batch_size(config.data.batch_size, strategy)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train),
                                 data=dataclasses.replace(config.data))
    if not config.train.steps_per_epoch:
        config.train.steps_per_epoch = default_steps_per_epoch(volume, config.data, global_batch, factor)
    dataset, validation = self_supervised_dataset(
        volume, factor, dataclasses.replace(config.data, batch_size=global_batch), profile,
        seed=config.train.seed, thickness_mm=thickness_mm, resample_in_plane=resample_in_plane)
    geometry = self_supervised_geometry(volume, factor, thickness_mm, resample_in_plane)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    description = {"method": "self-supervised (SMORE-like): the volume's own axial slices, one "
                             "in-plane axis thickened with the slice profile",
                   "volume": {"patient_id": volume.patient_id, "shape": list(volume.shape),
                              "spacing": list(volume.spacing),
                              "series_description": volume.series_description},
                   "profile": profile, "geometry": geometry._asdict()}
    (run_dir / "self_supervised.json").write_text(json.dumps(description, indent=2) + "\n")
    return train(config, run_dir, content_extractor=content_extractor, progress=progress,
                 train_dataset=dataset, validation=validation)
