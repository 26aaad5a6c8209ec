"""Metrics against scikit-image references and on known arrays; figures and report tables."""
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srgan_tf.evaluation import figures, metrics, report


def reference_ssim(hr, sr):
    return structural_similarity(hr, sr, data_range=2.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)


@pytest.fixture
def smooth_pair():
    rows, cols = np.mgrid[0:48, 0:40]
    hr = 0.8 * np.sin(cols / 6.0) * np.cos(rows / 8.0)
    sr = 0.9 * hr + 0.05 * np.sin(cols / 2.5)
    return hr, sr


@pytest.fixture
def noisy_pair():
    rng = np.random.default_rng(0)
    hr = rng.uniform(-1, 1, (48, 40))
    return hr, np.clip(hr + rng.normal(0, 0.1, hr.shape), -1, 1)


def vertical_edge(shift=0, size=40):
    image = np.full((size, size), -0.8)
    image[:, size // 2 + shift:] = 0.8
    return image


def test_identical_images_are_perfect(smooth_pair):
    hr, _ = smooth_pair
    scores = metrics.all_metrics(hr, hr.copy(), border=4)
    assert scores == {"psnr": math.inf, "ssim": 1.0, "hfen": 0.0, "gmsd": 0.0, "edge_f1": 1.0}


@pytest.mark.parametrize("pair", ["smooth_pair", "noisy_pair"])
def test_psnr_and_ssim_match_skimage(pair, request):
    hr, sr = request.getfixturevalue(pair)
    assert metrics.psnr(hr, sr) == pytest.approx(peak_signal_noise_ratio(hr, sr, data_range=2.0), abs=1e-9)
    assert metrics.ssim(hr, sr) == pytest.approx(reference_ssim(hr, sr), abs=1e-6)


def test_border_crop_equals_scoring_the_cropped_arrays(noisy_pair):
    hr, sr = noisy_pair
    inner = (slice(4, -4), slice(4, -4))
    assert metrics.psnr(hr, sr, border=4) == pytest.approx(
        peak_signal_noise_ratio(hr[inner], sr[inner], data_range=2.0))
    assert metrics.ssim(hr, sr, border=4) == pytest.approx(reference_ssim(hr[inner], sr[inner]), abs=1e-6)


def test_psnr_known_value_and_mask():
    hr = np.zeros((16, 16))
    sr = np.full((16, 16), 0.2)
    assert metrics.psnr(hr, sr) == pytest.approx(20.0)
    sr[:8] = 0.0  # the masked-out half is perfect: masking keeps only the erroneous half
    mask = np.zeros((16, 16), bool)
    mask[8:] = True
    assert metrics.psnr(hr, sr, mask=mask) == pytest.approx(20.0)


def test_degradations_score_worse_than_the_original(smooth_pair):
    hr, sr = smooth_pair
    blurred = 0.5 * (np.roll(hr, 1, 1) + np.roll(hr, -1, 1))
    assert metrics.hfen(hr, blurred) > 0
    assert metrics.gmsd(hr, sr) > 0
    assert metrics.hfen(hr, hr + 0.3) == pytest.approx(0.0, abs=1e-12)  # LoG ignores offsets
    assert metrics.log_kernel().shape == (15, 15)
    assert metrics.log_kernel().sum() == pytest.approx(0.0, abs=1e-12)


def test_edge_f1_tolerates_one_pixel_shift_not_four():
    hr = vertical_edge()
    assert metrics.edge_f1(hr, vertical_edge(shift=1), tolerance=1) == pytest.approx(1.0)
    assert metrics.edge_f1(hr, vertical_edge(shift=4), tolerance=1) == pytest.approx(0.0)
    assert metrics.edge_f1(hr, np.zeros_like(hr)) == 0.0  # edges lost entirely
    flat = np.zeros((20, 20))
    assert metrics.edge_f1(flat, flat) == 1.0


def test_bad_shapes_and_borders_are_rejected():
    with pytest.raises(ValueError, match="Received"):
        metrics.psnr(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="border"):
        metrics.psnr(np.zeros((8, 8)), np.zeros((8, 8)), border=4)


@pytest.fixture
def volume_pair():
    rng = np.random.default_rng(1)
    truth = ndimage.gaussian_filter(rng.uniform(0, 100, size=(14, 16, 18)), 1.0)
    return truth, truth + rng.normal(0, 5, size=truth.shape)


def test_ssim_and_psnr_match_skimage_in_3d(volume_pair):
    truth, estimate = volume_pair
    data_range = float(truth.max() - truth.min())
    expected, expected_map = structural_similarity(
        truth, estimate, data_range=data_range, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, full=True)
    np.testing.assert_allclose(metrics.ssim_map(truth, estimate, data_range), expected_map, atol=1e-12)
    assert metrics.ssim(truth, estimate, data_range) == pytest.approx(expected, abs=1e-12)
    inner = metrics.inner_voxels(truth.shape)
    assert metrics.ssim_map(truth, estimate, data_range)[inner].mean() == pytest.approx(expected, abs=1e-12)
    assert 0.2 < expected < 0.99  # a pair that is neither identical nor unrelated
    assert metrics.psnr(truth, estimate, data_range) == pytest.approx(
        peak_signal_noise_ratio(truth, estimate, data_range=data_range), abs=1e-9)


def test_volume_hfen_is_the_3d_laplacian_of_gaussian_error_ratio(volume_pair):
    truth, estimate = volume_pair
    truth_laplacian = metrics.laplacian_of_gaussian(truth)
    estimate_laplacian = metrics.laplacian_of_gaussian(estimate)
    expected = (np.linalg.norm(ndimage.gaussian_laplace(estimate, 1.5) - ndimage.gaussian_laplace(truth, 1.5))
                / np.linalg.norm(ndimage.gaussian_laplace(truth, 1.5)))
    assert metrics.hfen_volume(truth_laplacian, estimate_laplacian) == pytest.approx(expected, rel=1e-12)
    assert metrics.hfen_volume(truth_laplacian, truth_laplacian.copy()) == 0.0
    mask = np.zeros(truth.shape, bool)
    mask[4:10, 4:10, 4:10] = True
    expected_mask = (np.linalg.norm((estimate_laplacian - truth_laplacian)[mask])
                     / np.linalg.norm(truth_laplacian[mask]))
    assert metrics.hfen_volume(truth_laplacian, estimate_laplacian, mask) == pytest.approx(expected_mask)
    assert math.isnan(metrics.hfen_volume(truth_laplacian, estimate_laplacian, np.zeros_like(mask)))


def test_head_mask_fills_holes_and_keeps_the_largest_component():
    truth = np.zeros((16, 16, 16))
    truth[2:14, 2:14, 2:12] = 100.0
    truth[5:10, 5:10, 5:9] = 0.0  # a cavity inside the object
    truth[0, 15, 15] = 100.0  # a speck apart from it
    mask, threshold = metrics.head_mask(truth)
    assert threshold == pytest.approx(10.0)
    assert mask[7, 7, 7] and not mask[0, 15, 15]
    assert mask.sum() == 12 * 12 * 10


def test_foreground_mask_is_tissue_above_the_slice_selection_level_dilated():
    from srgan_tf.data.intensity import FOREGROUND_LEVEL

    image = np.full((9, 9, 9), -1.0)
    image[4, 4, 4] = FOREGROUND_LEVEL + 0.01
    assert metrics.foreground_mask(image, dilation=0).sum() == 1
    assert metrics.foreground_mask(image, dilation=1).sum() == 7  # 3-D: the six face neighbours
    image[4, 4, 4] = FOREGROUND_LEVEL
    assert not metrics.foreground_mask(image).any()


def test_metric_specs_cover_all_metrics(smooth_pair):
    names = [spec.name for spec in metrics.METRICS]
    assert sorted(names) == sorted(metrics.all_metrics(*smooth_pair))
    assert {spec.name: spec.higher_is_better for spec in metrics.METRICS}["hfen"] is False


def test_metrics_table_has_paper_columns_and_numbers():
    bicubic = {"psnr": 28.1234, "psnr_std": 1.5, "ssim": 0.8, "hfen": 0.4, "gmsd": 0.1,
               "edge_f1": 0.5, "patients": 2, "slices": 10}
    sr = dict(bicubic, psnr=30.5, ssim=0.85)
    table = report.metrics_table([("Bicubic aniso x4", bicubic), ("SRGAN aniso ×4", sr)],
                                 paper=report.PAPER_TABLE1, highlight_best=True)
    header = table.splitlines()[0]
    assert "Bicubic aniso x4" in header and "SRGAN aniso ×4 (paper)" in header
    assert "Bicubic aniso x4 (paper)" not in header  # the paper has no aniso x4 bicubic
    assert "PSNR [dB]" in table and "Edge F1" in table and "HFEN" in table
    assert "28.12 ± 1.50" in table and "**30.50 ± 1.50**" in table and "**0.100**" not in table
    assert "29.51" in table and "0.82" in table  # paper's aniso x4
    assert "2 / 10" in table


def test_write_report(tmp_path):
    scores = {"psnr": 30.0, "ssim": 0.9, "hfen": 0.3, "gmsd": 0.05, "edge_f1": 0.7,
              "patients": 1, "slices": 3}
    metrics_json = {"sr": scores, "bicubic": dict(scores, psnr=29.0),
                    "protocol": {"scale_hw": [4, 1], "border": 4, "split": "test"}}
    config = {"data": {"mode": "aniso", "scale": 4}, "loss": {"content_loss_note": "fell back"}}
    figure = tmp_path / "figures" / "slice.png"
    path = report.write_report(tmp_path, "Exp. 2", metrics_json, config, figures=[figure],
                               notes="tiny run")
    text = path.read_text()
    assert "SRGAN aniso x4 (paper)" in text and "4 pixels" in text
    assert "](figures/slice.png)" in text and "fell back" in text and "tiny run" in text
    assert "Gaussian window 11×11" in report.protocol_text()


def test_comparison_figure_png_and_array(tmp_path):
    hr = vertical_edge(size=32)
    lr = hr[::4]
    rgb = figures.save_comparison_figure(tmp_path / "f.png",
                                         [("HR", hr), ("LR", lr), ("Bicubic", hr * 0.9), ("SR", hr)])
    assert (tmp_path / "f.png").stat().st_size > 0
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert figures.nearest_upsample(lr, hr.shape).shape == hr.shape
    row, col, height, width = figures.edge_rich_box(hr, size=8)
    assert col <= 16 < col + width  # the box holds the edge
