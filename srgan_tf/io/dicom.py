"""Read DICOM MR series of a folder tree into `Volume`s; bad files are skipped with a reason.

Every file's header is parsed once (without pixels); only the series that are kept have
their pixel data read, straight from the offset the header pass recorded.
"""
import os
import re
import warnings
from collections import Counter
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from tqdm.auto import tqdm

from srgan_tf.io.dicom_scan import (  # noqa: F401  (public re-exports)
    CARRIED_TAGS, SliceHeader, _PIXEL_DATA, _one_line, read_header, scan_dicom_headers)
from srgan_tf.io.dicom_write import write_dicom_series  # noqa: F401  (public re-export)
from srgan_tf.io.errors import InputError
from srgan_tf.io.volume import Volume

# T2-weighted axial (PROSTATEx "t2_tse_tra", Philips "T2W_TSE_ax", GE "Ax T2 FRFSE"), excluding
# diffusion, ADC, T2* and mapping series, and sagittal/coronal/localizer planes.
DEFAULT_SERIES_FILTER = (
    r"^(?!.*(?:diff|dwi|ep2d|(?<![a-z])adc|t2\s*\*|t2_?star|map|(?<![a-z])(?:sag|cor|loc)))"
    r"(?=.*(?<![a-z0-9])t2(?![0-9]))"
    r".*(?<![a-z])(?:tra|trans|transverse|ax|axi|axial)(?![a-z])"
)

def _decoder_available(syntax: pydicom.uid.UID) -> bool:
    try:
        return pydicom.pixels.get_decoder(syntax).is_available
    except (NotImplementedError, ValueError):
        return False


def _pixel_error(header: SliceHeader, error: Optional[Exception]) -> InputError:
    syntax = pydicom.uid.UID(header.transfer_syntax)
    if syntax.is_compressed:
        decoders = ("a decoder such as pylibjpeg (with pylibjpeg-libjpeg and pylibjpeg-openjpeg)"
                    " or python-gdcm")
        problem = (f"no decoder for it is installed; install {decoders}" if error is None else
                   f"decoding failed ({_one_line(error)}); the data may be corrupt, or try "
                   f"{decoders}")
        return InputError(header.path, (
            f"pixel data uses the compressed transfer syntax {syntax.name} ({syntax}) and "
            f"{problem}, or decompress the files (gdcmconv --raw)"))
    return InputError(header.path, f"unreadable pixel data ({_one_line(error)})")


def read_pixels(header: SliceHeader) -> np.ndarray:
    """The rescaled float32 image of one slice, read from the recorded pixel data offset."""
    syntax = pydicom.uid.UID(header.transfer_syntax)
    if syntax.is_compressed and not _decoder_available(syntax):
        raise _pixel_error(header, None)
    try:
        with open(header.path, "rb") as stream, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if header.pixel_offset < 0:
                pixel_ds = pydicom.dcmread(stream)
            else:
                stream.seek(header.pixel_offset)
                pixel_ds = read_dataset(stream, *header.encoding)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = header.transfer_syntax
        ds.Rows, ds.Columns = header.rows, header.cols
        for keyword, value in header.pixel_tags.items():
            setattr(ds, keyword, value)
        if _PIXEL_DATA not in pixel_ds:
            raise InputError(header.path, "DICOM without pixel data (no PixelData element)")
        ds[_PIXEL_DATA] = pixel_ds[_PIXEL_DATA]
        image = ds.pixel_array
    except InputError:
        raise
    except Exception as error:  # decoders and truncated data raise many types
        raise _pixel_error(header, error) from None
    if image.shape != (header.rows, header.cols):
        raise InputError(header.path, f"expected one {header.rows}x{header.cols} grayscale "
                                      f"image. Received: pixel array of shape {image.shape}")
    return (image.astype(np.float32) * np.float32(header.slope) + np.float32(header.intercept))


def check_series_geometry(headers: List[SliceHeader]
                          ) -> Tuple[List[SliceHeader], Tuple[float, float, float], np.ndarray]:
    """Slices sorted along the normal, spacing (slice, row, col) and direction; else InputError."""
    sizes = Counter((header.rows, header.cols) for header in headers)
    first = next(h for h in headers if (h.rows, h.cols) == sizes.most_common(1)[0][0])
    where = f"series '{first.description}'"
    if len(headers) < 2:
        raise InputError(first.path, f"{where} has a single slice; a volume needs at least 2")
    for header in headers:  # the majority image size names the odd file out
        if (header.rows, header.cols) != (first.rows, first.cols):
            raise InputError(header.path, f"{where} mixes image sizes: {header.rows}x"
                                          f"{header.cols} here, {first.rows}x{first.cols} in "
                                          f"{first.path}")
        if not np.allclose(header.pixel_spacing, first.pixel_spacing, rtol=1e-3, atol=1e-4):
            raise InputError(header.path, f"{where} mixes pixel spacings: "
                                          f"{header.pixel_spacing} here, {first.pixel_spacing} "
                                          f"in {first.path}")
        if not np.allclose(header.orientation, first.orientation, atol=1e-4):
            raise InputError(header.path, f"{where} mixes orientations (e.g. a multi-plane "
                                          f"localizer): {header.orientation} here, "
                                          f"{first.orientation} in {first.path}")
    row, col = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 0.99:
        raise InputError(first.path, f"{where} has an invalid ImageOrientationPatient "
                                     f"{first.orientation}")
    positions = np.array([header.position for header in headers])
    order = np.argsort(positions @ normal, kind="stable")
    ordered, positions = [headers[i] for i in order], positions[order]
    steps = np.diff(positions, axis=0)
    gaps = np.linalg.norm(steps, axis=1)
    if gaps.min() < 1e-2:
        k = int(np.argmin(gaps))
        raise InputError(ordered[k + 1].path, (
            f"{where} has several images at one slice position (also {ordered[k].path}); "
            "multi-echo or repeated acquisitions in one series are not supported"))
    step = (positions[-1] - positions[0]) / (len(ordered) - 1)
    slice_spacing = float(np.linalg.norm(step))
    deviation = np.linalg.norm(steps - step, axis=1)
    if deviation.max() > max(0.01, 0.01 * slice_spacing):
        k = int(np.argmax(deviation))
        raise InputError(ordered[k + 1].path, (
            f"{where} has non-uniform slice gaps ({gaps.min():.3f} to {gaps.max():.3f} mm; "
            f"missing slices?), largest deviation before this file"))
    direction = np.stack([step / slice_spacing, col, row])
    return ordered, (slice_spacing, *first.pixel_spacing), direction


def load_series(headers: List[SliceHeader]) -> Volume:
    """Check the geometry of one series and read its pixels into a Volume (raises InputError)."""
    ordered, spacing, direction = check_series_geometry(headers)
    array = np.empty((len(ordered), ordered[0].rows, ordered[0].cols), dtype=np.float32)
    for index, header in enumerate(ordered):
        array[index] = read_pixels(header)
    tags = next((header.tags for header in headers if header.tags), {})
    return Volume(
        array=array, spacing=spacing, origin=ordered[0].position, direction=direction,
        patient_id=str(tags.get("PatientID", "") or "anonymous"),
        series_description=ordered[0].description, series_uid=ordered[0].series_uid,
        study_uid=str(tags.get("StudyInstanceUID", "")), modality="MR",
        source_paths=[header.path for header in ordered], source_tags=dict(tags))


def select_series(series: Dict[str, List[SliceHeader]], series_filter: Optional[str]
                  ) -> Dict[str, List[SliceHeader]]:
    """The series whose SeriesDescription matches `series_filter` (case-insensitive search)."""
    if series_filter is None:
        return dict(series)
    pattern = re.compile(series_filter, re.IGNORECASE)
    return {uid: headers for uid, headers in series.items()
            if pattern.search(headers[0].description)}


def iter_dicom_series(root, series_filter: Optional[str] = DEFAULT_SERIES_FILTER,
                      progress: bool = False) -> Iterator[Union[Volume, InputError]]:
    """Yield one Volume (or the InputError that skipped it) per selected MR series of a tree.

    Per-file problems of the header pass are yielded first. Files are grouped by
    SeriesInstanceUID wherever they lie, and slices are ordered by position along the
    slice normal, never by file name or InstanceNumber.

    Args:
        root: a folder of any depth (TCIA layout patient/study/series/files) or one file.
        series_filter: regex searched in SeriesDescription; None takes every MR series.
        progress: show tqdm bars.
    """
    if series_filter is not None:
        try:
            re.compile(series_filter)
        except re.error as error:
            raise InputError(root, f"series filter {series_filter!r} is not a valid regular "
                                   f"expression ({error})") from None
    series, skipped = scan_dicom_headers(root, progress)
    yield from skipped
    selected = select_series(series, series_filter)
    if series and not selected:
        names = sorted({headers[0].description for headers in series.values()})
        yield InputError(root, f"no series description matches the filter {series_filter!r}; "
                               f"found {names}; pass another filter or None for all series")
    for headers in tqdm(list(selected.values()), desc="series", unit="series",
                        disable=not progress):
        try:
            yield load_series(headers)
        except InputError as error:
            yield error


def read_dicom_tree(root, series_filter: Optional[str] = DEFAULT_SERIES_FILTER,
                    progress: bool = False) -> Tuple[List[Volume], List[InputError]]:
    """All selected series of a tree: (volumes, skipped). See `iter_dicom_series`."""
    volumes, skipped = [], []
    for item in iter_dicom_series(root, series_filter, progress):
        (volumes if isinstance(item, Volume) else skipped).append(item)
    return volumes, skipped


def read_dicom_series(directory, series_filter: Optional[str] = None) -> Volume:
    """The one MR series in `directory` (raises InputError if none or several are selected)."""
    series, skipped = scan_dicom_headers(directory)
    selected = select_series(series, series_filter)
    if len(selected) > 1:
        listing = "; ".join(f"'{h[0].description}' ({len(h)} files in "
                            f"{os.path.dirname(h[0].path)})" for h in selected.values())
        raise InputError(directory, f"holds {len(selected)} series: {listing}. Point at one "
                                    "series folder or choose one with a series filter")
    if not selected:
        details = f"; first problem: {skipped[0]}" if skipped else ""
        found = f" (series found: {sorted(h[0].description for h in series.values())})" \
            if series else ""
        raise InputError(directory, f"no readable MR series{found}{details}")
    return load_series(next(iter(selected.values())))
