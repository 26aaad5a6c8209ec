"""`Volume`: a 3-D MR image with its patient geometry, the unit every layer passes around."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np


@dataclass
class Volume:
    """A scalar MR volume in scanner units with DICOM (LPS) geometry.

    Args:
        array: float32 array of shape (slices, rows, cols), rescale slope/intercept applied.
        spacing: voxel size in mm along (slice, row, col).
        origin: LPS position in mm of the centre of voxel (0, 0, 0), i.e. the
            ImagePositionPatient of the first slice.
        direction: 3x3 array; `direction[k]` is the LPS unit vector along which array
            axis k increases (0: slice normal in stacking order, 1: down the rows,
            i.e. DICOM column cosine, 2: along a row, i.e. DICOM row cosine).
        patient_id, series_description, series_uid, study_uid, modality: source tags.
        source_paths: files the volume was read from, in slice order.
        source_tags: extra DICOM tags (keyword -> value) carried over to derived series.
    """

    array: np.ndarray
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    # Axial default: slices stack along +z (LPS superior), rows go +y (posterior), cols go +x.
    # It is right-handed in the DICOM sense (normal = row cosine x column cosine).
    direction: np.ndarray = field(default_factory=lambda: np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]]))
    patient_id: str = "anonymous"
    series_description: str = ""
    series_uid: str = ""
    study_uid: str = ""
    modality: str = "MR"
    source_paths: List[str] = field(default_factory=list)
    source_tags: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self):
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(
                f"Volume array must be 3-D (slices, rows, cols). Received: shape {self.array.shape}"
            )
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.array.shape)

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping (slice, row, col, 1) indices to LPS millimetres."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction.T * np.asarray(self.spacing)[None, :]
        affine[:3, 3] = self.origin
        return affine

    def slice_positions(self) -> np.ndarray:
        """LPS position (mm) of the first voxel of every slice, shape (slices, 3)."""
        steps = np.arange(self.array.shape[0])[:, None] * self.spacing[0]
        return np.asarray(self.origin)[None, :] + steps * self.direction[0][None, :]

    def with_array(self, array: np.ndarray, spacing: Optional[Tuple[float, ...]] = None,
                   origin: Optional[Tuple[float, ...]] = None, **changes) -> "Volume":
        """A copy with a new array (and optionally new spacing/origin/tags), same geometry otherwise."""
        values = dict(self.__dict__)
        values.update(array=array, spacing=spacing or self.spacing, origin=origin or self.origin)
        values["source_paths"] = list(self.source_paths)
        values["source_tags"] = dict(self.source_tags)
        values.update(changes)
        return Volume(**values)
