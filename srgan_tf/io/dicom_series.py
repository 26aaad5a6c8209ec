"""One DICOM series from its slice headers: pixels, geometry checks, and what one bad file costs.

A damaged file costs that file, not the series: another copy of the same slice (same SOP
instance, or the same position) replaces it, and a slice no file can supply is a `MissingSlice`.
A `Volume` needs every slice (through-plane use needs uniform spacing), so a series with one is
an InputError naming the file, unless the caller takes a `PartialSeries` (in-plane use).
"""
import os
import warnings
from collections import Counter
from typing import List, NamedTuple, Optional, Tuple, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset

from srgan_tf.io.dicom_scan import PIXEL_DATA_TAG, SliceHeader
from srgan_tf.io.errors import InputError, error_summary
from srgan_tf.io.volume import Volume


class MissingSlice(NamedTuple):
    """A slice of a series' uniform grid that no readable file supplies.

    Args:
        index: 0-based index in the slice grid (slice order along the normal).
        position: ImagePositionPatient of the slice (LPS mm).
        path: the file that holds the slice's header; "" where no file does.
        reason: why its pixels cannot be used, or that no file holds the slice.
    """

    index: int
    position: Tuple[float, float, float]
    path: str
    reason: str


class PartialSeries(NamedTuple):
    """A series read although slices are missing (for in-plane use).

    `volume` is the whole uniform slice grid, with the geometry of a complete series and zeros
    at the slices listed in `missing`.
    """

    volume: Volume
    missing: Tuple[MissingSlice, ...]

    def kept_indices(self) -> np.ndarray:
        """Grid indices of the slices that were read."""
        return np.delete(np.arange(self.volume.shape[0]), [gap.index for gap in self.missing])


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
                   f"decoding failed ({error_summary(error)}); the data may be corrupt, or try "
                   f"{decoders}")
        return InputError(header.path, (
            f"pixel data uses the compressed transfer syntax {syntax.name} ({syntax}) and "
            f"{problem}, or decompress the files (gdcmconv --raw)"))
    return InputError(header.path, f"unreadable pixel data ({error_summary(error)})")


def read_pixels(header: SliceHeader) -> np.ndarray:
    """The rescaled float32 image of one slice, read from the recorded pixel data offset."""
    if header.unreadable:
        raise InputError(header.path, header.unreadable)
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
        if PIXEL_DATA_TAG not in pixel_ds:
            raise InputError(header.path, "DICOM without pixel data (no PixelData element)")
        ds[PIXEL_DATA_TAG] = pixel_ds[PIXEL_DATA_TAG]
        image = ds.pixel_array
    except InputError:
        raise
    except Exception as error:  # decoders and truncated data raise many types
        raise _pixel_error(header, error) from None
    if image.shape != (header.rows, header.cols):
        raise InputError(header.path, f"expected one {header.rows}x{header.cols} grayscale "
                                      f"image. Received: pixel array of shape {image.shape}")
    return (image.astype(np.float32) * np.float32(header.slope) + np.float32(header.intercept))


def _grid_indices(positions: np.ndarray) -> Optional[np.ndarray]:
    """Grid index of each sorted slice position when every step is a whole number of the
    smallest (slices missing in between, at most as many as there are), else None."""
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    index = np.concatenate([[0], np.cumsum(np.rint(steps / steps.min()).astype(int))])
    step = (positions[-1] - positions[0]) / index[-1]
    deviation = np.linalg.norm(positions - (positions[0] + index[:, None] * step), axis=1)
    if deviation.max() > max(0.01, 0.01 * float(np.linalg.norm(step))):
        return None
    return index if index[-1] < 2 * len(positions) else None


def check_series_geometry(headers: List[SliceHeader]
                          ) -> Tuple[List[SliceHeader], Tuple[float, float, float], np.ndarray,
                                     np.ndarray]:
    """Slices sorted along the normal, spacing (slice, row, col), direction, and the index of
    each slice in the series' uniform grid (0..n-1 unless files are missing); else InputError.
    """
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
    grid = np.arange(len(ordered))
    step = (positions[-1] - positions[0]) / (len(ordered) - 1)
    deviation = np.linalg.norm(steps - step, axis=1)
    if deviation.max() > max(0.01, 0.01 * float(np.linalg.norm(step))):
        grid = _grid_indices(positions)
        if grid is None:
            k = int(np.argmax(deviation))
            raise InputError(ordered[k + 1].path, (
                f"{where} has non-uniform slice gaps ({gaps.min():.3f} to {gaps.max():.3f} "
                "mm), largest deviation before this file"))
        step = (positions[-1] - positions[0]) / grid[-1]
    slice_spacing = float(np.linalg.norm(step))
    direction = np.stack([step / slice_spacing, col, row])
    return ordered, (slice_spacing, *first.pixel_spacing), direction, grid


def _same_slice(header: SliceHeader, other: SliceHeader) -> bool:
    if header.sop_uid and header.sop_uid == other.sop_uid:
        return True
    return float(np.linalg.norm(np.subtract(header.position, other.position))) < 1e-2


def _one_file_per_slice(headers: List[SliceHeader]):
    """Read every file's pixels: (images, readable headers, unreadable (header, error), skips).

    Unreadable files are found first, so each is listed with its own reason. A second copy of
    a SOP instance is skipped, and so is an unreadable file whose slice another file holds
    (the same SOP instance or the same position).
    """
    images, kept, failed, skipped, by_uid = {}, [], [], [], {}
    for header in sorted(headers, key=lambda header: header.path):
        try:
            images[header.path] = read_pixels(header)
        except InputError as error:
            failed.append((header, error))
            continue
        original = by_uid.get(header.sop_uid) if header.sop_uid else None
        if original is None:
            kept.append(header)
            by_uid.setdefault(header.sop_uid, header)
        else:
            skipped.append(InputError(header.path, f"another copy of SOP instance "
                                      f"{header.sop_uid}; the slice is read from {original.path}"))
    if not kept:  # nothing can replace them
        return images, kept, failed, skipped
    missing, kept_positions = [], np.array([header.position for header in kept])
    for header, error in failed:
        holder = by_uid.get(header.sop_uid) if header.sop_uid else None
        distances = np.linalg.norm(kept_positions - np.asarray(header.position), axis=1)
        if holder is None and distances.min() < 1e-2:
            holder = kept[int(np.argmin(distances))]
        if holder is None:  # another unreadable copy of the slice
            holder = next((other for other, _ in missing if _same_slice(header, other)), None)
        if holder is None:
            missing.append((header, error))
        else:
            skipped.append(InputError(header.path, f"{error.reason}; skipped, the same slice is "
                                                   f"in {holder.path}"))
    return images, kept, missing, skipped


_NO_FILE = "no file holds this slice (lost, or a file whose header could not be read)"


def _slice_name(index: int, count: int, position, normal, description: str) -> str:
    # Most series are axial, where the position along the normal is z.
    where = (f"z={position[2]:.4g} mm" if abs(normal[2]) > 0.9 else
             "position ({:.4g}, {:.4g}, {:.4g}) mm".format(*position))
    return f"slice {index + 1} of {count} of series '{description}' ({where})"


def read_series(headers: List[SliceHeader], allow_missing_slices: bool = False
                ) -> Tuple[Union[Volume, PartialSeries], List[InputError]]:
    """Read one series; returns (volume, per-file skips) and raises InputError for the series.

    Args:
        headers: the SliceHeaders of one SeriesInstanceUID.
        allow_missing_slices: return a `PartialSeries` when slices are missing (each missing
            file is also in the skips); otherwise such a series is an InputError naming the
            first missing slice's file.
    """
    images, kept, missing, skipped = _one_file_per_slice(headers)
    if not kept:
        header, error = missing[0]
        others = (f"; none of the {len(missing)} files of series '{header.description}' has "
                  "readable pixels" if len(missing) > 1 else "")
        raise InputError(header.path, f"{error.reason}{others}")
    ordered, spacing, direction, grid = check_series_geometry(
        kept + [header for header, _ in missing])
    index = {header.path: int(k) for header, k in zip(ordered, grid)}
    count = int(grid[-1]) + 1
    array = np.zeros((count, ordered[0].rows, ordered[0].cols), dtype=np.float32)
    for header in kept:  # popped: the images are not held twice
        array[index[header.path]] = images.pop(header.path)
    tags = next((header.tags for header in headers if header.tags), {})
    volume = Volume(
        array=array, spacing=spacing, origin=ordered[0].position, direction=direction,
        patient_id=str(tags.get("PatientID", "") or "anonymous"),
        series_description=ordered[0].description, series_uid=ordered[0].series_uid,
        study_uid=str(tags.get("StudyInstanceUID", "")), modality="MR",
        source_paths=[header.path for header in ordered], source_tags=dict(tags))
    holes = sorted(set(range(count)) - set(grid.tolist()))
    if not missing and not holes:
        return volume, skipped
    positions = volume.slice_positions()
    gaps = tuple(sorted([MissingSlice(index[header.path], header.position, header.path,
                                      error.reason) for header, error in missing] +
                        [MissingSlice(k, tuple(positions[k]), "", _NO_FILE) for k in holes]))
    names = [_slice_name(gap.index, count, gap.position, direction[0],
                         volume.series_description) for gap in gaps]
    folder = os.path.dirname(ordered[0].path)  # names a slice that no file holds
    if not allow_missing_slices:
        more = f" ({len(gaps) - 1} more slices missing)" if len(gaps) > 1 else ""
        raise InputError(gaps[0].path or folder, f"{gaps[0].reason}; {names[0]} is missing"
                                                 f"{more}, and a volume needs every slice "
                                                 "(equal slice spacing)")
    skipped += [InputError(gap.path or folder, f"{gap.reason}; {name} left out, the other "
                                               f"{len(kept)} slices are kept")
                for gap, name in zip(gaps, names)]
    return PartialSeries(volume, gaps), skipped


def load_series(headers: List[SliceHeader]) -> Volume:
    """Check the geometry of one series and read its pixels into a Volume (raises InputError
    unless every slice is readable; extra copies of a slice are dropped)."""
    return read_series(headers)[0]
