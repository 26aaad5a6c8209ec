"""What only the Keras graph itself can tell: its convolutions, its receptive radius and its
dtype policy (the generator's arguments are its `GeneratorSpec`).

Export (metadata) and the serving graph (float32 reference) read these.
"""
from typing import Tuple

import keras
import numpy as np


def conv_layers(generator: keras.Model) -> list:
    """The generator's convolution layers, in layer order."""
    return [layer for layer in generator.layers
            if hasattr(layer, "kernel_size") and hasattr(layer, "dilation_rate")]


def receptive_radius(generator: keras.Model) -> Tuple[int, int]:
    """LR pixels on each side (height, width) that one output pixel depends on.

    Sums the half-widths of the convolutions (every other layer of the generator is
    pointwise or a pixel shuffle), each divided by the upsampling already done at its input.
    Nested sub-models fall back to counting every convolution at LR scale (an overestimate).
    """
    convs = conv_layers(generator)
    probe = 8
    try:
        inputs = generator.inputs[0] if len(generator.inputs) == 1 else generator.inputs
        outputs = keras.Model(inputs, [layer.output for layer in convs])(
            np.zeros((1, probe, probe, 1), np.float32), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        input_scales = [(int(out.shape[1]) * layer.strides[0] / probe,
                         int(out.shape[2]) * layer.strides[1] / probe)
                        for layer, out in zip(convs, outputs)]
    except Exception:  # nested models: layer outputs are not reachable from the inputs
        input_scales = [(1.0, 1.0)] * len(convs)
    radius = [0.0, 0.0]
    for layer, scales in zip(convs, input_scales):
        for axis in (0, 1):
            half = layer.dilation_rate[axis] * (layer.kernel_size[axis] - 1) / 2
            radius[axis] += half / scales[axis]
    return int(np.ceil(radius[0])), int(np.ceil(radius[1]))


def policy_name(model: keras.Model) -> str:
    """Name of the model's dtype policy ("float32", "mixed_bfloat16", ...)."""
    policy = getattr(model, "dtype_policy", None)
    return getattr(policy, "name", str(policy))
