"""Header pass over a DICOM tree: each file parsed once, without pixels, into a `SliceHeader`.

`srgan_tf.io.dicom` groups these by series, checks geometry and reads the pixels it keeps.
"""
import os
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName
from tqdm.auto import tqdm

from srgan_tf.io.errors import InputError, error_summary

# Tags a derived series carries over (patient, study, frame of reference, acquisition).
CARRIED_TAGS = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "PatientAge", "PatientSize",
    "PatientWeight", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "StudyID",
    "AccessionNumber", "ReferringPhysicianName", "FrameOfReferenceUID",
    "PositionReferenceIndicator", "Manufacturer", "ManufacturerModelName", "InstitutionName",
    "BodyPartExamined", "PatientPosition", "ProtocolName", "MagneticFieldStrength",
    "ImagingFrequency", "ImagedNucleus", "RepetitionTime", "EchoTime", "EchoTrainLength",
    "FlipAngle", "NumberOfAverages", "ScanningSequence", "SequenceVariant", "ScanOptions",
    "MRAcquisitionType", "SequenceName", "SeriesNumber", "SliceThickness",
)
_PIXEL_TAGS = ("SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
               "HighBit", "PixelRepresentation")
_REQUIRED = ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient")
PIXEL_DATA_TAG, _FLOAT_PIXEL_DATA = 0x7FE00010, (0x7FE00008, 0x7FE00009)
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class SliceHeader:
    """What the header pass keeps of one DICOM file (small, so a big tree fits in memory)."""

    path: str
    series_uid: str
    modality: str
    description: str = ""
    sop_uid: str = ""
    # Why the pixels cannot be used although the header can (the slice still has a place).
    unreadable: str = ""
    rows: int = 0
    cols: int = 0
    pixel_spacing: Tuple[float, float] = (0.0, 0.0)
    orientation: Tuple[float, ...] = ()
    position: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    slope: float = 1.0
    intercept: float = 0.0
    pixel_offset: int = 0
    encoding: Tuple[bool, bool] = (False, True)
    transfer_syntax: str = pydicom.uid.ExplicitVRLittleEndian
    pixel_tags: Dict[str, object] = field(default_factory=dict)
    tags: Dict[str, object] = field(default_factory=dict)


def _plain(value):
    """A DICOM value as plain Python (str, int, float, list); None for what we do not keep."""
    if isinstance(value, (MultiValue, list, tuple)):
        items = [_plain(item) for item in value]
        return None if any(item is None for item in items) else items
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (str, PersonName)):
        return str(value) or None
    return None


def _floats(value, count: int) -> Tuple[float, ...]:
    values = tuple(float(v) for v in (value if isinstance(value, (MultiValue, list)) else [value]))
    if len(values) != count:
        raise ValueError(f"expected {count} values, found {len(values)}")
    return values


def _open_header(path: str) -> Tuple[Dataset, int, int]:
    """Parse a file up to its pixel data; returns (dataset, pixel offset, tag found there).

    The offset is -1 for a deflated file, whose pixels must be read with a full dcmread.
    """
    if os.path.getsize(path) == 0:
        raise InputError(path, "empty file (0 bytes)")
    with open(path, "rb") as stream:
        if stream.read(2) == _GZIP_MAGIC:
            raise InputError(path, "gzip-compressed file; decompress it (gunzip) before reading")
        stream.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(stream, stop_before_pixels=True)
        except InvalidDicomError:
            raise InputError(path, "not a DICOM file (no 'DICM' marker after the 128-byte "
                                   "preamble)") from None
        except Exception as error:  # pydicom raises many types on corrupt headers
            raise InputError(path, f"unreadable DICOM header ({error_summary(error)})")
        offset = stream.tell()
        head = stream.read(4)
    if ds.file_meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
        return ds, -1, PIXEL_DATA_TAG  # offsets refer to the inflated stream; dcmread it later
    tag = 0
    if len(head) == 4:
        order = "<" if ds.original_encoding[1] is not False else ">"
        group, element = np.frombuffer(head, dtype=f"{order}u2")
        tag = (int(group) << 16) | int(element)
    return ds, offset, tag


def read_header(path: str, known_series=()) -> SliceHeader:
    """Read the header of one file; raises InputError when it cannot be an MR slice.

    Source tags are kept only for a file whose series is not in `known_series`.
    """
    ds, offset, tag = _open_header(path)
    modality = str(ds.get("Modality", "") or "")
    series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    if ds.file_meta.get("MediaStorageSOPClassUID") == pydicom.uid.MediaStorageDirectoryStorage:
        raise InputError(path, "DICOMDIR index file, not an image (the images it lists are "
                               "read from the folder tree)")
    if not modality or not series_uid:
        raise InputError(path, "truncated or incomplete DICOM: no Modality/SeriesInstanceUID "
                               f"(header ends at byte {offset})")
    header = SliceHeader(path=path, series_uid=series_uid, modality=modality,
                         description=str(ds.get("SeriesDescription", "") or ""),
                         sop_uid=str(ds.get("SOPInstanceUID", "") or ""))
    if modality != "MR":
        return header  # reported once per series by the caller
    missing = [keyword for keyword in _REQUIRED if ds.get(keyword) in (None, "")]
    if missing:
        raise InputError(path, f"MR file without {', '.join(missing)} (not an image slice, "
                               "or a truncated file)")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(path, "multi-frame (enhanced) MR DICOM is not supported; convert it to "
                               "single-frame files (e.g. dcm2niix or emf2sf)")
    # A slice without usable pixels keeps its header: its series then knows which slice is
    # missing (and whether another file holds the same one).
    if tag in _FLOAT_PIXEL_DATA:
        header.unreadable = "float pixel data is not supported (expected PixelData)"
    elif tag != PIXEL_DATA_TAG:
        header.unreadable = "DICOM without pixel data (no PixelData element)"
    try:
        header.rows, header.cols = int(ds.Rows), int(ds.Columns)
        header.pixel_spacing = _floats(ds.PixelSpacing, 2)
        header.orientation = _floats(ds.ImageOrientationPatient, 6)
        header.position = _floats(ds.ImagePositionPatient, 3)
        header.slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        header.intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError) as error:
        raise InputError(path, f"invalid geometry or rescale tags ({error})") from None
    numbers = (*header.pixel_spacing, *header.orientation, *header.position, header.slope,
               header.intercept)
    if not np.isfinite(numbers).all():
        raise InputError(path, "non-finite geometry or rescale tags (PixelSpacing "
                               f"{header.pixel_spacing}, ImageOrientationPatient "
                               f"{header.orientation}, ImagePositionPatient {header.position}, "
                               f"RescaleSlope/Intercept {header.slope}/{header.intercept})")
    if min(header.pixel_spacing) <= 0:
        raise InputError(path, f"invalid PixelSpacing {header.pixel_spacing}")
    header.pixel_offset = offset
    header.encoding = tuple(bool(flag) for flag in ds.original_encoding)
    header.transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", header.transfer_syntax))
    header.pixel_tags = {keyword: ds.get(keyword) for keyword in _PIXEL_TAGS if keyword in ds}
    if series_uid not in known_series:
        tags = {keyword: _plain(ds.get(keyword)) for keyword in CARRIED_TAGS if keyword in ds}
        header.tags = {keyword: value for keyword, value in tags.items() if value is not None}
    return header


def _files(root: str) -> List[str]:
    if os.path.isfile(root):
        return [root]
    found = []
    for directory, subdirs, names in os.walk(root):
        # Hidden folders hold no series (e.g. an interrupted write_dicom_series' .partial-*).
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        found.extend(os.path.join(directory, name) for name in sorted(names))
    return found


def scan_dicom_headers(root, progress: bool = False
                       ) -> Tuple[Dict[str, List[SliceHeader]], List[InputError]]:
    """Header pass over a tree: MR slices grouped by SeriesInstanceUID, plus per-file skips.

    Non-MR series are reported once each (naming their first file), not kept.
    """
    root = str(root)
    if not os.path.exists(root):
        raise InputError(root, "does not exist")
    series: Dict[str, List[SliceHeader]] = {}
    other: Dict[str, List[SliceHeader]] = {}
    skipped: List[InputError] = []
    for path in tqdm(_files(root), desc="DICOM headers", unit="file", disable=not progress):
        try:
            header = read_header(path, series)
        except InputError as error:
            skipped.append(error)
            continue
        except OSError as error:
            skipped.append(InputError(path, f"cannot read file ({error.strerror or error})"))
            continue
        group = series if header.modality == "MR" else other
        group.setdefault(header.series_uid, []).append(header)
    for headers in other.values():
        skipped.append(InputError(headers[0].path, (
            f"modality {headers[0].modality} is not MR (series '{headers[0].description}', "
            f"{len(headers)} file(s) skipped)")))
    return series, skipped
