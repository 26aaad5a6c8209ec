"""The degradation module: antialiased bicubic LR, bicubic baseline, slice profiles."""
import numpy as np
import pytest
import tensorflow as tf

from srgan_tf.data.degradation.degrade import (bicubic_taps, degrade, keys_cubic, resampling_matrix,
                                               slice_profile_degrade, upsample_bicubic)
from srgan_tf.data.degradation.slice_profile import SliceProfile


def _images(shape=(2, 32, 32, 1), seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize("scale_hw", [(2, 2), (4, 4), (8, 8), (4, 1), (8, 1)])
def test_degrade_shapes_nhwc_and_hwc(scale_hw):
    hr = _images()
    lr = degrade(hr, scale_hw)
    assert lr.dtype == tf.float32
    assert lr.shape == (2, 32 // scale_hw[0], 32 // scale_hw[1], 1)
    np.testing.assert_array_equal(degrade(hr[0], scale_hw).numpy(), lr.numpy()[0])
    assert upsample_bicubic(lr, scale_hw).shape == hr.shape


def test_degrade_rejects_bad_input():
    with pytest.raises(ValueError, match="Received"):
        degrade(_images((2, 30, 32, 1)), (4, 4))
    with pytest.raises(ValueError, match="Received"):
        degrade(_images((32, 32)), (2, 2))
    with pytest.raises(ValueError, match="Received"):
        degrade(_images(), (3.5, 1))


def test_keys_cubic_kernel_values():
    distance = np.array([0.0, 0.5, 1.0, 1.5, 2.0, -0.5, 2.5])
    np.testing.assert_array_equal(keys_cubic(distance), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.5625, 0.0])
    # a = -0.5 reproduces linear signals: weights at any phase sum to 1 and centre on it
    phase = 0.3
    taps = np.arange(-1, 3) - phase
    assert keys_cubic(taps).sum() == pytest.approx(1.0)
    assert (keys_cubic(taps) * taps).sum() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_bicubic_kernel_is_stretched_keys_cubic(scale):
    offsets, weights = bicubic_taps(scale)
    assert len(offsets) == 4 * scale
    stretched = keys_cubic((offsets - (scale - 1) / 2.0) / scale)
    np.testing.assert_allclose(weights, stretched / stretched.sum(), rtol=1e-15)
    assert weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weights, weights[::-1])  # symmetric about (scale - 1) / 2
    # Interior pixels equal TF's antialiased bicubic (same kernel; borders: TF renormalises).
    hr = _images((1, 64, 64, 1))
    ours = degrade(hr, (scale, scale)).numpy()
    reference = tf.image.resize(hr, [64 // scale] * 2, method="bicubic", antialias=True).numpy()
    np.testing.assert_allclose(ours[:, 2:-2, 2:-2], reference[:, 2:-2, 2:-2], atol=1e-5)


@pytest.mark.parametrize("factor", [2, 4])
def test_slice_grid_and_the_bicubic_baseline_share_the_keys_cubic(factor):
    """One Keys kernel: slice-axis resampling (`slice_grid`, numpy) equals the bicubic baseline
    (`upsample_bicubic`, TF's resize) on the same grid, away from the borders (TF renormalises
    there, slice_grid clamps)."""
    from srgan_tf.inference.slice_grid import interpolation_matrix

    lr = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32)
    baseline = upsample_bicubic(lr[None, :, :, None], (factor, 1)).numpy()[0, :, :, 0]
    step = 1.0 / factor  # output j at input coordinate (j + 0.5) / factor - 0.5
    matrix = interpolation_matrix(16, 0.0, 1.0, 16 * factor, step / 2 - 0.5, step)
    inner = slice(2 * factor, -2 * factor)
    np.testing.assert_allclose((matrix @ lr)[inner], baseline[inner], atol=1e-6)


@pytest.mark.parametrize("scale", [4, 8])
def test_height_only_leaves_columns_untouched(scale):
    row = np.linspace(-1, 1, 32, dtype=np.float32) ** 3
    hr = np.broadcast_to(row[None, :, None], (32, 32, 1)).copy()
    lr = degrade(hr, (scale, 1)).numpy()
    assert lr.shape == (32 // scale, 32, 1)
    np.testing.assert_allclose(lr, np.broadcast_to(row[None, :, None], lr.shape), rtol=0, atol=1e-6)
    # Column j of the LR depends on column j of the HR only, bit for bit.
    images = _images()
    changed = images.copy()
    changed[:, :, 1:] = _images(seed=1)[:, :, 1:]
    np.testing.assert_array_equal(degrade(images, (scale, 1)).numpy()[:, :, 0],
                                  degrade(changed, (scale, 1)).numpy()[:, :, 0])


def test_width_is_bit_exact_in_upsampling_baseline():
    lr = _images((2, 8, 32, 1))
    up = upsample_bicubic(lr, (4, 1)).numpy()
    # Every column is resampled on its own, bit for bit:
    column_only = upsample_bicubic(lr[:, :, 5:6], (4, 1)).numpy()
    np.testing.assert_array_equal(up[:, :, 5:6], column_only)
    constant_columns = np.broadcast_to(lr[:, :1], lr.shape)
    np.testing.assert_allclose(upsample_bicubic(constant_columns, (4, 1)).numpy(),
                               np.broadcast_to(lr[:, :1], up.shape), atol=1e-6)


@pytest.mark.parametrize("scale_hw", [(2, 2), (4, 4), (8, 8), (4, 1), (8, 1)])
def test_constant_image_stays_constant(scale_hw):
    hr = np.full((1, 32, 32, 1), 0.3, np.float32)
    np.testing.assert_allclose(degrade(hr, scale_hw).numpy(), 0.3, atol=1e-6)
    up = upsample_bicubic(degrade(hr, scale_hw), scale_hw)
    np.testing.assert_allclose(up.numpy(), 0.3, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_antialiasing_attenuates_stripes_beyond_lr_nyquist(scale):
    # Stripes at 1.75x the LR Nyquist frequency (0.5 / scale): plain decimation aliases them.
    rows = np.cos(2 * np.pi * 0.875 / scale * np.arange(256))
    hr = np.broadcast_to(rows[:, None, None], (256, 4, 1)).astype(np.float32)
    lr = degrade(hr, (scale, 1)).numpy()[2:-2]
    decimated = hr[scale // 2::scale][2:-2]
    assert np.abs(decimated).max() > 0.5
    assert np.abs(lr).max() < 0.05


def test_sampling_phase_of_a_ramp():
    ramp = np.arange(64, dtype=np.float32)
    hr = np.broadcast_to(ramp[:, None, None], (64, 4, 1)).astype(np.float32)
    for scale in (2, 4, 8):
        lr = degrade(hr, (scale, 1)).numpy()[:, 0, 0]
        centres = np.arange(64 // scale) * scale + (scale - 1) / 2
        np.testing.assert_allclose(lr[2:-2], centres[2:-2], atol=1e-4)


def test_dynamic_shapes_in_a_tf_function():
    spec = tf.TensorSpec([None, None, None, 1], tf.float32)
    traced = tf.function(lambda x: degrade(x, (4, 2)), input_signature=[spec])
    hr = _images((2, 32, 16, 1))
    np.testing.assert_allclose(traced(hr).numpy(), degrade(hr, (4, 2)).numpy(), atol=1e-6)


def test_resampling_matrix_reflects_symmetrically():
    matrix = resampling_matrix(bicubic_taps(4), 4, 32)
    assert matrix.shape == (8, 32)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    np.testing.assert_allclose(matrix, matrix[::-1, ::-1])  # mirror-symmetric borders


@pytest.mark.parametrize("profile", ["box", "gaussian"])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_slice_profile_shapes_phase_and_energy(profile, factor):
    profile = SliceProfile(profile, factor)  # contiguous slices
    volume = np.random.default_rng(0).uniform(0, 1, (10, 12, 26)).astype(np.float32)
    thick = slice_profile_degrade(volume, axis=2, factor=factor, profile=profile)
    assert isinstance(thick, np.ndarray) and thick.dtype == np.float32
    assert thick.shape == (10, 12, 26 // factor)
    # Phase: output slice i sits at input coordinate i * factor + (factor - 1) / 2.
    ramp = np.arange(48, dtype=np.float64)
    centres = np.arange(48 // factor) * factor + (factor - 1) / 2
    sampled = slice_profile_degrade(ramp, axis=0, factor=factor, profile=profile)
    np.testing.assert_allclose(sampled[3:-3], centres[3:-3], atol=1e-9)
    # Energy: weights sum to 1, so a bump away from the borders keeps its integral.
    bump = np.exp(-0.5 * ((np.arange(96) - 47.3) / 6.0) ** 2)
    thick_bump = slice_profile_degrade(bump, axis=0, factor=factor, profile=profile)
    assert thick_bump.sum() * factor == pytest.approx(bump.sum(), rel=1e-3)


def test_slice_profile_kernels():
    offsets, weights = SliceProfile("box", 4).sampling_taps(4)
    np.testing.assert_array_equal(offsets, [0, 1, 2, 3])
    np.testing.assert_allclose(weights, 0.25)
    offsets, weights = SliceProfile("box", 3).sampling_taps(2)
    np.testing.assert_array_equal(offsets, [-1, 0, 1, 2])
    np.testing.assert_allclose(weights, [1 / 6, 1 / 3, 1 / 3, 1 / 6])
    _, gaussian = SliceProfile("gaussian", 8).sampling_taps(4)
    _, narrow = SliceProfile("gaussian", 2).sampling_taps(4)
    assert len(gaussian) > len(narrow)  # thicker slices integrate farther
    offsets, weights = SliceProfile("box", 2.0).sampling_taps(4, pixel_mm=0.5)  # 4 pixels wide
    np.testing.assert_array_equal(offsets, [0, 1, 2, 3])
    np.testing.assert_allclose(weights, 0.25)
    with pytest.raises(ValueError, match="Received"):
        SliceProfile("triangle", 4)
    with pytest.raises(ValueError, match="Received"):
        slice_profile_degrade(np.ones(8), 0, 2.5, SliceProfile("box", 2))


@pytest.mark.parametrize("axis", [1, 2])
def test_slice_profile_tf_matches_numpy(axis):
    images = _images((2, 32, 24, 1))
    options = dict(factor=4, profile=SliceProfile("gaussian", 5))
    out = slice_profile_degrade(tf.constant(images), axis=axis, **options)
    assert tf.is_tensor(out)
    expected = slice_profile_degrade(images, axis=axis, **options)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    hwc = slice_profile_degrade(tf.constant(images[0]), axis=axis - 1, **options)
    np.testing.assert_allclose(hwc.numpy(), expected[0], atol=1e-5)
    with pytest.raises(ValueError, match="Received"):
        slice_profile_degrade(tf.constant(images), axis=3, factor=4, profile=SliceProfile("box", 4))
