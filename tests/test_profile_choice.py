"""The run's slice profile: the spectral estimate on perturbed synthetic volumes (noise, bias field,
each array axis, a gap), combined with the header's thickness, and the fallback when the
spectrum is flat. Small synthetic volumes with about isotropic statistics (not MR)."""
import numpy as np
import pytest
from scipy import ndimage

from srgan_tf.data.degradation.profile_choice import SHAPE_ODDS, choose_slice_profile
from srgan_tf.data.degradation.slice_profile import SliceProfile, degrade_lines

TOLERANCE = 0.10  # relative error of the chosen profile's standard deviation


def _textured(size=96, seed=0):
    """Blobs with soft edges inside a ball (about isotropic), 1 mm voxels."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((size,) * 3).astype(np.float32), 1.5)
    grid = (np.arange(size) - (size - 1) / 2) / (0.47 * size)
    radius = np.sqrt(grid[:, None, None] ** 2 + grid[None, :, None] ** 2 + grid[None, None, :] ** 2)
    ball = np.clip((1.0 - radius) * 0.47 * size + 0.5, 0.0, 1.0)
    return ((3.0 + np.tanh(2.0 * field / field.std())) * ball).astype(np.float32)


@pytest.fixture(scope="module")
def volume():
    return _textured()


def _perturbed_thick(volume, axis, profile, spacing, snr=0.0, bias=0.0, seed=1):
    """A bias field and Rician noise on the 1 mm volume, then thick slices along `axis`; returned
    slice axis first, as the command hands it to the estimate."""
    rng = np.random.default_rng(seed)
    out = volume.astype(np.float64)
    if bias:
        grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in out.shape], indexing="ij", sparse=True)
        out = out * (1.0 + bias * (0.6 * grids[0] - 0.3 * grids[1] * grids[2] + 0.4 * grids[2] ** 2))
    if snr:
        sigma = out[out > 0.5].mean() / snr
        out = np.hypot(out + rng.normal(0, sigma, out.shape), rng.normal(0, sigma, out.shape))
    thick = degrade_lines(np.moveaxis(out.astype(np.float32), axis, -1), profile, spacing, 1.0)
    return np.ascontiguousarray(np.moveaxis(thick, -1, 0))


@pytest.mark.parametrize("axis,profile,spacing,snr,bias,header", [
    (0, SliceProfile("box", 4.0), 4.0, 20, 0.2, None),
    (1, SliceProfile("box", 3.0), 3.0, 30, 0.0, None),
    (2, SliceProfile("gaussian", 4.0), 4.0, 15, 0.3, None),
    (2, SliceProfile("box", 5.2), 5.2, 10, 0.2, None),  # non-integer factor, low SNR
    (1, SliceProfile("box", 3.6), 5.0, 20, 0.2, 3.6),  # gap: DICOM SliceThickness 3.6 mm
])
def test_choice_holds_on_perturbed_volumes(volume, axis, profile, spacing, snr, bias, header):
    thick = _perturbed_thick(volume, axis, profile, spacing, snr, bias)
    choice = choose_slice_profile(thick, (spacing, 1.0, 1.0), header_thickness=header)
    assert choice.sigma_mm == pytest.approx(profile.sigma_mm, rel=TOLERANCE), choice.reason
    assert choice.decision in ("combined", "header") and choice.spectrum_uncertainty > 0, choice.reason
    summary = choice.to_dict()
    assert summary["spectrum"]["uncertainty"] == choice.spectrum_uncertainty
    assert summary["header"]["source"] == ("spacing" if header is None else "SliceThickness")


def test_header_thickness_is_used_and_a_disagreement_said(volume):
    thick = _perturbed_thick(volume, 0, SliceProfile("box", 4.0), 4.0, snr=20)
    alone = choose_slice_profile(thick, (4.0, 1.0, 1.0))
    wrong = choose_slice_profile(thick, (4.0, 1.0, 1.0), header_thickness=9.0, estimate=alone.estimate)
    assert wrong.header_thickness == 9.0 and "SliceThickness 9 mm" in wrong.reason
    assert wrong.decision == "combined"  # a DICOM thickness is never dropped, only questioned
    assert alone.sigma_mm < wrong.sigma_mm < SliceProfile("box", 9.0).sigma_mm
    assert wrong.warning and "disagree" in wrong.warning and wrong.disagreement > 2.0
    assert alone.warning is None


def test_a_nifti_spacing_far_from_the_spectrum_is_questioned(volume):
    thick = _perturbed_thick(volume, 0, SliceProfile("box", 3.0), 6.0, snr=30)
    choice = choose_slice_profile(thick, (6.0, 1.0, 1.0))
    assert choice.header_source == "spacing"
    if choice.decision == "combined" and choice.disagreement > 2.0:
        assert "--slice-thickness" in choice.warning
    given = choose_slice_profile(thick, (6.0, 1.0, 1.0), header_thickness=3.0,
                                 header_source="--slice-thickness", estimate=choice.estimate)
    # the given thickness is the profile's full width (box) or FWHM (Gaussian): the spectrum of
    # a slice with a gap cannot always tell which (see docs/slice-profile.md)
    assert given.profile.fwhm_mm == pytest.approx(3.0, rel=TOLERANCE), given.reason
    assert "--slice-thickness 3 mm" in given.reason


@pytest.mark.parametrize("axis,thickness,spacing,snr,bias", [
    (0, 2.5, 4.0, 20, 0.1),  # thickness / spacing 0.62: the spectrum is clearly narrower
    (1, 3.0, 5.0, 20, 0.2),  # 0.6: every narrower width fits about as well (flat toward narrow)
])
def test_a_nifti_with_gaps_uses_the_spectrum(volume, axis, thickness, spacing, snr, bias):
    """A NIfTI's spacing bounds the thickness from above: a spectrum confidently narrower than the
    spacing's box is taken as slices with a gap, said in a warning that names --slice-thickness."""
    truth = SliceProfile("box", thickness)
    thick = _perturbed_thick(volume, axis, truth, spacing, snr, bias)
    choice = choose_slice_profile(thick, (spacing, 1.0, 1.0))
    assert choice.decision == "spectrum", choice.reason
    assert choice.sigma_mm == pytest.approx(truth.sigma_mm, rel=TOLERANCE), choice.reason
    assert choice.warning and "--slice-thickness" in choice.warning and "gap" in choice.reason
    # the same spectrum with a DICOM thickness: the header's width, never the gap hypothesis
    dicom = choose_slice_profile(thick, (spacing, 1.0, 1.0), header_thickness=thickness,
                                 estimate=choice.estimate)
    assert dicom.decision in ("combined", "header")
    assert dicom.sigma_mm == pytest.approx(truth.sigma_mm, rel=0.05), dicom.reason


def test_inplane_directions_that_disagree_widen_the_uncertainty(volume):
    thick = _perturbed_thick(volume, 2, SliceProfile("box", 4.0), 4.0, snr=20, bias=0.2)
    choice = choose_slice_profile(thick, (4.0, 1.0, 1.0))
    estimate = choice.estimate
    spread = abs(np.log(estimate.direction_sigmas_mm[0] / estimate.direction_sigmas_mm[1]))
    expected = np.sqrt(estimate.uncertainty ** 2 + spread ** 2 / 2 + 0.2 ** 2)
    assert choice.spectrum_uncertainty == pytest.approx(expected, rel=1e-6)


def test_flat_spectrum_falls_back_to_the_header(volume):
    """White noise has the same spectrum whatever the profile: no minimum to find."""
    noise = np.random.default_rng(5).uniform(2.0, 3.0, (24, 96, 96)).astype(np.float32)
    grid = (np.arange(96) - 47.5) / 45.0
    noise *= (grid[:, None] ** 2 + grid[None, :] ** 2 < 1.0)  # a disc of noise in every slice
    choice = choose_slice_profile(noise, (4.0, 1.0, 1.0), header_thickness=3.5)
    assert choice.decision == "header" and "falling back" in choice.reason, choice.reason
    assert choice.profile == SliceProfile("box", 3.5)
    assert choice.estimate is not None


def test_few_slices_fall_back_to_the_header(volume):
    """13 thick slices: segments of 8 give 3 frequencies in the band, too few to fit a width."""
    thick = _perturbed_thick(volume, 0, SliceProfile("box", 7.0), 7.0, snr=20)
    assert thick.shape[0] == 13
    choice = choose_slice_profile(thick, (7.0, 1.0, 1.0))
    assert choice.estimate.segment_length < 12
    assert choice.decision == "header" and "too few" in choice.reason, choice.reason
    assert choice.profile == SliceProfile("box", 7.0)
    # a NIfTI's spacing is only an upper bound of the thickness: said, naming the flag that fixes it
    assert choice.warning and "--slice-thickness" in choice.warning and "gaps" in choice.warning
    given = choose_slice_profile(thick, (7.0, 1.0, 1.0), header_thickness=7.0, estimate=choice.estimate)
    assert given.decision == "header" and given.warning is None


def test_unmeasurable_volume_falls_back_to_the_header():
    choice = choose_slice_profile(np.ones((3, 16, 16), np.float32), (4.0, 1.0, 1.0))
    assert choice.decision == "header" and choice.profile == SliceProfile("box", 4.0)
    assert "could not be measured" in choice.reason
    assert choice.warning and "--slice-thickness" in choice.warning


def test_the_command_reports_spectrum_header_and_choice(volume, capsys):
    """`--slice-profile auto` hands the acquisition's thickness and its source to the choice, and
    the choice goes to summary.json as JSON."""
    import json

    from srgan_tf.data.acquisition import acquisition_from_volume
    from srgan_tf.io.volume import Volume
    from srgan_tf.self_supervised_run.plan import resolve_profile

    thick = Volume(_perturbed_thick(volume, 0, SliceProfile("box", 3.0), 5.0, snr=20), (5.0, 1.0, 1.0),
                   source_tags={"SliceThickness": "3.0"})
    acquisition = acquisition_from_volume(thick)
    profile, reason, choice = resolve_profile("auto", thick, acquisition, None, "in.nii.gz")
    assert choice.header_source == "SliceThickness" and choice.header_thickness == 3.0
    assert profile == choice.profile and reason == choice.reason
    summary = json.loads(json.dumps(choice.to_dict()))
    assert summary["header"]["thickness_mm"] == 3.0 and summary["decision"] in ("combined", "header")
    assert summary["spectrum"]["sigma_mm"] > 0


def test_a_nifti_box_is_never_wider_than_its_spacing(volume):
    """2-D slices do not overlap: for a NIfTI (the spacing is the only header) a spectrum reading
    wider than the spacing's box does not widen the box beyond the spacing; a given thickness
    (DICOM SliceThickness, --slice-thickness) is combined as measured."""
    thick = _perturbed_thick(volume, 0, SliceProfile("box", 4.6), 4.0, snr=30)
    choice = choose_slice_profile(thick, (4.0, 1.0, 1.0))
    assert choice.estimate.sigma_mm > SliceProfile("box", 4.0).sigma_mm, choice.reason
    assert choice.decision == "combined" and choice.profile.shape == "box", choice.reason
    assert choice.sigma_mm == pytest.approx(SliceProfile("box", 4.0).sigma_mm, rel=1e-9)
    assert "capped" in choice.reason
    given = choose_slice_profile(thick, (4.0, 1.0, 1.0), header_thickness=4.6,
                                 estimate=choice.estimate)
    assert given.sigma_mm > SliceProfile("box", 4.6).sigma_mm * 0.97 and "capped" not in given.reason


def test_the_choice_does_not_depend_on_the_in_plane_axes_order(volume):
    """A NIfTI and a DICOM series of one scan may store the in-plane axes swapped or flipped:
    swapped, the estimate (sampled segments, slabs of rows and of cols) and the choice are the
    same; flipped, the same up to the thick samples' sub-pixel grid (within 2 %)."""
    thick = _perturbed_thick(volume, 1, SliceProfile("box", 4.0), 4.0, snr=20, bias=0.2)
    reference = choose_slice_profile(thick, (4.0, 1.0, 1.0))
    swapped_thick = np.ascontiguousarray(thick.transpose(0, 2, 1))
    # every segment used (this volume has fewer than the default 16000), and a subsample of 500
    for options in ({}, {"max_segments": 500}):
        one = choose_slice_profile(thick, (4.0, 1.0, 1.0), **options)
        swapped = choose_slice_profile(swapped_thick, (4.0, 1.0, 1.0), **options)
        assert swapped.sigma_mm == pytest.approx(one.sigma_mm, rel=1e-9), (swapped.reason, one.reason)
        assert swapped.spectrum_uncertainty == pytest.approx(one.spectrum_uncertainty, rel=1e-9)
        assert sorted(swapped.estimate.direction_sigmas_mm) == pytest.approx(
            sorted(one.estimate.direction_sigmas_mm), rel=1e-9)
    flipped = choose_slice_profile(np.ascontiguousarray(thick[:, ::-1]), (4.0, 1.0, 1.0))
    assert flipped.sigma_mm == pytest.approx(reference.sigma_mm, rel=0.02), (flipped.reason, reference.reason)


def test_a_shape_the_spectrum_hardly_decides_is_said(volume):
    """A box of the thickness and a Gaussian of that FWHM differ by 47 % in standard deviation (about
    1 dB when wrong); a spectrum reading between them is warned about, naming --slice-profile. A
    clear reading (the box of the spacing) is not."""
    between = _perturbed_thick(volume, 2, SliceProfile("box", 4.4), 4.0, snr=30)
    choice = choose_slice_profile(between, (4.0, 1.0, 1.0))
    assert choice.decision == "combined", choice.reason
    assert 0.5 <= choice.shape_probability < SHAPE_ODDS / (1.0 + SHAPE_ODDS), choice.reason
    assert choice.warning and "--slice-profile" in choice.warning and "hardly" in choice.warning
    assert choice.to_dict()["shape_probability"] == choice.shape_probability
    clear = choose_slice_profile(_perturbed_thick(volume, 1, SliceProfile("box", 4.0), 4.0, snr=30),
                                 (4.0, 1.0, 1.0))
    assert clear.decision == "combined" and clear.shape_probability > 0.75, clear.reason
    assert not clear.warning or "hardly" not in clear.warning


def test_a_box_and_a_gaussian_of_the_thickness_are_read_alike(volume):
    """The box of the thickness and the Gaussian of that FWHM have equal priors: a spectrum reading
    13 % narrower than the Gaussian, or 13 % wider than the box, keeps its shape (the Gaussian
    was read as a box before, 32 % too narrow), for a NIfTI and with a SliceThickness."""
    from dataclasses import replace

    thick = _perturbed_thick(volume, 2, SliceProfile("gaussian", 4.0), 4.0, snr=30)
    measured = choose_slice_profile(thick, (4.0, 1.0, 1.0)).estimate
    for truth, ratio in ((SliceProfile("gaussian", 4.0), 0.87), (SliceProfile("box", 4.0), 1.13)):
        sigma = truth.sigma_mm * ratio
        reading = replace(measured, profile=SliceProfile("box", 4.0).with_sigma(sigma),
                          direction_sigmas_mm=np.array([sigma, sigma]))
        for header in (None, 4.0):
            choice = choose_slice_profile(thick, (4.0, 1.0, 1.0), header_thickness=header, estimate=reading)
            assert choice.decision == "combined" and choice.profile.shape == truth.shape, choice.reason
