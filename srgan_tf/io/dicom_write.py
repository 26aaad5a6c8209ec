"""Write a `Volume` as a DICOM MR Image Storage series (one file per slice)."""
import contextlib
import datetime
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID,
                         generate_uid)
from pydicom.valuerep import format_number_as_ds

from srgan_tf.files import staged_folder
from srgan_tf.io.volume import Volume

# Tags the writer sets itself from the volume; a carried-over value would contradict the geometry.
_WRITER_OWNED = frozenset((
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
    "SeriesDate", "SeriesTime", "ContentDate", "ContentTime", "InstanceNumber", "ImageType",
    "Modality", "Rows", "Columns", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation", "SamplesPerPixel",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
    "PixelData", "NumberOfFrames", "DerivationDescription", "SpecificCharacterSet",
    "SmallestImagePixelValue", "LargestImagePixelValue", "PixelPaddingValue",
))

# Type 1/2 attributes of the MR Image IOD that must be present (empty allowed for type 2).
_REQUIRED_DEFAULTS = {
    "PatientBirthDate": "", "PatientSex": "", "ReferringPhysicianName": "", "StudyID": "1",
    "AccessionNumber": "", "PositionReferenceIndicator": "", "Manufacturer": "",
    "ScanningSequence": "SE", "SequenceVariant": "NONE", "ScanOptions": "",
    "MRAcquisitionType": "2D", "EchoTime": "", "RepetitionTime": "", "EchoTrainLength": "",
}


def _ds(value: float) -> str:
    """A float as a DICOM decimal string (at most 16 characters), rounded to 1e-6 (mm): spacing
    derived from positions (e.g. 3.00000000000004 / 4) is written as 0.75, not 0.75000000000001."""
    return format_number_as_ds(round(float(value), 6) + 0.0)


def _choose_encoding(array: np.ndarray) -> Tuple[np.dtype, float, float]:
    """Stored dtype, slope and intercept that keep the value range with good precision.

    Integer-valued data that fits int16/uint16 is stored exactly; anything else is mapped
    linearly onto the full uint16 range.
    """
    low, high = float(array.min()), float(array.max())
    if np.array_equal(array, np.rint(array)):
        if low >= 0 and high <= 65535:
            return np.dtype(np.uint16), 1.0, 0.0
        if low >= -32768 and high <= 32767:
            return np.dtype(np.int16), 1.0, 0.0
    intercept = float(_ds(low))
    slope = float(_ds((high - intercept) / 65535.0)) if high > intercept else 1.0
    if slope <= 0:  # a range so tiny that the decimal string rounds it to zero
        slope = float(_ds(np.finfo(np.float32).tiny))
    return np.dtype(np.uint16), slope, intercept


def _encode(array: np.ndarray, dtype: np.dtype, slope: float, intercept: float) -> np.ndarray:
    info = np.iinfo(dtype)
    stored = np.rint((array.astype(np.float64) - intercept) / slope)
    return np.clip(stored, info.min, info.max).astype(dtype)


def _carried_tags(volume: Volume, reference: Optional[Volume]) -> dict:
    """Source tags to copy; the reference (the series this one derives from) wins on conflicts."""
    tags = dict(volume.source_tags)
    if reference is not None:
        tags.update(reference.source_tags)
    owner = reference if reference is not None else volume
    tags.setdefault("PatientID", owner.patient_id or volume.patient_id)
    tags.setdefault("PatientName", tags["PatientID"])
    study_uid = owner.study_uid or volume.study_uid
    tags.setdefault("StudyInstanceUID", study_uid or generate_uid())
    tags.setdefault("FrameOfReferenceUID", generate_uid())
    return {key: value for key, value in tags.items()
            if key not in _WRITER_OWNED and tag_for_keyword(key) is not None}


def _series_template(volume, tags, series_description, derived, series_number, dtype,
                     slope, intercept) -> dict:
    """Keyword -> value of every element shared by all slices of the series."""
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    rows, cols = volume.shape[1:]
    element = dict(_REQUIRED_DEFAULTS)
    element.update(StudyDate=date, StudyTime=time)  # DICOMDIR creators require both
    element.update(tags)
    window_low, window_high = np.percentile(volume.array[:, ::4, ::4], (0.5, 99.5))
    element.update(
        SpecificCharacterSet="ISO_IR 192",
        SOPClassUID=MRImageStorage,
        ImageType=["DERIVED", "SECONDARY"] if derived else ["ORIGINAL", "PRIMARY"],
        Modality="MR",
        SeriesInstanceUID=generate_uid(),
        SeriesNumber=series_number if series_number is not None else (1001 if derived else 1),
        SeriesDescription=series_description[:64],
        SeriesDate=date, SeriesTime=time, ContentDate=date, ContentTime=time,
        Rows=rows, Columns=cols,
        PixelSpacing=[_ds(volume.spacing[1]), _ds(volume.spacing[2])],
        SliceThickness=_ds(volume.spacing[0]),
        SpacingBetweenSlices=_ds(volume.spacing[0]),
        ImageOrientationPatient=[_ds(v) for v in (*volume.direction[2], *volume.direction[1])],
        SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
        BitsAllocated=16, BitsStored=16, HighBit=15,
        PixelRepresentation=1 if dtype == np.int16 else 0,
        RescaleSlope=_ds(slope), RescaleIntercept=_ds(intercept),
        WindowCenter=_ds((window_low + window_high) / 2),
        WindowWidth=_ds(max(window_high - window_low, 1e-3)),
    )
    if derived:
        element["DerivationDescription"] = "srgan-tf: " + series_description[:100]
    return element


def _slice_dataset(template: dict, index: int, position: np.ndarray, normal: np.ndarray,
                   pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    for keyword, value in template.items():
        try:
            setattr(ds, keyword, value)
        except (TypeError, ValueError, OverflowError):
            continue  # a carried-over value that does not fit its VR is dropped, not fatal
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.SliceLocation = _ds(float(np.dot(position, normal)))
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def write_dicom_series(volume: Volume, out_dir, *, series_description: str, derived: bool = True,
                       series_number: Optional[int] = None, reference: Optional[Volume] = None,
                       staged: bool = True) -> List[Path]:
    """Write `volume` as an MR Image Storage series, one explicit-VR-little-endian file per slice.

    Pixels are stored as uint16/int16 with RescaleSlope/Intercept chosen to keep the value
    range; geometry (positions, orientation, spacing) comes from the volume; patient and study
    tags are carried over from `volume.source_tags` and, winning on conflicts, `reference`.
    Files are written to a hidden partial folder beside `out_dir` (`files.staged_folder`) and
    moved in at the end, so an interrupted write leaves no partial series behind. Readers order
    slices along cross(row, column cosine), so a volume with direction[0] opposite to
    cross(direction[2], direction[1]) reads back in reversed slice order (the same image in
    space).

    Args:
        volume: the image to write.
        out_dir: destination folder (created); files are named IM-0001.dcm, IM-0002.dcm, ...
        series_description: SeriesDescription of the new series.
        derived: ImageType DERIVED\\SECONDARY (True) or ORIGINAL\\PRIMARY (False).
        series_number: SeriesNumber; default 1001 for derived series, 1 otherwise.
        reference: the series this one derives from (patient, study, frame of reference).
        staged: False when `out_dir` is itself a partial folder that the caller renames into
            place (infer stages the DICOM series to rename it in after the NIfTI file).

    Returns:
        The written files in slice order.

    Example:
        >>> write_dicom_series(sr_volume, "out/sr", series_description="t2_tse_tra SRGAN x4")
    """
    array = np.asarray(volume.array, dtype=np.float32)
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"Expected a non-empty 3-D volume. Received: shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("Expected finite intensities. Received: a volume with NaN or inf values")
    dtype, slope, intercept = _choose_encoding(array)
    template = _series_template(volume, _carried_tags(volume, reference), series_description,
                                derived, series_number, dtype, slope, intercept)
    normal = np.cross(volume.direction[2], volume.direction[1])
    positions = volume.slice_positions()
    out_dir = Path(out_dir)
    digits = max(4, len(str(volume.shape[0])))
    names = [f"IM-{index + 1:0{digits}d}.dcm" for index in range(volume.shape[0])]
    with (staged_folder(out_dir, existing="merge") if staged
          else contextlib.nullcontext(out_dir)) as folder:
        folder.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(names):
            pixels = _encode(array[index], dtype, slope, intercept)
            ds = _slice_dataset(template, index, positions[index], normal, pixels)
            ds.save_as(folder / name, enforce_file_format=True)
    return [out_dir / name for name in names]
