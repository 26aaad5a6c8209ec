"""Build the HDF5 slice cache (`build_cache`): a DICOM tree / NIfTI files -> one file.

The file has the layout of `srgan_tf.data.slice_cache.cache_format`; `srgan_tf.data.slice_cache.cache.SliceCache`
reads it. lzf was chosen over gzip by measurement: gzip level 1 alone writes ~250 slices/s of
320x320 uint16 on one core, lzf ~600-800. A background thread reads and encodes the next
series while the current one is compressed (benchmarks/bench_prepare.py measures the whole
`prepare`).
"""
import json
import os
import queue
import re
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Tuple

import h5py
import numpy as np

from srgan_tf import __version__
from srgan_tf.data.slice_cache.cache_format import (PATIENTS_GROUP, SCHEMA_VERSION, SPLIT_GROUP,
                                                    decode, uint16_encoding)
from srgan_tf.data.intensity import robust_range
from srgan_tf.data.slice_cache.prepare_summary import (PrepareSummary, WrittenSeries,
                                                       no_test_patients_warning)
from srgan_tf.data.slice_cache.split import split_patients
from srgan_tf.data.usable_volume import unusable_reason
from srgan_tf.files import remove_stale_partials, staged_file
from srgan_tf.io.dicom import DEFAULT_SERIES_FILTER
from srgan_tf.io.dicom_series import MissingSlice, PartialSeries
from srgan_tf.io.errors import InputError
from srgan_tf.io.paths_guard import refuse_overwriting_inputs
from srgan_tf.io.volume import Volume


def _group_name(text: str, fallback: str) -> str:
    """An HDF5-safe, readable group name."""
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("._") or fallback
    return name[:80]


def _source(volume: Volume) -> str:
    """The series folder of a DICOM volume (files share it), else its first file."""
    paths = volume.source_paths
    if not paths:
        return ""
    folders = {os.path.dirname(path) for path in paths}
    return folders.pop() if len(paths) > 1 and len(folders) == 1 else str(paths[0])


def _read_inputs(input_path: Path, series_filter, progress):
    """Yield Volume / InputError items from a NIfTI file, a DICOM tree, or a folder with both."""
    from srgan_tf.io.nifti import is_nifti_path, read_nifti

    if input_path.is_file() and not is_nifti_path(input_path):
        raise InputError(input_path, "expected a DICOM folder, a .nii/.nii.gz file or a folder "
                                     "of NIfTI files")
    files = [input_path] if input_path.is_file() else sorted(
        Path(folder) / name for folder, _, names in os.walk(input_path) for name in names)
    if not files:
        raise InputError(input_path, "empty folder: no DICOM or NIfTI files found")
    nifti = [path for path in files if is_nifti_path(path)]
    if len(nifti) < len(files):
        from srgan_tf.io.dicom import iter_dicom_series

        ignored = {str(path) for path in nifti}  # the DICOM scan reports them as non-DICOM
        # In-plane training loses one slice per unreadable file, not the series.
        for item in iter_dicom_series(input_path, series_filter, progress,
                                      allow_missing_slices=True):
            if not (isinstance(item, InputError) and item.path in ignored):
                yield item
    for path in nifti:
        try:
            yield read_nifti(path)
        except InputError as error:
            yield error


def _prefetch(items, depth: int = 1):
    """Iterate `items` in a background thread, `depth` ahead: reading and encoding the next
    series overlaps compressing this one (h5py releases the GIL in H5Dwrite)."""
    buffer, stop, done = queue.Queue(maxsize=depth), threading.Event(), object()

    def offer(entry) -> bool:
        while not stop.is_set():  # never block for good once the consumer has gone
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((done, None))
        except BaseException as error:  # re-raised in the consumer
            offer((done, error))

    worker = threading.Thread(target=produce, name="cache-reader", daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


class _Encoded(NamedTuple):
    """A volume ready to write: stored array, its rescale, and its robust intensity range."""

    volume: Volume
    stored: np.ndarray
    slope: float
    intercept: float
    intensity_range: Tuple[float, float]
    missing: Tuple[MissingSlice, ...] = ()


def _encode(item) -> _Encoded:
    """Check and encode one Volume or PartialSeries (runs in the reader thread, beside the
    writer); a partial series keeps only the slices it has."""
    volume, missing = (item.volume, item.missing) if isinstance(item, PartialSeries) else (item, ())
    array = np.asarray(volume.array, dtype=np.float32)
    if missing:
        array = array[item.kept_indices()]
    reason = unusable_reason(array)  # non-finite voxels, no signal: skipped with the reason
    if reason:
        raise InputError(_source(volume), reason)
    encoded = uint16_encoding(array)
    if encoded is None:
        return _Encoded(volume, array, 1.0, 0.0, robust_range(array), missing)
    return _Encoded(volume, *encoded, robust_range(decode(*encoded)), missing)  # what readers see


def _encoded(items):
    for item in items:
        if isinstance(item, (Volume, PartialSeries)):
            try:
                item = _encode(item)
            except InputError as error:
                item = error
        yield item


def _write_series(group: h5py.Group, name: str, item: _Encoded) -> h5py.Dataset:
    volume = item.volume
    dataset = group.create_dataset(name, data=item.stored, chunks=(1, *item.stored.shape[1:]),
                                   compression="lzf", shuffle=item.stored.dtype == np.uint16)
    attrs = dataset.attrs
    attrs["patient_id"] = volume.patient_id
    attrs["series_uid"] = volume.series_uid
    attrs["study_uid"] = volume.study_uid
    attrs["series_description"] = volume.series_description
    attrs["modality"] = volume.modality
    attrs["source"] = _source(volume)
    attrs["spacing"] = np.asarray(volume.spacing, dtype=np.float64)
    attrs["origin"] = np.asarray(volume.origin, dtype=np.float64)
    attrs["direction"] = np.asarray(volume.direction, dtype=np.float64)
    attrs["intensity_range"] = np.asarray(item.intensity_range, dtype=np.float64)
    attrs["rescale_slope"], attrs["rescale_intercept"] = float(item.slope), float(item.intercept)
    attrs["source_tags"] = json.dumps(volume.source_tags, default=str)
    if item.missing:
        attrs["missing_slices"] = json.dumps([
            {"index": gap.index, "position": list(gap.position), "file": gap.path,
             "reason": gap.reason} for gap in item.missing])
    return dataset


def _series_name(group: h5py.Group, volume: Volume) -> str:
    """Readable, unique name in the patient group: description and series number."""
    base = _group_name(volume.series_description, "series")
    number = volume.source_tags.get("SeriesNumber")
    base = f"{base}_{number}" if number not in (None, "") else base
    name, copy = base, 1
    while name in group:
        copy += 1
        name = f"{base}_{copy}"
    return name


def _write_all(handle: h5py.File, items, summary: PrepareSummary, progress: bool) -> None:
    from tqdm.auto import tqdm

    patients = handle.create_group(PATIENTS_GROUP)
    groups: Dict[str, h5py.Group] = {}  # patient id -> group (names are sanitised, may clash)
    seen_uids: Dict[str, str] = {}
    with tqdm(desc="cache", unit="slice", disable=not progress) as bar:
        for item in items:
            if isinstance(item, InputError):
                summary.skipped.append(item)
                continue
            volume = item.volume
            if volume.series_uid in seen_uids:
                summary.skipped.append(InputError(_source(volume), "same SeriesInstanceUID as "
                                                  f"{seen_uids[volume.series_uid]}; kept that one"))
                continue
            if volume.patient_id not in groups:
                name = base = _group_name(volume.patient_id, "anonymous")
                while name in patients:
                    name = f"{base}_{len(patients)}"
                groups[volume.patient_id] = patients.create_group(name)
                groups[volume.patient_id].attrs["patient_id"] = volume.patient_id
            dataset = _write_series(groups[volume.patient_id],
                                    _series_name(groups[volume.patient_id], volume), item)
            key = dataset.name[len(f"/{PATIENTS_GROUP}/"):]
            if volume.series_uid:
                seen_uids[volume.series_uid] = key
            summary.written.append(WrittenSeries(volume.patient_id, key, tuple(dataset.shape),
                                                 len(item.missing)))
            summary.slices += dataset.shape[0]
            bar.update(dataset.shape[0])


_LISTED = 20  # skipped items an error lists (a tree of non-DICOM files can hold thousands)


def _check_output(input_path: Path, output: Path) -> None:
    """InputError unless the cache can be written at `output` (checked before any work)."""
    if output.is_dir():
        raise InputError(output, "is a directory; expected the path of the cache file to write")
    refuse_overwriting_inputs([input_path], {"--output": output})
    existing = next(folder for folder in (output.parent, *output.parent.parents)
                    if folder.exists() or folder == Path(folder.anchor))
    if existing.exists() and not existing.is_dir():
        raise InputError(existing, f"is a file, so the folder of {output} cannot be created")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(output.parent, "cannot create the output folder "
                                        f"({error.strerror or error})") from None


def build_cache(input_path, output, *, series_filter: Optional[str] = DEFAULT_SERIES_FILTER,
                test_fraction: float = 0.1, seed: int = 0, progress: bool = True) -> PrepareSummary:
    """Build the HDF5 slice cache from a DICOM tree, a NIfTI file, or a folder of either.

    Series are streamed one at a time. The file is written under a partial name beside
    `output` (`files.staged_file`; stale ones of killed runs are removed first) and renamed
    over it only when complete (schema_version is written last), so an interrupted run never
    leaves a file that looks valid and an old cache survives failures. A series with unreadable files keeps its
    other slices (in-plane training loses one slice per file); the cache records the gap.

    Args:
        input_path: DICOM tree (any depth), .nii/.nii.gz file, or folder (DICOM and/or NIfTI;
            a NIfTI file's name is its patient id).
        output: cache file to write (e.g. "cache.h5").
        series_filter: regex on DICOM SeriesDescription; None takes every MR series.
        test_fraction: share of patients held out for testing (see `split_patients`).
        seed: seed of the patient split.
        progress: show tqdm bars.

    Raises:
        InputError: the input is missing, or no series could be written (the message lists
            every skipped item).
        ValueError: `test_fraction` outside [0, 1).

    Example:
        >>> print(build_cache("~/tcia/PROSTATEx", "cache.h5").text())
    """
    split_patients([], test_fraction, seed)  # validates both before any work
    input_path, output = Path(input_path).expanduser(), Path(output).expanduser()
    if not input_path.exists():
        raise InputError(input_path, "input does not exist")
    _check_output(input_path, output)
    # Earlier versions named the temporary "<name>.tmp-<pid>".
    stale = remove_stale_partials(output, [re.escape(f"{output.name}.tmp-") + r"(?P<pid>\d+)"])
    summary = PrepareSummary(output=output)
    summary.warnings += [f"removed {path}: a partial cache left by an interrupted run"
                         for path in stale]
    start = time.perf_counter()
    with staged_file(output) as temporary:
        try:
            handle = h5py.File(temporary, "w")
        except OSError as error:  # h5py's message is long; the errno says it
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise InputError(output, f"cannot write the cache there ({reason})") from None
        with handle:
            reader = _encoded(_read_inputs(input_path, series_filter, progress))
            with closing(_prefetch(reader)) as items:
                _write_all(handle, items, summary, progress)
            if not summary.written:
                # One skipped item fits the error's line; several are listed one a line.
                shown = summary.skipped[:_LISTED]
                listing = (f" {shown[0]}" if len(summary.skipped) == 1 else
                           "".join(f"\n  {error}" for error in shown) or " none")
                if len(summary.skipped) > len(shown):
                    listing += f"\n  ... and {len(summary.skipped) - len(shown)} more"
                used = ("the default T2-axial one" if series_filter == DEFAULT_SERIES_FILTER
                        else repr(series_filter))
                raise InputError(input_path, "no series could be written to the cache (series "
                                 f"filter {used}); skipped:{listing}")
            summary.split = split_patients([item.patient_id for item in summary.written],
                                           test_fraction, seed)
            if not summary.split["test"]:
                summary.warnings.append(no_test_patients_warning(summary.split))
            for side, patients in summary.split.items():
                handle.create_dataset(f"{SPLIT_GROUP}/{side}", data=np.array(patients, dtype=object),
                                      dtype=h5py.string_dtype())
            handle.attrs.update(created_by=f"srgan-tf {__version__}", source=str(input_path),
                                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                series_filter="" if series_filter is None else series_filter,
                                test_fraction=float(test_fraction), seed=int(seed))
            handle.attrs["schema_version"] = SCHEMA_VERSION  # last: marks the file complete
    summary.seconds = time.perf_counter() - start
    return summary

