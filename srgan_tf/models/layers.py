"""Axis-aware sub-pixel layers: PixelShuffle (depth-to-space) and its inverse.

The SRGAN generator upsamples with sub-pixel convolution (Shi et al. 2016). Exp. 2 of the
paper upsamples the height only, so the shuffle takes a factor per axis, ``(scale_h, scale_w)``.
For ``(s, s)`` the channel order equals ``tf.nn.depth_to_space(x, s)``: input channel
``(i * scale_w + j) * C + c`` goes to output pixel offset ``(i, j)``, channel ``c``.
"""

import keras
import numpy as np
from keras import ops

from srgan_tf.config import check_scale_hw


def _spatial_size(x):
    """Batch, height and width of an NHWC tensor: ints where static, scalar tensors otherwise."""
    shape = ops.shape(x)
    return shape[0], shape[1], shape[2]


@keras.saving.register_keras_serializable(package="srgan_tf")
class PixelShuffle(keras.layers.Layer):
    """Sub-pixel depth-to-space per axis: (B, H, W, C*sh*sw) -> (B, H*sh, W*sw, C).

    Args:
        scale_hw: upsampling factor per axis ``(scale_h, scale_w)``; ``(2, 1)`` doubles
            the height only (Exp. 2).
        **kwargs: base layer arguments (``name``, ``dtype``).

    Example:
        >>> PixelShuffle((2, 1))(keras.ops.zeros((1, 7, 9, 16))).shape  # (1, 14, 9, 8)
    """

    def __init__(self, scale_hw=(2, 2), **kwargs):
        super().__init__(**kwargs)
        self.scale_hw = check_scale_hw(scale_hw)

    def build(self, input_shape):
        channels = input_shape[-1]
        scale_h, scale_w = self.scale_hw
        if len(input_shape) != 4 or channels is None or channels % (scale_h * scale_w):
            raise ValueError(
                "PixelShuffle expects NHWC input with a known channel count divisible by "
                f"scale_h * scale_w = {scale_h * scale_w}. Received: input_shape={input_shape}"
            )
        super().build(input_shape)

    def call(self, inputs):
        scale_h, scale_w = self.scale_hw
        batch, height, width = _spatial_size(inputs)
        channels = inputs.shape[-1] // (scale_h * scale_w)
        x = ops.reshape(inputs, (batch, height, width, scale_h, scale_w, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (batch, height * scale_h, width * scale_w, channels))

    def compute_output_shape(self, input_shape):
        scale_h, scale_w = self.scale_hw
        batch, height, width, channels = input_shape
        return (
            batch,
            None if height is None else height * scale_h,
            None if width is None else width * scale_w,
            channels // (scale_h * scale_w),
        )

    def get_config(self):
        config = super().get_config()
        config["scale_hw"] = list(self.scale_hw)
        return config


@keras.saving.register_keras_serializable(package="srgan_tf")
class ICNR(keras.initializers.Initializer):
    """Kernel initializer for the conv before a PixelShuffle (Aitken et al. 2017, "ICNR").

    Draws one sub-kernel with ``initializer`` for C = out_channels / (scale_h * scale_w)
    channels and repeats it for every sub-pixel offset, so that the shuffled output starts
    as a nearest-neighbour upsampling: all sh x sw outputs of an LR pixel are equal, and
    there is no period-sh / period-sw pattern (stripes, checkerboard) at initialisation.
    The channel order matches PixelShuffle: channel ``(i * scale_w + j) * C + c``.

    Args:
        scale_hw: the PixelShuffle's factor per axis ``(scale_h, scale_w)``.
        initializer: initializer of the sub-kernel (name, config or instance).

    Example:
        >>> keras.layers.Conv2D(32 * 2, 3, kernel_initializer=ICNR((2, 1)))
    """

    def __init__(self, scale_hw=(2, 2), initializer="glorot_uniform"):
        self.scale_hw = check_scale_hw(scale_hw)
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        groups = self.scale_hw[0] * self.scale_hw[1]
        if len(shape) != 4 or shape[-1] % groups:
            raise ValueError(
                "ICNR expects a conv kernel (kh, kw, in, out) with out divisible by "
                f"scale_h * scale_w = {groups}. Received: shape={tuple(shape)}"
            )
        sub_kernel = self.initializer((*shape[:-1], shape[-1] // groups), dtype=dtype)
        return ops.tile(sub_kernel, (1, 1, 1, groups))

    def get_config(self):
        return {"scale_hw": list(self.scale_hw),
                "initializer": keras.initializers.serialize(self.initializer)}


@keras.saving.register_keras_serializable(package="srgan_tf")
class HoldFilter(keras.layers.Layer):
    """Fixed first-order hold after a PixelShuffle (Sugawara et al. 2019): no stripes, ever.

    Along each axis the shuffle upsampled by f, the layer convolves with box_f * box_f / f^2
    ([1, 2, 1] / 4 for f = 2; symmetric, so no shift) with half-sample symmetric borders. A
    signal of period f (what a shuffle makes of a flat input, whatever the weights) becomes
    constant, so a flat LR input gives a flat output however training moves the sub-pixel
    convolutions apart. ICNR only makes that true at initialisation. No weights.

    Args:
        scale_hw: the PixelShuffle's factor per axis ``(scale_h, scale_w)``.
        **kwargs: base layer arguments (``name``, ``dtype``).
    """

    def __init__(self, scale_hw=(2, 2), **kwargs):
        super().__init__(**kwargs)
        self.scale_hw = check_scale_hw(scale_hw)
        # Conv-like attributes, so receptive-field counting (export, tiling) includes the layer.
        self.kernel_size = tuple(2 * factor - 1 for factor in self.scale_hw)
        self.dilation_rate = (1, 1)
        self.strides = (1, 1)

    def call(self, inputs):
        return _hold(inputs, self.scale_hw)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["scale_hw"] = list(self.scale_hw)
        return config


def _hold_taps(factor: int) -> np.ndarray:
    """box_factor * box_factor / factor^2: [1, 2, 1] / 4 for factor 2, [1] for factor 1."""
    return np.array([min(k + 1, 2 * factor - 1 - k) for k in range(2 * factor - 1)],
                    np.float32) / factor**2


def _hold(x, scale_hw):
    """x convolved with the hold taps of each axis, half-sample symmetric borders.

    One symmetric pad and one fixed depthwise convolution for both axes (the outer product of
    the two axes' taps): the same sums as filtering one axis after the other, in one pass over
    the tensor instead of two. A convolution, not shifted slices, so its gradient is one too
    (the slices' StridedSliceGrad took a third of a training step on a CPU).
    """
    taps_h, taps_w = (_hold_taps(factor) for factor in scale_hw)
    if len(taps_h) == len(taps_w) == 1:
        return x
    pads = [[0, 0], [(len(taps_h) - 1) // 2] * 2, [(len(taps_w) - 1) // 2] * 2, [0, 0]]
    kernel = np.outer(taps_h, taps_w)[:, :, None, None]
    kernel = np.tile(kernel, (1, 1, x.shape[-1], 1))  # one filter per channel
    if keras.backend.backend() == "tensorflow":
        return _hold_tensorflow(x, ops.cast(kernel, x.dtype), pads)
    padded = ops.pad(x, pads, mode="symmetric")
    return ops.depthwise_conv(padded, ops.cast(kernel, x.dtype), strides=1, padding="valid")


def _symmetric_pad_by_copies(x, pads):
    """tf.pad(x, pads, "SYMMETRIC") along axes 1 and 2 as concatenated slices: a copy, about
    twice as fast as MirrorPad on a CPU (bfloat16 and float32)."""
    import tensorflow as tf

    for axis in (1, 2):
        width = pads[axis][0]
        if width:
            head = tf.reverse(tf.gather(x, tf.range(width), axis=axis), [axis])
            size = tf.shape(x)[axis]
            tail = tf.reverse(tf.gather(x, tf.range(size - width, size), axis=axis), [axis])
            x = tf.concat([head, x, tail], axis=axis)
    return x


def _hold_tensorflow(x, kernel, pads):
    """The hold filter on TensorFlow: padded by copies forward; backward the depthwise conv's
    input gradient folded back by MirrorPadGrad (the copies' own gradient, slices and adds, is
    twice as slow)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)

    @tf.custom_gradient
    def hold(x):
        padded = _symmetric_pad_by_copies(x, pads)
        y = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")

        def gradient(dy):
            dpadded = tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
                input_sizes=tf.shape(padded), filter=kernel, out_backprop=dy,
                strides=[1, 1, 1, 1], padding="VALID")
            return tf.raw_ops.MirrorPadGrad(input=dpadded, paddings=pads, mode="SYMMETRIC")

        return y, gradient

    return hold(x)


@keras.saving.register_keras_serializable(package="srgan_tf")
class PixelUnshuffle(keras.layers.Layer):
    """Space-to-depth per axis, the exact inverse of PixelShuffle: (B, H*sh, W*sw, C) -> (B, H, W, C*sh*sw).

    Args:
        scale_hw: downsampling factor per axis ``(scale_h, scale_w)``; H and W must be
            divisible by it.
        **kwargs: base layer arguments (``name``, ``dtype``).
    """

    def __init__(self, scale_hw=(2, 2), **kwargs):
        super().__init__(**kwargs)
        self.scale_hw = check_scale_hw(scale_hw)

    def build(self, input_shape):
        scale_h, scale_w = self.scale_hw
        height, width = input_shape[1], input_shape[2]
        divisible = (height is None or height % scale_h == 0) and (
            width is None or width % scale_w == 0
        )
        if len(input_shape) != 4 or input_shape[-1] is None or not divisible:
            raise ValueError(
                "PixelUnshuffle expects NHWC input with a known channel count and height, "
                f"width divisible by scale_hw={self.scale_hw}. Received: input_shape={input_shape}"
            )
        super().build(input_shape)

    def call(self, inputs):
        scale_h, scale_w = self.scale_hw
        batch, height, width = _spatial_size(inputs)
        channels = inputs.shape[-1]
        out_height, out_width = height // scale_h, width // scale_w
        x = ops.reshape(inputs, (batch, out_height, scale_h, out_width, scale_w, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (batch, out_height, out_width, scale_h * scale_w * channels))

    def compute_output_shape(self, input_shape):
        scale_h, scale_w = self.scale_hw
        batch, height, width, channels = input_shape
        return (
            batch,
            None if height is None else height // scale_h,
            None if width is None else width // scale_w,
            channels * scale_h * scale_w,
        )

    def get_config(self):
        config = super().get_config()
        config["scale_hw"] = list(self.scale_hw)
        return config


@keras.saving.register_keras_serializable(package="srgan_tf")
class BicubicUpsample(keras.layers.Layer):
    """The bicubic baseline as a layer: `srgan_tf.data.degradation.degrade.upsample_bicubic` by scale_hw.

    Used as the generator's global skip (`bicubic_residual=True`), so the network learns only
    the correction to the very bicubic image it is scored against.

    Args:
        scale_hw: upsampling factor per axis ``(scale_h, scale_w)``; a scale-1 axis is untouched.
        **kwargs: base layer arguments (``name``, ``dtype``).
    """

    def __init__(self, scale_hw=(2, 2), **kwargs):
        super().__init__(**kwargs)
        self.scale_hw = check_scale_hw(scale_hw)

    def call(self, inputs):
        from srgan_tf.data.degradation.degrade import upsample_bicubic  # TensorFlow op; data layer is upstream

        return upsample_bicubic(ops.cast(inputs, "float32"), self.scale_hw)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale_h, scale_w = self.scale_hw
        return (batch, None if height is None else height * scale_h,
                None if width is None else width * scale_w, channels)

    def get_config(self):
        config = super().get_config()
        config["scale_hw"] = list(self.scale_hw)
        return config


@keras.saving.register_keras_serializable(package="srgan_tf")
class OneChannelConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` to one output channel (the generator's 9x9 output conv) with a
    faster kernel gradient; same weights, same outputs, same gradients.

    oneDNN computes the kernel gradient of a C->1 convolution at a few percent of its peak
    (60 ms of a 0.52 s bf16 generator step at batch 16, 96x96). The same numbers are the
    kernel gradient of the transposed 1->C convolution, which it computes ~10x faster.
    Used on the TensorFlow backend for stride 1, dilation 1, "same" padding and odd kernels,
    channels_last; otherwise this is a plain Conv2D.
    """

    def convolution_op(self, inputs, kernel):
        if not self._fast_gradient_applies():
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        return _one_channel_conv(tf.convert_to_tensor(inputs),
                                 tf.cast(tf.convert_to_tensor(kernel), inputs.dtype))

    def _fast_gradient_applies(self) -> bool:
        return (keras.backend.backend() == "tensorflow" and self.filters == 1
                and tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.padding == "same" and self.data_format == "channels_last"
                and self.groups == 1 and all(size % 2 for size in self.kernel_size))


def _one_channel_conv(x, kernel):
    import tensorflow as tf

    @tf.custom_gradient
    def convolve(x, kernel):
        y = tf.nn.conv2d(x, kernel, 1, "SAME")

        def gradient(dy):
            strides = [1, 1, 1, 1]
            dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel,
                                                out_backprop=dy, strides=strides, padding="SAME")
            # d kernel[i, j, c, 0] = sum x[n, h+i-r, w+j-r, c] dy[n, h, w]: the kernel gradient
            # of conv(dy, flipped 1->C kernel) with out_backprop x, flipped back.
            height, width, channels, _ = kernel.shape
            transposed = tf.raw_ops.Conv2DBackpropFilter(
                input=dy, filter_sizes=[height, width, 1, channels], out_backprop=x,
                strides=strides, padding="SAME")
            dkernel = tf.transpose(tf.reverse(transposed, [0, 1]), [0, 1, 3, 2])
            return dx, dkernel

        return y, gradient

    return convolve(x, kernel)


@keras.saving.register_keras_serializable(package="srgan_tf")
class PReLU(keras.layers.PReLU):
    """`keras.layers.PReLU` with the same outputs and weights in fewer passes over the tensor.

    Keras writes PReLU as relu(x) - alpha * relu(-x): five elementwise ops forward and about
    eight backward, each a pass over memory, which on a CPU cost more than the generator's
    residual convolutions. On the TensorFlow backend this computes where(x > 0, x, alpha * x)
    (the same numbers) with a hand-written gradient (dy or alpha * dy; d alpha = sum of
    min(x, 0) * dy over the shared axes); elsewhere it is Keras' own.
    """

    def call(self, inputs):
        if keras.backend.backend() != "tensorflow":
            return super().call(inputs)
        import tensorflow as tf

        return _prelu(tf.convert_to_tensor(inputs), tf.cast(self.alpha, inputs.dtype))


def _prelu(x, alpha):
    import tensorflow as tf

    # Axes alpha is shared over (size 1 in alpha, > 1 in x) and broadcast over (batch).
    rank = len(x.shape)
    alpha_shape = (1,) * (rank - 1 - len(alpha.shape)) + tuple(alpha.shape)
    reduce_axes = [0] + [axis + 1 for axis, size in enumerate(alpha_shape) if size == 1]

    @tf.custom_gradient
    def prelu(x, alpha):
        positive = x > 0
        y = tf.where(positive, x, alpha * x)

        def gradient(dy):
            dx = tf.where(positive, dy, alpha * dy)
            dalpha = tf.reduce_sum(tf.where(positive, tf.zeros_like(dy), x * dy),
                                   axis=reduce_axes, keepdims=True)
            return dx, tf.reshape(dalpha, tf.shape(alpha))

        return y, gradient

    return prelu(x, alpha)


@keras.saving.register_keras_serializable(package="srgan_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step is TensorFlow's fused batch norm.

    Keras 3 normalises in training with separate ops (cast to float32, mean, squared
    difference, mean, multiply, add, cast back), each a pass over the tensor forward and
    more backward; the fused kernel (oneDNN on CPUs, cuDNN on GPUs) does it in one. Same
    statistics in float32, same moving averages (Keras keeps the biased batch variance; the
    fused kernel returns the unbiased one, so it is scaled back by (n - 1) / n), same
    variables. Inference, masks, renormalisation, synchronised batch statistics and other
    backends take Keras' own path.
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        inputs = tf.convert_to_tensor(inputs)
        gamma = (tf.convert_to_tensor(self.gamma) if self.scale
                 else tf.ones(inputs.shape[-1], tf.float32))
        beta = (tf.convert_to_tensor(self.beta) if self.center
                else tf.zeros(inputs.shape[-1], tf.float32))
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32),
            epsilon=self.epsilon, data_format="NHWC", is_training=True)
        count = tf.cast(tf.size(inputs, out_type=tf.int64) // inputs.shape[-1], tf.float32)
        variance = variance * ((count - 1.0) / tf.maximum(count, 1.0))
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)

    def _fused_applies(self, inputs, training, mask) -> bool:
        return (bool(training) and self.trainable and mask is None and not self.renorm
                and not self.synchronized and keras.backend.backend() == "tensorflow"
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and inputs.shape[-1] is not None
                and keras.backend.standardize_dtype(inputs.dtype)
                in ("float32", "bfloat16", "float16"))
