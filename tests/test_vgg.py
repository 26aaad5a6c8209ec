"""Tests for srgan_tf.models.vgg: extractor shapes, weight loading, content losses, FLOPs."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from srgan_tf.models import vgg
from srgan_tf.models.vgg import (
    VGGWeightsUnavailable,
    build_content_extractor,
    content_loss_fn,
    vgg_flops,
    vgg_weights_available,
)


def _random(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


@pytest.fixture
def empty_keras_home(tmp_path, monkeypatch):
    """An empty Keras cache and a download that fails (as on a machine without internet)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    calls = []

    def failing_get_file(*args, **kwargs):
        calls.append((args, kwargs))
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", failing_get_file)
    return calls


def _write_legacy_h5(model, path):
    """Writes weights in the legacy Keras .h5 layout of the keras-applications files."""
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        for layer in model.layers:
            group = handle.create_group(layer.name)
            names = [f"{layer.name}_{index}".encode() for index in range(len(layer.weights))]
            group.attrs["weight_names"] = names
            for name, weight in zip(names, layer.weights):
                group.create_dataset(name.decode(), data=weight.numpy())


def _random_vgg19():
    return keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))


@pytest.mark.parametrize("kind, shape", [("vgg54", (2, 2, 2, 512)), ("vgg22", (2, 16, 16, 128))])
def test_extractor_shapes_frozen_and_truncated(kind, shape):
    extractor = build_content_extractor(kind, weights=None)
    assert extractor(_random((2, 32, 32, 1))).shape == shape
    assert not extractor.trainable and not extractor.trainable_weights
    names = [layer.name for layer in extractor.layers]
    assert names[-1] == vgg.FEATURE_LAYERS[kind]
    assert "block5_pool" not in names


def test_preprocessing_matches_keras_vgg19_preprocess_input():
    gray = _random((2, 5, 6, 1))
    rgb = np.repeat((gray + 1.0) * 127.5, 3, axis=-1)
    expected = keras.applications.vgg19.preprocess_input(rgb)
    actual = vgg.VGGPreprocess()(gray)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-3)


def test_extractor_save_load_round_trip(tmp_path):
    extractor = build_content_extractor("vgg22", weights=None)
    extractor.save(tmp_path / "extractor.keras")
    restored = keras.saving.load_model(tmp_path / "extractor.keras")
    x = _random((1, 32, 32, 1))
    np.testing.assert_allclose(restored(x), extractor(x), rtol=1e-6, atol=1e-5)


def test_missing_imagenet_weights_raise_actionable_error(empty_keras_home):
    assert not vgg_weights_available("imagenet")
    with pytest.raises(VGGWeightsUnavailable) as raised:
        build_content_extractor("vgg54", weights="imagenet")
    message = str(raised.value)
    assert "--vgg-weights" in message and "--content-loss mse" in message
    assert vgg.VGG19_NOTOP_URL in message and vgg.VGG19_NOTOP_FILENAME in message
    assert len(empty_keras_home) == 1  # one download attempt, no retries


def test_imagenet_weights_read_from_keras_cache(tmp_path, empty_keras_home):
    source = _random_vgg19()
    _write_legacy_h5(source, tmp_path / "notop.h5")
    cached = vgg.imagenet_weights_path()
    (tmp_path / "keras_home" / "models").mkdir(parents=True)
    (tmp_path / "notop.h5").rename(cached)
    assert vgg_weights_available("imagenet")
    extractor = build_content_extractor("vgg22", weights="imagenet")
    assert not empty_keras_home  # no download attempted
    np.testing.assert_array_equal(
        extractor.get_layer("block2_conv2").kernel.numpy(), source.get_layer("block2_conv2").kernel.numpy()
    )


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5"])
def test_weights_loaded_from_path(tmp_path, suffix):
    source = _random_vgg19()
    path = tmp_path / f"vgg19_notop{suffix}"
    if suffix == ".h5":
        _write_legacy_h5(source, path)
    else:
        source.save_weights(path)
    assert vgg_weights_available(str(path))
    extractor = build_content_extractor("vgg54", weights=str(path))
    x = _random((2, 32, 32, 1))
    reference = keras.Model(source.input, source.get_layer("block5_conv4").output)
    expected = reference(keras.applications.vgg19.preprocess_input(np.repeat((x + 1) * 127.5, 3, -1)))
    np.testing.assert_allclose(extractor(x), expected, rtol=1e-4, atol=1e-3)


def test_bad_weights_path_raises(tmp_path):
    assert not vgg_weights_available(str(tmp_path / "missing.h5"))
    with pytest.raises(VGGWeightsUnavailable, match="no such file"):
        build_content_extractor("vgg22", weights=str(tmp_path / "missing.h5"))
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.attrs["layer_names"] = [b"dense"]
    with pytest.raises(VGGWeightsUnavailable, match="not a VGG19 notop weights file"):
        build_content_extractor("vgg22", weights=str(tmp_path / "other.h5"))


def test_content_losses():
    hr, sr = _random((2, 32, 32, 1)), _random((2, 32, 32, 1), seed=1)
    mse = content_loss_fn("mse")
    assert float(mse(hr, sr)) == pytest.approx(float(np.mean((hr - sr) ** 2)), rel=1e-5)
    extractor = build_content_extractor("vgg22", weights=None)
    loss = content_loss_fn("vgg22", extractor)
    expected = np.mean((extractor(hr).numpy() - extractor(sr).numpy()) ** 2) / 12.75**2
    assert float(loss(hr, sr)) == pytest.approx(float(expected), rel=1e-4)
    assert float(loss(hr, hr)) == 0.0
    hr_tensor, sr_tensor = tf.constant(hr), tf.constant(sr)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([hr_tensor, sr_tensor])
        value = loss(hr_tensor, sr_tensor)
    assert tape.gradient(value, hr_tensor) is None  # HR features are a fixed target
    assert float(tf.reduce_max(tf.abs(tape.gradient(value, sr_tensor)))) > 0.0
    with pytest.raises(ValueError, match="Received: extractor=None"):
        content_loss_fn("vgg54")
    with pytest.raises(ValueError, match="Received: kind"):
        content_loss_fn("l1")


def test_vgg_flops_positive_and_scale_with_area():
    block1 = 2 * 9 * 32 * 32 * (3 * 64 + 64 * 64)
    block2 = 2 * 9 * 16 * 16 * (64 * 128 + 128 * 128)  # after one 2x2 max pooling
    assert vgg_flops("vgg22", (32, 32)) == block1 + block2
    for kind in ("vgg54", "vgg22"):
        assert vgg_flops(kind, (64, 64)) == 4 * vgg_flops(kind, (32, 32)) > 0
    assert vgg_flops("vgg54", (224, 224)) > vgg_flops("vgg22", (224, 224))
