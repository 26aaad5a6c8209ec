"""Anisotropic generators must not stripe: no period-2 / period-s pattern along the height.

The measure: the mean output at each row phase (row index mod period) over the interior of
the output for a flat (constant) input, whose correct SR is flat; its RMS around the mean is
the stripe amplitude, in [-1, 1] units.

Two fixes, both checked: ICNR initialisation (flat at initialisation) and the fixed hold
filter after each pixel shuffle (flat after any training). Without the hold filter, training
moves the sub-pixel convolutions apart and stripes come back (measured below).
"""
import numpy as np
import pytest
import tensorflow as tf

import keras
from srgan_tf.data.degradation.degrade import degrade
from srgan_tf.models import generator as generator_module
from srgan_tf.models.generator import build_generator
from srgan_tf.models.layers import ICNR, HoldFilter

TINY = {"num_residual_blocks": 2, "filters": 8}
# 1e-4 of the [-1, 1] range is 0.005 % of the intensity range: invisible in any window.
# Without the fixes: 2e-3 to 4e-2 (Glorot init); ICNR alone after 5 Adam steps: ~4e-4.
STRIPE_LIMIT = 1e-4
LR_ROWS = 40  # far more than the receptive field, so the interior sees no border


def stripe_amplitude(sr, period: int, margin: int) -> float:
    """RMS over row phases (index mod period) of the mean interior output at that phase."""
    sr = np.asarray(sr, np.float64)[:, margin:-margin, :, 0]
    rows = sr.shape[1] // period * period
    profile = sr[:, :rows].reshape(sr.shape[0], rows // period, period, -1).mean(axis=(0, 1, 3))
    return float(np.sqrt(np.mean((profile - profile.mean()) ** 2)))


def flat_output(generator, scale_h, value=0.3):
    return generator(np.full((2, LR_ROWS, 12, 1), value, "float32"), training=False)


def train_briefly(generator, scale_hw, steps=5, learning_rate=2e-4):
    """A few MSE steps on smooth random 32x32 images (the quick preset's learning rate)."""
    optimizer = keras.optimizers.Adam(learning_rate)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        hr = tf.image.resize(rng.normal(size=(4, 8, 8, 1)).astype("float32"), (32, 32),
                             method="bicubic") * 0.3
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((generator(degrade(hr, scale_hw), training=True) - hr) ** 2)
        variables = generator.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))


def test_icnr_repeats_one_sub_kernel_in_pixel_shuffle_order():
    kernel = np.asarray(ICNR((2, 1))((3, 3, 4, 16)))
    np.testing.assert_array_equal(kernel[..., :8], kernel[..., 8:])
    assert np.std(kernel[..., :8]) > 0
    kernel = np.asarray(ICNR((2, 2))((3, 3, 2, 12)))
    for group in range(1, 4):
        np.testing.assert_array_equal(kernel[..., :3], kernel[..., 3 * group:3 * group + 3])
    restored = ICNR.from_config(ICNR((2, 1), "he_normal").get_config())
    assert restored.scale_hw == (2, 1)
    with pytest.raises(ValueError, match="Received: shape"):
        ICNR((2, 1))((3, 3, 4, 15))


@pytest.mark.parametrize("bicubic_residual", [False, True])
@pytest.mark.parametrize("scale_h", [2, 4])
def test_untrained_aniso_generator_has_no_stripes_on_flat_input(scale_h, bicubic_residual):
    keras.utils.set_random_seed(1)
    generator = build_generator((scale_h, 1), bicubic_residual=bicubic_residual, **TINY)
    sr = flat_output(generator, scale_h)
    for period in sorted({2, scale_h}):
        assert stripe_amplitude(sr, period, margin=12 * scale_h) < STRIPE_LIMIT


@pytest.mark.parametrize("bicubic_residual", [False, True])
def test_briefly_trained_aniso_generator_has_no_stripes_on_flat_input(bicubic_residual):
    keras.utils.set_random_seed(2)
    generator = build_generator((4, 1), bicubic_residual=bicubic_residual, **TINY)
    train_briefly(generator, (4, 1))
    sr = flat_output(generator, 4)
    for period in (2, 4):
        assert stripe_amplitude(sr, period, margin=48) < STRIPE_LIMIT


@pytest.fixture
def without_hold_filter(monkeypatch):
    """The generator as it was before the hold filter (pixel shuffle straight into PReLU)."""
    monkeypatch.setattr(generator_module, "HoldFilter",
                        lambda factor_hw, name: keras.layers.Identity(name=name))


def test_hold_filter_keeps_glorot_initialised_generator_flat():
    # Any sub-pixel weights: the hold filter turns their period-2 output into a constant.
    keras.utils.set_random_seed(1)
    generator = build_generator((4, 1), **TINY)
    _reinitialise_subpixel_convs(generator)
    assert stripe_amplitude(flat_output(generator, 4), 4, margin=48) < STRIPE_LIMIT


def test_stripes_without_the_fixes(without_hold_filter):
    # Old generator: Glorot sub-pixel convs give each row phase its own filter.
    keras.utils.set_random_seed(1)
    generator = build_generator((4, 1), **TINY)
    _reinitialise_subpixel_convs(generator)
    assert stripe_amplitude(flat_output(generator, 4), 4, margin=48) > 10 * STRIPE_LIMIT
    # ICNR alone: flat at initialisation, striped after a few training steps.
    keras.utils.set_random_seed(2)
    generator = build_generator((4, 1), **TINY)
    assert stripe_amplitude(flat_output(generator, 4), 4, margin=48) < STRIPE_LIMIT
    train_briefly(generator, (4, 1))
    sr = flat_output(generator, 4)
    assert max(stripe_amplitude(sr, 2, 48), stripe_amplitude(sr, 4, 48)) > STRIPE_LIMIT


def test_hold_filter_is_symmetric_and_round_trips():
    layer = HoldFilter((2, 1))
    impulse = np.zeros((1, 9, 3, 1), "float32")
    impulse[0, 4, 1] = 1.0
    np.testing.assert_allclose(np.asarray(layer(impulse))[0, 3:6, 1, 0], [0.25, 0.5, 0.25])
    np.testing.assert_array_equal(np.asarray(layer(impulse))[0, :, [0, 2]], 0.0)  # height only
    ramp = np.tile(np.arange(8, dtype="float32")[None, :, None, None], (1, 1, 4, 1))
    np.testing.assert_allclose(np.asarray(layer(ramp))[0, 1:-1], ramp[0, 1:-1], atol=1e-6)
    assert HoldFilter.from_config(layer.get_config()).scale_hw == (2, 1)


def _reinitialise_subpixel_convs(generator):
    glorot = keras.initializers.GlorotUniform(seed=3)
    for layer in generator.layers:
        if layer.name.startswith("upsample") and layer.name.endswith("_conv"):
            layer.kernel.assign(glorot(layer.kernel.shape))
