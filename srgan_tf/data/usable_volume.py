"""What a volume must hold to be worth super-resolving, one rule for every command.

- Non-finite voxels (NaN, ±Inf): refused, with their count. Setting them to 0 would cut holes
  that the networks ring around, and a silent fix would hide a broken conversion; `prepare`
  skips such a series (the count is its reason), `infer` and `self-supervised` stop before
  any work; `score` refuses them in any of its volumes too.
- No signal: a constant volume, or one where the background value fills the robust intensity
  range (its 0.5th and 99.5th percentiles are equal: at least 99.5% of voxels hold it): training would learn nothing and inference would
  return the background. Refused likewise.
- Little signal (under 5% of voxels above the lowest value, yet a robust range): used, with
  a warning line.
"""
from typing import Optional

import numpy as np

from srgan_tf.console import warn
from srgan_tf.data.intensity import DEFAULT_PERCENTILES
from srgan_tf.io.errors import InputError

LITTLE_SIGNAL = 0.05  # share of voxels above the background below which a volume is suspect


def unusable_reason(array) -> Optional[str]:
    """Why `array` cannot be meant as an MR volume to super-resolve, or None when it can.

    Example:
        >>> unusable_reason(np.zeros((4, 8, 8)))
        'holds no signal: every voxel is 0'
    """
    array = np.asarray(array)
    if array.size == 0:
        return f"holds no voxels (shape {array.shape})"
    holes = non_finite_reason(array)
    if holes:
        return holes
    low, high = float(array.min()), float(array.max())
    if low == high:
        return f"holds no signal: every voxel is {low:g}"
    values = array.ravel()
    if values.size > 4_000_000:  # a strided subsample estimates percentiles well and fast
        values = values[:: values.size // 2_000_000]
    floor, top = np.percentile(values, DEFAULT_PERCENTILES)
    if top <= floor:
        above = int(np.count_nonzero(array > floor))
        return (f"holds no signal: {array.size - above} of {array.size} voxels hold the "
                f"background value {float(floor):g} and only {above} lie above it")
    return None


def non_finite_reason(array) -> Optional[str]:
    """The count of NaN and infinite voxels in words, or None when every voxel is finite."""
    array = np.asarray(array)
    finite = np.isfinite(array)
    if finite.all():
        return None
    nan = int(np.count_nonzero(np.isnan(array)))
    count = int(array.size - np.count_nonzero(finite))
    return (f"{count} of {array.size} voxels are not finite ({nan} NaN, {count - nan} "
            "infinite); fix or mask them first (set to 0 they would be holes the networks "
            "ring around)")


def little_signal(array) -> Optional[str]:
    """A warning when under `LITTLE_SIGNAL` of a usable volume's voxels lie above its lowest
    value: usable, but often the wrong series (a localiser, a mask) or a mostly empty field."""
    array = np.asarray(array)
    above = int(np.count_nonzero(array > array.min()))
    if above >= LITTLE_SIGNAL * array.size:
        return None
    return (f"only {above} of {array.size} voxels ({above / array.size:.2%}) lie above the "
            f"background value {float(array.min()):g}: check this is the intended series")


def check_usable(volume, source) -> None:
    """InputError naming `source` when `unusable_reason(volume.array)` finds a reason; a
    warning line (`console.warn`) when it holds `little_signal`."""
    reason = unusable_reason(volume.array)
    if reason:
        raise InputError(source, reason)
    sparse = little_signal(volume.array)
    if sparse:
        warn(f"{source}: {sparse}")
