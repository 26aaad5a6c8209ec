"""SRGAN generator (Ledig et al. 2017, Fig. 4) for one-channel MR slices, iso or height-only.

Layout: 9x9 conv + PReLU; B residual blocks (conv3x3-BN-PReLU-conv3x3-BN + skip); conv3x3-BN
plus a long skip; x2 sub-pixel stages (conv3x3 with ICNR init, PixelShuffle, a fixed [1, 2, 1] / 4
hold filter against stripes, PReLU); 9x9 conv to one channel;
tanh. Isotropic x2 stages come first, then the single-axis ones (Exp. 2: height only).
Fully convolutional, so one trained model accepts any input size.
"""

import keras

from srgan_tf.config import GeneratorSpec, check_scale_hw
from srgan_tf.models.layers import (ICNR, BatchNormalization, BicubicUpsample, HoldFilter,
                                    OneChannelConv2D, PixelShuffle, PReLU)


def upsampling_stages(scale_hw):
    """Per-stage x2 factors: isotropic (2, 2) stages first, then single-axis ones.

    Example:
        >>> upsampling_stages((8, 2))
        [(2, 2), (2, 1), (2, 1)]
    """
    scale_h, scale_w = check_scale_hw(scale_hw, power_of_two=True)
    steps_h, steps_w = scale_h.bit_length() - 1, scale_w.bit_length() - 1
    both = min(steps_h, steps_w)
    return [(2, 2)] * both + [(2, 1)] * (steps_h - both) + [(1, 2)] * (steps_w - both)


def _prelu(name):
    # Shared over H and W so the alpha count does not depend on the input size.
    return PReLU(
        alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
    )


def _conv(filters, kernel_size, name):
    return keras.layers.Conv2D(filters, kernel_size, padding="same", name=name)


def _residual_block(x, filters, index):
    """conv3x3-BN-PReLU-conv3x3-BN plus identity skip (Ledig Fig. 4)."""
    prefix = f"res{index}"
    y = _conv(filters, 3, f"{prefix}_conv1")(x)
    y = BatchNormalization(name=f"{prefix}_bn1")(y)
    y = _prelu(f"{prefix}_prelu")(y)
    y = _conv(filters, 3, f"{prefix}_conv2")(y)
    y = BatchNormalization(name=f"{prefix}_bn2")(y)
    return keras.layers.Add(name=f"{prefix}_add")([x, y])


def _upsample_stage(x, filters, factor_hw, index):
    """conv3x3 to filters*sh*sw channels, sub-pixel shuffle by factor_hw, PReLU."""
    prefix = f"upsample{index}"
    # ICNR: the sub-pixel groups start identical, so no period-2 stripes at initialisation.
    x = keras.layers.Conv2D(filters * factor_hw[0] * factor_hw[1], 3, padding="same",
                            kernel_initializer=ICNR(factor_hw), name=f"{prefix}_conv")(x)
    x = PixelShuffle(factor_hw, name=f"{prefix}_shuffle")(x)
    x = HoldFilter(factor_hw, name=f"{prefix}_hold")(x)  # flat in, flat out, after any training
    return _prelu(f"{prefix}_prelu")(x)


def build_generator(scale_hw=(4, 4), num_residual_blocks=16, filters=64, bicubic_residual=False,
                    name="generator"):
    """Builds the SRGAN generator as a Keras functional model.

    Args:
        scale_hw: upsampling per axis (scale_h, scale_w), powers of two; iso (s, s),
            aniso (s, 1) upsamples the height only.
        num_residual_blocks: B residual blocks (16 in Ledig et al.).
        filters: feature channels (64 in Ledig et al.).
        bicubic_residual: beyond the paper: output = bicubic(LR) + learned correction (no tanh;
            the correction's last conv starts at zero, so an untrained model equals bicubic).
        name: model name.

    Returns:
        keras.Model mapping (batch, H, W, 1) in [-1, 1] to (batch, H*sh, W*sw, 1) in [-1, 1].

    Example:
        >>> model = build_generator((8, 1), num_residual_blocks=2, filters=8)
        >>> model(np.zeros((1, 7, 9, 1), "float32")).shape  # (1, 56, 9, 1)
    """
    stages = upsampling_stages(scale_hw)
    if int(num_residual_blocks) != num_residual_blocks or num_residual_blocks < 0:
        raise ValueError(
            "`num_residual_blocks` must be a non-negative integer. "
            f"Received: num_residual_blocks={num_residual_blocks!r}"
        )
    if int(filters) != filters or filters < 1:
        raise ValueError(f"`filters` must be a positive integer. Received: filters={filters!r}")
    filters = int(filters)

    inputs = keras.Input(shape=(None, None, 1), name="lr")
    x = _conv(filters, 9, "input_conv")(inputs)
    head = _prelu("input_prelu")(x)
    x = head
    for index in range(int(num_residual_blocks)):
        x = _residual_block(x, filters, index)
    x = _conv(filters, 3, "body_conv")(x)
    x = BatchNormalization(name="body_bn")(x)
    x = keras.layers.Add(name="body_add")([head, x])
    for index, factor_hw in enumerate(stages):
        x = _upsample_stage(x, filters, factor_hw, index)
    if bicubic_residual:
        x = OneChannelConv2D(1, 9, padding="same", kernel_initializer="zeros", dtype="float32",
                             name="output_conv")(x)
        skip = BicubicUpsample(scale_hw, dtype="float32", name="bicubic_skip")(inputs)
        outputs = keras.layers.Add(dtype="float32", name="output_add")([skip, x])
        return keras.Model(inputs, outputs, name=name)
    x = OneChannelConv2D(1, 9, padding="same", name="output_conv")(x)
    # float32 output even under mixed precision: losses and exports read it directly.
    outputs = keras.layers.Activation("tanh", dtype="float32", name="output_tanh")(x)
    return keras.Model(inputs, outputs, name=name)


def generator_from_spec(spec: GeneratorSpec, name="generator"):
    """`build_generator` with the arguments of a `GeneratorSpec` (config, checkpoint, export)."""
    return build_generator(spec.scale_hw, spec.num_residual_blocks, spec.filters,
                           bicubic_residual=spec.bicubic_residual, name=name)


def generator_conv_plan(scale_hw=(4, 4), num_residual_blocks=16, filters=64):
    """Every conv of the generator as (kernel, in_channels, out_channels, (scale_h, scale_w)).

    The scale is the factor of the conv's input grid relative to the LR input.
    """
    plan = [(9, 1, filters, (1, 1))]
    plan += [(3, filters, filters, (1, 1))] * (2 * num_residual_blocks + 1)
    scale_h = scale_w = 1
    for factor_h, factor_w in upsampling_stages(scale_hw):
        plan.append((3, filters, filters * factor_h * factor_w, (scale_h, scale_w)))
        scale_h, scale_w = scale_h * factor_h, scale_w * factor_w
    plan.append((9, filters, 1, (scale_h, scale_w)))
    return plan


def generator_flops(spec: GeneratorSpec, input_hw):
    """FLOPs of one generator forward pass: 2 x conv multiply-adds (BN, PReLU, adds ignored).

    Args:
        spec: the generator's `GeneratorSpec`.
        input_hw: LR input (height, width).

    Returns:
        int FLOPs for one image.

    Example:
        >>> generator_flops(GeneratorSpec((4, 4)), (56, 56))  # about 12.8e9
    """
    height, width = (int(size) for size in input_hw)
    total = 0
    for kernel, channels_in, channels_out, (scale_h, scale_w) in generator_conv_plan(
            spec.scale_hw, spec.num_residual_blocks, spec.filters):
        total += 2 * kernel * kernel * channels_in * channels_out * height * scale_h * width * scale_w
    return total
