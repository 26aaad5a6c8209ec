"""NIfTI (.nii, .nii.gz) volumes in and out, with the geometry of a `Volume`.

Convention (the dcm2niix-like one): the NIfTI data array is `volume.array.transpose(2, 1, 0)`,
so voxel index (i, j, k) is (col, row, slice), and the affine maps (i, j, k) to RAS millimetres.
It is `Volume.affine_lps()` with its index columns permuted and the x, y rows negated.
"""
import gzip
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from srgan_tf.files import staged_file
from srgan_tf.io.errors import InputError, error_summary
from srgan_tf.io.volume import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# LPS <-> RAS: negate x and y (its own inverse).
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# (slice, row, col, 1) <-> (i, j, k, 1) = (col, row, slice, 1) (its own inverse).
_INDEX_SWAP = np.eye(4)[:, [2, 1, 0, 3]]


def is_nifti_path(path) -> bool:
    """True for names ending in .nii or .nii.gz (any case)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    """The file name without .nii / .nii.gz (any case)."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def volume_affine_ras(volume: Volume) -> np.ndarray:
    """4x4 affine mapping NIfTI indices (i=col, j=row, k=slice) to RAS mm."""
    return _LPS_TO_RAS @ volume.affine_lps() @ _INDEX_SWAP


def write_nifti(volume: Volume, path) -> Path:
    """Write `volume` as NIfTI-1 (gzip-compressed for .nii.gz); qform and sform both set.

    Integer-valued intensities that fit int16 are stored as int16 (exact), anything else as
    float32. The file is written under a temporary name and renamed when complete.

    Args:
        volume: the image to write.
        path: destination ending in .nii or .nii.gz.

    Example:
        >>> write_nifti(sr_volume, "sr.nii.gz")
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise ValueError(f"Expected a path ending in .nii or .nii.gz. Received: {path}")
    data = np.asarray(volume.array, dtype=np.float32).transpose(2, 1, 0)
    integer = np.array_equal(data, np.rint(data))
    if integer and data.size and data.min() >= -32768 and data.max() <= 32767:
        data = data.astype(np.int16)
    affine = volume_affine_ras(volume)
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # qform of a sheared affine is approximate; sform is exact
        image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units(xyz="mm", t="sec")
    image.header["descrip"] = volume.series_description.encode("ascii", "replace")[:79]
    path.parent.mkdir(parents=True, exist_ok=True)
    # The partial does not end in .nii/.nii.gz: no NIfTI glob takes a killed write for data.
    with staged_file(path) as partial, open(partial, "wb") as raw:
        if path.name.lower().endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as stream:
                image.to_file_map({"image": nib.FileHolder(fileobj=stream)})
        else:
            image.to_file_map({"image": nib.FileHolder(fileobj=raw)})
    return path


def _load(path: Path):
    """(float32 3-D data, affine) of a NIfTI file; InputError for anything unusable."""
    try:
        image = nib.load(str(path))
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(path, f"not a NIfTI file (nibabel reads it as "
                                   f"{type(image).__name__})")
        shape = image.shape
        if len(shape) < 3 or any(size != 1 for size in shape[3:]):
            raise InputError(path, f"expected a 3-D volume (a 4th dimension of size 1 is "
                                   f"accepted); found shape {shape}. Extract one 3-D volume "
                                   "first (e.g. fslroi)")
        if 0 in shape[:3]:
            raise InputError(path, f"holds no voxels (shape {shape})")
        data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape[:3])
        affine = np.asarray(image.affine, dtype=np.float64)
    except InputError:
        raise
    except Exception as error:  # nibabel/gzip/zlib raise many types on corrupt files
        raise InputError(path, f"not a readable NIfTI file ({error_summary(error)})") from None
    return data, affine, image.header


def read_nifti(path) -> Volume:
    """Read a NIfTI volume (any valid affine) into a `Volume` with LPS geometry.

    Spacing comes from the affine's column norms and the direction from its normalised
    columns, so `read_nifti(write_nifti(v, p))` reproduces array, spacing, origin and
    direction. Voxel values are returned as stored, NaN and infinite ones included: what a
    command does with them is `data.usable_volume`'s one rule (refused, with their count).

    Args:
        path: a .nii or .nii.gz file; its name (without suffix) becomes the patient id.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "does not exist or is not a file")
    with open(path, "rb") as stream:
        gzipped = stream.read(2) == b"\x1f\x8b"
    if gzipped and not path.name.lower().endswith(".gz"):
        raise InputError(path, "is gzip-compressed but named .nii; rename it to .nii.gz")
    data, affine, header = _load(path)
    if not np.isfinite(affine).all():
        raise InputError(path, f"has a non-finite affine: {affine.tolist()}")
    index_to_lps = _LPS_TO_RAS @ affine @ _INDEX_SWAP  # (slice, row, col) -> LPS
    axes = index_to_lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if (spacing <= 1e-6).any():
        raise InputError(path, f"has a degenerate affine (voxel size {spacing.tolist()} mm)")
    description = bytes(header["descrip"].item()).split(b"\0")[0].decode("ascii", "replace").strip()
    array = np.ascontiguousarray(data.transpose(2, 1, 0))
    return Volume(array=array, spacing=tuple(spacing), origin=tuple(index_to_lps[:3, 3]),
                  direction=(axes / spacing).T, patient_id=nifti_stem(path),
                  series_description=description or nifti_stem(path), modality="MR",
                  source_paths=[str(path)])
