"""SRGAN discriminator (Ledig et al. 2017, Fig. 4): VGG-style strided conv stack and a logit.

conv3x3 + LeakyReLU(0.2); seven conv-BN-LeakyReLU blocks whose filters grow 1,1,2,2,4,4,8,8
times ``filters`` with strides alternating 2 and 1 (64 s2 ... 512 s2); flatten; dense
``dense_units`` + LeakyReLU; dense 1. It returns a logit (the sigmoid lives in the loss).
The flatten fixes the input size, which comes from the config (HR patch size).
"""

import math

import keras

from srgan_tf.models.layers import BatchNormalization

# (filter multiplier, stride) of the blocks after the input conv, as in Ledig Fig. 4.
_BLOCKS = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))
_LEAKY_SLOPE = 0.2


def _check_positive_int(value, name):
    if int(value) != value or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def _check_input_size(input_size):
    try:
        height, width = (_check_positive_int(size, "input_size") for size in input_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"`input_size` must be two positive integers (height, width). Received: input_size={input_size!r}"
        ) from None
    return height, width


def build_discriminator(input_size=(224, 224), filters=64, dense_units=1024, name="discriminator"):
    """Builds the SRGAN discriminator as a Keras functional model.

    Args:
        input_size: (height, width) of the HR images it judges.
        filters: channels of the first conv (64 in Ledig et al.); blocks use up to 8x.
        dense_units: width of the hidden dense layer (1024 in Ledig et al.).
        name: model name.

    Returns:
        keras.Model mapping (batch, height, width, 1) in [-1, 1] to (batch, 1) float32 logits.

    Example:
        >>> build_discriminator((32, 32), filters=8, dense_units=16).output_shape
        (None, 1)
    """
    height, width = _check_input_size(input_size)
    filters = _check_positive_int(filters, "filters")
    dense_units = _check_positive_int(dense_units, "dense_units")

    inputs = keras.Input(shape=(height, width, 1), name="image")
    x = keras.layers.Conv2D(filters, 3, padding="same", name="input_conv")(inputs)
    x = keras.layers.LeakyReLU(_LEAKY_SLOPE, name="input_lrelu")(x)
    for index, (multiplier, stride) in enumerate(_BLOCKS):
        prefix = f"block{index}"
        x = keras.layers.Conv2D(
            filters * multiplier, 3, strides=stride, padding="same", name=f"{prefix}_conv"
        )(x)
        x = BatchNormalization(name=f"{prefix}_bn")(x)
        x = keras.layers.LeakyReLU(_LEAKY_SLOPE, name=f"{prefix}_lrelu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, name="dense")(x)
    x = keras.layers.LeakyReLU(_LEAKY_SLOPE, name="dense_lrelu")(x)
    # float32 logit even under mixed precision, so the loss is computed in float32.
    outputs = keras.layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(inputs, outputs, name=name)


def discriminator_params(model):
    """Recovers build_discriminator's arguments from a model it built."""
    try:
        return {
            "input_size": tuple(model.input_shape[1:3]),
            "filters": model.get_layer("input_conv").filters,
            "dense_units": model.get_layer("dense").units,
        }
    except ValueError:
        raise ValueError(
            "Expected a model from build_discriminator (layers 'input_conv' and 'dense'). "
            f"Received: model named {model.name!r}"
        ) from None


def discriminator_flops(model_or_params=None):
    """FLOPs of one discriminator forward pass: 2 x multiply-adds of convs and dense layers.

    Args:
        model_or_params: a model from build_discriminator, or a dict of its arguments
            (input_size, filters, dense_units; missing ones take the defaults).

    Returns:
        int FLOPs for one image.
    """
    if isinstance(model_or_params, keras.Model):
        params = discriminator_params(model_or_params)
    else:
        params = dict(model_or_params or {})
    height, width = _check_input_size(params.get("input_size", (224, 224)))
    filters = int(params.get("filters", 64))
    dense_units = int(params.get("dense_units", 1024))

    total = 2 * 9 * 1 * filters * height * width
    channels = filters
    for multiplier, stride in _BLOCKS:
        height, width = math.ceil(height / stride), math.ceil(width / stride)
        total += 2 * 9 * channels * filters * multiplier * height * width
        channels = filters * multiplier
    total += 2 * height * width * channels * dense_units + 2 * dense_units
    return total
