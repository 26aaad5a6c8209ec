"""Generator -> self-contained SavedModel + metadata.json, and loading it back for inference.

The SavedModel needs neither srgan_tf nor Keras to run: `tf.saved_model.load(dir)
.signatures["serving_default"](lr=x)["sr"]` on float32 NHWC [N, H, W, 1] in [-1, 1].
A second signature, `serving_bfloat16`, computes in bfloat16 (float32 in and out), about
twice as fast on CPUs with AVX512-BF16/AMX.
"""
import dataclasses
import datetime
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from srgan_tf import __version__
from srgan_tf.config import mode_of
from srgan_tf.io.errors import InputError
from srgan_tf.models.layers import OneChannelConv2D

FORMAT = "srgan-tf-export"
FORMAT_VERSION = 1
WEIGHTS_FILE = "generator.weights.h5"
METADATA_FILE = "metadata.json"
SIGNATURES = {"float32": "serving_default", "bfloat16": "serving_bfloat16"}
_INPUT_SPEC = tf.TensorSpec([None, None, None, 1], tf.float32, name="lr")


def _conv_layers(generator: keras.Model):
    return [layer for layer in generator.layers
            if hasattr(layer, "kernel_size") and hasattr(layer, "dilation_rate")]


def receptive_radius(generator: keras.Model) -> Tuple[int, int]:
    """LR pixels on each side (height, width) that one output pixel depends on.

    Sums the half-widths of the convolutions (every other layer of the generator is
    pointwise or a pixel shuffle), each divided by the upsampling already done at its input.
    Nested sub-models fall back to counting every convolution at LR scale (an overestimate).
    """
    convs = _conv_layers(generator)
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


def _probe_scale(generator: keras.Model) -> Tuple[int, int]:
    output = generator(np.zeros((1, 4, 4, 1), np.float32), training=False)
    return int(output.shape[1]) // 4, int(output.shape[2]) // 4


def _training_policy(generator: keras.Model, config: dict) -> str:
    """The policy the generator was trained in (its config's, resolved), not that of the
    float32 copy being exported; the model's own when there is no config."""
    precision = (config.get("train") or {}).get("precision")
    return precision if precision and precision != "auto" else _policy_name(generator)


def _policy_name(model: keras.Model) -> str:
    policy = getattr(model, "dtype_policy", None)
    return getattr(policy, "name", str(policy))


# Conv2D and our subclass that only changes its training gradient
_PLAIN_CONVS = (keras.layers.Conv2D, OneChannelConv2D)


class _Unsupported(Exception):
    """A layer the serving graph does not translate (export falls back to the Keras model)."""


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
        raise _Unsupported(f"activation {name}")
    return _ACTIVATIONS[name]


class _ServingGraph:
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
                raise _Unsupported(f"shared layer {entry['name']}")
            self.inputs[entry["name"]] = _history_names(entry["inbound_nodes"])
        consumers = {}
        for names in self.inputs.values():
            for name in names:
                consumers[name] = consumers.get(name, 0) + 1
        self.output = _endpoint_names(config["output_layers"])
        if len(self.output) != 1 or len(_endpoint_names(config["input_layers"])) != 1:
            raise _Unsupported("expected one input and one output")
        self.layers = generator.layers
        folded = {}  # batch norm name -> the conv it folds into (linear conv, sole consumer)
        for layer in self.layers:
            source = self.inputs[layer.name][0] if self.inputs[layer.name] else None
            producer = generator.get_layer(source) if source else None
            if (isinstance(layer, keras.layers.BatchNormalization)
                    and type(producer) is keras.layers.Conv2D and consumers.get(source) == 1
                    and _activation(producer.activation) is None):
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
                raise _Unsupported(f"conv {layer.name}")
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
            raise _Unsupported(f"layer {layer.name} ({type(layer).__name__}) has weights")
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
            raise _Unsupported(f"merge layer {layer.name} ({type(layer).__name__})")
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
        raise _Unsupported(f"batch norm {norm.name} on axis {norm.axis}")
    mean = np.asarray(norm.moving_mean.numpy(), np.float64)
    variance = np.asarray(norm.moving_variance.numpy(), np.float64)
    gamma = np.asarray(norm.gamma.numpy(), np.float64) if norm.scale else 1.0
    beta = np.asarray(norm.beta.numpy(), np.float64) if norm.center else 0.0
    scale = gamma / np.sqrt(variance + norm.epsilon)
    return scale * np.ones_like(mean), beta - mean * scale


def _float32_reference(generator: keras.Model, probe: np.ndarray):
    """(float32 output of `generator` on `probe`, tolerance for matching it)."""
    model, tolerance = generator, 1e-4
    if _policy_name(generator) != "float32":  # mixed precision: compare with a float32 copy
        try:
            model = keras.models.clone_model(generator, clone_function=lambda layer: (
                layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})))
            model.set_weights(generator.get_weights())
        except Exception:  # layers that do not round-trip their config: a looser check
            model, tolerance = generator, 0.1
    return tf.cast(model(probe, training=False), tf.float32).numpy(), tolerance


class _ServingModule(tf.Module):
    """tf.Module holding the serving weights and one tf.function per precision.

    Uses `_ServingGraph` when it translates the generator and matches it on a probe input;
    otherwise the Keras model itself (float32 signature only).
    """

    def __init__(self, generator: keras.Model):
        super().__init__(name="srgan_tf_generator")
        self.graph = None
        try:
            graph = _ServingGraph(generator)
            probe = np.random.default_rng(0).uniform(-1, 1, (1, 12, 10, 1)).astype(np.float32)
            expected, tolerance = _float32_reference(generator, probe)
            served = {dtype: graph(tf.constant(probe), dtype).numpy()
                      for dtype in (tf.float32, tf.bfloat16)}
            if (np.abs(served[tf.float32] - expected).max() < tolerance
                    and np.abs(served[tf.bfloat16] - expected).max() < max(tolerance, 0.1)):
                self.graph = graph
        except Exception:  # noqa: BLE001  (any layer the translation does not know: fall back)
            self.graph = None
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
        @tf.function(input_signature=[_INPUT_SPEC])
        def serve(lr):
            return {"sr": body(lr)}
        return serve

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        functions = {"serving_default": self.serve.get_concrete_function()}
        if hasattr(self, "serve_bfloat16"):
            functions["serving_bfloat16"] = self.serve_bfloat16.get_concrete_function()
        return functions


def _plain(value):
    """Config objects (dataclasses) -> JSON-ready dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _build_metadata(generator, scale_hw, radius, module, metadata) -> dict:
    config = _plain(metadata.get("config")) or {}
    content_loss = metadata.get("content_loss") or (config.get("loss") or {}).get("content_loss")
    convs = _conv_layers(generator)
    merged = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scale_hw": list(scale_hw),
        "mode": mode_of(scale_hw),
        "normalization": {"range": "[-1,1]", "percentiles": [0.5, 99.5]},
        "content_loss": content_loss,
        "config": config,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "srgan_tf_version": __version__,
        "generator": {
            "name": generator.name,
            "parameters": int(generator.count_params()),
            "filters": int(convs[0].filters) if convs and hasattr(convs[0], "filters") else 64,
            "training_dtype_policy": _training_policy(generator, config),
            "receptive_field_lr": list(radius),
        },
        "signatures": {"input": "lr", "output": "sr",
                       "precisions": {precision: name for precision, name in SIGNATURES.items()
                                      if name in module.signatures()},
                       "graph": "folded" if module.graph is not None else "keras"},
    }
    for key, value in metadata.items():
        if key == "config":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **_plain(value)}
        else:
            merged[key] = _plain(value)
    # Facts about the saved graph win over anything the caller passed.
    merged.update(format=FORMAT, format_version=FORMAT_VERSION, scale_hw=list(scale_hw),
                  mode=mode_of(scale_hw))
    return merged


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / METADATA_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export_generator(generator: keras.Model, export_dir, metadata: Optional[dict] = None) -> Path:
    """Write `generator` as a SavedModel plus metadata.json, atomically.

    The directory is assembled under a hidden temporary name next to `export_dir` and renamed
    when complete, so a killed export leaves nothing that looks valid. An existing srgan-tf
    export at `export_dir` is replaced; any other non-empty directory is refused.

    Args:
        generator: Keras model (None, None, 1) -> (H*sh, W*sw, 1), any dtype policy.
        export_dir: destination directory.
        metadata: merged into metadata.json (e.g. {"config": config_dict,
            "content_loss": "mse", "metrics": {...}}); "scale_hw" must match the model.

    Example:
        >>> export_generator(generator, "runs/exp2/export", {"config": config})
    """
    metadata = dict(metadata or {})
    export_dir = Path(export_dir)
    if export_dir.exists() and any(export_dir.iterdir()) and not _is_export(export_dir):
        raise FileExistsError(f"{export_dir} exists and is not an srgan-tf export; "
                              "choose an empty or new directory")
    scale_hw = _probe_scale(generator)
    if "scale_hw" in metadata and tuple(metadata["scale_hw"]) != scale_hw:
        raise ValueError(f"metadata scale_hw must match the generator's upsampling {scale_hw}. "
                         f"Received: {metadata['scale_hw']}")
    module = _ServingModule(generator)
    signatures = module.signatures()
    merged = _build_metadata(generator, scale_hw, receptive_radius(generator), module, metadata)

    export_dir.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    partial = export_dir.with_name(f".{export_dir.name}.partial-{token}")
    retired = export_dir.with_name(f".{export_dir.name}.old-{token}")
    try:
        tf.saved_model.save(module, str(partial), signatures=signatures)
        # the Keras weights too: the serving graph folds batch norm, so fine-tuning
        # (`self-supervised --init-model`) starts from these
        generator.save_weights(str(partial / WEIGHTS_FILE))
        (partial / METADATA_FILE).write_text(json.dumps(merged, indent=2, default=str) + "\n")
        if export_dir.exists():
            os.replace(export_dir, retired)
        os.replace(partial, export_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return export_dir


class ExportedModel:
    """A loaded export: metadata plus batched prediction on numpy arrays.

    Args:
        path: the export directory.
        functions: precision ("float32", "bfloat16") -> callable NHWC tensor -> {"sr": tensor}.
        metadata: the parsed metadata.json.
        keep_alive: object owning the functions' variables (the loaded SavedModel).
    """

    def __init__(self, path, functions: Dict[str, object], metadata: dict, keep_alive=None):
        self.path = Path(path)
        self.metadata = metadata
        self._functions = functions
        self._keep_alive = keep_alive  # signatures need their SavedModel object alive

    @property
    def scale_hw(self) -> Tuple[int, int]:
        return tuple(int(s) for s in self.metadata["scale_hw"])

    @property
    def mode(self) -> str:
        return self.metadata.get("mode") or mode_of(self.scale_hw)

    @property
    def precisions(self) -> Tuple[str, ...]:
        return tuple(self._functions)

    @property
    def receptive_field(self) -> Tuple[int, int]:
        """LR margin (height, width) that makes tiles exact; 48 if the export lacks it."""
        radius = self.metadata.get("generator", {}).get("receptive_field_lr") or (48, 48)
        return int(radius[0]), int(radius[1])

    @property
    def filters(self) -> int:
        return int(self.metadata.get("generator", {}).get("filters", 64))

    def predict(self, batch: np.ndarray, batch_size: int = 8, precision: str = "float32",
                out: Optional[np.ndarray] = None) -> np.ndarray:
        """Super-resolve float32 NHWC `batch` ([-1, 1]) in chunks of `batch_size`.

        Args:
            batch: (N, H, W, 1) float32 array.
            batch_size: images per model call.
            precision: "float32" or "bfloat16" (if exported).
            out: optional preallocated (N, H*sh, W*sw, 1) float32 destination.
        """
        if precision not in self._functions:
            raise ValueError(f"precision must be one of {self.precisions}. Received: {precision!r}")
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != 1:
            raise ValueError(f"Expected a float32 batch of shape (N, H, W, 1). "
                             f"Received: shape {batch.shape}")
        sh, sw = self.scale_hw
        count, height, width, _ = batch.shape
        if out is None:
            out = np.empty((count, height * sh, width * sw, 1), np.float32)
        function = self._functions[precision]
        for start in range(0, count, max(1, int(batch_size))):
            chunk = np.ascontiguousarray(batch[start:start + batch_size], dtype=np.float32)
            out[start:start + len(chunk)] = function(tf.constant(chunk))["sr"].numpy()
        return out


def load_exported(export_dir) -> ExportedModel:
    """Load an export written by `export_generator`; InputError for anything else.

    Example:
        >>> model = load_exported("runs/exp2/export"); sr = model.predict(lr_batch)
    """
    path = Path(export_dir)
    if not path.exists():
        raise InputError(path, "model directory does not exist")
    if not path.is_dir():
        raise InputError(path, "expected an export directory (SavedModel + metadata.json), "
                               "found a file")
    if not (path / "saved_model.pb").is_file():
        raise InputError(path, "not a SavedModel directory (no saved_model.pb); pass the "
                               "'export' folder of a training run")
    try:
        metadata = json.loads((path / METADATA_FILE).read_text())
    except FileNotFoundError:
        raise InputError(path, f"no {METADATA_FILE}: not an srgan-tf export") from None
    except (OSError, ValueError) as error:
        raise InputError(path, f"unreadable {METADATA_FILE} ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
        raise InputError(path, f"not an srgan-tf export ({METADATA_FILE} format is {found!r}, "
                               f"expected {FORMAT!r})")
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(path, f"export format_version {metadata.get('format_version')} is newer "
                               f"than this srgan-tf reads ({FORMAT_VERSION}); upgrade srgan-tf")
    scale = metadata.get("scale_hw")
    if not (isinstance(scale, list) and len(scale) == 2
            and all(isinstance(s, int) and s >= 1 for s in scale)):
        raise InputError(path, f"metadata scale_hw must be [sh, sw]; found {scale!r}")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # corrupt protobuf or variables: one clear line
        raise InputError(path, f"cannot load the SavedModel ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''})") from None
    functions = {precision: loaded.signatures[name] for precision, name in SIGNATURES.items()
                 if name in loaded.signatures}
    if "float32" not in functions:
        raise InputError(path, "SavedModel has no serving_default signature")
    return ExportedModel(path, {p: (lambda f: lambda x: f(lr=x))(f) for p, f in functions.items()},
                         metadata, keep_alive=loaded)


def wrap_generator(generator: keras.Model, metadata: Optional[dict] = None) -> ExportedModel:
    """An in-process Keras generator behind the `ExportedModel` interface (float32 only)."""
    scale_hw = _probe_scale(generator)
    convs = _conv_layers(generator)
    merged = {"format": FORMAT, "format_version": FORMAT_VERSION, "scale_hw": list(scale_hw),
              "mode": mode_of(scale_hw),
              "generator": {"receptive_field_lr": list(receptive_radius(generator)),
                            "filters": int(getattr(convs[0], "filters", 64)) if convs else 64}}
    merged.update(metadata or {})
    function = tf.function(lambda lr: {"sr": tf.cast(generator(lr, training=False), tf.float32)},
                           input_signature=[_INPUT_SPEC])
    return ExportedModel(Path("."), {"float32": function}, merged, keep_alive=generator)
