"""Inputs are sacred: the one rule every command applies to its output paths before any work.

An output is refused (InputError: one line, exit 2) when it
- is an input file (symlinks and hard links followed), or the NIfTI twin of one (`scan.nii`
  beside `scan.nii.gz`: one name, one patient id, and a reader of the folder takes both);
- lies inside an input folder (a DICOM series, a DICOM tree, an export): writing there adds
  files the next read of that folder would take for data, or replaces one;
- is a folder the command replaces as a whole (an export) and an input lies inside it.
Outputs need not exist yet: their nearest existing folder is resolved instead.
"""
import os
import re
from pathlib import Path
from typing import Dict, Iterable, Optional

from srgan_tf.io.errors import InputError

_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


def _real(path) -> Path:
    """Absolute path with every symlink of its existing part resolved."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _same_file(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:  # hard links, case-insensitive file systems
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _nifti_twin(path: Path) -> Optional[Path]:
    """`x.nii` for `x.nii.gz` and the reverse; None for a name that is not NIfTI."""
    match = _NIFTI.search(path.name)
    if match is None:
        return None
    stem = path.name[:match.start()]
    return path.with_name(stem + (".nii" if match.group(1) else ".nii.gz"))


def _inside(path: Path, folder: Path) -> bool:
    return folder in path.parents


def lies_within(path, folder) -> bool:
    """Whether `path` is `folder` or lies inside it, symlinks of their existing parts resolved
    (neither need exist)."""
    path, folder = _real(path), _real(folder)
    return path == folder or _inside(path, folder)


def refuse_overwriting_inputs(inputs: Iterable, outputs: Dict[str, object],
                              replaced: Iterable[str] = ()) -> None:
    """Raises InputError when an output would replace, or write inside, what the command reads.

    Args:
        inputs: the paths the command reads (files or folders; None entries are skipped).
        outputs: {flag: path} of what it writes (None entries are skipped), e.g.
            {"--output": "sr.nii.gz", "--dicom-output": None}.
        replaced: the flags of `outputs` naming a folder the command replaces as a whole.

    Example:
        >>> refuse_overwriting_inputs([args.input, args.model], {"--output": args.output})
    """
    sources = [(path, _real(path)) for path in inputs if path not in (None, "")]
    replaced = set(replaced)
    for flag, output in outputs.items():
        if output in (None, ""):
            continue
        target = _real(output)
        for given, source in sources:
            reason = _conflict(target, source, whole=flag in replaced)
            if reason:
                raise InputError(output, f"{flag} {reason} {given}; the input would be lost or "
                                         "mixed with outputs: choose an output outside it")


def _conflict(target: Path, source: Path, whole: bool) -> Optional[str]:
    if _same_file(target, source):
        return "is the input"
    twin = _nifti_twin(source)
    if twin is not None and target == twin:
        return "is the NIfTI twin (same name, other suffix) of the input"
    if source.is_dir() and _inside(target, source):
        return "lies inside the input folder"
    if whole and _inside(source, target):
        return "is a folder replaced as a whole and holds the input"
    return None
