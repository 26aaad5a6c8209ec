"""The serving graph: a generator's functional graph as plain TF ops, batch norm folded into
the conv before it, in float32 and in bfloat16, inside the tf.Module that export saves.

A layer the translation does not know makes `ServingModule` fall back to the Keras model
itself (float32 signature only) and warn once, naming the layer and the reason.
"""
import contextlib
from typing import Dict

import keras
import numpy as np
import tensorflow as tf

from srgan_tf.console import warn
from srgan_tf.inference.introspection import policy_name
from srgan_tf.models.layers import OneChannelConv2D

# precision -> SavedModel signature name
SIGNATURES = {"float32": "serving_default", "bfloat16": "serving_bfloat16"}
INPUT_SPEC = tf.TensorSpec([None, None, None, 1], tf.float32, name="lr")

# Conv2D and our subclass that only changes its training gradient
_PLAIN_CONVS = (keras.layers.Conv2D, OneChannelConv2D)


class UnsupportedLayer(Exception):
    """A layer the serving graph does not translate (export falls back to the Keras model).

    Args:
        layer_name: the layer's name (None until `_translating` names it).
        reason: what the translation does not know about it.
    """

    def __init__(self, layer_name, reason: str):
        super().__init__(f"layer {layer_name!r}: {reason}")
        self.layer_name = layer_name
        self.reason = reason


@contextlib.contextmanager
def _translating(layer_name: str):
    """Names the layer in whatever its translation raises."""
    try:
        yield
    except UnsupportedLayer as error:
        if error.layer_name is not None:
            raise
        raise UnsupportedLayer(layer_name, error.reason) from None
    except Exception as error:  # noqa: BLE001  (any failure translating it makes it unsupported)
        raise UnsupportedLayer(layer_name, f"{type(error).__name__}: {error}") from error


def _history_names(arguments) -> list:
    """Producer layer names of a serialized node's arguments, in order."""
    if isinstance(arguments, dict):
        if arguments.get("class_name") == "__keras_tensor__":
            return [arguments["config"]["keras_history"][0]]
        return [name for value in arguments.values() for name in _history_names(value)]
    if isinstance(arguments, (list, tuple)):
        return [name for value in arguments for name in _history_names(value)]
    return []


def _endpoint_names(layers) -> list:
    """Layer names in a functional config's input_layers / output_layers ([name, 0, 0] or
    a list of those)."""
    if len(layers) == 3 and isinstance(layers[0], str):
        return [layers[0]]
    return [name for entry in layers for name in _endpoint_names(entry)]


_ACTIVATIONS = {"linear": None, "relu": tf.nn.relu, "tanh": tf.tanh, "sigmoid": tf.sigmoid}


def _activation(function):
    name = getattr(function, "__name__", str(function))
    if name not in _ACTIVATIONS:
        raise UnsupportedLayer(None, f"activation {name}")
    return _ACTIVATIONS[name]


class ServingGraph:
    """The generator's functional graph as plain TF ops, for inference only.

    Inference-time BatchNormalization is an affine map, so it is folded into the conv before
    it; convs add their bias with tf.nn.bias_add (fused into the conv by oneDNN); PReLU with
    slopes in [0, 1] is max(x, a*x). Every conv runs in the requested dtype and the layers
    after the last conv (the output activation) in float32. Weights are float32 tf.Variables.
    """

    def __init__(self, generator: keras.Model):
        config = generator.get_config()
        self.inputs = {}
        for entry in config["layers"]:
            if len(entry["inbound_nodes"]) > 1:
                raise UnsupportedLayer(entry["name"], "shared layer (called more than once)")
            self.inputs[entry["name"]] = _history_names(entry["inbound_nodes"])
        consumers = {}
        for names in self.inputs.values():
            for name in names:
                consumers[name] = consumers.get(name, 0) + 1
        self.output = _endpoint_names(config["output_layers"])
        if len(self.output) != 1 or len(_endpoint_names(config["input_layers"])) != 1:
            raise UnsupportedLayer(generator.name, "expected one input and one output")
        self.layers = generator.layers
        folded = {}  # batch norm name -> the conv it folds into (linear conv, sole consumer)
        for layer in self.layers:
            source = self.inputs[layer.name][0] if self.inputs[layer.name] else None
            producer = generator.get_layer(source) if source else None
            if (isinstance(layer, keras.layers.BatchNormalization)
                    and type(producer) is keras.layers.Conv2D and consumers.get(source) == 1):
                with _translating(source):
                    if _activation(producer.activation) is None:
                        folded[layer.name] = source
        self.folded = set(folded)
        convs = [i for i, layer in enumerate(self.layers) if isinstance(layer, keras.layers.Conv2D)]
        # bf16 in the 64->1 output conv costs ~0.1 dB vs float32 (PSNR 52 dB) and is 25% faster.
        self.float32_from = convs[-1] + 1 if convs else len(self.layers)
        # Layers no conv feeds (e.g. the bicubic skip of the LR input) also stay float32, as
        # in the Keras model: rounding the input image to bf16 would cost more than it saves.
        self.before_convs = set()
        for layer in self.layers:
            if isinstance(layer, keras.layers.InputLayer):
                self.before_convs.add(layer.name)
            elif (not isinstance(layer, keras.layers.Conv2D) and self.inputs[layer.name]
                  and all(name in self.before_convs for name in self.inputs[layer.name])):
                self.before_convs.add(layer.name)
        self.weights = {}
        for layer in self.layers:
            with _translating(layer.name):
                self.weights[layer.name] = self._weights(layer, generator, folded)
        self.variables = [v for group in self.weights.values() for v in group.values()]
        # max(x, a*x) equals PReLU only for slopes in [0, 1]
        self.clamped = {name: bool(np.all((w["alpha"].numpy() >= 0) & (w["alpha"].numpy() <= 1)))
                        for name, w in self.weights.items() if "alpha" in w}

    @staticmethod
    def _weights(layer, generator, folded) -> dict:
        values = {}
        if isinstance(layer, keras.layers.Conv2D) and type(layer) in _PLAIN_CONVS:
            if layer.groups != 1 or layer.data_format != "channels_last":
                raise UnsupportedLayer(layer.name, "grouped or channels_first conv")
            kernel = np.asarray(layer.kernel.numpy(), np.float64)
            bias = (np.asarray(layer.bias.numpy(), np.float64) if layer.use_bias
                    else np.zeros(kernel.shape[-1]))
            norm = [bn for bn, conv in folded.items() if conv == layer.name]
            if norm:
                scale, offset = _affine(generator.get_layer(norm[0]))
                kernel, bias = kernel * scale, bias * scale + offset
            values = {"kernel": kernel, "bias": bias}
        elif isinstance(layer, keras.layers.BatchNormalization):
            if layer.name in folded:
                return {}
            values = dict(zip(("scale", "offset"), _affine(layer)))
        elif isinstance(layer, keras.layers.PReLU):
            values = {"alpha": np.asarray(layer.alpha.numpy(), np.float64)}
        elif layer.weights:
            raise UnsupportedLayer(layer.name, f"{type(layer).__name__} has weights")
        return {key: tf.Variable(value.astype(np.float32), trainable=False,
                                 name=f"{layer.name}_{key}") for key, value in values.items()}

    def _apply(self, layer, inputs, dtype):
        weights = {key: tf.cast(value, dtype) for key, value in self.weights[layer.name].items()}
        x = inputs[0]
        if isinstance(layer, keras.layers.Conv2D):
            if _is_single_channel_same(layer):
                y = _single_channel_conv(x, weights["kernel"], weights["bias"])
            else:
                y = tf.nn.conv2d(x, weights["kernel"], layer.strides, layer.padding.upper(),
                                 dilations=layer.dilation_rate)
                y = tf.nn.bias_add(y, weights["bias"])
            activation = _activation(layer.activation)
            return activation(y) if activation else y
        if isinstance(layer, keras.layers.BatchNormalization):
            return x if layer.name in self.folded else x * weights["scale"] + weights["offset"]
        if isinstance(layer, keras.layers.PReLU):
            if self.clamped[layer.name]:
                return tf.maximum(x, x * weights["alpha"])
            return tf.nn.relu(x) - weights["alpha"] * tf.nn.relu(-x)
        if isinstance(layer, keras.layers.Add):
            return tf.add_n(inputs)
        if len(inputs) != 1:
            raise UnsupportedLayer(layer.name, f"merge layer {type(layer).__name__}")
        if isinstance(layer, keras.layers.Activation):
            activation = _activation(layer.activation)
            return activation(x) if activation else x
        return layer.call(*inputs)  # weightless (pixel shuffle, reshape): dtype-agnostic

    def __call__(self, lr: tf.Tensor, dtype) -> tf.Tensor:
        tensors = {}
        for index, layer in enumerate(self.layers):
            if isinstance(layer, keras.layers.InputLayer):
                tensors[layer.name] = lr
                continue
            late = index >= self.float32_from or layer.name in self.before_convs
            compute = tf.float32 if late else dtype
            inputs = [tf.cast(tensors[name], compute) for name in self.inputs[layer.name]]
            with _translating(layer.name):
                tensors[layer.name] = self._apply(layer, inputs, compute)
        return tf.cast(tensors[self.output[0]], tf.float32)


def _is_single_channel_same(layer) -> bool:
    return (layer.filters == 1 and tuple(layer.strides) == (1, 1) and layer.padding == "same"
            and tuple(layer.dilation_rate) == (1, 1) and 1 < np.prod(layer.kernel_size) <= 121)


def _single_channel_conv(x, kernel, bias):
    """A 'same' conv to one channel (the 9x9 output conv) as a 1x1 conv to one channel per
    kernel tap plus shifted adds in float32: oneDNN runs one-output-channel convs at a few
    percent of its peak, this is ~3x faster. Returns float32."""
    kernel_h, kernel_w, channels, _ = kernel.shape
    taps = tf.reshape(tf.transpose(kernel[..., 0], [2, 0, 1]), [1, 1, channels, -1])
    per_tap = tf.transpose(tf.nn.conv2d(x, taps, 1, "VALID"), [3, 0, 1, 2])  # (taps, N, H, W)
    top, left = (kernel_h - 1) // 2, (kernel_w - 1) // 2  # TF 'same' padding split
    per_tap = tf.pad(per_tap, [[0, 0], [0, 0], [top, kernel_h - 1 - top],
                               [left, kernel_w - 1 - left]])
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    total = tf.zeros(tf.shape(x)[:3], tf.float32)
    for index in range(kernel_h * kernel_w):
        row, col = divmod(index, kernel_w)
        total += tf.cast(per_tap[index, :, row:row + height, col:col + width], tf.float32)
    return tf.nn.bias_add(total[..., None], tf.cast(bias, tf.float32))


def _affine(norm) -> tuple:
    """(scale, offset) of an inference-mode BatchNormalization (last axis)."""
    if norm.axis not in (-1, 3, [-1], [3]):
        raise UnsupportedLayer(norm.name, f"batch norm on axis {norm.axis}")
    mean = np.asarray(norm.moving_mean.numpy(), np.float64)
    variance = np.asarray(norm.moving_variance.numpy(), np.float64)
    gamma = np.asarray(norm.gamma.numpy(), np.float64) if norm.scale else 1.0
    beta = np.asarray(norm.beta.numpy(), np.float64) if norm.center else 0.0
    scale = gamma / np.sqrt(variance + norm.epsilon)
    return scale * np.ones_like(mean), beta - mean * scale


def _float32_reference(generator: keras.Model, probe: np.ndarray):
    """(float32 output of `generator` on `probe`, tolerance for matching it)."""
    model, tolerance = generator, 1e-4
    if policy_name(generator) != "float32":  # mixed precision: compare with a float32 copy
        try:
            model = keras.models.clone_model(generator, clone_function=lambda layer: (
                layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})))
            model.set_weights(generator.get_weights())
        except Exception:  # layers that do not round-trip their config: a looser check
            model, tolerance = generator, 0.1
    return tf.cast(model(probe, training=False), tf.float32).numpy(), tolerance


def _translate(generator: keras.Model):
    """(ServingGraph, None) when the translation matches the generator on a probe input in
    float32 and bfloat16; otherwise (None, why not)."""
    try:
        graph = ServingGraph(generator)
        probe = np.random.default_rng(0).uniform(-1, 1, (1, 12, 10, 1)).astype(np.float32)
        expected, tolerance = _float32_reference(generator, probe)
        served = {dtype: graph(tf.constant(probe), dtype).numpy()
                  for dtype in (tf.float32, tf.bfloat16)}
    except UnsupportedLayer as error:
        return None, str(error)
    except Exception as error:  # noqa: BLE001  (anything else the translation trips on)
        return None, f"{type(error).__name__}: {error}"
    errors = {dtype.name: float(np.abs(served[dtype] - expected).max()) for dtype in served}
    if errors["float32"] < tolerance and errors["bfloat16"] < max(tolerance, 0.1):
        return graph, None
    return None, f"translated graph differs from the Keras model on a probe input ({errors})"


class ServingModule(tf.Module):
    """tf.Module holding the serving weights and one tf.function per precision.

    Uses `ServingGraph` when it translates the generator and matches it on a probe input;
    otherwise the Keras model itself (float32 signature only), with one warning that names
    the layer and the reason, so a new layer type does not silently lose the fast path.
    """

    def __init__(self, generator: keras.Model):
        super().__init__(name="srgan_tf_generator")
        self.graph, reason = _translate(generator)
        if self.graph is None:
            warn(f"serving graph falls back to the plain Keras model (float32 signature only, "
                 f"batch norm not folded): {reason}")
        if self.graph is not None:
            self.model_variables = self.graph.variables  # tracked: saved with the functions
            self.serve = self._function(lambda lr: self.graph(lr, tf.float32))
            self.serve_bfloat16 = self._function(lambda lr: self.graph(lr, tf.bfloat16))
        else:
            self.model_variables = [variable.value for variable in generator.weights]
            self.serve = self._function(
                lambda lr: tf.cast(generator(lr, training=False), tf.float32))

    @staticmethod
    def _function(body):
        @tf.function(input_signature=[INPUT_SPEC])
        def serve(lr):
            return {"sr": body(lr)}
        return serve

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        functions = {"serving_default": self.serve.get_concrete_function()}
        if hasattr(self, "serve_bfloat16"):
            functions["serving_bfloat16"] = self.serve_bfloat16.get_concrete_function()
        return functions

