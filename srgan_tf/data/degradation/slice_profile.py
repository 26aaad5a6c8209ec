"""Slice profiles for through-plane SR: what a thick slice averages, as weights per pixel.

`SliceProfile` is the one profile type (training degradation, self-supervised pairs, the
estimate, the degradation check) and `SliceProfile.taps` the one place a profile becomes
weights: `sampling_taps` for `degrade`'s integer factors, `profile_matrix` for real steps.
Same conventions as `srgan_tf.data.degradation.degrade`: output sample k along the thickened axis sits at
input coordinate k * step + (step - 1) / 2 (pixel centres), borders are half-sample symmetric,
and the weight of input sample t is the profile integrated over that sample's extent
[t - 0.5, t + 0.5]. Here the step may be any real number (3.6 mm slices on 0.5 mm pixels:
step 7.2) and widths need not be whole pixels.

`data.profile_estimate` estimates a volume's profile from its own spectra.
numpy/scipy only; `profile_matrix` gives the training degradation as a matrix that
`tf.linalg.matmul` can apply.
"""
import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import sparse, special

from srgan_tf.config import SLICE_PROFILES

# Shapes given by name (config.SLICE_PROFILES, in alphabetical order: box first, the order the
# estimate has always tried and reported them), and "file": samples read from a .npy file.
NAMED_SHAPES = tuple(sorted(SLICE_PROFILES))
SHAPES = NAMED_SHAPES + ("file",)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # a Gaussian's FWHM = this x its sigma
GAUSSIAN_REACH_SIGMAS = 4.0  # a Gaussian profile is truncated this many sigmas from its centre


@dataclass(frozen=True)
class SliceProfile:
    """A slice profile along the slice axis, in millimetres.

    Args:
        shape: "box" (uniform over `fwhm_mm`), "gaussian" (FWHM `fwhm_mm`, truncated at
            GAUSSIAN_REACH_SIGMAS) or "file" (`samples` read from a .npy file).
        fwhm_mm: full width (box) or full width at half maximum (gaussian, file) in mm.
        samples: "file" only: 1-D non-negative weights, centred, each covering `sample_spacing_mm`.
        sample_spacing_mm: "file" only: the spacing of `samples`.

    Example:
        SliceProfile("box", 4.0).kernel(1.0)  # [0.125, 0.25, 0.25, 0.25, 0.125]
    """

    shape: str
    fwhm_mm: float
    samples: Optional[Tuple[float, ...]] = None
    sample_spacing_mm: Optional[float] = None

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}. Received: shape={self.shape!r}")
        if not (math.isfinite(self.fwhm_mm) and self.fwhm_mm > 0):
            raise ValueError(f"fwhm_mm must be a positive number. Received: fwhm_mm={self.fwhm_mm!r}")
        object.__setattr__(self, "fwhm_mm", float(self.fwhm_mm))
        if self.shape == "file":
            if self.samples is None or not (self.sample_spacing_mm or 0) > 0:
                raise ValueError("A 'file' profile needs samples and a positive sample_spacing_mm. "
                                 f"Received: samples={self.samples!r}, "
                                 f"sample_spacing_mm={self.sample_spacing_mm!r}")
            samples = _check_samples(np.asarray(self.samples, np.float64), "samples")
            object.__setattr__(self, "samples", tuple(float(v) for v in samples / samples.sum()))
            object.__setattr__(self, "sample_spacing_mm", float(self.sample_spacing_mm))

    @classmethod
    def from_samples(cls, samples, sample_spacing_mm: float) -> "SliceProfile":
        """A "file" profile from 1-D weights; its FWHM is measured on the samples."""
        try:
            samples = np.asarray(samples, np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"A slice profile must hold numbers. Received: samples={samples!r}") from None
        samples = _check_samples(samples, "samples")
        return cls("file", _measured_fwhm(samples, float(sample_spacing_mm)),
                   tuple(samples), float(sample_spacing_mm))

    def half_support_mm(self) -> float:
        if self.shape == "box":
            return self.fwhm_mm / 2.0
        if self.shape == "gaussian":
            return GAUSSIAN_REACH_SIGMAS * self.fwhm_mm / FWHM_PER_SIGMA
        return len(self.samples) * self.sample_spacing_mm / 2.0

    def cumulative(self, x_mm) -> np.ndarray:
        """Integral of the (unnormalised) profile from -infinity to `x_mm`."""
        x = np.asarray(x_mm, np.float64)
        if self.shape == "box":
            return np.clip(x + self.fwhm_mm / 2.0, 0.0, self.fwhm_mm)
        if self.shape == "gaussian":
            sigma = self.fwhm_mm / FWHM_PER_SIGMA
            reach = GAUSSIAN_REACH_SIGMAS * sigma
            return 0.5 * special.erf(np.clip(x, -reach, reach) / (sigma * math.sqrt(2.0)))
        # each sample is constant over its own cell: exact for a profile given at pixel size
        edges = (np.arange(len(self.samples) + 1) - len(self.samples) / 2.0) * self.sample_spacing_mm
        return np.interp(x, edges, np.concatenate([[0.0], np.cumsum(self.samples)]))

    def taps(self, pixel_mm: float, centre=0.0) -> Tuple[np.ndarray, np.ndarray]:
        """(integer sample positions, weights summing to 1) for a thick sample centred at `centre`
        (input-sample coordinates; an array of centres gives one row each); weight of sample t =
        the profile integrated over [t - 0.5, t + 0.5]."""
        pixel_mm = positive_number("pixel_mm", pixel_mm)
        centre = np.asarray(centre, np.float64)
        reach = int(math.ceil(self.half_support_mm() / pixel_mm + 0.5)) + 1
        positions = np.rint(centre)[..., None].astype(np.int64) + np.arange(-reach, reach + 1)
        distance = (positions - centre[..., None]) * pixel_mm
        weights = np.clip(self.cumulative(distance + pixel_mm / 2) - self.cumulative(distance - pixel_mm / 2),
                          0.0, None)
        return positions, weights / weights.sum(axis=-1, keepdims=True)

    def sampling_taps(self, factor: int, pixel_mm: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
        """(offsets, weights) of a thick sample every `factor` input samples of `pixel_mm`, for
        `degrade.filter_and_subsample`: thick sample i is centred at input coordinate
        i * factor + (factor - 1) / 2 (the degradation's sampling phase), offsets count from
        i * factor, and taps of zero weight are left out.

        Example:
            SliceProfile("box", 4.0).sampling_taps(4)  # offsets [0, 1, 2, 3], weights 0.25 each
        """
        offsets, weights = self.taps(pixel_mm, centre=(factor - 1) / 2.0)
        keep = weights > 0
        return offsets[keep], weights[keep]

    def kernel(self, pixel_mm: float) -> np.ndarray:
        """Centred, odd-length weights (sum 1) of the profile integrated over pixels of `pixel_mm`.

        For any odd factor this equals the weights of `sampling_taps(factor, pixel_mm)`; for even
        factors those sit half a pixel off.
        """
        positions, weights = self.taps(pixel_mm)
        reach = int(np.abs(positions[weights > 1e-12]).max())
        weights = weights[np.abs(positions) <= reach]
        return weights / weights.sum()

    @property
    def sigma_mm(self) -> float:
        """Standard deviation of the profile in mm: the one width a through-plane spectrum pins
        down whatever the shape (a box of width w and a Gaussian of FWHM ~0.68 w share it)."""
        if self.shape == "box":
            return self.fwhm_mm / math.sqrt(12.0)
        if self.shape == "gaussian":
            return self.fwhm_mm / FWHM_PER_SIGMA
        samples = np.asarray(self.samples)
        positions = (np.arange(len(samples)) - (len(samples) - 1) / 2.0) * self.sample_spacing_mm
        mean = float(np.sum(samples * positions))
        # each sample is a uniform cell: add its own variance
        return math.sqrt(float(np.sum(samples * (positions - mean) ** 2)) + self.sample_spacing_mm ** 2 / 12.0)

    def with_sigma(self, sigma_mm: float) -> "SliceProfile":
        """The same shape (box or gaussian) scaled to standard deviation `sigma_mm`."""
        if self.shape == "file":
            raise ValueError("A profile read from a file keeps its samples; it cannot be rescaled. "
                             f"Received: {self.describe()}")
        return SliceProfile(self.shape, self.fwhm_mm * positive_number("sigma_mm", sigma_mm) / self.sigma_mm)

    def describe(self) -> str:
        if self.shape == "box":
            return f"box, full width {self.fwhm_mm:.2f} mm"
        if self.shape == "gaussian":
            return f"gaussian, FWHM {self.fwhm_mm:.2f} mm"
        return (f"from file, {len(self.samples)} samples at {self.sample_spacing_mm:.3g} mm "
                f"(FWHM {self.fwhm_mm:.2f} mm)")

    def to_dict(self) -> Dict:
        data = asdict(self)
        if data["samples"] is not None:
            data["samples"] = list(data["samples"])
        return data

    @classmethod
    def from_dict(cls, data: Dict) -> "SliceProfile":
        samples = data.get("samples")
        return cls(data["shape"], data["fwhm_mm"], None if samples is None else tuple(samples),
                   data.get("sample_spacing_mm"))


def load_profile_file(path, pixel_mm: float) -> SliceProfile:
    """Read a slice profile from a .npy file: 1-D non-negative weights, centred, sampled at the
    volume's in-plane pixel spacing `pixel_mm` (any length; normalised here)."""
    try:
        samples = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"Could not read a slice profile from {path} ({error}). "
                         f"Received: path={str(path)!r}") from None
    return SliceProfile.from_samples(samples, positive_number("pixel_mm", pixel_mm))


def output_count(size: int, step: float) -> int:
    """Thick samples along an axis of `size` input samples: those whose slab fits (size // step)."""
    return int(math.floor(size / float(step) + 1e-9))


def profile_matrix(profile: SliceProfile, pixel_mm: float, step: float, size: int) -> np.ndarray:
    """Dense [output_count(size, step), size] float64 matrix: thicken with `profile` and resample at
    `step` input samples (real), output k centred at k * step + (step - 1) / 2, symmetric borders.
    For an integer step it equals `degrade.resampling_matrix(profile.sampling_taps(step, pixel_mm),
    step, size)`."""
    step = positive_number("step", step)
    count = output_count(size, step)
    if count < 1:
        raise ValueError(f"An axis of {size} samples holds no thick sample of step {step}. "
                         f"Received: size={size}, step={step}")
    return sparse_profile_matrix(profile, pixel_mm, step, size).toarray()


def sparse_profile_matrix(profile, pixel_mm, step, size) -> sparse.csr_matrix:
    count = output_count(size, step)
    positions, weights = profile.taps(pixel_mm, np.arange(count) * step + (step - 1) / 2.0)
    rows = np.broadcast_to(np.arange(count)[:, None], positions.shape)
    # duplicates (reflected border taps) are summed by the COO -> CSR conversion
    return sparse.csr_matrix((weights.ravel(), (rows.ravel(), reflect_index(positions, size).ravel())),
                             shape=(count, size))


def degrade_lines(lines, profile: SliceProfile, step: float, pixel_mm: float = 1.0) -> np.ndarray:
    """Thicken an array of 1-D lines along its last axis with `profile` and resample at a real
    `step` (in input samples of size `pixel_mm`); see `profile_matrix`.

    Example:
        thick = degrade_lines(volume.T, SliceProfile("gaussian", 3.6), step=7.2, pixel_mm=0.5).T
    """
    lines = np.asarray(lines)
    matrix = profile_matrix(profile, pixel_mm, step, lines.shape[-1])
    out = lines.astype(np.float64) @ matrix.T
    return out.astype(lines.dtype if lines.dtype.kind == "f" else np.float32)


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Indices reflected half-sample symmetrically into [0, size) (the border rule of every
    degradation here: ... 1 0 | 0 1 ... size-1 | size-1 ...)."""
    period = np.mod(index, 2 * size)
    return np.where(period < size, period, 2 * size - 1 - period)


def positive_number(name, value) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")
    return value


def _check_samples(samples: np.ndarray, name: str) -> np.ndarray:
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(f"A slice profile must be a non-empty 1-D array. Received: {name} with "
                         f"shape {samples.shape}")
    if not np.issubdtype(samples.dtype, np.number) or not np.isfinite(samples).all():
        raise ValueError(f"A slice profile must hold finite numbers. Received: {name}={samples.tolist()}")
    if (samples < 0).any():
        raise ValueError(f"A slice profile must be non-negative. Received: min {samples.min():.4g}")
    if not samples.sum() > 0:
        raise ValueError(f"A slice profile must not be all zero. Received: {name}={samples.tolist()}")
    return samples.astype(np.float64)


def _measured_fwhm(samples: np.ndarray, spacing: float) -> float:
    """Width at half maximum of the piecewise-linear curve through the samples (outer crossings)."""
    half = samples.max() / 2.0
    above = np.flatnonzero(samples >= half)
    first, last = above[0], above[-1]
    left = first - (samples[first] - half) / (samples[first] - samples[first - 1]) if first > 0 else first - 0.5
    right = (last + (samples[last] - half) / (samples[last] - samples[last + 1])
             if last < len(samples) - 1 else last + 0.5)
    return float(max(right - left, 1.0) * spacing)
