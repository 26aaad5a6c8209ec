"""Image quality metrics of an estimate against its truth: 2-D slices and 3-D volumes (numpy,
scipy, OpenCV; no TensorFlow). The one home of PSNR, SSIM, HFEN and the masks they are scored in.

Slices (`evaluate`, Exp. 3 planes; see `srgan_tf.evaluation.report.protocol_text`):
- inputs are 2-D float arrays in [-1, 1], so the data range is 2.0;
- `border` pixels are cropped from every side of both images before anything is computed
  (evaluation uses border = max(scale_h, scale_w), like BasicSR's crop_border = scale);
- `mask` (optional boolean array of the uncropped shape) restricts the average to its pixels;
  the default protocol uses no mask (background air is scored like tissue, as in the paper);
- identical images give psnr = inf, ssim = 1, hfen = 0, gmsd = 0, edge_f1 = 1.

Volumes (`srgan-tf score`, `experiments/generalise_real.py`; the real-MR kit's protocol):
- `psnr` and `ssim` take 3-D arrays too (same window, one more axis); `ssim_map` with
  `inner_voxels` averages one map over several regions;
- HFEN uses scipy's 3-D Laplacian of Gaussian (`laplacian_of_gaussian`, sigma 1.5, truncated
  at 4 sigma) instead of the 15x15 slice kernel: `hfen_volume`;
- `head_mask`: the object in a volume in scanner units (the kit's head mask);
  `foreground_mask`: tissue in normalised [-1, 1] images.
"""
from typing import NamedTuple, Tuple

import cv2
import numpy as np
from scipy import ndimage

from srgan_tf.data.intensity import FOREGROUND_LEVEL

DATA_RANGE = 2.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # skimage's truncate, in sigmas
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5: an 11-tap window (Wang et al. 2004)
SSIM_K1, SSIM_K2 = 0.01, 0.03
HFEN_SIGMA = 1.5
HFEN_KERNEL_SIZE = 15  # Ravishankar & Bresler 2011: 15x15 LoG, sigma 1.5
GMSD_C = 170.0 / 255.0**2  # Xue et al.'s c = 170 on [0, 255] images, rescaled to [0, 1]
EDGE_SMOOTH_SIGMA = 1.0  # Gaussian pre-smoothing so Canny does not fire on speckle noise
CANNY_LOW, CANNY_HIGH = 50, 100  # hysteresis thresholds on the 3x3 Sobel L2 gradient, uint8
HEAD_MASK_FRACTION = 0.1  # of the range from the minimum to the 99.5th percentile
HEAD_MASK_PERCENTILE = 99.5


class MetricSpec(NamedTuple):
    """A metric's key in result dicts, its table label and whether higher is better."""

    name: str
    label: str
    higher_is_better: bool


METRICS = [
    MetricSpec("psnr", "PSNR [dB]", True),
    MetricSpec("ssim", "SSIM", True),
    MetricSpec("hfen", "HFEN", False),
    MetricSpec("gmsd", "GMSD", False),
    MetricSpec("edge_f1", "Edge F1", True),
]


def _prepare(hr, sr, border=0, mask=None):
    """Validate, crop `border` from every side and return float64 (hr, sr, mask|None)."""
    hr = np.asarray(hr, dtype=np.float64)
    sr = np.asarray(sr, dtype=np.float64)
    if hr.ndim not in (2, 3) or hr.shape != sr.shape:
        raise ValueError(f"Expected two 2-D or 3-D arrays of the same shape. "
                         f"Received: hr.shape={hr.shape}, sr.shape={sr.shape}")
    border = int(border or 0)
    if border < 0 or 2 * border >= min(hr.shape):
        raise ValueError(f"border must leave pixels to score. "
                         f"Received: border={border}, shape={hr.shape}")
    window = tuple(slice(border, size - border) for size in hr.shape)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != hr.shape:
            raise ValueError(f"mask must have the image shape {hr.shape}. Received: {mask.shape}")
        mask = mask[window]
        if not mask.any():
            raise ValueError("mask selects no pixel inside the border crop. Received: empty mask")
    return hr[window], sr[window], mask


def _masked_mean(values, mask):
    return float(values.mean() if mask is None else values[mask].mean())


def foreground_mask(hr, threshold=FOREGROUND_LEVEL, dilation=3):
    """Pixels (or voxels) that are not background air in a normalised [-1, 1] image: HR above
    `threshold` (the tissue level of slice selection), dilated by `dilation` px.

    Not used by the default protocol; offered for masked evaluations.
    """
    mask = np.asarray(hr) > threshold
    if dilation:
        mask = ndimage.binary_dilation(mask, iterations=int(dilation))
    return mask


def head_mask(truth: np.ndarray) -> Tuple[np.ndarray, float]:
    """(mask, threshold): the object in a volume in scanner units (slices along axis 0).

    truth > min + 10 % of (99.5th percentile - min), holes filled in every slice and then in
    3-D, largest connected component (the real-MR kit's head mask).
    """
    low = float(truth.min())
    threshold = low + HEAD_MASK_FRACTION * (float(np.percentile(truth, HEAD_MASK_PERCENTILE)) - low)
    mask = truth > threshold
    for index in range(mask.shape[0]):  # closes cavities open in 3-D but closed in a slice
        mask[index] = ndimage.binary_fill_holes(mask[index])
    mask = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    return mask, threshold


def psnr(hr, sr, data_range=DATA_RANGE, border=0, mask=None):
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE); inf for identical images.
    2-D slices or 3-D volumes.

    Example:
        >>> psnr(np.zeros((8, 8)), np.full((8, 8), 0.2))  # 10 log10(4 / 0.04)
        20.0
    """
    hr, sr, mask = _prepare(hr, sr, border, mask)
    return psnr_from_mse(_masked_mean((hr - sr) ** 2, mask), data_range)


def psnr_from_mse(mse, data_range=DATA_RANGE):
    """10 log10(data_range^2 / mse) in dB: inf for mse 0, nan for a nan mse (nothing scored)."""
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(data_range**2 / np.float64(mse)))


def _gaussian_window(values):
    """SSIM's window: Gaussian sigma 1.5, 11 taps per axis, reflected (abc|cba) at the edges."""
    if values.ndim == 2:  # OpenCV's BORDER_REFLECT is scipy's "reflect"; twice as fast on slices
        size = 2 * SSIM_RADIUS + 1
        return cv2.GaussianBlur(values, (size, size), SSIM_SIGMA, sigmaY=SSIM_SIGMA,
                                borderType=cv2.BORDER_REFLECT)
    return ndimage.gaussian_filter(values, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")


def ssim_map(hr, sr, data_range=DATA_RANGE):
    """Per-pixel (or per-voxel) SSIM of two 2-D or 3-D arrays (Gaussian window, population
    covariance)."""
    hr, sr = np.asarray(hr, np.float64), np.asarray(sr, np.float64)
    mu_x, mu_y = _gaussian_window(hr), _gaussian_window(sr)
    var_x = _gaussian_window(hr * hr) - mu_x * mu_x
    var_y = _gaussian_window(sr * sr) - mu_y * mu_y
    cov_xy = _gaussian_window(hr * sr) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    return numerator / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def inner_voxels(shape) -> np.ndarray:
    """True away from the faces, where the SSIM window lies wholly inside the array."""
    inner = np.zeros(shape, bool)
    inner[(slice(SSIM_RADIUS, -SSIM_RADIUS),) * len(shape)] = True
    return inner


def ssim(hr, sr, data_range=DATA_RANGE, border=0, mask=None):
    """Mean structural similarity (Wang et al. 2004) as scikit-image computes it, 2-D or 3-D.

    Equals `skimage.metrics.structural_similarity(hr, sr, data_range=data_range,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`: the map is averaged
    without its 5-px filter-radius strip (after the `border` crop).
    """
    hr, sr, mask = _prepare(hr, sr, border, mask)
    if min(hr.shape) <= 2 * SSIM_RADIUS:
        raise ValueError(f"SSIM needs images larger than its 11-pixel window after the border "
                         f"crop. Received: shape={hr.shape}")
    inner = (slice(SSIM_RADIUS, -SSIM_RADIUS),) * hr.ndim
    values = ssim_map(hr, sr, data_range)[inner]
    return _masked_mean(values, None if mask is None else mask[inner])


def log_kernel(size=HFEN_KERNEL_SIZE, sigma=HFEN_SIGMA):
    """Zero-sum Laplacian-of-Gaussian kernel (the form of MATLAB's fspecial('log'))."""
    radius = (size - 1) / 2.0
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    squared = x**2 + y**2
    gaussian = np.exp(-squared / (2 * sigma**2))
    gaussian /= gaussian.sum()
    kernel = gaussian * (squared - 2 * sigma**2) / sigma**4
    return kernel - kernel.mean()  # zero response on flat regions


def hfen(hr, sr, sigma=HFEN_SIGMA, border=0, mask=None):
    """High-frequency error norm ||LoG(sr) - LoG(hr)||_2 / ||LoG(hr)||_2 of 2-D slices (lower is
    better).

    Ravishankar & Bresler 2011: 15x15 Laplacian-of-Gaussian, sigma 1.5. A flat HR gives 0 when
    SR is flat too and inf otherwise.
    """
    hr, sr, mask = _prepare(hr, sr, border, mask)
    kernel = log_kernel(HFEN_KERNEL_SIZE, sigma)
    log_hr = cv2.filter2D(hr, cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT)
    log_sr = cv2.filter2D(sr, cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT)
    if mask is not None:
        log_hr, log_sr = log_hr[mask], log_sr[mask]
    return _error_ratio(log_hr, log_sr)


def laplacian_of_gaussian(volume, sigma=HFEN_SIGMA) -> np.ndarray:
    """HFEN's filter on volumes: scipy's Laplacian of Gaussian (truncated at 4 sigma, reflected
    at the faces), float64. Filter the truth once and pass it to `hfen_volume` for every estimate."""
    return ndimage.gaussian_laplace(np.asarray(volume, np.float64), sigma)


def hfen_volume(truth_laplacian, estimate_laplacian, mask=None) -> float:
    """3-D HFEN ||LoG(estimate) - LoG(truth)||_2 / ||LoG(truth)||_2 from `laplacian_of_gaussian`
    outputs, over the voxels of `mask` (default all); nan when the mask selects nothing.

    Example:
        >>> hfen_volume(laplacian_of_gaussian(truth), laplacian_of_gaussian(estimate))
    """
    if mask is not None:
        if not mask.any():
            return float("nan")
        truth_laplacian, estimate_laplacian = truth_laplacian[mask], estimate_laplacian[mask]
    return _error_ratio(truth_laplacian, estimate_laplacian)


def _error_ratio(reference, estimate) -> float:
    """||estimate - reference|| / ||reference||: 0 when both are zero, inf when only `reference` is."""
    error, norm = np.linalg.norm(estimate - reference), np.linalg.norm(reference)
    if norm == 0:
        return 0.0 if error == 0 else float("inf")
    return float(error / norm)


def _gradient_magnitude(image):
    prewitt = np.array([[1, 0, -1]] * 3, dtype=np.float64) / 3.0
    dx = cv2.filter2D(image, cv2.CV_64F, prewitt, borderType=cv2.BORDER_REFLECT)
    dy = cv2.filter2D(image, cv2.CV_64F, prewitt.T, borderType=cv2.BORDER_REFLECT)
    return np.sqrt(dx**2 + dy**2)


def gmsd(hr, sr, data_range=DATA_RANGE, border=0, mask=None):
    """Gradient magnitude similarity deviation (Xue et al. 2014), lower is better.

    Prewitt gradients of images rescaled to [0, 1] (divided by `data_range`), c = 170 / 255^2
    (the paper's c = 170 on [0, 255]); no 2x downsampling (MR slices are already small);
    the population standard deviation of the similarity map.
    """
    hr, sr, mask = _prepare(hr, sr, border, mask)
    g_hr = _gradient_magnitude(hr / data_range)
    g_sr = _gradient_magnitude(sr / data_range)
    similarity = (2 * g_hr * g_sr + GMSD_C) / (g_hr**2 + g_sr**2 + GMSD_C)
    return float(similarity.std() if mask is None else similarity[mask].std())


def canny_edges(image, data_range=DATA_RANGE):
    """Boolean Canny edge map of a [-1, 1] image (uint8 scaling, fixed thresholds 50/100)."""
    low = -data_range / 2.0
    scaled = np.clip((np.asarray(image, np.float64) - low) / data_range * 255.0, 0, 255)
    smooth = cv2.GaussianBlur(np.round(scaled).astype(np.uint8), (0, 0), EDGE_SMOOTH_SIGMA,
                              borderType=cv2.BORDER_REFLECT)
    return cv2.Canny(smooth, CANNY_LOW, CANNY_HIGH, apertureSize=3, L2gradient=True) > 0


def edge_f1(hr, sr, tolerance=1, data_range=DATA_RANGE, border=0, mask=None):
    """F1 of SR Canny edges against HR Canny edges, matched within `tolerance` px (Euclidean).

    precision: fraction of SR edge pixels within `tolerance` of an HR edge; recall: fraction
    of HR edge pixels within `tolerance` of an SR edge. No edges in either image gives 1.0;
    edges in only one of them give 0.0.
    """
    hr, sr, mask = _prepare(hr, sr, border, mask)
    edges_hr, edges_sr = canny_edges(hr, data_range), canny_edges(sr, data_range)
    if mask is not None:
        edges_hr, edges_sr = edges_hr & mask, edges_sr & mask
    if not edges_hr.any() and not edges_sr.any():
        return 1.0
    if not edges_hr.any() or not edges_sr.any():
        return 0.0
    distance_to_hr = ndimage.distance_transform_edt(~edges_hr)
    distance_to_sr = ndimage.distance_transform_edt(~edges_sr)
    precision = float(np.mean(distance_to_hr[edges_sr] <= tolerance))
    recall = float(np.mean(distance_to_sr[edges_hr] <= tolerance))
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def all_metrics(hr, sr, border=0, mask=None, data_range=DATA_RANGE, edge_tolerance=1) -> dict:
    """Every metric of `METRICS` for one slice pair, as {name: float}.

    Example:
        >>> scores = all_metrics(hr, sr, border=4)
        >>> sorted(scores)
        ['edge_f1', 'gmsd', 'hfen', 'psnr', 'ssim']
    """
    common = dict(border=border, mask=mask)
    return {
        "psnr": psnr(hr, sr, data_range=data_range, **common),
        "ssim": ssim(hr, sr, data_range=data_range, **common),
        "hfen": hfen(hr, sr, **common),
        "gmsd": gmsd(hr, sr, data_range=data_range, **common),
        "edge_f1": edge_f1(hr, sr, tolerance=edge_tolerance, data_range=data_range, **common),
    }


def metric_protocol(edge_tolerance=1, data_range=DATA_RANGE) -> dict:
    """The metric settings above as a JSON-ready dict (stored in metrics.json)."""
    return {
        "data_range": data_range,
        "psnr": "10 log10(data_range^2 / MSE); identical images give inf",
        "ssim": {"window": "gaussian", "size": 2 * SSIM_RADIUS + 1, "sigma": SSIM_SIGMA,
                 "k1": SSIM_K1, "k2": SSIM_K2, "covariance": "population",
                 "filter_radius_excluded": SSIM_RADIUS, "reference": "skimage"},
        "hfen": {"kernel": "laplacian_of_gaussian", "size": HFEN_KERNEL_SIZE, "sigma": HFEN_SIGMA},
        "gmsd": {"filter": "prewitt", "scaling": "[0, 1]", "c": GMSD_C, "downsampling": None},
        "edge_f1": {"detector": "canny", "uint8_scaling": "[-1, 1] -> [0, 255]",
                    "smoothing_sigma": EDGE_SMOOTH_SIGMA,
                    "thresholds": [CANNY_LOW, CANNY_HIGH], "tolerance_px": edge_tolerance},
    }


def patient_mean(scores) -> dict:
    """Mean of each metric over one patient's per-image score dicts (`all_metrics` outputs)."""
    return {spec.name: float(np.mean([s[spec.name] for s in scores])) for spec in METRICS}


def summarize_patients(per_patient) -> dict:
    """Mean over patients of per-patient means, the std over patients (finite values) and
    counts. Patients without scored images are left out.

    Args:
        per_patient: {patient: [per-image score dicts]}.
    """
    means = [patient_mean(scores) for scores in per_patient.values() if scores]
    summary = {}
    for spec in METRICS:
        values = np.array([m[spec.name] for m in means])
        finite = values[np.isfinite(values)]
        summary[spec.name] = float(values.mean()) if values.size else float("nan")
        summary[f"{spec.name}_std"] = float(finite.std()) if finite.size else 0.0
    summary["patients"] = len(means)
    summary["slices"] = int(sum(len(s) for s in per_patient.values()))
    return summary
