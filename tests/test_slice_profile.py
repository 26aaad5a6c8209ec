"""Slice profiles: kernels, real-step thickening, and estimating the profile from a volume."""
import numpy as np
import pytest
from scipy import ndimage

from srgan_tf.data.degradation.degrade import resampling_matrix, slice_profile_degrade
from srgan_tf.data.degradation.profile_estimate import estimate_slice_profile
from srgan_tf.evaluation.figures import save_profile_estimate
from srgan_tf.data.degradation.slice_profile import (SliceProfile, degrade_lines, load_profile_file,
                                                     output_count, profile_matrix)

# Estimated widths must be within this fraction of the truth (synthetic isotropic volume).
WIDTH_TOLERANCE = 0.15


def _isotropic_volume(size=128, seed=0):
    """Blobs with soft, partial-volume-like edges inside a ball: about isotropic statistics."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((size,) * 3, dtype=np.float32), 2.0)
    blobs = np.tanh(2.0 * field / field.std())
    grid = (np.arange(size) - (size - 1) / 2) / (0.47 * size)
    radius = np.sqrt(grid[:, None, None] ** 2 + grid[None, :, None] ** 2 + grid[None, None, :] ** 2)
    return ((3.0 + blobs) * np.clip((1.0 - radius) * 0.47 * size + 0.5, 0.0, 1.0)).astype(np.float32)


@pytest.fixture(scope="module")
def volume():
    return _isotropic_volume()


def _sigma_mm(profile):
    """Standard deviation of a profile: the width a spectrum pins down whatever the shape."""
    positions, weights = profile.taps(0.01)
    return float(np.sqrt(np.sum(weights * (positions * 0.01) ** 2)))


@pytest.mark.parametrize("shape", ["box", "gaussian"])
@pytest.mark.parametrize("factor,width", [(3, 2), (3, 3), (5, 4), (5, 5), (7, 3)])
def test_kernel_matches_sampling_taps_for_integer_widths(shape, factor, width):
    kernel = SliceProfile(shape, width * 0.5).kernel(0.5)
    assert len(kernel) % 2 == 1
    assert kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kernel, kernel[::-1])
    _, taps = SliceProfile(shape, width).sampling_taps(factor)  # odd factor: taps on whole pixels
    np.testing.assert_allclose(kernel, taps, atol=1e-12)


@pytest.mark.parametrize("profile", [SliceProfile("box", 3.6), SliceProfile("gaussian", 2.7),
                                     SliceProfile.from_samples([1, 3, 4, 3, 1], 0.9)])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_profile_matrix_of_an_integer_step_is_the_sampling_taps_matrix(profile, factor):
    """One kernel: `profile_matrix` (real steps) and `degrade`'s taps (integer factors) agree."""
    expected = resampling_matrix(profile.sampling_taps(factor, 0.9), factor, 37)
    np.testing.assert_allclose(profile_matrix(profile, 0.9, factor, 37), expected, atol=1e-15)


@pytest.mark.parametrize("shape", ["box", "gaussian"])
@pytest.mark.parametrize("factor,thickness", [(2, None), (4, None), (4, 3), (4, 6), (5, None)])
def test_degrade_lines_equals_slice_profile_degrade(shape, factor, thickness):
    lines = np.random.default_rng(0).normal(size=(3, 5, 43))
    width = factor if thickness is None else thickness
    expected = slice_profile_degrade(lines, -1, factor, SliceProfile(shape, width))
    width_mm = 0.7 * width
    got = degrade_lines(lines, SliceProfile(shape, width_mm), factor, pixel_mm=0.7)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_non_integer_step_length_and_centres():
    size, step = 100, 7.2
    assert output_count(size, step) == 13
    matrix = profile_matrix(SliceProfile("box", 3.6), 0.5, step, size)
    assert matrix.shape == (13, size)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    centres = matrix @ np.arange(size)  # weighted mean position of each thick sample
    # exact up to the mass of a partly covered pixel sitting at that pixel's centre
    np.testing.assert_allclose(centres, np.arange(13) * step + (step - 1) / 2, atol=0.02)
    ramp = degrade_lines(np.arange(size, dtype=np.float32)[None], SliceProfile("gaussian", 3.6), step, 0.5)
    np.testing.assert_allclose(ramp[0, 1:-1], (np.arange(13) * step + (step - 1) / 2)[1:-1], atol=0.02)


def test_file_profile_round_trip_and_box_equivalence(tmp_path):
    path = tmp_path / "profile.npy"
    np.save(path, np.array([2.0, 2.0, 2.0, 2.0]))  # a 4-pixel box at 0.5 mm pixels
    profile = load_profile_file(path, pixel_mm=0.5)
    assert profile.shape == "file" and profile.fwhm_mm == pytest.approx(2.0)
    assert sum(profile.samples) == pytest.approx(1.0)
    lines = np.random.default_rng(1).normal(size=(4, 40))
    np.testing.assert_allclose(degrade_lines(lines, profile, 4, 0.5),
                               degrade_lines(lines, SliceProfile("box", 2.0), 4, 0.5), atol=1e-12)
    assert SliceProfile.from_dict(profile.to_dict()) == profile
    assert "file" in profile.describe()


@pytest.mark.parametrize("content", [np.ones((3, 3)), np.array([1.0, -0.5, 1.0]), np.zeros(5),
                                     np.array([1.0, np.nan]), np.array([], np.float64)])
def test_bad_profile_files_raise(tmp_path, content):
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(ValueError, match="Received"):
        load_profile_file(path, pixel_mm=1.0)


def test_unreadable_profile_file_raises(tmp_path):
    path = tmp_path / "bad.npy"
    path.write_text("not numpy")
    with pytest.raises(ValueError, match="Received"):
        load_profile_file(path, pixel_mm=1.0)


def test_estimate_recovers_box(volume, tmp_path):
    thick = slice_profile_degrade(volume, 0, 4, SliceProfile("box", 4))  # 4 mm slices, box 4 mm, 1 mm pixels
    estimate = estimate_slice_profile(thick, (4.0, 1.0, 1.0))
    assert estimate.profile.shape == "box", estimate.reason
    assert estimate.profile.fwhm_mm == pytest.approx(4.0, rel=WIDTH_TOLERANCE), estimate.reason
    assert "box" in estimate.reason
    save_profile_estimate(estimate, tmp_path / "profile.png")
    assert (tmp_path / "profile.png").stat().st_size > 0


def test_estimate_recovers_gaussian_width(volume):
    """The Gaussian width is pinned down; a box of the same spectrum (width ~1.4x) is a near tie
    on one volume, so the chosen profile's standard deviation is what must match."""
    truth = SliceProfile("gaussian", 4.0)
    thick = slice_profile_degrade(volume, 0, 4, truth)
    estimate = estimate_slice_profile(thick, (4.0, 1.0, 1.0))
    assert estimate.best_widths_mm["gaussian"] == pytest.approx(4.0, rel=WIDTH_TOLERANCE), estimate.reason
    assert _sigma_mm(estimate.profile) == pytest.approx(_sigma_mm(truth), rel=WIDTH_TOLERANCE)


def test_estimate_non_integer_ratio(volume):
    """3.6 mm slices on 0.5 mm pixels (factor 7.2), made with degrade_lines."""
    truth = SliceProfile("gaussian", 3.6)
    thick = np.moveaxis(degrade_lines(np.moveaxis(volume, 0, -1), truth, 7.2, 0.5), -1, 0)
    estimate = estimate_slice_profile(thick, (3.6, 0.5, 0.5))
    assert estimate.best_widths_mm["gaussian"] == pytest.approx(3.6, rel=WIDTH_TOLERANCE), estimate.reason
    assert _sigma_mm(estimate.profile) == pytest.approx(_sigma_mm(truth), rel=WIDTH_TOLERANCE)
    assert estimate.to_dict()["profile"] == estimate.profile.to_dict()


def test_estimate_fits_each_inplane_direction(volume):
    """Each in-plane direction is fitted on its own; the better-fitting one gives the estimate,
    the other's width is reported (their spread: the object's anisotropy); "mean" is the former
    method (both directions' spectra averaged)."""
    truth = SliceProfile("box", 4.0)
    thick = slice_profile_degrade(volume, 0, 4, SliceProfile("box", 4))
    best = estimate_slice_profile(thick, (4.0, 1.0, 1.0))
    assert len(best.direction_sigmas_mm) == 2 and len(best.direction_scores) == 2
    chosen = int(np.argmin(best.direction_scores))
    assert best.inplane_direction == ("cols (axis 2)", "rows (axis 1)")[chosen]
    assert best.inplane_direction in best.reason
    for sigma in best.direction_sigmas_mm:
        assert sigma == pytest.approx(_sigma_mm(truth), rel=WIDTH_TOLERANCE)
    assert _sigma_mm(best.profile) == pytest.approx(_sigma_mm(truth), rel=WIDTH_TOLERANCE), best.reason
    assert best.edge in ("", "narrow", "wide", "both") and best.at_edge == bool(best.edge)
    mean = estimate_slice_profile(thick, (4.0, 1.0, 1.0), inplane="mean")
    assert mean.inplane_direction == "cols and rows" and len(mean.direction_sigmas_mm) == 1
    assert _sigma_mm(mean.profile) == pytest.approx(_sigma_mm(truth), rel=WIDTH_TOLERANCE), mean.reason
    summary = best.to_dict()
    assert len(summary["direction_sigmas_mm"]) == 2 and summary["edge"] == best.edge
    with pytest.raises(ValueError, match="Received"):
        estimate_slice_profile(thick, (4.0, 1.0, 1.0), inplane="both")


def test_estimate_rejects_unusable_volumes():
    with pytest.raises(ValueError, match="Received"):
        estimate_slice_profile(np.zeros((8, 8)), (4.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="Received"):
        estimate_slice_profile(np.ones((3, 16, 16)), (4.0, 1.0, 1.0))


def test_infer_warns_when_the_training_degradation_differs_from_the_input(volume):
    from srgan_tf.inference.degradation_check import degradation_warning
    from srgan_tf.io.volume import Volume

    thick = Volume(slice_profile_degrade(volume, 0, 4, SliceProfile("box", 4)), spacing=(4.0, 1.0, 1.0))

    def metadata(degradation, profile="box", ratio=1.0):
        return {"config": {"data": {"degradation": degradation, "slice_profile": profile,
                                    "slice_thickness_ratio": ratio}}}

    assert "--degradation slice-profile" in degradation_warning(metadata("bicubic"), thick)
    assert degradation_warning(metadata("slice-profile", "box", 1.0), thick) is None
    assert "expect less gain" in degradation_warning(metadata("slice-profile", "box", 2.0), thick)
