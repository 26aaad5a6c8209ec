"""Every volume under a folder: each NIfTI file and each DICOM MR series, with where its
output goes in a mirrored tree.

The cohort commands (`srgan-tf self-supervised` / `infer` with an output folder) call
`discover_volumes` once; the DICOM header pass reads each file once, without pixels
(`dicom_scan.read_header`), and the pixels of a series are read only when its volume is
processed (`FoundVolume.read`). Files that are not DICOM at all (sidecars, notes) are
ignored; DICOM files that cannot be used, and non-MR series, come back as problems.
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from tqdm.auto import tqdm

from srgan_tf.io.dicom_scan import SliceHeader, read_header
from srgan_tf.io.dicom_series import load_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import is_nifti_path, nifti_stem, read_nifti
from srgan_tf.io.volume import Volume

NOT_DICOM = "not a DICOM file"  # the start of dicom_scan's reason for such files


@dataclass
class FoundVolume:
    """One volume of a tree.

    Attributes:
        key: its output path relative to the output folder, without suffix (POSIX), e.g.
            "sub-01/anat/T2w" for sub-01/anat/T2w.nii.gz or "P1/t2_tse_tra" for a series in
            P1/t2_tse_tra/. Unique within a tree; the stable name of the volume.
        source: the NIfTI file, or the folder holding the series' files.
        kind: "nifti" or "dicom".
        headers: the series' slice headers (DICOM only).
    """

    key: str
    source: Path
    kind: str
    headers: List[SliceHeader] = field(default_factory=list, repr=False)

    def read(self) -> Volume:
        """The volume's pixels and geometry (InputError when they cannot be read)."""
        if self.kind == "nifti":
            return read_nifti(self.source)
        return load_series(self.headers)

    def signature(self) -> List:
        """What changes when the input changes: (path, size, mtime) of its files."""
        paths = [self.source] if self.kind == "nifti" else sorted(h.path for h in self.headers)
        stats = [(str(p), os.stat(p)) for p in paths]
        return [[p, s.st_size, s.st_mtime_ns] for p, s in stats]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "series"


def _unique_keys(keys: List[str]) -> List[str]:
    """`keys` with each repeat renamed `key_2`, `key_3`...: never a key that another volume
    holds as its own (`a/T2w.nii` and `a/T2w.nii.gz` beside a real `a/T2w_2.nii` give `a/T2w`,
    `a/T2w_3`, `a/T2w_2`), so no two volumes share an output. Deterministic: callers pass
    volumes in sorted order."""
    own, assigned, unique = set(keys), set(), []
    for key in keys:
        candidate, number = key, 1
        while candidate in assigned or (candidate != key and candidate in own):
            number += 1
            candidate = f"{key}_{number}"
        assigned.add(candidate)
        unique.append(candidate)
    return unique


def discover_volumes(root, exclude=None, progress: bool = False
                     ) -> Tuple[List[FoundVolume], List[InputError]]:
    """Every NIfTI file and DICOM MR series under `root`, sorted by key, and the problems
    (unusable DICOM files, non-MR series).

    Args:
        root: the input folder.
        exclude: a folder not to look into (the output folder when it lies inside `root`).
        progress: tqdm bar over the files.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "is not a folder")
    exclude = Path(exclude).resolve() if exclude else None
    nifti, dicom_files = [], []
    for directory, subdirs, names in os.walk(root):
        # hidden folders hold no inputs (e.g. an interrupted write's .partial-* folder)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and
                            (exclude is None or (Path(directory) / d).resolve() != exclude))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(directory) / name
            (nifti if is_nifti_path(name) else dicom_files).append(path)
    series: Dict[str, List[SliceHeader]] = {}
    other: Dict[str, List[SliceHeader]] = {}
    problems: List[InputError] = []
    for path in tqdm(dicom_files, desc="DICOM headers", unit="file", disable=not progress):
        try:
            header = read_header(str(path), series)
        except InputError as error:
            if not error.reason.startswith(NOT_DICOM):
                problems.append(error)
            continue
        except OSError as error:
            problems.append(InputError(path, f"cannot read file ({error.strerror or error})"))
            continue
        (series if header.modality == "MR" else other).setdefault(header.series_uid, []).append(header)
    for headers in other.values():
        problems.append(InputError(os.path.dirname(headers[0].path), (
            f"modality {headers[0].modality} is not MR (series '{headers[0].description}', "
            f"{len(headers)} file(s) skipped)")))
    return _named(root, nifti, series), problems


def _named(root: Path, nifti: List[Path], series: Dict[str, List[SliceHeader]]) -> List[FoundVolume]:
    found = [FoundVolume((path.parent.relative_to(root) / nifti_stem(path)).as_posix(), path, "nifti")
             for path in nifti]
    by_folder: Dict[str, List[List[SliceHeader]]] = {}
    for headers in series.values():
        folder = os.path.commonpath([os.path.dirname(h.path) for h in headers])
        by_folder.setdefault(folder, []).append(sorted(headers, key=lambda h: h.path))
    for folder, groups in by_folder.items():
        relative = Path(folder).relative_to(root)
        for headers in sorted(groups, key=lambda h: h[0].path):
            if len(groups) == 1:  # the usual layout: one series per folder
                key = relative.as_posix() if relative.parts else _safe(headers[0].description)
            else:
                number = next((h.tags for h in headers if h.tags), {}).get("SeriesNumber")
                label = _safe(f"{number}_{headers[0].description}" if number is not None
                              else headers[0].description or headers[0].series_uid[-8:])
                key = (relative / label).as_posix()
            found.append(FoundVolume(key, Path(folder), "dicom", headers))
    found.sort(key=lambda volume: (volume.key, str(volume.source)))
    for volume, key in zip(found, _unique_keys([volume.key for volume in found])):
        volume.key = key
    return found


def output_paths(output_root, key: str, dicom_root: Optional[str] = None
                 ) -> Tuple[Path, Optional[Path]]:
    """(NIfTI, DICOM folder or None) of a volume in the mirrored output tree(s)."""
    nifti = Path(output_root) / f"{key}.nii.gz"
    return nifti, (Path(dicom_root) / key if dicom_root else None)
