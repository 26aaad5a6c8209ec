"""HDF5 slice cache: `build_cache` (DICOM tree / NIfTI -> one file) and the `SliceCache` reader.

Layout (schema version 1)::

    /                        attrs: schema_version, created_by, created, source, series_filter,
                                    test_fraction, seed
    /patients/<patient>/<series>   one volume (slices, rows, cols), chunks (1, rows, cols), lzf;
                             attrs: patient_id, series_uid, study_uid, series_description,
                                    modality, source, spacing (slice, row, col mm), origin (LPS
                                    mm), direction (3x3), intensity_range (lo, hi),
                                    rescale_slope, rescale_intercept, source_tags (JSON)
    /split/train, /split/test    patient ids (UTF-8 strings)

Volumes are stored as uint16 codes (scanner units = code * rescale_slope + rescale_intercept)
when that reproduces the float32 values to a few ulp, as it does for 16-bit DICOM pixels;
otherwise as float32 with slope 1 and intercept 0. lzf was chosen over gzip by measurement:
gzip level 1 alone writes ~250 slices/s of 320x320 uint16 on one core, lzf ~600-800. A
background thread reads and encodes the next series while the current one is compressed
(benchmarks/bench_prepare.py measures the whole `prepare`).
"""
import json
import os
import queue
import re
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import h5py
import numpy as np

from srgan_tf import __version__
from srgan_tf.data.intensity import DEFAULT_PERCENTILES, normalize, robust_range
from srgan_tf.data.split import split_patients
from srgan_tf.io.dicom import DEFAULT_SERIES_FILTER
from srgan_tf.io.errors import InputError
from srgan_tf.io.volume import Volume

SCHEMA_VERSION = 1
_PATIENTS, _SPLIT = "patients", "split"


@dataclass
class SeriesInfo:
    """What the cache knows about one stored series (read from its attributes)."""

    key: str
    patient_id: str
    shape: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    intensity_range: Tuple[float, float]
    description: str
    origin: Tuple[float, float, float]
    direction: np.ndarray
    series_uid: str
    modality: str = "MR"
    source: str = ""

    @property
    def nbytes(self) -> int:
        """Size of the volume as float32 in memory."""
        return int(np.prod(self.shape)) * 4


# ---------------------------------------------------------------------------------- encoding

def _decode(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Scanner units (float32) of stored codes; float32 data passes through."""
    if stored.dtype == np.float32 and slope == 1.0 and intercept == 0.0:
        return stored
    values = stored.astype(np.float32)
    values *= np.float32(slope)
    values += np.float32(intercept)
    return values


def _uint16_encoding(array: np.ndarray) -> Optional[Tuple[np.ndarray, float, float]]:
    """(codes, slope, intercept) with codes * slope + intercept == array to float32 precision.

    Rescaled 16-bit pixels have float mantissas that look random to lzf; their integer codes
    are half the size and compress. Returns None for data that is not on such a grid.
    """
    flat = array.reshape(-1)
    low, high = float(flat.min()), float(flat.max())
    if high == low:
        return np.zeros(array.shape, np.uint16), 1.0, low
    levels = np.unique(flat[:: max(1, flat.size // 65536)]).astype(np.float64) - low
    gaps = np.diff(levels)
    step = float(gaps.min()) if gaps.size else high - low
    for target in (8, 64, 512, 4096, 32768, None):  # refine the step on ever larger codes
        if target is None:
            span = high - low
        else:
            span = float(levels[min(np.searchsorted(levels, target * step), len(levels) - 1)])
        code = round(span / step)
        if code > 65535:
            return None
        step = span / code if code > 0 else step
    codes = np.subtract(array, np.float32(low), dtype=np.float32)
    codes *= np.float32(1.0 / step)
    np.rint(codes, out=codes)
    stored = codes.astype(np.uint16)
    tolerance = 8 * float(np.spacing(np.float32(max(abs(low), abs(high)))))
    if tolerance > step / 4 or np.abs(_decode(stored, step, low) - array).max() > tolerance:
        return None
    return stored, step, low


def _code_range(codes: np.ndarray, slope: float, intercept: float) -> Tuple[float, float]:
    """`robust_range` of the decoded volume, from a histogram of its codes.

    Same percentiles, subsample and linear interpolation as `robust_range`, at a fraction of
    the cost of sorting (order statistics of uint16 codes are a cumulative histogram lookup).
    """
    flat = codes.reshape(-1)
    if flat.size > 4_000_000:  # the subsample robust_range takes
        flat = flat[:: flat.size // 2_000_000]
    cumulative = np.cumsum(np.bincount(flat))
    bounds = []
    for percentile in DEFAULT_PERCENTILES:
        position = percentile / 100.0 * (flat.size - 1)
        below = int(np.floor(position))
        ranks = [below, min(below + 1, flat.size - 1)]
        ordered = np.searchsorted(cumulative, ranks, side="right").astype(np.uint16)
        lower, upper = _decode(ordered, slope, intercept).astype(np.float64)
        bounds.append(float(lower + (upper - lower) * (position - below)))
    low, high = bounds
    return (low, high) if high > low else (low, low + 1.0)


# ---------------------------------------------------------------------------------- writing

class WrittenSeries(NamedTuple):
    patient_id: str
    key: str
    shape: Tuple[int, int, int]


@dataclass
class PrepareSummary:
    """Outcome of `build_cache`: what was written, what was skipped and why, the split."""

    output: Path
    written: List[WrittenSeries] = field(default_factory=list)
    skipped: List[InputError] = field(default_factory=list)
    split: Dict[str, List[str]] = field(default_factory=lambda: {"train": [], "test": []})
    slices: int = 0
    seconds: float = 0.0

    @property
    def slices_per_second(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        """End-of-run report: every written series and every skipped item with its reason."""
        patients = len({item.patient_id for item in self.written})
        lines = [f"Wrote {len(self.written)} series ({self.slices} slices, {patients} patients) "
                 f"to {self.output} in {self.seconds:.1f} s "
                 f"({self.slices_per_second:.0f} slices/s)."]
        lines += [f"  {item.key}  {'x'.join(map(str, item.shape))}" for item in self.written]
        lines.append(f"Split: {len(self.split['train'])} train, {len(self.split['test'])} test "
                     f"patients (test: {', '.join(self.split['test']) or 'none'}).")
        lines.append(f"Skipped {len(self.skipped)} item(s)" + (":" if self.skipped else "."))
        lines += [f"  {error}" for error in self.skipped]
        return "\n".join(lines)


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
        for item in iter_dicom_series(input_path, series_filter, progress):
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


def _encode(volume: Volume) -> _Encoded:
    """Check and encode one volume (runs in the reader thread, beside the writer)."""
    array = np.asarray(volume.array, dtype=np.float32)
    if 0 in array.shape:
        raise InputError(_source(volume), f"empty volume of shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(_source(volume), "volume contains NaN or infinite intensities")
    encoded = _uint16_encoding(array)
    if encoded is None:
        return _Encoded(volume, array, 1.0, 0.0, robust_range(array))
    return _Encoded(volume, *encoded, _code_range(*encoded))


def _encoded(items):
    for item in items:
        if isinstance(item, Volume):
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

    patients = handle.create_group(_PATIENTS)
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
            key = dataset.name[len(f"/{_PATIENTS}/"):]
            if volume.series_uid:
                seen_uids[volume.series_uid] = key
            summary.written.append(WrittenSeries(volume.patient_id, key, tuple(dataset.shape)))
            summary.slices += dataset.shape[0]
            bar.update(dataset.shape[0])


def build_cache(input_path, output, *, series_filter: Optional[str] = DEFAULT_SERIES_FILTER,
                test_fraction: float = 0.1, seed: int = 0, progress: bool = True) -> PrepareSummary:
    """Build the HDF5 slice cache from a DICOM tree, a NIfTI file, or a folder of either.

    Series are streamed one at a time. The file is written as `<output>.tmp-<pid>` and
    renamed over `output` only when complete (schema_version is written last), so an
    interrupted run never leaves a file that looks valid and an old cache survives failures.

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

    Example:
        >>> print(build_cache("~/tcia/PROSTATEx", "cache.h5").text())
    """
    split_patients([], test_fraction)  # validates test_fraction before any work
    input_path, output = Path(input_path).expanduser(), Path(output).expanduser()
    if not input_path.exists():
        raise InputError(input_path, "input does not exist")
    if output.is_dir():
        raise InputError(output, "is a directory; expected the path of the cache file to write")
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f"{output.name}.tmp-{os.getpid()}")
    summary = PrepareSummary(output=output)
    start = time.perf_counter()
    try:
        with h5py.File(temporary, "w") as handle:
            reader = _encoded(_read_inputs(input_path, series_filter, progress))
            with closing(_prefetch(reader)) as items:
                _write_all(handle, items, summary, progress)
            if not summary.written:
                listing = "".join(f"\n  {error}" for error in summary.skipped) or " none"
                raise InputError(input_path, "no series could be written to the cache (series "
                                 f"filter {series_filter!r}); skipped:{listing}")
            summary.split = split_patients([item.patient_id for item in summary.written],
                                           test_fraction, seed)
            for side, patients in summary.split.items():
                handle.create_dataset(f"{_SPLIT}/{side}", data=np.array(patients, dtype=object),
                                      dtype=h5py.string_dtype())
            handle.attrs.update(created_by=f"srgan-tf {__version__}", source=str(input_path),
                                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                series_filter="" if series_filter is None else series_filter,
                                test_fraction=float(test_fraction), seed=int(seed))
            handle.attrs["schema_version"] = SCHEMA_VERSION  # last: marks the file complete
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    summary.seconds = time.perf_counter() - start
    return summary


# ---------------------------------------------------------------------------------- reading

class SliceCache:
    """Read-only access to a cache written by `build_cache`.

    Usable as a context manager or plainly (call `close()`). Opening checks that the file is
    an srgan-tf cache of schema version `SCHEMA_VERSION` and raises InputError otherwise.

    Example:
        >>> with SliceCache("cache.h5") as cache:
        ...     hr = cache.read_normalized(cache.series("train")[0].key)
    """

    def __init__(self, path):
        self.path = Path(path)
        self._handle = _open_checked(self.path)
        self._datasets: Dict[str, h5py.Dataset] = {}
        try:
            self.attrs = {key: _plain(value) for key, value in self._handle.attrs.items()}
            self._series = {key: _series_info(key, dataset)
                            for key, dataset in _datasets(self._handle)}
            self._rescale = {key: (float(dataset.attrs["rescale_slope"]),
                                   float(dataset.attrs["rescale_intercept"]))
                             for key, dataset in _datasets(self._handle)}
            self._split = {side: sorted(self._handle[f"{_SPLIT}/{side}"].asstr()[()].tolist())
                           for side in ("train", "test")}
        except (KeyError, TypeError, ValueError) as error:
            self.close()
            raise InputError(self.path, f"corrupt srgan-tf cache ({type(error).__name__}: "
                                        f"{error}); rebuild it with `srgan-tf prepare`") from None

    def __enter__(self) -> "SliceCache":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._datasets.clear()
            self._handle.close()
            self._handle = None

    @property
    def schema_version(self) -> int:
        return int(self.attrs["schema_version"])

    @property
    def split(self) -> Dict[str, List[str]]:
        """{"train": patient ids, "test": patient ids}."""
        return {side: list(patients) for side, patients in self._split.items()}

    def patients(self, split: Optional[str] = None) -> List[str]:
        """Sorted patient ids, all or those of one split side."""
        return sorted({info.patient_id for info in self.series(split)})

    def series(self, split: Optional[str] = None) -> List[SeriesInfo]:
        """Every stored series (sorted by key), or those of the patients of one split side."""
        if split is None:
            return list(self._series.values())
        if split not in self._split:
            raise ValueError(f"split must be None, 'train' or 'test'. Received: {split!r}")
        members = set(self._split[split])
        return [info for info in self._series.values() if info.patient_id in members]

    def info(self, key: str) -> SeriesInfo:
        """The SeriesInfo of one key (KeyError listing the stored keys otherwise)."""
        if key not in self._series:
            raise KeyError(f"{self.path}: no series {key!r}; stored: {list(self._series)}")
        return self._series[key]

    def nbytes(self, split: Optional[str] = None) -> int:
        """Uncompressed float32 size of the selected volumes (memory vs streaming decision)."""
        return sum(info.nbytes for info in self.series(split))

    def _dataset(self, key: str) -> h5py.Dataset:
        if self._handle is None:
            raise ValueError(f"{self.path}: the cache is closed")
        if key not in self._datasets:  # opening by path costs more than a slice read
            self.info(key)  # clear KeyError for unknown keys
            self._datasets[key] = self._handle[_PATIENTS][key]
        return self._datasets[key]

    def read_volume(self, key: str) -> np.ndarray:
        """The whole volume (slices, rows, cols) in scanner units, float32."""
        return _decode(self._dataset(key)[()], *self._rescale[key])

    def read_slices(self, key: str, indices: Sequence[int]) -> np.ndarray:
        """Slices `indices` (any order, repeats allowed), scanner units, float32 (n, rows, cols)."""
        dataset = self._dataset(key)
        count = dataset.shape[0]
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < -count or indices.max() >= count):
            raise IndexError(f"slice indices must be in [0, {count}) for {key!r}. "
                             f"Received: {indices.tolist()}")
        unique, inverse = np.unique(indices % count, return_inverse=True)  # h5py: increasing
        if unique.size and unique[-1] - unique[0] == unique.size - 1:  # a run: plain slicing
            stored = dataset[int(unique[0]):int(unique[-1]) + 1]
        else:
            stored = dataset[unique.tolist()] if unique.size else dataset[0:0]
        return _decode(stored[inverse.reshape(-1)], *self._rescale[key])

    def read_normalized(self, key: str, indices: Optional[Sequence[int]] = None) -> np.ndarray:
        """The volume (or slices `indices`) mapped to [-1, 1] with the stored intensity range."""
        array = self.read_volume(key) if indices is None else self.read_slices(key, indices)
        return normalize(array, self.info(key).intensity_range)

    def volume(self, key: str) -> Volume:
        """The stored series as a `Volume` (geometry and source tags included)."""
        info, dataset = self.info(key), self._dataset(key)
        source_tags = json.loads(dataset.attrs.get("source_tags", "{}"))
        return Volume(array=self.read_volume(key), spacing=info.spacing, origin=info.origin,
                      direction=info.direction, patient_id=info.patient_id,
                      series_description=info.description, series_uid=info.series_uid,
                      study_uid=str(dataset.attrs.get("study_uid", "")), modality=info.modality,
                      source_paths=[info.source] if info.source else [], source_tags=source_tags)

    def info_text(self) -> str:
        """Human-readable summary for `srgan-tf info`: header lines and an aligned table."""
        side = {patient: name for name, patients in self._split.items() for patient in patients}
        series_filter = self.attrs.get("series_filter", "")
        series_filter = ("default (T2 axial)" if series_filter == DEFAULT_SERIES_FILTER
                         else repr(series_filter) if series_filter else "none (every MR series)")
        lines = [f"srgan-tf slice cache {self.path}",
                 f"  schema version {self.schema_version}, {self.attrs.get('created_by', '?')}, "
                 f"created {self.attrs.get('created', '?')}",
                 f"  source {self.attrs.get('source', '?')}",
                 f"  series filter {series_filter}",
                 f"  {len(self.patients())} patients, {len(self._series)} series, "
                 f"{sum(info.shape[0] for info in self.series())} slices, "
                 f"{self.nbytes() / 2 ** 20:.1f} MiB as float32",
                 f"  split (seed {self.attrs.get('seed', '?')}, test fraction "
                 f"{self.attrs.get('test_fraction', '?')}): {len(self._split['train'])} train "
                 f"patients, {len(self._split['test'])} test patients "
                 f"({', '.join(self._split['test']) or 'none'})", ""]
        rows = [("split", "patient", "series", "description", "shape (s,r,c)",
                 "spacing mm (s,r,c)", "intensity range")]
        rows += [(side.get(info.patient_id, "-"), info.patient_id, info.key, info.description,
                  "x".join(map(str, info.shape)), "x".join(f"{s:.3g}" for s in info.spacing),
                  f"{info.intensity_range[0]:.4g} .. {info.intensity_range[1]:.4g}")
                 for info in self.series()]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                  for row in rows]
        return "\n".join(lines)


def _plain(value):
    """An HDF5 attribute as plain Python."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _open_checked(path: Path) -> h5py.File:
    """Open a cache read-only; InputError naming the file unless it is a cache we can read."""
    hint = "build one with `srgan-tf prepare --input <DICOM or NIfTI> --output <file.h5>`"
    if not path.is_file():
        raise InputError(path, f"cache file not found ({hint})")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InputError(path, f"not an HDF5 file, or a damaged one ({error}); {hint}") from None
    version = handle.attrs.get("schema_version")
    if version is None or not {_PATIENTS, _SPLIT} <= set(handle.keys()):
        handle.close()
        raise InputError(path, "HDF5 file is not a complete srgan-tf slice cache (no "
                               f"schema_version attribute, or missing groups); {hint}")
    if int(version) != SCHEMA_VERSION:
        handle.close()
        raise InputError(path, f"cache schema version {int(version)} is not supported; this "
                               f"srgan-tf {__version__} reads schema version {SCHEMA_VERSION}. "
                               "Rebuild the cache with this version's `srgan-tf prepare`")
    return handle


def _datasets(handle: h5py.File):
    """(key, dataset) of every stored series, sorted by key "<patient>/<series>"."""
    for patient in sorted(handle[_PATIENTS]):
        for name in sorted(handle[_PATIENTS][patient]):
            yield f"{patient}/{name}", handle[_PATIENTS][patient][name]


def _series_info(key: str, dataset: h5py.Dataset) -> SeriesInfo:
    attrs = dataset.attrs
    return SeriesInfo(
        key=key, patient_id=str(attrs["patient_id"]), shape=tuple(int(s) for s in dataset.shape),
        spacing=tuple(float(s) for s in attrs["spacing"]),
        intensity_range=tuple(float(v) for v in attrs["intensity_range"]),
        description=str(attrs.get("series_description", "")),
        origin=tuple(float(v) for v in attrs["origin"]),
        direction=np.asarray(attrs["direction"], dtype=np.float64).reshape(3, 3),
        series_uid=str(attrs.get("series_uid", "")), modality=str(attrs.get("modality", "MR")),
        source=str(attrs.get("source", "")))
