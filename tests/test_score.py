"""`srgan-tf score`: metrics, truth-grid checks, the cubic baseline and the command end to end."""
import json
import math

import numpy as np
import pytest
from scipy import ndimage

from srgan_tf.cli import main
from srgan_tf.evaluation.volume_score import cubic_baseline, score_files, score_volumes
from srgan_tf.io.dicom_write import write_dicom_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.volume import Volume

FACTOR = 4
# An oblique grid, so the baseline has to go through the affines rather than assume axial.
OBLIQUE, _ = np.linalg.qr(np.array([[1.0, 0.2, 0.1], [-0.1, 1.0, 0.3], [0.2, -0.3, 1.0]]))


def _smooth_head(shape=(32, 20, 24), seed=0):
    """A blurred ellipsoid with some texture: smooth along every axis, background 0."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = ((grid / np.array([0.85, 0.8, 0.8])[:, None, None, None]) ** 2).sum(0) < 1
    texture = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 3.0)
    head = inside * (600.0 + 2000.0 * texture)
    return np.clip(ndimage.gaussian_filter(head, 2.0), 0, None).astype(np.float32)


def _truth(array=None):
    array = _smooth_head() if array is None else array
    return Volume(array, spacing=(1.0, 0.9, 0.9), origin=(5.0, -12.0, 30.0), direction=OBLIQUE,
                  source_paths=["truth.nii.gz"])


def _thicken(truth: Volume, axis: int, point_samples: bool = False) -> Volume:
    """Thick slices along `axis`: box means of FACTOR slices (or slice 4k+1 alone), centred as
    make_input.py centres them, with the geometry that says so."""
    moved = np.moveaxis(truth.array, axis, 0)
    count = moved.shape[0] // FACTOR
    if point_samples:
        thick, centre = moved[1:FACTOR * count:FACTOR], 1.0
    else:
        thick = moved[:FACTOR * count].reshape((count, FACTOR) + moved.shape[1:]).mean(axis=1)
        centre = (FACTOR - 1) / 2
    spacing = list(truth.spacing)
    origin = np.asarray(truth.origin) + centre * spacing[axis] * truth.direction[axis]
    spacing[axis] *= FACTOR
    return Volume(np.moveaxis(thick, 0, axis), spacing=spacing, origin=origin,
                  direction=truth.direction, source_paths=["thick.nii.gz"])


def test_identical_volumes_score_perfectly():
    truth = _truth()
    scores = score_volumes(truth, {"same": truth})["methods"]["same"]
    assert scores["psnr"] == math.inf and scores["psnr_mask"] == math.inf
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert scores["ssim_mask"] == pytest.approx(1.0, abs=1e-12)
    assert scores["hfen"] == 0.0 and scores["hfen_mask"] == 0.0


@pytest.mark.parametrize("axis", [0, 2])
def test_cubic_baseline_follows_the_affines(axis):
    truth = _truth()
    baseline = cubic_baseline(_thicken(truth, axis, point_samples=True), truth)
    count = truth.shape[axis] // FACTOR
    assert baseline.axis == axis and baseline.slab == (1, FACTOR * (count - 1) + 1)
    # Thick slice k sits exactly on truth slice 4k + 1: the spline passes through it there.
    knots = np.take(truth.array, range(1, FACTOR * count, FACTOR), axis=axis)
    np.testing.assert_allclose(np.take(baseline.array, range(1, FACTOR * count, FACTOR), axis=axis),
                               knots, atol=1e-3)


def test_cubic_baseline_of_a_box_thickened_smooth_truth_is_close_to_it():
    truth = _truth()
    scores = score_volumes(truth, {}, _thicken(truth, 0))
    assert scores["baseline"] == {"axis": 0, "slab": [2, 29]}
    assert scores["region"]["first"] == [2, 0, 0] and scores["region"]["last"] == [29, 19, 23]
    assert scores["methods"]["cubic"]["psnr"] > 35.0
    assert scores["methods"]["cubic"]["ssim"] > 0.98


def test_thick_volume_with_another_in_plane_grid_is_refused():
    truth = _truth()
    thick = _thicken(truth, 0)
    thick.spacing = (thick.spacing[0], 0.8, thick.spacing[2])
    with pytest.raises(InputError, match="thick.nii.gz: its in-plane grid differs"):
        cubic_baseline(thick, truth)


def test_input_shifted_by_whole_slices_is_scored_where_it_overlaps():
    truth = _truth()
    origin = np.asarray(truth.origin) + 3 * truth.spacing[0] * truth.direction[0]
    part = truth.with_array(truth.array[3:], origin=tuple(origin))
    scores = score_volumes(truth, {"part": part})
    assert scores["region"]["first"] == [3, 0, 0]
    assert scores["methods"]["part"]["psnr"] == math.inf


def test_same_grid_in_another_axis_order_is_reordered_onto_the_truth():
    truth = _truth()
    corner = truth.affine_lps() @ np.array([truth.shape[0] - 1, truth.shape[1] - 1, 0, 1.0])
    reversed_ = truth.with_array(truth.array[::-1, ::-1], origin=tuple(corner[:3]),
                                 direction=truth.direction * np.array([[-1.0], [-1.0], [1.0]]))
    swapped = truth.with_array(truth.array.transpose(0, 2, 1), direction=truth.direction[[0, 2, 1]],
                               spacing=tuple(np.asarray(truth.spacing)[[0, 2, 1]]))
    scores = score_volumes(truth, {"reversed": reversed_, "swapped": swapped})
    assert scores["methods"]["reversed"]["psnr"] == math.inf
    assert scores["methods"]["swapped"]["psnr"] == math.inf


def test_dicom_truth_scores_a_nifti_input(tmp_path):
    truth = _truth()
    write_dicom_series(truth, tmp_path / "truth_dicom", series_description="t1 truth")
    nifti = _write(truth, tmp_path / "sr.nii.gz")
    scores = score_files(tmp_path / "truth_dicom", nifti)
    assert scores["methods"]["input"]["psnr"] > 60  # DICOM stores integers: rounding only


def _write(volume, path):
    write_nifti(volume, path)
    return str(path)


def test_score_command_end_to_end(tmp_path, capsys):
    truth = _truth()
    thick = _thicken(truth, 0)
    noisy = truth.array + np.random.default_rng(2).normal(0, 20, truth.shape).astype(np.float32)
    paths = [_write(truth, tmp_path / "hr.nii.gz"), _write(truth.with_array(noisy), tmp_path / "sr.nii.gz"),
             _write(thick, tmp_path / "thick.nii.gz")]
    report = tmp_path / "out" / "scores.json"
    code = main(["score", "--truth", paths[0], "--input", paths[1], "--thick", paths[2],
                 "--json", str(report)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["method", "PSNR", "dB", "SSIM", "HFEN", "PSNR",
                                               "mask", "SSIM", "mask", "HFEN", "mask"]
    assert printed.splitlines()[1].startswith("input") and printed.splitlines()[2].startswith("cubic")
    assert "Protocol" in printed
    scores = json.loads(report.read_text())
    assert set(scores["methods"]) == {"input", "cubic"}
    assert set(scores["methods"]["input"]) == {"psnr", "ssim", "hfen", "psnr_mask", "ssim_mask",
                                               "hfen_mask"}
    assert scores["files"]["thick"] == paths[2]
    assert 20 < scores["methods"]["input"]["psnr"] < 60


def test_score_command_writes_null_for_an_exact_copy(tmp_path):
    path = _write(_truth(), tmp_path / "hr.nii.gz")
    report = tmp_path / "scores.json"
    assert main(["score", "--truth", path, "--input", path, "--json", str(report)]) == 0
    assert json.loads(report.read_text())["methods"]["input"]["psnr"] is None


def test_score_command_refuses_an_input_off_the_truth_grid(tmp_path, capsys):
    truth = _truth()
    other = truth.with_array(truth.array, spacing=(1.0, 1.0, 0.9))
    truth_path = _write(truth, tmp_path / "hr.nii.gz")
    input_path = _write(other, tmp_path / "sr.nii.gz")
    assert main(["score", "--truth", truth_path, "--input", input_path]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith(f"srgan-tf score: error: {input_path}: is not on the truth's grid")


def test_thick_volume_on_the_truth_grid_is_refused():
    truth = _truth()
    with pytest.raises(InputError, match="is on the truth's grid .* already"):
        cubic_baseline(truth, truth)
