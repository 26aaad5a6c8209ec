"""Per-volume intensity mapping to [-1, 1] (generator ends in tanh) and back to scanner units."""
from typing import Tuple

import numpy as np

# Robust percentiles: ignore a few hot voxels (vessels, artefacts) and the air floor.
DEFAULT_PERCENTILES = (0.5, 99.5)
FOREGROUND_LEVEL = -0.9  # normalised intensity above which a voxel counts as tissue


def robust_range(array: np.ndarray, percentiles=DEFAULT_PERCENTILES) -> Tuple[float, float]:
    """(low, high) intensity percentiles of a volume; high > low always.

    Args:
        array: any-shape array in scanner units.
        percentiles: (low, high) percentiles in [0, 100].
    """
    values = np.asarray(array, dtype=np.float32).ravel()
    if values.size > 4_000_000:  # a strided subsample estimates percentiles well and fast
        values = values[:: values.size // 2_000_000]
    low, high = np.percentile(values, percentiles)
    if not np.isfinite(low) or not np.isfinite(high):
        raise ValueError(f"Volume has non-finite intensities. Received: range ({low}, {high})")
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def normalize(array: np.ndarray, intensity_range: Tuple[float, float]) -> np.ndarray:
    """Clip to `intensity_range` and map linearly to [-1, 1] (float32)."""
    low, high = intensity_range
    scaled = (np.asarray(array, dtype=np.float32) - low) * (2.0 / (high - low)) - 1.0
    return np.clip(scaled, -1.0, 1.0, out=scaled)


def denormalize(array: np.ndarray, intensity_range: Tuple[float, float]) -> np.ndarray:
    """Inverse of `normalize` (without undoing the clipping), float32 scanner units."""
    low, high = intensity_range
    return ((np.asarray(array, dtype=np.float32) + 1.0) * ((high - low) / 2.0) + low).astype(np.float32)
