"""Estimating a volume's slice profile from the volume itself (`estimate_slice_profile`).

It follows the SMORE/ESPRESO assumption that the object's statistics are about isotropic: the
through-plane lines and the in-plane lines thickened with the right profile have the same power
spectrum (details in its docstring). A real object is not isotropic (a brain's left-right lines
are not like its front-back ones), so each in-plane direction is fitted on its own and the one
that explains the through-plane spectrum better gives the estimate; the other's width is kept
(their spread measures the anisotropy). It pins down the profile's effective width (its standard
deviation) to about 10 % on synthetic volumes and to a median 8 % on MNI152 perturbed as single
scans (benchmarks/bench_profile.py), but some read 20-50 % off (a native in-plane resolution
coarser than the pixel reads as a narrower profile and cannot be told apart from it in the
spectrum; an anisotropic object; few slices; slices much thinner than their spacing); box and Gaussian of equal standard deviation (box width
~1.47 x Gaussian FWHM) have nearly the same spectrum, so the shape is a near tie that a prior for
the box (slice-selective excitation) breaks. Each estimate carries its confidence (slab spread,
direction spread, flat fit); `data.profile_choice` combines it with the header's thickness.
The same volume with its in-plane axes swapped gives the same estimate (slabs of rows and of
cols; segments subsampled by a hash of their position). Each candidate is scored from the
through-plane patches' cross-spectra, so up to 16000 segments per in-plane direction and 16000
through-plane ones (fewer for wide kernels on fine pixels, CROSS_BUDGET) cost about a second.
numpy/scipy only.
"""
import math
import time
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy import ndimage

from srgan_tf.data.degradation.slice_profile import (NAMED_SHAPES, SliceProfile, output_count,
                                                     positive_number, reflect_index,
                                                     sparse_profile_matrix)

# segment lengths (thick samples) tried, longest first: 16 keeps enough segments in small volumes
_LENGTHS = (16, 12, 8)
_MIN_SEGMENTS = 400
# the through-plane segments are split into this many slabs of rows, and again into as many slabs
# of cols; the spread of the slabs' best widths gives the estimate's sampling uncertainty (both
# partitions, so that it does not change when the in-plane axes are swapped or flipped)
SLABS = 4
GROUPS = 2 * SLABS  # slabs of rows 0..SLABS-1, slabs of cols SLABS..GROUPS-1
# widths whose residual is within this fraction above the minimum fit about as well: when that
# range reaches the narrowest or widest candidate, the fit has no minimum to speak of (white
# noise: every width up to the spacing fits)
FLAT_TOLERANCE = 0.5
# through-plane segments x cross-blur taps^2 spent at most (the cross-spectra's cost): wide kernels
# on fine pixels (0.5 mm pixels, 7 mm slices: 93 taps) sample fewer segments, never under 2000
CROSS_BUDGET = 16000 * 48 ** 2


@dataclass
class ProfileEstimate:
    """What `estimate_slice_profile` chose and why (all numbers kept for the report and plot).

    Attributes:
        profile: the chosen profile.
        reason: one line, e.g. "box 4.10 mm fits the through-plane spectrum best (...)".
        widths_mm, scores: per shape, the candidate widths and their spectral residuals (RMS of
            the log-power misfit after the free gain and noise floor; lower is better).
        best_scores, best_widths_mm: per shape, the minimum residual and its width.
        frequencies: cycles/mm of the spectra below (the fitted band only).
        observed, fitted: through-plane power spectrum and the chosen candidate's model spectrum
            (gain and noise floor applied), on `frequencies`.
        slab_sigmas_mm: the chosen shape's best standard deviation in each of `SLABS` slabs of
            rows, then of `SLABS` slabs of cols (each slab's through-plane spectrum against the
            whole volume's model).
        uncertainty: sampling uncertainty of log(standard deviation): the slabs' spread (RMS of
            the two partitions') over sqrt(SLABS); the estimate's bias on real scans comes on top
            (`profile_choice`).
        interval_sigmas_mm: (low, high) standard deviations of the chosen shape whose residuals
            are within FLAT_TOLERANCE of the minimum (contiguous around it).
        at_edge: that interval reaches the narrowest or widest candidate: the fit is flat.
        edge: which end it reaches: "narrow", "wide", "both" or "" (none).
        slice_mm, pixel_mm, segment_length, segments: what was measured; seconds: time taken.
        inplane_direction: the in-plane lines whose model gave the estimate ("cols (axis 2)",
            "rows (axis 1)", or "cols and rows" averaged).
        direction_sigmas_mm, direction_scores: per in-plane direction fitted, the best candidate's
            standard deviation and residual (their spread shows the object's anisotropy).
    """

    profile: SliceProfile
    reason: str
    widths_mm: Dict[str, np.ndarray]
    scores: Dict[str, np.ndarray]
    best_scores: Dict[str, float]
    best_widths_mm: Dict[str, float]
    frequencies: np.ndarray
    observed: np.ndarray
    fitted: np.ndarray
    slab_sigmas_mm: np.ndarray
    uncertainty: float
    interval_sigmas_mm: Tuple[float, float]
    at_edge: bool
    slice_mm: float
    pixel_mm: float
    segment_length: int
    segments: Dict[str, int]
    seconds: float
    edge: str = ""
    inplane_direction: str = "cols and rows"
    direction_sigmas_mm: np.ndarray = None
    direction_scores: np.ndarray = None

    @property
    def sigma_mm(self) -> float:
        return self.profile.sigma_mm

    def to_dict(self) -> Dict:
        """JSON-ready summary (lists instead of arrays)."""
        data = {key: getattr(self, key) for key in self.__dataclass_fields__}
        data["profile"] = self.profile.to_dict()
        for key in ("widths_mm", "scores"):
            data[key] = {shape: np.asarray(v).tolist() for shape, v in data[key].items()}
        data["sigma_mm"] = self.sigma_mm
        data["interval_sigmas_mm"] = list(self.interval_sigmas_mm)
        for key in ("frequencies", "observed", "fitted", "slab_sigmas_mm", "direction_sigmas_mm",
                    "direction_scores"):
            data[key] = np.asarray(data[key]).tolist()
        return data


def default_candidates(slice_mm: float, shapes: Sequence[str] = NAMED_SHAPES,
                       low: float = 0.5, high: float = 2.0, ratio_step: float = 0.05):
    """Box and Gaussian profiles with widths from `low` to `high` times the slice spacing,
    `ratio_step` (relative) apart."""
    count = int(round(math.log(high / low) / math.log1p(ratio_step))) + 1
    widths = slice_mm * np.geomspace(low, high, count)
    return [SliceProfile(shape, float(width)) for shape in shapes for width in widths]


def estimate_slice_profile(array, spacing, *, candidates=None, mask=None,
                           band: Tuple[float, float] = (0.15, 0.95), noise_floor: bool = False,
                           box_margin: float = 0.1, max_segments: int = 16000,
                           seed: int = 0, inplane: str = "best") -> ProfileEstimate:
    """Estimate the slice profile of a thick-slice volume from its own data.

    SMORE/ESPRESO assumption: the object's statistics are about isotropic. A through-plane line
    (axis 0) then sees the profile P along itself and full resolution across; an in-plane line of
    the thick volume sees full resolution along itself and P across (along axis 0). For a
    candidate C the two are made alike: in-plane lines along one in-plane axis are thickened with C
    and resampled at the slice spacing (`degrade_lines`); through-plane lines are blurred with C
    along the other in-plane axis. If C = P both have the same power spectrum. Spectra use the
    same segment length and window; the candidate with the smallest log-spectrum misfit over
    `band` (fractions of the through-plane Nyquist), after a free overall gain, wins.

    The two in-plane directions are fitted separately (`inplane="best"`): a real object is not
    isotropic (a brain's left-right lines are not like its front-back ones), and the in-plane
    direction whose thickened spectrum explains the through-plane one better (lower residual at
    its best candidate) is the one whose statistics are nearer the through-plane direction's; it
    gives the estimate. `inplane="mean"` averages both directions' spectra (the former method).

    Args:
        array: 3-D volume (slices, rows, cols); axis 0 is the low-resolution axis.
        spacing: (slice_mm, row_mm, col_mm); the slice spacing may be any multiple of the pixel.
        candidates: SliceProfiles to compare; default `default_candidates(slice_mm)` (5% apart),
            then widths 2.5% either side of each shape's best.
        mask: optional boolean foreground of the array's shape; default voxels above 10% of the
            0.5-99.5 percentile range.
        band: fitted frequency band as fractions of the through-plane Nyquist frequency.
        noise_floor: also fit a free white noise floor on the through-plane spectrum.
        box_margin: a Gaussian wins over the best box only if its residual is lower by more than
            this fraction. A box of width w and a Gaussian of FWHM ~0.7 w have nearly the same
            spectrum, and slice-selective excitation gives near-rectangular profiles.
        max_segments: at most this many line segments per direction (a deterministic subsample
            by a hash of each segment's position, the same with the in-plane axes swapped;
            through-plane segments also within CROSS_BUDGET).
        seed: seed of that hash.
        inplane: "best" (the in-plane direction that fits better) or "mean" (both averaged).

    Example:
        estimate = estimate_slice_profile(volume.array, volume.spacing)
        print(estimate.reason)
    """
    start = time.perf_counter()
    volume = np.asarray(array, np.float32)
    if volume.ndim != 3 or not np.isfinite(volume).all():
        raise ValueError(f"array must be a finite 3-D volume (slices, rows, cols). "
                         f"Received: shape={volume.shape}")
    if volume.shape[0] < min(_LENGTHS):
        raise ValueError(f"A slice profile estimate needs at least {min(_LENGTHS)} slices. "
                         f"Received: shape={volume.shape}")
    slice_mm, row_mm, col_mm = (positive_number("spacing", s) for s in spacing)
    refine = candidates is None
    candidates = default_candidates(slice_mm) if candidates is None else list(candidates)
    if inplane not in ("best", "mean"):
        raise ValueError(f"inplane must be 'best' or 'mean'. Received: {inplane!r}")
    low, high = np.percentile(volume[::max(1, volume.shape[0] // 16)], [0.5, 99.5])
    volume = ((volume - low) / max(high - low, 1e-12)).astype(np.float32)
    foreground = volume > 0.1 if mask is None else np.asarray(mask, bool)
    if foreground.shape != volume.shape:
        raise ValueError(f"mask must have the array's shape {volume.shape}. Received: {foreground.shape}")
    pixel_mm = min(row_mm, col_mm)
    reach = max(len(c.kernel(pixel_mm)) for c in candidates) // 2 + 1
    steps = ((2, col_mm), (1, row_mm))  # in-plane lines along cols, along rows
    for length in sorted({min(n, volume.shape[0]) for n in _LENGTHS}, reverse=True):
        lines = [_inplane_segments(volume, foreground, axis, pixel, slice_mm, length, max_segments, seed)
                 for axis, pixel in steps]
        through = None if any(d is None for d in lines) else _through_plane_segments(
            volume, foreground, (row_mm, col_mm), slice_mm, length, reach,
            min(max_segments, max(2000, CROSS_BUDGET // (2 * reach + 1) ** 2)), seed)
        if through is not None:
            break
    else:
        raise ValueError(f"Too few foreground lines to estimate a slice profile (fewer than "
                         f"{_MIN_SEGMENTS} segments of {length} slices). Received: shape={volume.shape}")
    bins = np.arange(length // 2 + 1) / length * 2.0  # fractions of Nyquist
    keep = (bins >= band[0]) & (bins <= band[1])

    # slabs of rows, and slabs of cols, holding about equal numbers of segments: [segments, 2]
    slab = np.stack([_slabs(through[2][:, k]) + k * SLABS for k in (0, 1)], axis=1)

    # the in-plane models: each direction alone ("best"), or both averaged ("mean")
    models = [[d] for d in lines] if inplane == "best" else [lines]

    counts = np.bincount(slab.ravel(), minlength=GROUPS)[:, None]
    spectra = [_cross_spectra(patch, slab, counts[:, 0], keep) for patch in through[:2]]

    def evaluate(candidate, which):
        # through-plane lines cross-blurred along rows and along cols, averaged, for every in-plane
        # direction (pairing each direction with the cross-blur along its own axis only, as a swap
        # of the slice and that axis would, measured worse on benchmarks/bench_profile.py)
        groups = np.mean(_through_power(candidate, spectra, (row_mm, col_mm), slice_mm / pixel_mm, reach),
                         axis=0)
        observed = (groups * counts).sum(0) / counts.sum()
        out = []
        for k in which:
            model = _model_power(candidate, models[k], length)[keep]
            slab_scores = [_fit(g, model, noise_floor)[0] if n else np.inf for g, n in zip(groups, counts[:, 0])]
            out.append(_fit(observed, model, noise_floor) + (observed, slab_scores))
        return out

    every = [evaluate(c, range(len(models))) for c in candidates]
    direction_scores = [min(f[k][0] for f in every) for k in range(len(models))]
    direction = int(np.argmin(direction_scores))
    direction_sigmas = [min((f[k][0], c.sigma_mm) for c, f in zip(candidates, every))[1]
                        for k in range(len(models))]
    fits = [f[direction] for f in every]
    if refine:  # a 2.5% grid around each shape's best of the 5% grid
        for shape in dict.fromkeys(c.shape for c in candidates):
            best = min((f[0], c.fwhm_mm) for c, f in zip(candidates, fits) if c.shape == shape)[1]
            extra = [SliceProfile(shape, best * factor) for factor in (1 / 1.025, 1.025)]
            candidates += extra
            fits += [evaluate(c, [direction])[0] for c in extra]
    order = np.argsort([c.fwhm_mm for c in candidates], kind="stable")
    candidates, fits = [candidates[i] for i in order], [fits[i] for i in order]
    estimate = _summarize(candidates, fits, box_margin)
    estimate.update(_slab_spread(candidates, fits, estimate["profile"]))
    names = ["cols (axis 2)", "rows (axis 1)"] if inplane == "best" else ["cols and rows"]
    estimate["reason"] += f"; in-plane lines along {names[direction]}"
    return ProfileEstimate(**estimate, frequencies=bins[keep] / (2.0 * slice_mm), slice_mm=slice_mm,
                           pixel_mm=pixel_mm, segment_length=length,
                           segments={"through": len(through[2]), "inplane": sum(len(d[0]) for d in lines)},
                           inplane_direction=names[direction],
                           direction_sigmas_mm=np.array(direction_sigmas),
                           direction_scores=np.array(direction_scores),
                           seconds=time.perf_counter() - start)


def _summarize(candidates, fits, box_margin) -> Dict:
    """The per-shape curves, the choice (box preferred within `box_margin`) and its reason."""
    shapes = list(dict.fromkeys(c.shape for c in candidates))
    widths = {s: np.array([c.fwhm_mm for c in candidates if c.shape == s]) for s in shapes}
    scores = {s: np.array([f[0] for c, f in zip(candidates, fits) if c.shape == s]) for s in shapes}
    best_scores = {s: float(scores[s].min()) for s in shapes}
    best_widths = {s: float(widths[s][np.argmin(scores[s])]) for s in shapes}
    ranked = [fit[0] * (1.0 - box_margin if c.shape == "box" else 1.0) for c, fit in zip(candidates, fits)]
    best = int(np.argmin(ranked))
    chosen = candidates[best]
    others = ", ".join(f"{s} {best_widths[s]:.2f} mm: {best_scores[s]:.4f}" for s in shapes if s != chosen.shape)
    prior = (f"; box preferred within {box_margin:.0%}" if chosen.shape == "box" and
             fits[best][0] > min(best_scores.values()) else "")
    reason = (f"{chosen.shape} {chosen.fwhm_mm:.2f} mm fits the through-plane spectrum best "
              f"(residual {fits[best][0]:.4f}" + (f" vs {others}" if others else "") + prior + ")")
    return dict(profile=chosen, reason=reason, widths_mm=widths, scores=scores, best_scores=best_scores,
                best_widths_mm=best_widths, observed=fits[best][2], fitted=fits[best][1])


def _slabs(positions) -> np.ndarray:
    """The slab (0..SLABS-1) of each segment from its row (or col): by the middle of its row's
    share of the segments in row order, so a whole row goes to one slab (reversing the rows
    mirrors the slabs, but for a row whose middle falls exactly on a boundary; a slab may stay
    empty when a few rows hold every segment)."""
    values, inverse, counts = np.unique(positions, return_inverse=True, return_counts=True)
    middle = np.cumsum(counts) - counts / 2.0
    return np.minimum((middle[inverse] * SLABS / len(positions)).astype(int), SLABS - 1)


def _slab_spread(candidates, fits, chosen) -> Dict:
    """Each slab's best standard deviation among the chosen shape's candidates, their spread
    (log) over sqrt(SLABS), the interval of about equally good widths and whether it reaches
    the candidates' edge."""
    same = [i for i, c in enumerate(candidates) if c.shape == chosen.shape]
    sigmas = np.array([candidates[i].sigma_mm for i in same])
    slab_scores = np.array([fits[i][3] for i in same])  # [candidates, GROUPS]
    usable = np.isfinite(slab_scores).all(axis=0)
    best = sigmas[np.argmin(slab_scores[:, usable], axis=0)]
    # the spread within each partition (slabs of rows, of cols), combined as their RMS, over the
    # square root of its usable slabs (a partition with fewer than 2 is left out)
    parts = [np.log(best[(np.flatnonzero(usable) // SLABS) == k]) for k in (0, 1)]
    parts = [p for p in parts if len(p) > 1]
    uncertainty = (float(np.sqrt(np.mean([np.var(p, ddof=1) / len(p) for p in parts])))
                   if parts else float("inf"))
    scores = np.array([fits[i][0] for i in same])
    good = scores <= scores.min() * (1.0 + FLAT_TOLERANCE)
    low = high = int(np.argmin(scores))
    while low > 0 and good[low - 1]:
        low -= 1
    while high < len(good) - 1 and good[high + 1]:
        high += 1
    return dict(slab_sigmas_mm=best, uncertainty=uncertainty,
                interval_sigmas_mm=(float(sigmas[low]), float(sigmas[high])),
                at_edge=bool(low == 0 or high == len(good) - 1),
                edge={(True, False): "narrow", (False, True): "wide", (True, True): "both"}.get(
                    (low == 0, high == len(good) - 1), ""))


def _through_plane_segments(volume, foreground, pixels, slice_mm, length, reach, max_segments, seed):
    """Segments of `length` along axis 0 whose voxels and in-plane neighbours (one slice spacing
    either side) are foreground (or None if fewer than _MIN_SEGMENTS): the patches around each
    for the cross-blur, as [(windows, depth, across, along) along rows, ... along cols], where
    windows[depth, across, along] is a patch [segments, length, 2 reach + 1] (gathered in chunks
    by `_cross_spectra`), and the (row, col) of each segment."""
    slices, rows, cols = volume.shape
    radius = [max(1, int(round(slice_mm / pixel))) for pixel in pixels]
    inside = ndimage.minimum_filter(foreground, size=(1, 2 * radius[0] + 1, 2 * radius[1] + 1))
    counts = np.concatenate([np.zeros((1, rows, cols), np.int32), np.cumsum(inside, 0, dtype=np.int32)])
    starts = np.arange(0, slices - length + 1, max(1, length // 4))
    index = np.argwhere((counts[starts + length] - counts[starts]) == length)
    if len(index) < _MIN_SEGMENTS:
        return None
    # the subsample: a hash of (start, the smaller and the larger of row and col), so the volume
    # with its in-plane axes swapped keeps the same segments
    index = index[_subsample(max_segments, seed, starts[index[:, 0]], np.minimum(index[:, 1], index[:, 2]),
                             np.maximum(index[:, 1], index[:, 2]))]
    depth = starts[index[:, 0]][:, None] + np.arange(length)[None, :]
    row, col = index[:, 1, None], index[:, 2, None]
    patches = []
    for planes, size, along, across in ((volume.transpose(0, 2, 1), rows, row, col), (volume, cols, col, row)):
        # windows of 2 reach + 1 voxels along the last axis, borders reflected (`reflect_index`)
        padded = planes[:, :, reflect_index(np.arange(-reach, size + reach), size)]
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1, axis=2)
        patches.append((windows, depth, across, along))
    return patches[0], patches[1], index[:, 1:3]


def _cross_spectra(patches, groups, counts, keep, chunk=2048):
    """Per group, the mean cross-power between the columns of the segments' patches
    [GROUPS, kept bins, taps, taps] (real: for a real blur k, |k . F|^2 = (k . Re F)^2 + (k . Im F)^2):
    the spectrum of any blur k across the patch is then k^T M k, so each candidate costs no pass
    over the segments. Segments are mean-removed and Hann-windowed along their length first
    (`_windowed`, as `_power`); `groups` [segments, 2] (a slab of rows, a slab of cols), `counts`
    the segments of each group: each cell of the two partitions is summed once and the groups
    are sums of cells. `patches`: (windows, depth,
    across, along) of `_through_plane_segments`, gathered `chunk` segments at a time (small
    temporaries instead of whole patch arrays)."""
    windows, depth, across, along = patches
    cell_of = groups[:, 0] * SLABS + groups[:, 1] - SLABS
    cells = np.zeros((SLABS * SLABS, int(keep.sum())) + (windows.shape[-1],) * 2)
    for first in range(0, len(depth), chunk):
        part = slice(first, first + chunk)
        patch = windows[depth[part], across[part], along[part]]  # [segments, length, taps]
        transform = np.fft.rfft(_windowed(patch), axis=1)[:, keep, :]  # [segments, bins, taps]
        stacked = np.concatenate([transform.real, transform.imag], axis=0).transpose(1, 0, 2)
        owner = np.tile(cell_of[part], 2)
        for cell in np.unique(owner):
            members = stacked[:, owner == cell, :]
            cells[cell] += members.transpose(0, 2, 1) @ members
    sums = np.concatenate([cells.reshape((SLABS, SLABS) + cells.shape[1:]).sum(axis=1),
                           cells.reshape((SLABS, SLABS) + cells.shape[1:]).sum(axis=0)])
    return sums / np.maximum(counts, 1)[:, None, None, None]


def _through_power(profile, spectra, pixels, step, reach):
    """Spectrum of the through-plane segments blurred with `profile` along rows, and along cols
    (averaged): the cross-blur that in-plane lines of a thick volume carry along axis 0. The blur
    uses the sub-pixel phases at which the thick samples sit (`step` may be non-integer), so that a
    box of 4 pixels is the same 4-tap mean here as in the thickening. From the patches' cross-spectra
    (`_cross_spectra`, [row patch, col patch]): per patch, one spectrum per group [GROUPS, bins]
    (empty groups: 0)."""
    phases = np.unique(np.round(np.mod(np.arange(64) * step + (step - 1) / 2.0, 1.0), 2) % 1.0)
    phases = phases[np.linspace(0, len(phases) - 1, min(len(phases), 3)).round().astype(int)]
    powers = []
    for spectrum, pixel in zip(spectra, pixels):
        positions, weights = profile.taps(pixel, phases)
        inside = np.abs(positions) <= reach
        kernels = np.zeros((len(phases), 2 * reach + 1), np.float32)
        rows = np.broadcast_to(np.arange(len(phases))[:, None], positions.shape)
        kernels[rows[inside], positions[inside] + reach] = weights[inside]
        kernels /= kernels.sum(axis=1, keepdims=True)
        kernels = kernels.astype(np.float64)
        powers.append(np.einsum("pj,gbjl,pl->gb", kernels, spectrum, kernels, optimize=True) / len(phases))
    return powers


def _inplane_segments(volume, foreground, axis, pixel_mm, slice_mm, length, max_segments, seed):
    """In-plane lines along `axis` with segment starts such that `length` thick samples at the
    slice spacing lie in the foreground: (lines, line of each segment, starts, pixel_mm, step)."""
    step = slice_mm / pixel_mm
    size = volume.shape[axis]
    count = output_count(size, step)
    if count < length:
        return None
    lines = np.moveaxis(volume, axis, -1).reshape(-1, size)
    inside = np.moveaxis(foreground, axis, -1).reshape(-1, size)
    cumulative = np.concatenate([np.zeros((len(inside), 1), np.int32), np.cumsum(inside, 1, dtype=np.int32)], 1)
    # a thick sample counts as foreground when one slice spacing either side of it is
    centres = np.arange(count) * step + (step - 1) / 2.0
    first = np.clip(np.floor(centres - step).astype(int), 0, size - 1)
    last = np.clip(np.ceil(centres + step).astype(int), 0, size - 1)
    good = (cumulative[:, last + 1] - cumulative[:, first]) == (last - first + 1)
    good_counts = np.concatenate([np.zeros((len(good), 1), np.int32), np.cumsum(good, 1, dtype=np.int32)], 1)
    window = (good_counts[:, length:] - good_counts[:, :-length]) == length  # [lines, starts]
    window[:, np.arange(window.shape[1]) % max(1, length // 4) != 0] = False
    segment_line, segment_start = np.nonzero(window)
    if len(segment_line) < _MIN_SEGMENTS:
        return None
    # the subsample: a hash of (slice, line within the slice, start), the same for either axis
    slice_of, line_of = np.divmod(segment_line, len(lines) // volume.shape[0])
    pick = _subsample(max_segments, seed, slice_of, line_of, segment_start)
    used, segment_line = np.unique(segment_line[pick], return_inverse=True)
    return lines[used].astype(np.float32), segment_line, segment_start[pick], pixel_mm, step


def _subsample(count, seed, *columns) -> np.ndarray:
    """Sorted indices of at most `count` rows, those with the smallest hash of their integer
    `columns` (a splitmix-style mix, seeded): a deterministic subsample that depends on the
    rows' values, not on their order."""
    size = len(columns[0])
    if size <= count:
        return np.arange(size)
    key = np.full(size, (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2 ** 64, np.uint64)
    for column in columns:
        key = (key ^ np.asarray(column).astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
        key ^= key >> np.uint64(29)
        key *= np.uint64(0x94D049BB133111EB)
        key ^= key >> np.uint64(32)
    return np.sort(np.argpartition(key, count)[:count])


def _windowed(segments):
    """Segments [n, length, ...] mean-removed and Hann-windowed along their length (axis 1): the
    same for the in-plane model (`_power`) and the through-plane patches (`_cross_spectra`),
    whose spectra the fit compares."""
    window = np.hanning(segments.shape[1] + 2)[1:-1].reshape((-1,) + (1,) * (segments.ndim - 2))
    return (segments - segments.mean(axis=1, keepdims=True)) * window


def _power(segments):
    """Mean Hann-windowed power spectrum of mean-removed segments [n, length]."""
    return np.mean(np.abs(np.fft.rfft(_windowed(segments), axis=1)) ** 2, axis=0)


def _model_power(profile, directions, length):
    """Spectrum of in-plane segments thickened with `profile` (averaged over directions)."""
    total = 0.0
    for lines, segment_line, starts, pixel_mm, step in directions:
        matrix = sparse_profile_matrix(profile, pixel_mm, step, lines.shape[1]).astype(np.float32)
        thick = (matrix @ lines.T).T
        total = total + _power(thick[segment_line[:, None], starts[:, None] + np.arange(length)])
    return total / len(directions)


def _fit(observed, model, noise_floor):
    """(RMS log misfit, fitted spectrum) after a free gain and, optionally, a free white floor."""
    log_observed = np.log(observed)
    best = None
    for floor in ((0.0, 0.01, 0.03, 0.1, 0.3) if noise_floor else (0.0,)):
        shaped = model + floor * model[-1]
        residual = log_observed - np.log(shaped)
        gain = residual.mean()
        score = float(np.sqrt(np.mean((residual - gain) ** 2)))
        if best is None or score < best[0]:
            best = (score, shaped * np.exp(gain))
    return best
