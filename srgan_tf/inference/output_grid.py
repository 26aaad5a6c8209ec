"""An SR volume put where the user asked: onto the target slice grid, within the input's range.

`infer` clips its output to the input's intensity range; `self-supervised` also resamples the
model's output (a power-of-two factor) along the slices onto the target grid
(`data.acquisition.target_grid`, e.g. x7.2 for 3.6 mm slices to 0.5 mm), clips, and keeps the
input's empty support empty (`slice_grid.keep_empty_support`).
"""
import math

import numpy as np

from srgan_tf.data.acquisition import target_grid
from srgan_tf.inference.slice_grid import interpolation_matrix, keep_empty_support, resample_axis0


def clip_to_range(volume, low: float, high: float):
    """(volume with intensities clipped to [low, high], number of voxels changed)."""
    array = np.asarray(volume.array)
    outside = int(np.count_nonzero((array < low) | (array > high)))
    if outside:
        volume = volume.with_array(np.clip(array, low, high).astype(array.dtype, copy=False))
    return volume, outside


def onto_target_grid(sr, slice_first, acquisition, profile, *, clip: bool = True):
    """The through-plane SR of `slice_first` resampled along the slices onto the acquisition's
    target grid; with `clip`, clipped to the input's range and its empty support kept empty.

    Args:
        sr: the model's SR volume (slices x model factor, rows, cols), slice axis first.
        slice_first: the input volume with its low-resolution axis first, scanner units.
        acquisition: `data.acquisition.Acquisition` of the input.
        profile: the `SliceProfile` the model was trained for (its support decides which output
            voxels the thick slices cover).
        clip: clip to the input's [min, max] and keep its empty support empty.

    Returns:
        The SR volume on the target grid (spacing and origin of that grid).
    """
    array = sr.array
    s, d = acquisition.model_factor, acquisition.slice_spacing
    count, step, first = target_grid(slice_first, acquisition)
    if not (count == array.shape[0] and math.isclose(step, d / s, rel_tol=1e-9)):
        matrix = interpolation_matrix(array.shape[0], -d / 2 + d / (2 * s), d / s,
                                      count, first, step)
        array = resample_axis0(array, matrix)
    if clip:
        low, high = float(slice_first.array.min()), float(slice_first.array.max())
        array = clip_to_range(sr.with_array(array), low, high)[0].array
        positions = (first + np.arange(count) * step) / d  # in thick-slice index units
        keep_empty_support(array, slice_first.array, positions, profile.half_support_mm() / d)
    origin = np.asarray(slice_first.origin) + first * slice_first.direction[0]
    spacing = (step, *slice_first.spacing[1:])
    return sr.with_array(array, spacing=spacing, origin=tuple(origin))
