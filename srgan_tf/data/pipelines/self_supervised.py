"""Self-supervised through-plane training pairs from one thick-slice volume (SMORE-like).

Beyond the paper (Exp. 3 trains on an HR training set): following SMORE (Zhao et al.) and
ECLARE (Remedios et al.), the in-plane slices of the very volume to be super-resolved are
the HR examples, and their LR partners are made by degrading ONE in-plane axis the way the
scanner degraded the slice axis: filter with the slice profile, keep every `factor`-th
sample. A model trained on such pairs learns the degradation it must undo through the plane.

Geometry: the model upsamples by the integer `acquisition.model_factor` (s), so one LR step
is s training pixels and the training pixel is `slice_spacing / s` mm. The in-plane slices
are resampled to that pixel size (cv2 INTER_AREA when shrinking, INTER_CUBIC when
enlarging; untouched when it already matches), and the slice profile is integrated over
those pixels (`SliceProfile.sampling_taps`). Both in-plane axes serve as the degraded "height":
each example is transposed at random, then flipped, then degraded along its height.
"""
from typing import Tuple

import cv2
import numpy as np
import tensorflow as tf

from srgan_tf.data.acquisition import Acquisition
from srgan_tf.data.pipelines.augment import augment_draws, element_draws, random_patch_and_flips
from srgan_tf.data.degradation.degrade import filter_and_subsample
from srgan_tf.data.intensity import FOREGROUND_LEVEL, normalize

SPACING_TOLERANCE = 1e-3  # relative: closer than this, in-plane pixels are used as they are


def training_pixel_mm(acquisition: Acquisition) -> float:
    """Size in mm of one training pixel: one model output voxel along the slice axis."""
    return acquisition.slice_spacing / acquisition.model_factor


def training_slices(array: np.ndarray, acquisition: Acquisition, intensity_range,
                    min_foreground: float, min_size: int) -> np.ndarray:
    """Normalised in-plane slices of a slice-first array, resampled to training pixels.

    Slices with less than `min_foreground` of their pixels above the foreground level are
    dropped (all kept if none passes); slices smaller than `min_size` are reflect-padded.

    Args:
        array: (slices, rows, cols) in scanner units, axis 0 the low-resolution one.
        acquisition: from `acquisition_from_volume` (its slice_axis already moved to 0).
        intensity_range: (low, high) robust range mapped to [-1, 1], as at inference.
        min_foreground: fraction of tissue pixels a slice needs.
        min_size: smallest side of a training image (the patch size).
    """
    normalized = normalize(array, intensity_range)
    slices, rows, cols = normalized.shape
    pixel = training_pixel_mm(acquisition)
    row_mm, col_mm = acquisition.in_plane_spacing
    if any(abs(s / pixel - 1) > SPACING_TOLERANCE for s in (row_mm, col_mm)):
        size = (max(1, round(cols * col_mm / pixel)), max(1, round(rows * row_mm / pixel)))
        method = cv2.INTER_AREA if size[0] * size[1] < rows * cols else cv2.INTER_CUBIC
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


def self_supervised_dataset(images: np.ndarray, taps, factor: int, *, patch_size: int,
                            batch_size: int, flips: bool = True, seed: int = 0,
                            val_slices: int = 4, val_size: int = 192):
    """Endless `(lr, hr)` training batches and fixed validation pairs from training slices.

    hr [B, P, P, 1], lr [B, P / factor, P, 1] float32 in [-1, 1]. Each element: a random
    slice, then `augment.random_patch_and_flips`: a random P x P patch, a random transpose,
    random flips; then the height degraded with `taps` (`SliceProfile.sampling_taps`) and
    subsampled by `factor`. Draws are stateless in (seed, element number): the same seed gives
    the same batches.

    Validation: `val_slices` evenly spaced slices, their centred square of side
    min(rows, cols, val_size) (a multiple of factor), alternately as is and transposed.

    Args:
        images: (count, rows, cols) float32 from `training_slices`.
        taps: (offsets, weights) of the slice profile in training pixels
            (`profile.sampling_taps(factor, training_pixel_mm(acquisition))`).
        factor: the model's integer through-plane factor.
        patch_size: P, a multiple of `factor`.
        batch_size: B (the GLOBAL batch under a distribution strategy).

    Returns:
        (dataset, (val_lr, val_hr)) with numpy validation arrays.
    """
    patch = int(patch_size)
    if patch % factor:
        raise ValueError(f"patch size must be divisible by the factor {factor}. "
                         f"Received: patch_size={patch}")
    count, rows, cols = images.shape
    if min(rows, cols) < patch:
        raise ValueError(f"training slices must be at least {patch} pixels. "
                         f"Received: shape={images.shape}")
    slices = tf.constant(images[..., None])

    def example(number):
        draws = element_draws(seed, number, 1 + augment_draws(transpose=True))
        index = tf.minimum(tf.cast(draws[0] * count, tf.int32), count - 1)  # the slice first
        hr = random_patch_and_flips(slices[index], draws[1:], patch, flips=flips, transpose=True)
        lr = filter_and_subsample(hr, 0, taps, factor)
        return tf.ensure_shape(lr, [patch // factor, patch, 1]), hr

    dataset = (tf.data.Dataset.counter()
               .map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .batch(int(batch_size), drop_remainder=True)
               .prefetch(tf.data.AUTOTUNE))
    return dataset, validation_pairs(images, taps, factor, val_slices, val_size)


def validation_pairs(images, taps, factor, picks=4, size=192) -> Tuple[np.ndarray, np.ndarray]:
    """Fixed (lr, hr) pairs: centred squares of evenly spaced slices, every other transposed."""
    count, rows, cols = images.shape
    side = min(rows, cols, int(size))
    side -= side % factor
    top, left = (rows - side) // 2, (cols - side) // 2
    indices = np.linspace(0, count - 1, max(1, int(picks)) + 2)[1:-1].round().astype(int)
    lr, hr = [], []
    for number, index in enumerate(indices):
        image = images[index, top:top + side, left:left + side, None]
        image = image.transpose(1, 0, 2) if number % 2 else image
        hr.append(image)
        lr.append(np.asarray(filter_and_subsample(image, 0, taps, factor)))
    return np.stack(lr).astype(np.float32), np.stack(hr).astype(np.float32)
