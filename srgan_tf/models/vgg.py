"""Frozen VGG19 feature extractor and the SRGAN content losses (Ledig et al. 2017, Sec. 2.2.1).

phi_{i,j} is the feature map "obtained by the j-th convolution (after activation) before the
i-th maxpooling layer". Keras' VGG19 convs carry their ReLU, so the output of ``block5_conv4``
(VGG54) or ``block2_conv2`` (VGG22) is exactly that, after activation. Ledig rescales the
feature maps by 1/12.75 so the VGG loss is comparable to the pixel MSE; the loss here is
``mean((phi(hr) - phi(sr)) ** 2) / 12.75 ** 2``.
"""

import contextlib
import os
import socket

import h5py
import keras
from keras import ops

CONTENT_LOSSES = ("vgg54", "vgg22", "mse")
FEATURE_LAYERS = {"vgg54": "block5_conv4", "vgg22": "block2_conv2"}
FEATURE_RESCALE = 12.75  # Ledig et al.: VGG feature maps scaled by 1/12.75
VGG19_NOTOP_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + VGG19_NOTOP_FILENAME
)
VGG19_NOTOP_MD5 = "253f8cb515780f3b799900260a226db6"  # the hash keras.applications checks
DOWNLOAD_TIMEOUT_S = 15.0
# Caffe-style preprocessing of keras.applications.vgg19: BGR order, ImageNet means, no scaling.
_BGR_MEANS = (103.939, 116.779, 123.68)
# VGG19 convolution widths per block; a max pooling follows each block.
_VGG19_BLOCKS = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))


class VGGWeightsUnavailable(Exception):
    """VGG19 weights for a VGG content loss could not be loaded; the message says how to fix it."""


def keras_cache_dir():
    """Keras' cache root as Keras resolves it: $KERAS_HOME, else ~/.keras (or /tmp/.keras)."""
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    home = os.path.expanduser("~")
    return os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")


def imagenet_weights_path():
    """Where keras.applications caches the VGG19 notop ImageNet weights."""
    return os.path.join(keras_cache_dir(), "models", VGG19_NOTOP_FILENAME)


def _is_none(weights):
    return weights is None or (isinstance(weights, str) and weights.lower() == "none")


def vgg_weights_available(weights="imagenet"):
    """True when ``weights`` can be loaded without a download (None means random: always True)."""
    if _is_none(weights):
        return True
    if weights == "imagenet":
        return os.path.isfile(imagenet_weights_path())
    return os.path.isfile(os.fspath(weights))


def _unavailable(kind, reason):
    return VGGWeightsUnavailable(
        f"VGG19 weights for the {kind!r} content loss are not available: {reason}. "
        "Provide them in one of these ways: "
        f"(1) download {VGG19_NOTOP_URL} and put the file {VGG19_NOTOP_FILENAME} into "
        f"{os.path.dirname(imagenet_weights_path())} (Keras' cache, ~/.keras/models/); "
        "(2) pass --vgg-weights PATH pointing to a VGG19 notop weights file (.h5 or .weights.h5); "
        "(3) train without VGG features: --content-loss mse."
    )


@contextlib.contextmanager
def _socket_timeout(seconds):
    # urllib has no timeout in keras.utils.get_file; a default socket timeout makes it fail fast.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _imagenet_file(kind):
    """The cached ImageNet notop file, downloaded through keras.utils.get_file if missing."""
    path = imagenet_weights_path()
    if os.path.isfile(path):
        return path
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return keras.utils.get_file(
                VGG19_NOTOP_FILENAME,
                VGG19_NOTOP_URL,
                cache_subdir="models",
                cache_dir=keras_cache_dir(),
                file_hash=VGG19_NOTOP_MD5,
            )
    except Exception as error:  # any download failure gets the same actionable message
        raise _unavailable(kind, f"{path} is missing and the download failed ({error})") from error


def _load_vgg19_weights(vgg, path, kind):
    """Loads a full VGG19 notop weights file (legacy .h5 by layer name, or Keras .weights.h5)."""
    if not os.path.isfile(path):
        raise _unavailable(kind, f"no such file {path}")
    try:
        if path.endswith((".weights.h5", ".keras")):
            vgg.load_weights(path)
            return
        with h5py.File(path, "r") as handle:
            group = handle["model_weights"] if "model_weights" in handle else handle
            stored = {n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("layer_names", [])}
        needed = [layer.name for layer in vgg.layers if layer.weights]
        missing = [name for name in needed if name not in stored]
        if missing:
            raise ValueError(f"layers {missing} are not in the file")
        vgg.load_weights(path, by_name=True)
    except VGGWeightsUnavailable:
        raise
    except Exception as error:
        raise _unavailable(kind, f"{path} is not a VGG19 notop weights file ({error})") from error


@keras.saving.register_keras_serializable(package="srgan_tf")
class VGGPreprocess(keras.layers.Layer):
    """[-1, 1] grayscale -> VGG19 input: [0, 255], three channels, BGR ImageNet means removed."""

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def call(self, inputs):
        pixels = (inputs + 1.0) * 127.5
        means = ops.convert_to_tensor(_BGR_MEANS, dtype=pixels.dtype)
        # Grey repeated to three channels is its own BGR flip; only the means differ.
        return ops.concatenate([pixels, pixels, pixels], axis=-1) - means


def _check_kind(kind, allowed):
    if kind not in allowed:
        raise ValueError(f"`kind` must be one of {allowed}. Received: kind={kind!r}")


def build_content_extractor(kind="vgg54", weights="imagenet", input_shape=(None, None, 1), name=None):
    """Builds a frozen model mapping [-1, 1] grayscale NHWC to VGG19 features.

    Args:
        kind: "vgg54" (block5_conv4, Ledig's SRGAN-VGG54) or "vgg22" (block2_conv2).
        weights: "imagenet" (Keras cache ~/.keras/models, else a download), a path to a
            VGG19 notop weights file, or None / "none" for random weights (tests, plumbing).
        input_shape: (height, width, 1); height and width may be None.
        name: model name; defaults to "vgg19_<kind>".

    Returns:
        keras.Model, trainable=False, VGG19 truncated at the feature layer (nothing after it
        is computed).

    Raises:
        VGGWeightsUnavailable: the weights can neither be read nor downloaded.
    """
    _check_kind(kind, tuple(FEATURE_LAYERS))
    if len(input_shape) != 3 or input_shape[-1] != 1:
        raise ValueError(
            f"`input_shape` must be (height, width, 1). Received: input_shape={input_shape!r}"
        )
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    if not _is_none(weights):
        path = _imagenet_file(kind) if weights == "imagenet" else os.fspath(weights)
        _load_vgg19_weights(vgg, path, kind)

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = VGGPreprocess(name="vgg_preprocess")(inputs)
    for layer in vgg.layers[1:]:  # reuse the (loaded) layers; stop at the feature layer
        x = layer(x)
        if layer.name == FEATURE_LAYERS[kind]:
            break
    extractor = keras.Model(inputs, x, name=name or f"vgg19_{kind}")
    extractor.trainable = False
    return extractor


def content_loss_fn(kind, extractor=None):
    """Returns ``loss(hr, sr) -> scalar`` for a content loss of SRGAN.

    Args:
        kind: "vgg54" / "vgg22": mean squared difference of VGG features divided by
            12.75 ** 2 (Ledig's 1/12.75 feature rescaling); "mse": pixel MSE.
        extractor: the model from build_content_extractor(kind, ...); needed for VGG kinds.

    The loss is a mean over the local batch; under a distribution strategy the caller
    divides by the replica count (as `SRGAN` does for its total generator loss).

    Example:
        >>> loss = content_loss_fn("mse")
        >>> float(loss(np.zeros((1, 4, 4, 1)), np.ones((1, 4, 4, 1))))
        1.0
    """
    _check_kind(kind, CONTENT_LOSSES)
    if kind == "mse":

        def mse_content_loss(hr, sr):
            hr, sr = ops.cast(hr, "float32"), ops.cast(sr, "float32")
            return ops.mean(ops.square(hr - sr))

        return mse_content_loss
    if extractor is None:
        raise ValueError(
            f"content loss {kind!r} needs the model from build_content_extractor({kind!r}). "
            "Received: extractor=None"
        )

    def vgg_content_loss(hr, sr):
        hr, sr = ops.cast(hr, "float32"), ops.cast(sr, "float32")
        # Two calls, not one on [hr, sr]: a joint batch would backpropagate through HR too.
        hr_features = ops.stop_gradient(ops.cast(extractor(hr, training=False), "float32"))
        sr_features = ops.cast(extractor(sr, training=False), "float32")
        return ops.mean(ops.square(hr_features - sr_features)) / FEATURE_RESCALE**2

    vgg_content_loss.__name__ = f"{kind}_content_loss"
    return vgg_content_loss


def vgg_flops(kind, input_hw):
    """FLOPs (2 x multiply-adds of the convs) of the extractor for one (height, width) image."""
    _check_kind(kind, tuple(FEATURE_LAYERS))
    height, width = (int(size) for size in input_hw)
    target_block, target_conv = int(FEATURE_LAYERS[kind][5]), int(FEATURE_LAYERS[kind][-1])
    total, channels = 0, 3
    for block, widths in enumerate(_VGG19_BLOCKS, start=1):
        for conv, width_out in enumerate(widths, start=1):
            total += 2 * 9 * channels * width_out * height * width
            channels = width_out
            if (block, conv) == (target_block, target_conv):
                return total
        height, width = height // 2, width // 2
    return total
