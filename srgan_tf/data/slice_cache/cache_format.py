"""On-disk format of the HDF5 slice cache: layout, schema version and stored-value encoding.

`srgan_tf.data.slice_cache.prepare` writes this format and `srgan_tf.data.slice_cache.cache` reads it.

Layout (schema version 2; version 1 is the same without `missing_slices`)::

    /                        attrs: schema_version, created_by, created, source, series_filter,
                                    test_fraction, seed
    /patients/<patient>/<series>   one volume (slices, rows, cols), chunks (1, rows, cols), lzf;
                             attrs: patient_id, series_uid, study_uid, series_description,
                                    modality, source, spacing (slice, row, col mm), origin (LPS
                                    mm), direction (3x3), intensity_range (lo, hi),
                                    rescale_slope, rescale_intercept, source_tags (JSON),
                                    missing_slices (JSON, only where slices are missing)
    /split/train, /split/test    patient ids (UTF-8 strings)

A series whose files lack slices (unreadable pixel data) stores only the slices it has:
`missing_slices` lists {index, position, file, reason} of the others, index counting in the
series' uniform slice grid that spacing, origin and direction describe.

Volumes are stored as uint16 codes (scanner units = code * rescale_slope + rescale_intercept)
when that reproduces the float32 values to a few ulp, as it does for 16-bit DICOM pixels;
otherwise as float32 with slope 1 and intercept 0. `intensity_range` is
`srgan_tf.data.intensity.robust_range` of the volume as `decode` returns it.
"""
from typing import Optional, Tuple

import numpy as np

SCHEMA_VERSION = 2  # written
READABLE_SCHEMA_VERSIONS = (1, 2)
PATIENTS_GROUP, SPLIT_GROUP = "patients", "split"


def decode(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Scanner units (float32) of stored codes; float32 data passes through."""
    if stored.dtype == np.float32 and slope == 1.0 and intercept == 0.0:
        return stored
    values = stored.astype(np.float32)
    values *= np.float32(slope)
    values += np.float32(intercept)
    return values


def uint16_encoding(array: np.ndarray) -> Optional[Tuple[np.ndarray, float, float]]:
    """(codes, slope, intercept) with codes * slope + intercept == array to float32 precision.

    Rescaled 16-bit pixels have float mantissas that look random to lzf; their integer codes
    are half the size and compress. Returns None for data that is not on such a grid.
    """
    flat = array.reshape(-1)
    low, high = float(flat.min()), float(flat.max())
    if high == low:
        return np.zeros(array.shape, np.uint16), 1.0, low
    levels = np.unique(flat[:: max(1, flat.size // 65536)]).astype(np.float64) - low
    gaps = np.diff(levels)
    step = float(gaps.min()) if gaps.size else high - low
    for target in (8, 64, 512, 4096, 32768, None):  # refine the step on ever larger codes
        if target is None:
            span = high - low
        else:
            span = float(levels[min(np.searchsorted(levels, target * step), len(levels) - 1)])
        code = round(span / step)
        if code > 65535:
            return None
        step = span / code if code > 0 else step
    codes = np.subtract(array, np.float32(low), dtype=np.float32)
    codes *= np.float32(1.0 / step)
    np.rint(codes, out=codes)
    stored = codes.astype(np.uint16)
    tolerance = 8 * float(np.spacing(np.float32(max(abs(low), abs(high)))))
    if tolerance > step / 4 or np.abs(decode(stored, step, low) - array).max() > tolerance:
        return None
    return stored, step, low
