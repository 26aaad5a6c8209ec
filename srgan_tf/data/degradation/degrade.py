"""The one degradation module: HR -> LR for training, evaluation and bicubic baselines alike.

Every degradation here is a separable 1-D filter-and-subsample along one axis with the same
sampling phase and border rule, so the LR a model trains on, the LR bicubic is scored on and
the thick slices of Exp. 3 all follow one definition:

- sampling phase: output sample i sits at input coordinate i * factor + (factor - 1) / 2
  (pixel centres, the "half-pixel" convention of `tf.image.resize` and Matlab `imresize`);
- border: half-sample symmetric reflection (x[-1] = x[0], x[n] = x[n-1]), as Matlab `imresize`;
- output i = sum_t weights[t] * x[reflect(i * factor + offsets[t])], weights summing to 1.

`degrade` (Exp. 1 iso, Exp. 2 height only) uses the antialiased bicubic kernel; see
`bicubic_taps`. `slice_profile_degrade` (Exp. 3 through-plane) uses a `SliceProfile`; see
`SliceProfile.sampling_taps`.
"""
from typing import Tuple

import numpy as np
import tensorflow as tf

from srgan_tf.config import check_scale_hw
from srgan_tf.data.degradation.slice_profile import SliceProfile, reflect_index


def bicubic_taps(scale: int) -> Tuple[np.ndarray, np.ndarray]:
    """Antialiased bicubic downsampling kernel (Matlab `imresize(x, 1/scale)`-like).

    The Keys cubic (a = -0.5) stretched by `scale` so that it low-passes at the LR Nyquist
    frequency: weight(d) = cubic(d / scale) for a tap at distance d (input samples) from the
    output centre, over the 4 * scale taps with |d| < 2 * scale, normalised to sum to 1.
    For scale 4: d = -7.5, -6.5, ..., 7.5 (16 taps). scale 1 is the identity. Away from the
    borders this equals `tf.image.resize(method="bicubic", antialias=True)` (which, at the
    borders, renormalises the truncated kernel instead of reflecting).

    Returns:
        (offsets, weights): integer tap offsets from i * scale and float64 weights.
    """
    scale = _check_factor("scale", scale)
    offsets = np.arange(-3 * scale, 3 * scale + 1)
    distance = (offsets - (scale - 1) / 2.0) / scale
    keep = np.abs(distance) < 2.0
    return _normalized(offsets[keep], keys_cubic(distance[keep]))


def keys_cubic(distance) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5): the weight of a sample `distance` samples away
    (0 beyond 2). The bicubic of `bicubic_taps` and of slice-axis resampling alike.

    Example:
        >>> keys_cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0]))
        array([ 1.    ,  0.5625,  0.    , -0.0625,  0.    ])
    """
    x = np.abs(distance)
    return np.where(x <= 1.0, 1.5 * x ** 3 - 2.5 * x ** 2 + 1.0,
                    np.where(x < 2.0, -0.5 * x ** 3 + 2.5 * x ** 2 - 4.0 * x + 2.0, 0.0))


def resampling_matrix(taps, factor: int, size: int) -> np.ndarray:
    """Dense [size // factor, size] float64 matrix applying `taps` with symmetric borders."""
    offsets, weights = taps
    rows = np.arange(size // factor)[:, None]
    columns = reflect_index(rows * factor + offsets[None, :], size)
    matrix = np.zeros((size // factor, size))
    np.add.at(matrix, (np.broadcast_to(rows, columns.shape), columns),
              np.broadcast_to(weights, columns.shape))
    return matrix


def degrade(hr, scale_hw) -> tf.Tensor:
    """Antialiased bicubic downsampling by (scale_h, scale_w); the LR of every experiment.

    Separable: the `bicubic_taps(scale_h)` filter down the columns, then `bicubic_taps(scale_w)`
    along the rows, each followed by subsampling with the module's sampling phase and
    symmetric borders. An axis with scale 1 is not touched at all (Exp. 2: width bit-exact).

    Args:
        hr: float32 NHWC or HWC tensor or array; H and W divisible by their scales.
        scale_hw: (scale_h, scale_w), e.g. (4, 4) for Exp. 1, (4, 1) for Exp. 2.

    Returns:
        float32 tensor [N, H / scale_h, W / scale_w, C] (or HWC for HWC input).

    Example:
        lr = degrade(hr_batch, (4, 1))  # [16, 224, 224, 1] -> [16, 56, 224, 1]
    """
    scale_h, scale_w = check_scale_hw(scale_hw)
    x, squeeze = _as_nhwc(hr, "hr")
    for axis, scale in ((1, scale_h), (2, scale_w)):
        if scale == 1:
            continue
        if x.shape[axis] is None:
            tf.debugging.assert_equal(tf.shape(x)[axis] % scale, 0,
                                      message=f"image size must be divisible by {scale}")
        elif x.shape[axis] % scale:
            raise ValueError(f"Image {'height' if axis == 1 else 'width'} must be divisible by "
                             f"its scale {scale}. Received: shape={tuple(x.shape)}")
        x = _filter_axis(x, axis, bicubic_taps(scale), scale)
    return x[0] if squeeze else x


def upsample_bicubic(lr, scale_hw) -> tf.Tensor:
    """Bicubic baseline: `tf.image.resize(method="bicubic")` (Keys a = -0.5, half-pixel
    centres, edge clamp) to exactly (H * scale_h, W * scale_w). A scale-1 axis is untouched.

    Args:
        lr: float32 NHWC or HWC tensor or array.
        scale_hw: (scale_h, scale_w).

    Returns:
        float32 tensor of the upsampled images (same rank as `lr`), not clipped.
    """
    scale_h, scale_w = check_scale_hw(scale_hw)
    x, squeeze = _as_nhwc(lr, "lr")
    shape = tf.shape(x)
    if scale_w == 1:  # fold width into channels so that no resampling happens along it
        folded = tf.reshape(x, [shape[0], shape[1], 1, shape[2] * shape[3]])
        up = tf.image.resize(folded, [shape[1] * scale_h, 1], method="bicubic")
        x = tf.reshape(up, [shape[0], shape[1] * scale_h, shape[2], shape[3]])
    else:
        x = tf.image.resize(x, [shape[1] * scale_h, shape[2] * scale_w], method="bicubic")
    return x[0] if squeeze else x


def slice_profile_degrade(x, axis: int, factor: int, profile: SliceProfile, pixel_mm: float = 1.0):
    """Simulate thick slices along `axis`: filter with the slice profile, keep every
    `factor`-th sample. Output sample i sits at input coordinate i * factor + (factor - 1) / 2;
    the axis length becomes size // factor (trailing samples that fill no slice are dropped).

    numpy in -> numpy out (any rank, e.g. 3-D volumes for Exp. 3 scoring, float64 accumulation);
    TF tensor in -> TF tensor out (NHWC with axis 1 or 2, or HWC with axis 0 or 1: the height
    of Exp. 2 slice-profile training images). Both use `profile.sampling_taps`.

    Args:
        x: numpy array or float32 TF tensor.
        axis: the axis to thicken (negative values count from the end).
        factor: subsampling factor (>= 1).
        profile: the slice profile; its width in the units of `pixel_mm`.
        pixel_mm: the input sample size; 1 (default) reads the profile's width in input samples.

    Example:
        thick = slice_profile_degrade(volume, axis=0, factor=4, profile=SliceProfile("box", 4))
    """
    taps = profile.sampling_taps(_check_factor("factor", factor), pixel_mm)
    if tf.is_tensor(x):
        rank = x.shape.rank
        if rank not in (3, 4):
            raise ValueError(f"TF input must be NHWC or HWC. Received: shape={x.shape}")
        axis = axis % rank + (4 - rank)
        if axis not in (1, 2):
            raise ValueError(f"TF slice profiles act on height or width. "
                             f"Received: axis={axis - 4 + rank}")
        images, squeeze = _as_nhwc(x, "x")
        out = _filter_axis(images, axis, taps, factor)
        return out[0] if squeeze else out
    array = np.asarray(x)
    axis = _check_numpy_axis(axis, array.ndim)
    matrix = resampling_matrix(taps, factor, array.shape[axis])
    moved = np.tensordot(matrix, np.moveaxis(array, axis, 0).astype(np.float64), axes=1)
    dtype = array.dtype if array.dtype.kind == "f" else np.float32
    return np.moveaxis(moved, 0, axis).astype(dtype)


def filter_and_subsample(x, axis: int, taps, factor: int) -> tf.Tensor:
    """Apply any (offsets, weights) taps along `axis` of an HWC (axis 0/1) or NHWC (axis 1/2)
    image with the module's sampling phase and borders; the axis becomes size // factor.

    Example:
        lr = filter_and_subsample(hr_patch, 0, SliceProfile("box", 4).sampling_taps(4), 4)
    """
    images, squeeze = _as_nhwc(x, "x")
    axis = axis % x.shape.rank + (4 - x.shape.rank) if tf.is_tensor(x) else axis + (1 if squeeze else 0)
    if axis not in (1, 2):
        raise ValueError(f"taps act on the height or width. Received: axis={axis}")
    out = _filter_axis(images, axis, taps, _check_factor("factor", factor))
    return out[0] if squeeze else out


def _filter_axis(x: tf.Tensor, axis: int, taps, factor: int) -> tf.Tensor:
    """Apply taps along axis 1 (H) or 2 (W) of NHWC as a matrix product (no transposes);
    the axis becomes size // factor long."""
    size = x.shape[axis]
    if size is not None:
        matrix = tf.constant(resampling_matrix(taps, factor, size), tf.float32)
    else:
        matrix = _resampling_matrix_tf(taps, factor, tf.shape(x)[axis])
    shape = tf.shape(x)
    if axis == 1:
        flat = tf.reshape(x, [shape[0], shape[1], shape[2] * shape[3]])
        out = tf.linalg.matmul(matrix, flat)
        out = tf.reshape(out, [shape[0], shape[1] // factor, shape[2], shape[3]])
    else:
        flat = tf.reshape(x, [shape[0] * shape[1], shape[2], shape[3]])
        out = tf.linalg.matmul(matrix, flat)
        out = tf.reshape(out, [shape[0], shape[1], shape[2] // factor, shape[3]])
    static = x.shape.as_list()
    static[axis] = None if static[axis] is None else static[axis] // factor
    return tf.ensure_shape(out, static)


def _resampling_matrix_tf(taps, factor: int, size: tf.Tensor) -> tf.Tensor:
    """`resampling_matrix` for a size known only at run time (graph mode, dynamic shapes)."""
    offsets, weights = taps
    rows = tf.range(size // factor)[:, None]
    columns = rows * factor + tf.constant(offsets, tf.int32)[None, :]
    period = tf.math.floormod(columns, 2 * size)
    columns = tf.where(period < size, period, 2 * size - 1 - period)
    one_hot = tf.one_hot(columns, size, dtype=tf.float32)
    return tf.reduce_sum(one_hot * tf.constant(weights, tf.float32)[None, :, None], axis=1)


def _normalized(offsets, weights):
    weights = np.asarray(weights, np.float64)
    return offsets.astype(np.int64), weights / weights.sum()


def _as_nhwc(images, name):
    x = tf.convert_to_tensor(images)
    if not x.dtype.is_floating:
        raise ValueError(f"{name} must be a float tensor. Received: dtype={x.dtype.name}")
    x = tf.cast(x, tf.float32)
    if x.shape.rank == 3:
        return x[None], True
    if x.shape.rank == 4:
        return x, False
    raise ValueError(f"{name} must be NHWC or HWC. Received: shape={x.shape}")


def _check_factor(name, value) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


def _check_numpy_axis(axis, ndim) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis must be in [{-ndim}, {ndim}). Received: axis={axis}")
    return axis % ndim
