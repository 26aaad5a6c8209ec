"""HDF5 slice cache reader: `SliceCache` opens a cache, checks its schema and reads slices.

The layout and the stored-value encoding are in `srgan_tf.data.slice_cache.cache_format`; the cache is
written by `srgan_tf.data.slice_cache.prepare.build_cache` (DICOM tree / NIfTI -> one file).
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from srgan_tf import __version__
from srgan_tf.data.slice_cache.cache_format import (PATIENTS_GROUP, READABLE_SCHEMA_VERSIONS,
                                                    SCHEMA_VERSION, SPLIT_GROUP, decode)
from srgan_tf.data.intensity import normalize
from srgan_tf.io.dicom import DEFAULT_SERIES_FILTER
from srgan_tf.io.dicom_series import MissingSlice
from srgan_tf.io.errors import InputError, error_summary
from srgan_tf.io.volume import Volume

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
    # Slices of the series' uniform grid that are not stored (unreadable files).
    missing_slices: Tuple[MissingSlice, ...] = ()

    @property
    def nbytes(self) -> int:
        """Size of the volume as float32 in memory."""
        return int(np.prod(self.shape)) * 4

    def grid_indices(self) -> np.ndarray:
        """Index in the series' uniform slice grid of every stored slice (spacing, origin and
        direction describe that grid; it differs from 0..n-1 only where slices are missing)."""
        count = self.shape[0] + len(self.missing_slices)
        return np.delete(np.arange(count), [gap.index for gap in self.missing_slices])


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
            self._split = {side: sorted(self._handle[f"{SPLIT_GROUP}/{side}"].asstr()[()].tolist())
                           for side in ("train", "test")}
        except (KeyError, TypeError, ValueError) as error:
            self.close()
            raise InputError(self.path, f"corrupt srgan-tf cache ({error_summary(error)}); "
                                        "rebuild it with `srgan-tf prepare`") from None

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
            self._datasets[key] = self._handle[PATIENTS_GROUP][key]
        return self._datasets[key]

    def read_volume(self, key: str) -> np.ndarray:
        """The whole volume (slices, rows, cols) in scanner units, float32."""
        return decode(self._dataset(key)[()], *self._rescale[key])

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
        return decode(stored[inverse.reshape(-1)], *self._rescale[key])

    def read_normalized(self, key: str, indices: Optional[Sequence[int]] = None) -> np.ndarray:
        """The volume (or slices `indices`) mapped to [-1, 1] with the stored intensity range."""
        array = self.read_volume(key) if indices is None else self.read_slices(key, indices)
        return normalize(array, self.info(key).intensity_range)

    def volume(self, key: str) -> Volume:
        """The stored series as a `Volume` (geometry and source tags included).

        Raises:
            InputError: the series has missing slices (its stored slices are not equally
                spaced); `info(key).missing_slices` names them.
        """
        info, dataset = self.info(key), self._dataset(key)
        if info.missing_slices:
            gap = info.missing_slices[0]
            raise InputError(self.path, (
                f"series {key} lacks {len(info.missing_slices)} slice(s) of its "
                f"{info.shape[0] + len(info.missing_slices)} (first: slice {gap.index + 1}, "
                f"{gap.path or 'no file'}: {gap.reason}), so it is no equally spaced "
                "volume; it serves in-plane training only"))
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
        gaps = [(info, gap) for info in self.series() for gap in info.missing_slices]
        if gaps:
            lines += ["", f"  {len(gaps)} missing slice(s), left out of the cache (in-plane "
                          "training uses the other slices; through-plane use refuses these "
                          "series):"]
            lines += [f"  {info.key} slice {gap.index + 1} of "
                      f"{info.shape[0] + len(info.missing_slices)}: "
                      f"{gap.path + ': ' if gap.path else ''}{gap.reason}"
                      for info, gap in gaps]
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
    if version is None or not {PATIENTS_GROUP, SPLIT_GROUP} <= set(handle.keys()):
        handle.close()
        raise InputError(path, "HDF5 file is not a complete srgan-tf slice cache (no "
                               f"schema_version attribute, or missing groups); {hint}")
    if int(version) not in READABLE_SCHEMA_VERSIONS:
        handle.close()
        older = ", ".join(str(v) for v in READABLE_SCHEMA_VERSIONS if v != SCHEMA_VERSION)
        raise InputError(path, f"cache schema version {int(version)} is not supported; this "
                               f"srgan-tf {__version__} reads schema version {SCHEMA_VERSION} "
                               f"(and {older}). "
                               "Rebuild the cache with this version's `srgan-tf prepare`")
    return handle


def _datasets(handle: h5py.File):
    """(key, dataset) of every stored series, sorted by key "<patient>/<series>"."""
    for patient in sorted(handle[PATIENTS_GROUP]):
        for name in sorted(handle[PATIENTS_GROUP][patient]):
            yield f"{patient}/{name}", handle[PATIENTS_GROUP][patient][name]


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
        source=str(attrs.get("source", "")),
        missing_slices=tuple(  # absent in schema version 1 and in complete series
            MissingSlice(int(gap["index"]), tuple(float(v) for v in gap["position"]),
                         str(gap["file"]), str(gap["reason"]))
            for gap in json.loads(attrs.get("missing_slices", "[]"))))
