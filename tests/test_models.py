"""Tests for srgan_tf.models: pixel shuffle, generator, discriminator, FLOP counters."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from srgan_tf.models.discriminator import build_discriminator, discriminator_flops
from srgan_tf.models.generator import (
    build_generator,
    generator_flops,
    generator_from_spec,
    upsampling_stages,
)
from srgan_tf.config import GeneratorSpec
from srgan_tf.models.layers import PixelShuffle, PixelUnshuffle

TINY = {"num_residual_blocks": 2, "filters": 8}


def _random(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def _conv_flops_by_running(model, input_shape):
    """2 x multiply-adds of every Conv2D/Dense, read from real output shapes of a forward pass."""
    layers = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    probe = keras.Model(model.input, [layer.output for layer in layers])
    total = 0
    for layer, output in zip(layers, probe(np.zeros((1, *input_shape), "float32"))):
        kernel = layer.kernel.shape  # (kh, kw, cin, cout) or (cin, cout)
        total += 2 * int(np.prod(kernel[:-1])) * int(np.prod(output.shape[1:]))
    return total


# --- PixelShuffle / PixelUnshuffle -------------------------------------------------------


@pytest.mark.parametrize("scale_hw", [(2, 2), (2, 1), (4, 1), (1, 2), (3, 2)])
def test_pixel_unshuffle_inverts_pixel_shuffle(scale_hw):
    sh, sw = scale_hw
    x = _random((2, 5, 7, 3 * sh * sw))
    upsampled = PixelShuffle(scale_hw)(x)
    assert upsampled.shape == (2, 5 * sh, 7 * sw, 3)
    np.testing.assert_array_equal(PixelUnshuffle(scale_hw)(upsampled), x)
    image = _random((2, 5 * sh, 7 * sw, 3), seed=1)
    np.testing.assert_array_equal(PixelShuffle(scale_hw)(PixelUnshuffle(scale_hw)(image)), image)


@pytest.mark.parametrize("scale", [2, 4])
def test_pixel_shuffle_matches_depth_to_space(scale):
    x = _random((2, 5, 7, 3 * scale * scale))
    np.testing.assert_array_equal(PixelShuffle((scale, scale))(x), tf.nn.depth_to_space(x, scale))
    y = _random((2, 5 * scale, 7 * scale, 3))
    np.testing.assert_array_equal(PixelUnshuffle((scale, scale))(y), tf.nn.space_to_depth(y, scale))


def test_pixel_shuffle_height_only_keeps_columns():
    # (2, 1): channel pair (a, b) at (h, w) becomes rows 2h, 2h+1 at column w.
    x = _random((1, 3, 4, 2))
    y = PixelShuffle((2, 1))(x).numpy()
    np.testing.assert_array_equal(y[0, 0::2, :, 0], x[0, :, :, 0])
    np.testing.assert_array_equal(y[0, 1::2, :, 0], x[0, :, :, 1])


def test_pixel_shuffle_dynamic_shapes_in_graph():
    layer = PixelShuffle((2, 1))
    symbolic = keras.Input((None, None, 8))
    assert layer(symbolic).shape == (None, None, None, 4)
    traced = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 8])])
    assert traced(tf.zeros((3, 5, 6, 8))).shape == (3, 10, 6, 4)


def test_pixel_shuffle_config_round_trip_and_errors():
    layer = PixelShuffle((4, 1), name="shuffle")
    clone = PixelShuffle.from_config(layer.get_config())
    assert clone.scale_hw == (4, 1) and clone.name == "shuffle"
    assert keras.saving.get_registered_name(PixelShuffle) == "srgan_tf>PixelShuffle"
    with pytest.raises(ValueError, match="Received: scale_hw"):
        PixelShuffle((0, 2))
    with pytest.raises(ValueError, match="divisible"):
        PixelShuffle((2, 2))(keras.Input((None, None, 6)))
    with pytest.raises(ValueError, match="divisible"):
        PixelUnshuffle((2, 1))(keras.Input((7, 8, 1)))


# --- generator ---------------------------------------------------------------------------


def test_upsampling_stages():
    assert upsampling_stages((4, 4)) == [(2, 2), (2, 2)]
    assert upsampling_stages((8, 1)) == [(2, 1)] * 3
    assert upsampling_stages((8, 2)) == [(2, 2), (2, 1), (2, 1)]
    assert upsampling_stages((1, 4)) == [(1, 2), (1, 2)]
    with pytest.raises(ValueError, match="Received: scale_hw"):
        upsampling_stages((3, 3))


@pytest.mark.parametrize(
    "scale_hw, input_hw, output_hw",
    [
        ((4, 4), (7, 9), (28, 36)),
        ((8, 8), (7, 9), (56, 72)),
        ((4, 1), (7, 9), (28, 9)),
        ((8, 1), (7, 9), (56, 9)),
        ((8, 1), (13, 224), (104, 224)),
    ],
)
def test_generator_output_shapes(scale_hw, input_hw, output_hw):
    generator = build_generator(scale_hw, **TINY)
    output = generator(_random((2, *input_hw, 1)))
    assert output.shape == (2, *output_hw, 1)
    assert output.dtype == "float32"
    assert np.all(np.abs(output) <= 1.0)


def test_generator_layers_named_and_structure():
    generator = build_generator((8, 1), **TINY)
    names = [layer.name for layer in generator.layers]
    assert all(not name.startswith(("conv2d", "batch_normalization", "p_re_lu", "add")) for name in names)
    assert {"input_conv", "res1_conv2", "body_add", "upsample2_shuffle", "output_tanh"} <= set(names)
    assert "res2_conv1" not in names and "upsample3_conv" not in names
    assert generator.get_layer("upsample0_conv").filters == 2 * TINY["filters"]
    assert generator.get_layer("output_tanh").dtype_policy.name == "float32"


def test_generator_save_load_round_trip(tmp_path):
    generator = build_generator((4, 1), **TINY)
    x = _random((2, 7, 9, 1))
    path = tmp_path / "generator.keras"
    generator.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored(x), generator(x))
    assert restored.name == "generator"


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Received: filters"):
        build_generator((4, 4), filters=0)
    with pytest.raises(ValueError, match="Received: num_residual_blocks"):
        build_generator((4, 4), num_residual_blocks=-1)


@pytest.mark.parametrize("scale_hw", [(4, 4), (8, 1), (2, 2)])
def test_generator_flops_match_layers_and_scale_with_area(scale_hw):
    spec = GeneratorSpec(scale_hw, **TINY)
    generator = generator_from_spec(spec)
    flops = generator_flops(spec, (8, 12))
    assert flops == _conv_flops_by_running(generator, (8, 12, 1))
    assert generator_flops(spec, (16, 24)) == 4 * flops


def test_generator_spec_round_trips_and_refuses_what_no_generator_is():
    spec = GeneratorSpec((8, 1), num_residual_blocks=2, filters=8, bicubic_residual=True)
    assert GeneratorSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["mode"] == "aniso" and spec.scale == 8
    for bad in ((3, 1), (2, 8), (0, 1), ("x", 1)):
        with pytest.raises(ValueError, match="Received: scale_hw"):
            GeneratorSpec(bad)


# --- discriminator -----------------------------------------------------------------------


def test_discriminator_logits_and_layers():
    discriminator = build_discriminator((32, 48), filters=8, dense_units=16)
    logits = discriminator(_random((3, 32, 48, 1)))
    assert logits.shape == (3, 1) and logits.dtype == "float32"
    strides = [discriminator.get_layer(f"block{i}_conv").strides for i in range(7)]
    assert strides == [(2, 2), (1, 1)] * 3 + [(2, 2)]
    assert discriminator.get_layer("block6_conv").filters == 64
    assert discriminator.get_layer("input_lrelu").negative_slope == pytest.approx(0.2)


def test_discriminator_save_load_round_trip(tmp_path):
    discriminator = build_discriminator((32, 32), filters=8, dense_units=16)
    x = _random((2, 32, 32, 1))
    discriminator.save(tmp_path / "discriminator.keras")
    restored = keras.saving.load_model(tmp_path / "discriminator.keras")
    np.testing.assert_allclose(restored(x), discriminator(x), rtol=1e-6, atol=1e-6)


def test_discriminator_flops_match_layers_and_scale_with_area():
    discriminator = build_discriminator((32, 32), filters=8, dense_units=16)
    flops = discriminator_flops(discriminator)
    assert flops == _conv_flops_by_running(discriminator, (32, 32, 1))
    # The convs scale with the area; the dense layers see a 2x2 or 4x4 x 64 feature map.
    conv_only = flops - 2 * (2 * 2 * 64 * 16) - 2 * 16
    bigger = discriminator_flops({"input_size": (64, 64), "filters": 8, "dense_units": 16})
    assert bigger - 2 * (4 * 4 * 64 * 16) - 2 * 16 == 4 * conv_only


def test_discriminator_rejects_bad_input_size():
    with pytest.raises(ValueError, match="Received: input_size"):
        build_discriminator((None, 32))


@pytest.mark.parametrize("scale_hw", [(4, 1), (2, 2)])
def test_bicubic_residual_generator_starts_at_bicubic_and_round_trips(tmp_path, scale_hw):
    from srgan_tf.data.degradation.degrade import upsample_bicubic

    model = build_generator(scale_hw, num_residual_blocks=2, filters=8, bicubic_residual=True)
    lr = np.random.default_rng(0).uniform(-1, 1, (2, 8, 6, 1)).astype("float32")
    expected = upsample_bicubic(lr, scale_hw).numpy()
    np.testing.assert_allclose(model(lr).numpy(), expected, atol=1e-6)
    assert "bicubic_skip" in [layer.name for layer in model.layers]
    path = tmp_path / "g.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(lr).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_one_channel_conv_matches_conv2d_outputs_and_gradients(policy):
    from srgan_tf.models.layers import OneChannelConv2D

    x = tf.constant(np.random.default_rng(0).normal(size=(2, 11, 13, 6)).astype(np.float32))
    plain = keras.layers.Conv2D(1, 9, padding="same", dtype=policy)
    fast = OneChannelConv2D(1, 9, padding="same", dtype=policy)
    plain.build(x.shape)
    fast.build(x.shape)
    weights = [np.random.default_rng(1).normal(0, 0.1, w.shape).astype(np.float32) for w in plain.get_weights()]
    plain.set_weights(weights)
    fast.set_weights(weights)
    results = []
    for layer in (plain, fast):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(layer(x), tf.float32)
            loss = tf.reduce_sum(y * tf.cos(3.0 * y))
        results.append([y] + tape.gradient(loss, [x] + layer.trainable_variables))
    tolerance = 1e-5 if policy == "float32" else 2e-2
    for expected, actual in zip(*results):
        scale = float(tf.reduce_max(tf.abs(tf.cast(expected, tf.float32))))
        np.testing.assert_allclose(np.asarray(tf.cast(actual, tf.float32)),
                                   np.asarray(tf.cast(expected, tf.float32)), atol=tolerance * scale)


def _same_layer_both_ways(ours, theirs, x):
    """Outputs, gradients (input and weights) and weights after one training call of two layers
    given the same weights."""
    ours.build(x.shape)
    theirs.build(x.shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(0.5, 0.3, w.shape).astype(np.float32) for w in theirs.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(layer(x, training=True), tf.float32)
            loss = tf.reduce_sum(y * tf.cos(3.0 * x))
        gradients = tape.gradient(loss, [x] + layer.trainable_variables)
        results.append([y] + gradients + [tf.constant(w) for w in layer.get_weights()])
    return results


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_prelu_matches_keras_prelu_outputs_and_gradients(policy):
    from srgan_tf.models.layers import PReLU

    x = tf.constant(np.random.default_rng(0).normal(size=(3, 7, 9, 5)).astype(np.float32))
    ours, theirs = (kind(shared_axes=[1, 2], dtype=policy)
                    for kind in (PReLU, keras.layers.PReLU))
    for expected, actual in zip(*reversed(_same_layer_both_ways(ours, theirs, x))):
        # The same function and the same derivative (up to float rounding of the sums).
        np.testing.assert_allclose(np.asarray(tf.cast(actual, tf.float32)),
                                   np.asarray(tf.cast(expected, tf.float32)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_matches_keras_batch_norm_in_training(policy):
    from srgan_tf.models.layers import BatchNormalization

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, size=(4, 10, 12, 8)).astype(np.float32))
    ours = BatchNormalization(momentum=0.9, dtype=policy)
    theirs = keras.layers.BatchNormalization(momentum=0.9, dtype=policy)
    expected, actual = reversed(_same_layer_both_ways(ours, theirs, x))
    # Output, input/gamma/beta gradients, then gamma, beta, moving mean, moving variance.
    for name, want, got in zip(("output", "d input", "d gamma", "d beta", "gamma", "beta",
                                "moving mean", "moving variance"), expected, actual):
        want, got = np.asarray(tf.cast(want, tf.float32)), np.asarray(tf.cast(got, tf.float32))
        tolerance = 1e-5 if policy == "float32" or name != "output" else 1e-2
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * np.abs(want).max(),
                                   err_msg=name)
    # Inference takes Keras' own path, with moving statistics equal up to float rounding.
    np.testing.assert_allclose(np.asarray(tf.cast(ours(x, training=False), tf.float32)),
                               np.asarray(tf.cast(theirs(x, training=False), tf.float32)),
                               atol=1e-5 if policy == "float32" else 5e-2)


def test_hold_filter_in_one_pass_equals_one_axis_after_the_other():
    from srgan_tf.models.layers import HoldFilter

    x = np.random.default_rng(0).normal(size=(2, 8, 6, 3)).astype(np.float32)
    both = HoldFilter((2, 2))(x).numpy()
    one_after_other = HoldFilter((1, 2))(HoldFilter((2, 1))(x)).numpy()
    np.testing.assert_allclose(both, one_after_other, atol=1e-6)
    # [1, 2, 1] / 4 with half-sample symmetric borders, written out along the height.
    padded = np.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
    expected = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4
    np.testing.assert_allclose(HoldFilter((2, 1))(x).numpy(), expected, atol=1e-6)
