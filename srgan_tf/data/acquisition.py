"""The acquisition model of a thick-slice volume, read from the data rather than from flags.

Exp. 3 (and the self-supervised command) needs four facts about the input: which array axis
is the low-resolution (slice) axis, the through-plane factor, the slice thickness and the
output grid. All come from the volume's geometry:

- the low-resolution axis is the one with the largest voxel spacing;
- the factor is that spacing over the in-plane spacing, non-integer factors included
  (3.6 mm / 0.5 mm = 7.2);
- the thickness is DICOM's SliceThickness when the series has it (it may differ from the
  spacing between slice centres: gaps and overlaps); a NIfTI gives the spacing only, so the
  thickness is taken equal to it (contiguous slices);
- the model's factor is the smallest power of two (2, 4, 8: the generator's x2 sub-pixel
  stages) at least the target factor; its output spacing (slice spacing / model factor) is
  at most the target spacing, and the output is resampled along the slice axis onto the
  target grid (the in-plane spacing, or a chosen one), which covers the input slab;
- when the in-plane spacing is beyond the x8 model's reach (clinical series: 6.5 mm slices at
  0.78 mm, factor 8.3; 5 mm at 0.45 mm, factor 11), the default output spacing is the finest
  the x8 model reaches, slice spacing / 8, and the description says so; an explicit
  `--target-spacing` beyond it is refused.

Numbers that cannot be meant are refused before any work (one line, `InputError`): a
thickness above MAX_THICKNESS_RATIO x the slice spacing or below MIN_THICKNESS_RATIO x, a
target spacing finer than half the in-plane pixel. Unusual but usable ones give warnings
(`Acquisition.warnings`, printed with the description).
"""
import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np

from srgan_tf.io.errors import InputError
from srgan_tf.io.volume import Volume

MIN_FACTOR = 1.5  # below this, through-plane SR gains too little to be worth a model
MAX_MODEL_FACTOR = 8  # the generator's x2 sub-pixel stages: 2, 4 or 8
ISOTROPY_TOLERANCE = 0.05  # relative spacing difference below which two axes count as equal
# a slice thicker than 3 spacings (each point in 3+ slices) or thinner than a fifth of the spacing
# (80 % of the anatomy never imaged) is a typing error rather than a protocol
MAX_THICKNESS_RATIO, MIN_THICKNESS_RATIO = 3.0, 0.2
# usable but unusual: strong overlap or a gap wider than the slice (less to recover)
WARN_THICKNESS_RATIOS = (0.5, 1.5)
MIN_TARGET_FRACTION = 0.5  # a target spacing finer than half the in-plane pixel adds no detail


def is_isotropic(spacing) -> bool:
    """Whether spacings count as equal: the coarsest within ISOTROPY_TOLERANCE of the finest.
    Of a volume's three: it has no low-resolution axis (its planes are equally sharp); of its two
    largest: which axis is the low-resolution one is ambiguous."""
    spacing = np.asarray(spacing, np.float64)
    return float(spacing.max() / spacing.min()) - 1 < ISOTROPY_TOLERANCE


@dataclass(frozen=True)
class Acquisition:
    """How a thick-slice volume was sampled, in its own array axes.

    Attributes:
        slice_axis: array axis (0, 1 or 2) with the largest spacing.
        slice_spacing: mm between slice centres.
        in_plane_spacing: (mm, mm) of the two other axes, in array order.
        thickness: slice thickness in mm (DICOM SliceThickness, else the spacing).
        thickness_source: where the thickness came from ("SliceThickness" or "spacing").
        factor: slice spacing / finest in-plane spacing (any real >= MIN_FACTOR).
        target_spacing: output slice spacing in mm.
        model_factor: upsampling factor of the model (2, 4 or 8, at least the target factor).
        target_source: why that target spacing: "--target-spacing", "in-plane spacing", or
            "x8 reach" (the in-plane spacing needs a model above x8).
        warnings: one line each for unusual but usable inputs.
    """

    slice_axis: int
    slice_spacing: float
    in_plane_spacing: Tuple[float, float]
    thickness: float
    thickness_source: str
    factor: float
    target_spacing: float
    model_factor: int
    target_source: str = "in-plane spacing"
    warnings: Tuple[str, ...] = ()

    @property
    def gap(self) -> float:
        """mm between one slice's edge and the next one's (negative: overlap)."""
        return self.slice_spacing - self.thickness

    @property
    def target_factor(self) -> float:
        """Slice spacing over the target spacing (the factor the output grid realises)."""
        return self.slice_spacing / self.target_spacing

    def describe(self) -> str:
        axis_names = {0: "array axis 0 (NIfTI k / DICOM slices)", 1: "array axis 1 (rows)",
                      2: "array axis 2 (columns)"}
        gap = (f", gap {self.gap:.3g} mm" if self.gap > 1e-3 else
               f", overlap {-self.gap:.3g} mm" if self.gap < -1e-3 else "")
        return (f"low-resolution axis: {axis_names[self.slice_axis]}, slice spacing "
                f"{self.slice_spacing:.4g} mm, in-plane {self.in_plane_spacing[0]:.4g} x "
                f"{self.in_plane_spacing[1]:.4g} mm; factor {self.factor:.4g}; thickness "
                f"{self.thickness:.4g} mm (from {self.thickness_source}{gap}); output slice "
                f"spacing {self.target_spacing:.4g} mm (model x{self.model_factor}"
                f"{'' if math.isclose(self.target_factor, self.model_factor, rel_tol=1e-6) else ', then resampled along the slices'})"
                + (f"; factor {self.factor:.3g} is beyond the x{MAX_MODEL_FACTOR} model, so the output "
                   f"spacing is the finest it reaches (slice spacing / {MAX_MODEL_FACTOR}); choose "
                   "another with --target-spacing" if self.target_source == "x8 reach" else "")
                + "".join(f"\nWarning: {w}" for w in self.warnings))

    def to_dict(self) -> dict:
        values = asdict(self)
        values.update(gap=self.gap, target_factor=self.target_factor, warnings=list(self.warnings))
        return values


def _dicom_thickness(volume: Volume) -> Optional[float]:
    value = volume.source_tags.get("SliceThickness")
    try:
        thickness = float(value)
    except (TypeError, ValueError):
        return None
    return thickness if math.isfinite(thickness) and thickness > 0 else None


def acquisition_from_volume(volume: Volume, *, target_spacing: Optional[float] = None,
                            thickness: Optional[float] = None, source="input") -> Acquisition:
    """The acquisition model of `volume` (see the module docstring); InputError if there is
    no usable low-resolution axis.

    Args:
        volume: the thick-slice volume.
        target_spacing: output slice spacing in mm (default: the finest in-plane spacing).
        thickness: slice thickness in mm overriding DICOM's (default: SliceThickness when the
            series has it, else the slice spacing).
        source: name of the input for error messages.

    Example:
        >>> acquisition_from_volume(read_volume("t2_tse_tra/")).factor
        7.2
    """
    shape = volume.shape
    spacing = np.asarray(volume.spacing, np.float64)
    if min(shape) < 1:
        raise InputError(source, f"empty volume (shape {shape})")
    axis = int(np.argmax(spacing))
    others = [a for a in range(3) if a != axis]
    if shape[axis] < 2:
        raise InputError(source, f"a single slice along the low-resolution axis (shape {shape}, "
                                 f"spacing {tuple(round(s, 4) for s in spacing)} mm): "
                                 "through-plane SR needs at least 2 slices")
    finest = float(min(spacing[others]))
    factor = float(spacing[axis] / finest)
    if is_isotropic(spacing):
        raise InputError(source, f"the volume is isotropic (spacing {tuple(round(s, 4) for s in spacing)} "
                                 "mm): there is no low-resolution axis to super-resolve")
    if factor < MIN_FACTOR:
        raise InputError(source, f"slice spacing {spacing[axis]:.4g} mm is only {factor:.3g} x the "
                                 f"in-plane spacing {finest:.4g} mm (at least {MIN_FACTOR} needed); "
                                 "cubic interpolation is as good as SR here")
    if is_isotropic(sorted(spacing)[1:]):  # the two largest spacings are equal
        raise InputError(source, f"two axes share the largest spacing ({tuple(round(s, 4) for s in spacing)} "
                                 "mm): the low-resolution axis is ambiguous")
    slice_spacing = float(spacing[axis])
    if target_spacing is None:
        target, target_source = finest, "in-plane spacing"
        if slice_spacing / finest > MAX_MODEL_FACTOR + 1e-6:
            target, target_source = slice_spacing / MAX_MODEL_FACTOR, "x8 reach"
    else:
        target, target_source = _checked_target(target_spacing, slice_spacing, finest), "--target-spacing"
    target_factor = slice_spacing / target
    model_factor = 2
    while model_factor < target_factor - 1e-6:
        model_factor *= 2
    if model_factor > MAX_MODEL_FACTOR:
        raise InputError("--target-spacing", f"{target:.4g} mm is factor {target_factor:.3g} of the "
                                             f"{slice_spacing:.4g} mm slices, beyond the x{MAX_MODEL_FACTOR} "
                                             f"model; the finest it reaches is {slice_spacing / MAX_MODEL_FACTOR:.4g} mm")
    warnings = []
    if thickness is not None:
        chosen, origin = _checked_thickness(thickness, slice_spacing), "--slice-thickness"
    else:
        chosen, origin = _dicom_thickness(volume), "SliceThickness"
        if chosen is None:
            chosen, origin = slice_spacing, "spacing"
        elif not MIN_THICKNESS_RATIO <= chosen / slice_spacing <= MAX_THICKNESS_RATIO:
            warnings.append(f"the DICOM SliceThickness {chosen:.4g} mm is {chosen / slice_spacing:.2g} x "
                            f"the slice spacing {slice_spacing:.4g} mm; check it, or pass --slice-thickness")
    ratio = chosen / slice_spacing
    if ratio < WARN_THICKNESS_RATIOS[0]:
        warnings.append(f"slice thickness {chosen:.4g} mm leaves gaps of {slice_spacing - chosen:.3g} mm "
                        f"between slices ({ratio:.2g} x the spacing): tissue in the gaps was never "
                        "imaged, expect less gain")
    elif ratio > WARN_THICKNESS_RATIOS[1]:
        warnings.append(f"slice thickness {chosen:.4g} mm is {ratio:.2g} x the slice spacing "
                        f"{slice_spacing:.4g} mm (strongly overlapping slices)")
    if target_factor < MIN_FACTOR:
        warnings.append(f"target spacing {target:.4g} mm is only {target_factor:.2g} x finer than the "
                        "slices: little to gain over interpolation")
    return Acquisition(axis, slice_spacing, (float(spacing[others[0]]), float(spacing[others[1]])),
                       chosen, origin, factor, target, model_factor, target_source, tuple(warnings))


def _checked_target(value, slice_spacing: float, finest: float) -> float:
    """--target-spacing if it can be meant: positive, below the slice spacing, and not finer
    than MIN_TARGET_FRACTION of the in-plane pixel."""
    target = float(value)
    if not (math.isfinite(target) and 0 < target < slice_spacing):
        raise InputError("--target-spacing", f"must be > 0 and below the slice spacing "
                                             f"{slice_spacing:.4g} mm. Received: {value}")
    if target < MIN_TARGET_FRACTION * finest:
        raise InputError("--target-spacing", f"{target:.4g} mm is finer than half the in-plane pixel "
                                             f"({finest:.4g} mm): no detail to add there. Received: {value}")
    return target


def _checked_thickness(value, slice_spacing: float) -> float:
    """--slice-thickness if it can be meant: within MIN_THICKNESS_RATIO..MAX_THICKNESS_RATIO x
    the slice spacing."""
    thickness = float(value)
    if not (math.isfinite(thickness) and thickness > 0):
        raise InputError("--slice-thickness", f"must be > 0 mm. Received: {value}")
    ratio = thickness / slice_spacing
    if ratio > MAX_THICKNESS_RATIO:
        raise InputError("--slice-thickness", f"{thickness:.4g} mm is {ratio:.3g} x the slice spacing "
                                              f"{slice_spacing:.4g} mm (more than {MAX_THICKNESS_RATIO:g} x: "
                                              "each point would lie in that many slices). Received: "
                                              f"{value}")
    if ratio < MIN_THICKNESS_RATIO:
        raise InputError("--slice-thickness", f"{thickness:.4g} mm is {ratio:.2g} x the slice spacing "
                                              f"{slice_spacing:.4g} mm (below {MIN_THICKNESS_RATIO:g} x: most "
                                              f"of the anatomy would never be imaged). Received: {value}")
    return thickness


def to_slice_first(volume: Volume, axis: int) -> Volume:
    """The same volume with array axis `axis` moved to position 0 (geometry kept exact)."""
    if axis == 0:
        return volume
    order = [axis] + [a for a in range(3) if a != axis]
    return volume.with_array(np.ascontiguousarray(volume.array.transpose(order)),
                             spacing=tuple(volume.spacing[a] for a in order),
                             direction=np.asarray(volume.direction)[order])


def from_slice_first(volume: Volume, axis: int) -> Volume:
    """Inverse of `to_slice_first`: axis 0 goes back to position `axis`."""
    if axis == 0:
        return volume
    order = [axis] + [a for a in range(3) if a != axis]
    inverse = list(np.argsort(order))
    return volume.with_array(np.ascontiguousarray(volume.array.transpose(inverse)),
                             spacing=tuple(volume.spacing[a] for a in inverse),
                             direction=np.asarray(volume.direction)[inverse])


def target_grid(volume: Volume, acquisition: Acquisition):
    """Output slices along axis 0 of a slice-first `volume`: (count, spacing, first centre
    offset in mm from the first input slice centre). The grid covers the input slab, i.e.
    [first centre - d/2, last centre + d/2], centred in it."""
    d, t = acquisition.slice_spacing, acquisition.target_spacing
    extent = volume.shape[0] * d
    count = max(1, int(round(extent / t)))
    first = -d / 2 + (extent - count * t) / 2 + t / 2
    return count, t, first
