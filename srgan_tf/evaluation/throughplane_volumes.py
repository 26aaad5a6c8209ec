"""Exp. 3 volumes: thick slices simulated from an isotropic HR volume, brought back on its grid.

Steps 1-5 of the protocol in `srgan_tf.evaluation.throughplane`: in-plane crop, thick-slice
simulation, SR with `super_resolve_volume`, the cubic baseline along the slice axis, and the
mapping of every volume to [-1, 1] with the HR volume's range.
"""
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional

import numpy as np

from srgan_tf.data.degradation.degrade import slice_profile_degrade, upsample_bicubic
from srgan_tf.data.intensity import normalize, robust_range
from srgan_tf.data.degradation.slice_profile import SliceProfile
from srgan_tf.io.volume import Volume

DIRECTION_KEYS = {"coronal": "sr_coronal", "sagittal": "sr_sagittal"}


@dataclass
class ThroughPlaneCase:
    """One volume's reconstructions on the HR grid, in [-1, 1] units of the HR range.

    Every array is `intensity.normalize`d with the HR volume's robust range (so clipped to
    [-1, 1], as the protocol scores and draws them).

    Attributes:
        patient: patient id.
        hr: normalised HR (slices, rows, cols).
        lr: the thick-slice volume (slices / factor, rows, cols).
        outputs: method -> volume of the HR shape ("bicubic", "sr", ...).
        spacing: HR voxel spacing (mm).
        factor: through-plane factor.
        direction: the volume's direction matrix (figures put superior up).
    """

    patient: str
    hr: np.ndarray
    lr: np.ndarray
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)
    spacing: tuple = (1.0, 1.0, 1.0)
    factor: int = 4
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))


def as_model(model):
    """An `ExportedModel` (returned as is) or an export directory (loaded)."""
    if hasattr(model, "predict") and hasattr(model, "scale_hw"):
        return model
    from srgan_tf.inference.exported_model import load_exported

    return load_exported(model)


def crop_in_plane(volume: Volume, size: Optional[int]) -> Volume:
    """The centred size x size in-plane window (each axis kept whole when shorter)."""
    if not size:
        return volume
    _, rows, cols = volume.shape
    top, left = max(0, (rows - size) // 2), max(0, (cols - size) // 2)
    origin = (np.asarray(volume.origin) + top * volume.spacing[1] * volume.direction[1]
              + left * volume.spacing[2] * volume.direction[2])
    return volume.with_array(volume.array[:, top:top + size, left:left + size], origin=tuple(origin))


def simulate_thick_slices(hr: Volume, factor: int, profile: str = "gaussian", thickness=None):
    """(HR cut to a whole number of thick slices, its thick-slice LR volume with geometry).

    LR slice i is the slice profile centred at HR slice i * factor + (factor - 1) / 2, so its
    origin moves by (factor - 1) / 2 HR slices and its spacing is factor HR slices.
    """
    count = hr.shape[0] // factor
    if count < 2:
        raise ValueError(f"Need at least 2 thick slices of {factor} HR slices. "
                         f"Received: {hr.shape[0]} HR slices")
    hr = hr.with_array(np.asarray(hr.array[:count * factor], np.float32))
    width = factor if thickness is None else thickness  # in HR slices
    thick = slice_profile_degrade(hr.array, 0, factor, SliceProfile(profile, width))
    origin = np.asarray(hr.origin) + (factor - 1) / 2 * hr.spacing[0] * hr.direction[0]
    lr = hr.with_array(thick, spacing=(hr.spacing[0] * factor, *hr.spacing[1:]), origin=tuple(origin),
                       series_description=f"{hr.series_description} thick x{factor} ({profile})")
    return hr, lr


def cubic_along_slices(lr: np.ndarray, factor: int) -> np.ndarray:
    """Keys cubic interpolation along axis 0 only: (n, rows, cols) -> (n * factor, rows, cols).

    Half-pixel centres (edge clamp): output j sits at input coordinate (j - (factor - 1) / 2) /
    factor, the inverse of the degradation's sampling phase.
    """
    images = np.asarray(lr, np.float32).transpose(1, 0, 2)[..., None]  # rows of (slices x cols)
    up = upsample_bicubic(images, (factor, 1)).numpy()[..., 0]
    return np.ascontiguousarray(up.transpose(1, 0, 2))


def reconstruct(hr_volume: Volume, models: Mapping, factor: int, profile: str = "gaussian", *,
                thickness=None, crop: Optional[int] = None, batch_size: int = 8,
                progress: bool = False) -> ThroughPlaneCase:
    """Simulate thick slices from `hr_volume` and bring them back with cubic and each model.

    The model named "sr" also contributes its directional volumes ("sr_coronal", "sr_sagittal").
    """
    from srgan_tf.inference.volume_sr import super_resolve_volume

    hr, lr = simulate_thick_slices(crop_in_plane(hr_volume, crop), factor, profile, thickness)
    intensity_range = robust_range(hr.array)
    case = ThroughPlaneCase(hr_volume.patient_id, normalize(hr.array, intensity_range),
                            normalize(lr.array, intensity_range), spacing=hr.spacing, factor=factor,
                            direction=hr.direction)
    case.outputs["bicubic"] = normalize(cubic_along_slices(lr.array, factor), intensity_range)
    for name, model in models.items():
        result = super_resolve_volume(model, lr, "through-plane", batch_size=batch_size,
                                      return_directions=name == "sr", progress=progress)
        case.outputs[name] = normalize(result.volume.array, intensity_range)
        for direction, volume in result.directions.items():
            case.outputs[DIRECTION_KEYS[direction]] = normalize(volume.array, intensity_range)
    return case
