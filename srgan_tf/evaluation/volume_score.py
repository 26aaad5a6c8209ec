"""`srgan-tf score`: a super-resolved volume scored against an isotropic truth on the truth's grid.

Protocol (that of the independent real-MR kit, shared/realmr/score.py, so numbers compare):
- grid: a scored volume must lie on the truth's voxel grid: inv(truth affine) @ its affine is a
  signed axis permutation and a whole-voxel shift (tolerance 1e-4 on the axes, 1e-3 voxel on the
  shift). It is reordered to the truth's axes (the kit accepts the identity only) and, if shifted,
  scored on the truth voxels it covers; anything else is refused.
- region: the truth voxels every scored volume covers; with a thick volume, only the truth slices
  between its first and last slice centres, where no method extrapolates (the kit's
  "interpolable" slab; all_slices=True scores every truth slice).
- intensities: float64; data range = truth max - min over the whole truth; every scored volume,
  the cubic baseline included, is clipped to the truth's [min, max] first (the kit's choice).
- PSNR: 10 log10(range^2 / MSE); inf when the input equals the truth.
- SSIM: 3-D, Gaussian window sigma 1.5 truncated at 3.5 sigma (11 taps), K1 0.01, K2 0.03,
  population covariance, filters reflect at the region's faces; the mean of the SSIM map after
  cropping 5 voxels (the window radius) from every face, as skimage's structural_similarity
  (gaussian_weights=True, sigma=1.5, use_sample_covariance=False).
- HFEN: ||LoG(input) - LoG(truth)||_2 / ||LoG(truth)||_2, 3-D gaussian_laplace sigma 1.5 over
  the region (reflect at its faces); 0 when equal, lower is better.
- mask (from the truth's region only): truth > min + 10 % of (99.5th percentile - min), holes
  filled in every slice and then in 3-D, largest connected component. In-mask PSNR and HFEN
  use its voxels; in-mask SSIM averages the SSIM map over its voxels inside the cropped region.
- cubic baseline (with a thick volume): every truth voxel centre is mapped through both affines
  to the thick volume's continuous slice index, then cubic B-spline interpolation along that axis
  only (scipy.ndimage.map_coordinates, order 3, mode "nearest"). The thick volume must share
  the truth's in-plane grid.
"""
import json
import math
from pathlib import Path
from typing import Mapping, NamedTuple, Optional, Tuple

import numpy as np
from scipy import ndimage

from srgan_tf.data.usable_volume import non_finite_reason
from srgan_tf.evaluation import metrics
from srgan_tf.files import atomic_write_text
from srgan_tf.io.errors import InputError
from srgan_tf.io.reader import read_volume
from srgan_tf.io.volume import Volume

PROTOCOL = __doc__[__doc__.index("Protocol"):].strip()
AXIS_TOLERANCE = 1e-4  # NIfTI stores affines in float32: allow its rounding
SHIFT_TOLERANCE = 1e-3
METRICS = ("psnr", "ssim", "hfen", "psnr_mask", "ssim_mask", "hfen_mask")
RESAMPLE_HINT = ("resample it onto the truth's grid first (e.g. nibabel.processing.resample_from_to"
                 "(image, truth_image), or FSL flirt -applyxfm -usesqform -ref TRUTH)")


def _source(volume: Volume) -> str:
    """The path a user gave for `volume`: its file, or its DICOM series folder."""
    paths = volume.source_paths
    if len(paths) == 1:
        return paths[0]
    if paths:
        return str(Path(paths[0]).parent)
    return volume.series_description or "volume"


def on_truth_grid(truth: Volume, volume: Volume) -> Tuple[np.ndarray, np.ndarray]:
    """(array, shift): `volume`'s voxels in the truth's axis order, voxel k at truth voxel k + shift.

    The same voxel grid stored in another axis order or direction (a DICOM series read in reverse,
    a NIfTI written row-flipped) is reordered; anything else is refused.

    Raises:
        InputError: `volume` is not on the truth's grid (other spacing, rotation or a fractional shift).
    """
    to_truth = np.linalg.inv(truth.affine_lps()) @ volume.affine_lps()  # volume index -> truth
    axes = np.rint(to_truth[:3, :3])
    signed_permutation = (np.abs(axes).sum(0) == 1).all() and (np.abs(axes).sum(1) == 1).all()
    if not signed_permutation or not np.allclose(to_truth[:3, :3], axes, atol=AXIS_TOLERANCE):
        raise InputError(_source(volume), (
            f"is not on the truth's grid ({_source(truth)}): voxel axes differ (spacing "
            f"{_mm(volume.spacing)} vs {_mm(truth.spacing)} mm along (slice, row, col), direction "
            f"{np.round(volume.direction, 4).tolist()} vs {np.round(truth.direction, 4).tolist()}); "
            + RESAMPLE_HINT))
    source_axis = np.abs(axes).argmax(1)  # truth axis i runs along volume axis source_axis[i]
    array = np.transpose(volume.array, source_axis)
    shift = to_truth[:3, 3].copy()
    for axis in range(3):
        if axes[axis, source_axis[axis]] < 0:  # reversed: read it from the other end
            array = np.flip(array, axis)
            shift[axis] -= array.shape[axis] - 1
    if not np.allclose(shift, np.rint(shift), atol=SHIFT_TOLERANCE):
        raise InputError(_source(volume), (
            f"is not on the truth's grid ({_source(truth)}): it is offset by "
            f"{np.round(shift, 4).tolist()} truth voxels along (slice, row, col), not a whole "
            "number; " + RESAMPLE_HINT))
    return array, np.rint(shift).astype(int)


def _mm(values) -> str:
    return "x".join(f"{value:g}" for value in np.round(values, 4))


class Baseline(NamedTuple):
    """Cubic interpolation of a thick volume on the truth's grid.

    array: float64, the truth's shape, unclipped. axis: the interpolated truth axis.
    slab: (first, last) truth indices along `axis` between the first and last thick centres.
    """

    array: np.ndarray
    axis: int
    slab: Tuple[int, int]


def cubic_baseline(thick: Volume, truth: Volume) -> Baseline:
    """Cubic B-spline interpolation of `thick` along its slice axis onto the truth's grid.

    Raises:
        InputError: the thick volume's in-plane grid differs from the truth's.

    Example:
        >>> baseline = cubic_baseline(read_volume("thick.nii.gz"), read_volume("truth.nii.gz"))
    """
    to_thick = np.linalg.inv(thick.affine_lps()) @ truth.affine_lps()  # truth index -> thick
    identity = np.eye(4)[:3]
    differ = [a for a in range(3) if not np.allclose(to_thick[a], identity[a], atol=AXIS_TOLERANCE)]
    if not differ:
        raise InputError(_source(thick), f"is on the truth's grid ({_source(truth)}) already: expected "
                                         "the thick-slice volume the input was made from")
    axis = differ[0]
    others = [b for b in range(3) if b != axis]
    in_plane_same = (len(differ) == 1 and np.allclose(to_thick[axis, others], 0, atol=AXIS_TOLERANCE)
                     and all(thick.shape[b] == truth.shape[b] for b in others))
    if not in_plane_same:
        raise InputError(_source(thick), (
            f"its in-plane grid differs from the truth's ({_source(truth)}): shape {thick.shape} "
            f"vs {truth.shape}, spacing {_mm(thick.spacing)} vs {_mm(truth.spacing)} mm, truth "
            f"index -> thick index {np.round(to_thick, 4).tolist()}; the cubic baseline "
            "interpolates along the slice axis only, so the other two axes must match the truth's "
            "voxel for voxel (resample the truth in-plane onto the thick volume's grid first)"))
    positions = to_thick[axis, axis] * np.arange(truth.shape[axis]) + to_thick[axis, 3]
    inside = np.flatnonzero((positions > -SHIFT_TOLERANCE)
                            & (positions < thick.shape[axis] - 1 + SHIFT_TOLERANCE))
    if inside.size == 0:
        raise InputError(_source(thick), f"its slices do not overlap the truth's ({_source(truth)}) "
                                         "along the slice axis")
    source = np.moveaxis(np.asarray(thick.array, np.float64), axis, 0)
    spline_rows, spline_cols = np.meshgrid(positions, np.arange(source.shape[2]), indexing="ij")
    out = np.empty((positions.size,) + source.shape[1:])
    for index in range(source.shape[1]):  # one 2-D plane at a time keeps memory at a few MB
        out[:, index] = ndimage.map_coordinates(source[:, index], [spline_rows, spline_cols],
                                                order=3, mode="nearest")
    return Baseline(np.moveaxis(out, 0, axis), axis, (int(inside[0]), int(inside[-1])))


def _metrics(truth, estimate, truth_laplacian, mask, inner, data_range) -> dict:
    estimate_laplacian = metrics.laplacian_of_gaussian(estimate)
    ssim_values = metrics.ssim_map(truth, estimate, data_range)  # one map, two averages
    inner_mask = mask & inner
    return {"psnr": metrics.psnr(truth, estimate, data_range),
            "ssim": float(ssim_values[inner].mean()),
            "hfen": metrics.hfen_volume(truth_laplacian, estimate_laplacian),
            "psnr_mask": metrics.psnr(truth, estimate, data_range, mask=mask) if mask.any() else math.nan,
            "ssim_mask": float(ssim_values[inner_mask].mean()) if inner_mask.any() else math.nan,
            "hfen_mask": metrics.hfen_volume(truth_laplacian, estimate_laplacian, mask)}


def score_volumes(truth: Volume, inputs: Mapping[str, Volume], thick: Optional[Volume] = None, *,
                  all_slices: bool = False) -> dict:
    """Scores each input (and, with `thick`, the cubic baseline) against `truth` (module protocol).

    Args:
        truth: the isotropic reference; its grid is the scoring grid.
        inputs: label -> volume on the truth's grid (a whole-voxel shift is allowed).
        thick: the thick-slice volume the inputs were made from; adds the "cubic" row and limits
            the region to the slab between its first and last slice centres.
        all_slices: score every truth slice the inputs cover, even outside that slab.

    Returns:
        {"methods": {label or "cubic": {"psnr", "ssim", "hfen", "psnr_mask", "ssim_mask",
        "hfen_mask"}}, "region": {"first", "last" (inclusive truth indices along (slice, row,
        col)), "voxels"}, "data_range", "clip": [min, max], "mask": {"threshold", "fraction"},
        "baseline": {"axis", "slab"} or None, "protocol"}.

    Example:
        >>> scores = score_volumes(read_volume("hr.nii.gz"), {"sr": read_volume("sr.nii.gz")})
        >>> scores["methods"]["sr"]["psnr"]
    """
    truth_array = np.asarray(truth.array, np.float64)
    low, high = float(truth_array.min()), float(truth_array.max())
    if high <= low:
        raise InputError(_source(truth), f"is constant ({low:g}): nothing to score against")
    first, stop = np.zeros(3, int), np.array(truth.shape)
    placed = {label: on_truth_grid(truth, volume) for label, volume in inputs.items()}
    for array, shift in placed.values():
        first = np.maximum(first, shift)
        stop = np.minimum(stop, shift + np.array(array.shape))
    baseline = cubic_baseline(thick, truth) if thick is not None else None
    if baseline is not None and not all_slices:
        first[baseline.axis] = max(first[baseline.axis], baseline.slab[0])
        stop[baseline.axis] = min(stop[baseline.axis], baseline.slab[1] + 1)
    if (stop - first < 2 * metrics.SSIM_RADIUS + 1).any():
        raise InputError(_source(truth), (
            f"the scored region (truth voxels {first.tolist()} to {(stop - 1).tolist()} along "
            f"(slice, row, col)) is empty or thinner than the {2 * metrics.SSIM_RADIUS + 1}-voxel SSIM "
            "window; check that the inputs overlap the truth"))
    region = tuple(slice(a, b) for a, b in zip(first, stop))
    truth_region = truth_array[region]
    mask, threshold = metrics.head_mask(truth_region)
    truth_laplacian = metrics.laplacian_of_gaussian(truth_region)
    inner = metrics.inner_voxels(truth_region.shape)

    def score(array):
        estimate = np.clip(np.asarray(array, np.float64), low, high)
        return _metrics(truth_region, estimate, truth_laplacian, mask, inner, high - low)

    methods = {}
    for label, (array, shift) in placed.items():
        methods[label] = score(array[tuple(slice(a - s, b - s) for a, b, s in zip(first, stop, shift))])
    if baseline is not None:
        methods["cubic"] = score(baseline.array[region])
    return {"methods": methods,
            "region": {"first": first.tolist(), "last": (stop - 1).tolist(),
                       "voxels": int(truth_region.size)},
            "data_range": high - low, "clip": [low, high],
            "mask": {"threshold": threshold, "fraction": float(mask.mean())},
            "baseline": None if baseline is None else {"axis": baseline.axis,
                                                       "slab": list(baseline.slab)},
            "protocol": PROTOCOL}


def score_files(truth, sr, thick=None, *, all_slices: bool = False) -> dict:
    """`score_volumes` on files (DICOM series folders or NIfTI); the input is labelled "input".
    A volume with NaN or infinite voxels is refused (InputError with their count), as every
    command refuses it."""
    volumes = {}
    for name, path in (("truth", truth), ("input", sr), ("thick", thick)):
        volumes[name] = None if path is None else read_volume(path)
        holes = None if path is None else non_finite_reason(volumes[name].array)
        if holes:
            raise InputError(path, holes)
    scores = score_volumes(volumes["truth"], {"input": volumes["input"]}, volumes["thick"],
                           all_slices=all_slices)
    scores["files"] = {"truth": str(truth), "input": str(sr),
                       "thick": None if thick is None else str(thick)}
    return scores


def format_scores(scores: dict) -> str:
    """An aligned table of the scores, the region and mask used, and the protocol."""
    columns = [("PSNR dB", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.4f}"), ("HFEN", "hfen", "{:.4f}"),
               ("PSNR mask", "psnr_mask", "{:.2f}"), ("SSIM mask", "ssim_mask", "{:.4f}"),
               ("HFEN mask", "hfen_mask", "{:.4f}")]
    label_width = max(len("method"), *(len(label) for label in scores["methods"]))
    lines = ["method".ljust(label_width) + "".join(f"{title:>12}" for title, _, _ in columns)]
    for label, values in scores["methods"].items():
        lines.append(label.ljust(label_width) + "".join(
            f"{form.format(values[key]):>12}" for _, key, form in columns))
    region, mask = scores["region"], scores["mask"]
    span = " x ".join(f"{a}..{b}" for a, b in zip(region["first"], region["last"]))
    lines += ["", f"region: truth voxels {span} along (slice, row, col)"
              + (f", the slab between the thick slice centres along axis {scores['baseline']['axis']}"
                 if scores.get("baseline") else ""),
              f"data range {scores['data_range']:g} (truth {scores['clip'][0]:g}..{scores['clip'][1]:g},"
              f" scored volumes clipped to it); mask {100 * mask['fraction']:.1f} % of the region "
              f"(truth > {mask['threshold']:.4g})", "", PROTOCOL]
    return "\n".join(lines)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no inf/NaN: PSNR of an exact copy is written as null
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def write_scores_json(scores: dict, path) -> Path:
    """Writes `scores` as JSON (non-finite numbers as null), atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(_finite_or_none(scores), indent=2) + "\n")
    except OSError as error:
        raise InputError(path, f"cannot be written ({error.strerror or error})") from None
    return path
