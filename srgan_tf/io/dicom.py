"""Read DICOM MR series of a folder tree into `Volume`s; bad files are skipped with a reason.

Every file's header is parsed once (without pixels, `dicom_scan`); only the series that are
kept have their pixel data read (`dicom_series`), straight from the offset the header pass
recorded. Writing a series is `dicom_write.write_dicom_series`.
"""
import os
import re
from typing import Dict, Iterator, List, Optional, Tuple, Union

from tqdm.auto import tqdm

from srgan_tf.io.dicom_scan import SliceHeader, scan_dicom_headers
from srgan_tf.io.dicom_series import PartialSeries, load_series, read_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.volume import Volume

# T2-weighted axial (PROSTATEx "t2_tse_tra", Philips "T2W_TSE_ax", GE "Ax T2 FRFSE"), excluding
# diffusion, ADC, T2* and mapping series, and sagittal/coronal/localizer planes.
DEFAULT_SERIES_FILTER = (
    r"^(?!.*(?:diff|dwi|ep2d|(?<![a-z])adc|t2\s*\*|t2_?star|map|(?<![a-z])(?:sag|cor|loc)))"
    r"(?=.*(?<![a-z0-9])t2(?![0-9]))"
    r".*(?<![a-z])(?:tra|trans|transverse|ax|axi|axial)(?![a-z])"
)


def select_series(series: Dict[str, List[SliceHeader]], series_filter: Optional[str]
                  ) -> Dict[str, List[SliceHeader]]:
    """The series whose SeriesDescription matches `series_filter` (case-insensitive search)."""
    if series_filter is None:
        return dict(series)
    pattern = re.compile(series_filter, re.IGNORECASE)
    return {uid: headers for uid, headers in series.items()
            if pattern.search(headers[0].description)}


def iter_dicom_series(root, series_filter: Optional[str] = DEFAULT_SERIES_FILTER,
                      progress: bool = False, allow_missing_slices: bool = False
                      ) -> Iterator[Union[Volume, PartialSeries, InputError]]:
    """Yield one Volume (or the InputError that skipped it) per selected MR series of a tree.

    Per-file problems of the header pass are yielded first. Files are grouped by
    SeriesInstanceUID wherever they lie, and slices are ordered by position along the
    slice normal, never by file name or InstanceNumber. A file that cannot be used costs
    that file: it is yielded as an InputError before its series, which is read from the
    other files when they hold every slice (e.g. the file was a damaged copy).

    Args:
        root: a folder of any depth (TCIA layout patient/study/series/files) or one file.
        series_filter: regex searched in SeriesDescription; None takes every MR series.
        progress: show tqdm bars.
        allow_missing_slices: yield a `PartialSeries` for a series whose readable files lack
            slices (in-plane use); by default such a series is an InputError naming the file.
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
            volume, skipped_files = read_series(headers, allow_missing_slices)
        except InputError as error:
            yield error
            continue
        yield from skipped_files
        yield volume


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
    if not series and not skipped:
        raise InputError(directory, "holds no files (an empty folder)")
    if not selected:
        details = f"; first problem: {skipped[0]}" if skipped else ""
        found = f" (series found: {sorted(h[0].description for h in series.values())})" \
            if series else ""
        raise InputError(directory, f"no readable MR series{found}{details}")
    try:
        return load_series(next(iter(selected.values())))
    except InputError as error:
        if not skipped:
            raise
        # A file the header pass could not read may be the series' missing slice.
        raise InputError(error.path, f"{error.reason}; {len(skipped)} file(s) under "
                                     f"{directory} could not be read, first {skipped[0]}") from None
