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
  target grid (the in-plane spacing, or a chosen one), which covers the input slab.
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
    """

    slice_axis: int
    slice_spacing: float
    in_plane_spacing: Tuple[float, float]
    thickness: float
    thickness_source: str
    factor: float
    target_spacing: float
    model_factor: int

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
                f"{'' if math.isclose(self.target_factor, self.model_factor, rel_tol=1e-6) else ', then resampled along the slices'})")

    def to_dict(self) -> dict:
        values = asdict(self)
        values.update(gap=self.gap, target_factor=self.target_factor)
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
    if factor - 1 < ISOTROPY_TOLERANCE:
        raise InputError(source, f"the volume is isotropic (spacing {tuple(round(s, 4) for s in spacing)} "
                                 "mm): there is no low-resolution axis to super-resolve")
    if factor < MIN_FACTOR:
        raise InputError(source, f"slice spacing {spacing[axis]:.4g} mm is only {factor:.3g} x the "
                                 f"in-plane spacing {finest:.4g} mm (at least {MIN_FACTOR} needed); "
                                 "cubic interpolation is as good as SR here")
    second = sorted(spacing)[1]
    if spacing[axis] / second - 1 < ISOTROPY_TOLERANCE:
        raise InputError(source, f"two axes share the largest spacing ({tuple(round(s, 4) for s in spacing)} "
                                 "mm): the low-resolution axis is ambiguous")
    target = finest if target_spacing is None else float(target_spacing)
    if not (math.isfinite(target) and 0 < target < spacing[axis]):
        raise InputError("--target-spacing", f"must be > 0 and below the slice spacing "
                                             f"{spacing[axis]:.4g} mm. Received: {target_spacing}")
    target_factor = float(spacing[axis] / target)
    model_factor = 2
    while model_factor < target_factor - 1e-6:
        model_factor *= 2
    if model_factor > MAX_MODEL_FACTOR:
        raise InputError(source if target_spacing is None else "--target-spacing",
                         f"factor {target_factor:.3g} needs a model above x{MAX_MODEL_FACTOR}; "
                         "choose a coarser --target-spacing")
    if thickness is not None:
        chosen, origin = float(thickness), "--slice-thickness"
        if not (math.isfinite(chosen) and chosen > 0):
            raise InputError("--slice-thickness", f"must be > 0 mm. Received: {thickness}")
    else:
        chosen, origin = _dicom_thickness(volume), "SliceThickness"
        if chosen is None:
            chosen, origin = float(spacing[axis]), "spacing"
    return Acquisition(axis, float(spacing[axis]), (float(spacing[others[0]]), float(spacing[others[1]])),
                       chosen, origin, factor, target, model_factor)


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
