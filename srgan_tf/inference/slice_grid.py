"""Resampling along the slice axis onto a target grid (non-integer through-plane factors).

The model upsamples by a power of two; when the wanted output spacing is not the model's
(3.6 mm slices, 0.5 mm target: x7.2, model x8 gives 0.45 mm), its output is resampled along
axis 0 with the Keys cubic kernel (a = -0.5), edge samples clamped. When the target is more
than ANTIALIAS_RATIO times coarser, the kernel is widened by the step ratio (antialiasing, as
Matlab `imresize`); below that, aliasing is negligible and the plain kernel keeps
interpolation exact for linear signals.
"""
import numpy as np

from srgan_tf.data.degradation.degrade import keys_cubic

ANTIALIAS_RATIO = 1.25


def interpolation_matrix(source_count: int, source_first: float, source_step: float,
                         target_count: int, target_first: float, target_step: float) -> np.ndarray:
    """[target_count, source_count] cubic weights; positions are sample centres in mm.

    Example:
        >>> interpolation_matrix(8, 0.0, 1.0, 4, 0.5, 2.0).sum(axis=1)
        array([1., 1., 1., 1.])
    """
    if min(source_count, target_count) < 1 or source_step <= 0 or target_step <= 0:
        raise ValueError(f"counts must be >= 1 and steps > 0. Received: source "
                         f"({source_count}, {source_step}), target ({target_count}, {target_step})")
    ratio = target_step / source_step
    stretch = ratio if ratio > ANTIALIAS_RATIO else 1.0
    position = (target_first + np.arange(target_count) * target_step - source_first) / source_step
    reach = int(np.ceil(2 * stretch)) + 1
    taps = np.floor(position)[:, None] + np.arange(-reach + 1, reach + 1)[None, :]
    weights = keys_cubic((position[:, None] - taps) / stretch)
    matrix = np.zeros((target_count, source_count))
    rows = np.broadcast_to(np.arange(target_count)[:, None], taps.shape)
    np.add.at(matrix, (rows, np.clip(taps, 0, source_count - 1).astype(int)), weights)
    return matrix / matrix.sum(axis=1, keepdims=True)


def resample_axis0(array: np.ndarray, matrix: np.ndarray, chunk_rows: int = 64) -> np.ndarray:
    """`matrix @ array` along axis 0 of a (slices, rows, cols) array, float32, in row chunks
    (bounded memory for large volumes)."""
    slices, rows, cols = array.shape
    if matrix.shape[1] != slices:
        raise ValueError(f"matrix columns must equal the slices. Received: {matrix.shape} for "
                         f"shape {array.shape}")
    out = np.empty((matrix.shape[0], rows, cols), np.float32)
    weights = matrix.astype(np.float32)
    for start in range(0, rows, chunk_rows):
        block = array[:, start:start + chunk_rows].reshape(slices, -1)
        out[:, start:start + chunk_rows] = (weights @ block).reshape(matrix.shape[0], -1, cols)
    return out


def keep_empty_support(output: np.ndarray, thick: np.ndarray, positions: np.ndarray,
                       half_support: float) -> int:
    """Set output voxels to the input minimum where the thick slices say there is nothing.

    A thick voxel is a positively weighted average, along the slice axis, of the voxels its
    profile covers; if it equals the volume's minimum (zero background of a skull-stripped,
    masked or zero-filled image), so did every voxel it averaged. An output voxel covered by
    the nearest thick slice's profile takes the minimum when that slice is at the minimum there;
    one in a gap (covered by no profile) only when both bracketing slices are. The network's
    small offsets in flat background are removed without touching anything the data support.

    Args:
        output: (out_slices, rows, cols) SR array, changed in place.
        thick: (slices, rows, cols) input array in scanner units.
        positions: each output slice's position in thick-slice index units (0 = first centre).
        half_support: half-width of the slice profile in thick-slice units.

    Returns:
        The number of voxels set.
    """
    minimum = thick.min()
    at_minimum = thick == minimum
    if not at_minimum.any():
        return 0
    last = thick.shape[0] - 1
    changed = 0
    for index, position in enumerate(positions):
        nearest = int(np.clip(np.rint(position), 0, last))
        if abs(position - nearest) <= half_support:
            empty = at_minimum[nearest]
        else:
            below = int(np.clip(np.floor(position), 0, last))
            empty = at_minimum[below] & at_minimum[min(below + 1, last)]
        changed += int(np.count_nonzero(output[index][empty] != minimum))
        output[index][empty] = minimum
    return changed
