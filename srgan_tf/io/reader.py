"""`read_volume`: one entry point for a DICOM series folder or a NIfTI file."""
from pathlib import Path
from typing import Optional

from srgan_tf.io.dicom import read_dicom_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import is_nifti_path, read_nifti
from srgan_tf.io.volume import Volume


def _is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(132)[128:] == b"DICM"


def read_volume(path, series_filter: Optional[str] = None) -> Volume:
    """Read a volume from a DICOM series folder or a .nii/.nii.gz file.

    Args:
        path: a folder holding one MR series (any depth), or a NIfTI file.
        series_filter: for a folder holding several series, a regex on SeriesDescription
            that selects one of them (case-insensitive search).

    Raises:
        InputError: missing path, unsupported file type, no series or several series.

    Example:
        >>> volume = read_volume("PROSTATEx-0001/.../t2_tse_tra")
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_dir():
        try:
            return read_dicom_series(path, series_filter)
        except InputError as error:
            nifti = sorted(entry.name for entry in path.iterdir() if is_nifti_path(entry))
            if not nifti:
                raise
            names = ", ".join(nifti[:3]) + (", ..." if len(nifti) > 3 else "")
            raise InputError(error.path, f"{error.reason}; the folder holds NIfTI files "
                                         f"({names}): pass one of them as the input") from None
    if is_nifti_path(path):
        return read_nifti(path)
    try:
        single_dicom = _is_dicom_file(path)
    except OSError as error:
        raise InputError(path, f"cannot read file ({error.strerror or error})") from None
    if single_dicom:
        raise InputError(path, f"is a single DICOM file; point at its series folder "
                               f"({path.parent}) instead")
    raise InputError(path, "unsupported input: expected a DICOM series folder or a .nii / "
                           ".nii.gz file")
