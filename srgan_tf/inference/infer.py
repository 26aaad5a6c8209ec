"""`srgan-tf infer`: exported model + DICOM series or NIfTI volume -> SR NIfTI (+ DICOM series).

Needs only the export directory (SavedModel + metadata.json). Bad input and unusable output
locations raise InputError before any work, and outputs appear only when complete (written
under a partial name and renamed, `files.staged_file`/`staged_folder`); partials left by a
killed earlier run of the same output are removed.
"""
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from srgan_tf.config import INFERENCE_MODE_OF, INFERENCE_MODES, INFERENCE_PRECISIONS
from srgan_tf.console import warn
from srgan_tf.data.usable_volume import check_usable
from srgan_tf.files import remove_stale_partials, staged_folder
from srgan_tf.io.errors import InputError, error_summary
from srgan_tf.io.nifti import is_nifti_path, write_nifti
from srgan_tf.io.paths_guard import refuse_overwriting_inputs
from srgan_tf.io.reader import read_volume
from srgan_tf.runtime import native_bfloat16, start_tensorflow

# TensorFlow (export, volume_sr) is imported inside run_infer, after the cheap checks.
MODES = INFERENCE_MODES
PRECISIONS = INFERENCE_PRECISIONS


def resolve_precision(precision: str, model) -> str:
    """"auto" -> "bfloat16" when the export has it and the hardware runs it natively."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: {precision!r}")
    if precision == "auto":
        return "bfloat16" if "bfloat16" in model.precisions and native_bfloat16() else "float32"
    if precision not in model.precisions:
        raise InputError(model.path, f"this export has no {precision} signature "
                                     f"(available: {', '.join(model.precisions)})")
    return precision


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def read_input_volume(input_path, mode: str = "through-plane"):
    """`read_volume` with every reader failure as one InputError naming the input; through-plane
    and self-supervised SR need at least 2 slices."""
    try:
        volume = read_volume(input_path)
    except InputError:
        raise
    except Exception as error:  # a reader failure the io layer did not classify: still one line
        raise InputError(input_path, f"cannot read a volume ({error_summary(error)})") from None
    return check_input_volume(volume, input_path, mode)


def check_input_volume(volume, input_path, mode: str = "through-plane"):
    """`volume` when `mode` can use it (through-plane and self-supervised SR need at least 2
    slices), else InputError naming `input_path`."""
    if mode in ("through-plane", "self-supervised") and volume.shape[0] < 2:
        raise InputError(input_path, f"a single slice (shape {volume.shape}); through-plane SR "
                                     "needs a volume of at least 2 slices")
    if min(volume.shape) < 1:
        raise InputError(input_path, f"empty volume (shape {volume.shape})")
    check_usable(volume, input_path)  # non-finite voxels or no signal: refused
    return volume


def check_output_locations(output_path, dicom_output=None) -> None:
    """Before any work: the NIfTI name, a writable folder for it (and for the DICOM folder,
    which must be new or empty); then removes partials that killed runs left of these outputs.

    Raises:
        InputError: naming the output and what is wrong with it.
    """
    output_path = Path(output_path)
    dicom_output = Path(dicom_output) if dicom_output else None
    if not is_nifti_path(output_path):
        raise InputError(output_path, "output must be a NIfTI file name ending in .nii or .nii.gz")
    if output_path.is_dir():
        raise InputError(output_path, "output is a directory; give a .nii.gz file name")
    _check_writable(output_path)
    if dicom_output is not None and dicom_output.exists():
        if not dicom_output.is_dir() or any(dicom_output.iterdir()):
            raise InputError(dicom_output, "already exists and is not an empty folder; choose a "
                                           "new folder for the derived DICOM series")
    if dicom_output is not None:
        _check_writable(dicom_output)
    # earlier versions named a NIfTI partial .<name less .nii/.nii.gz>.partial-<pid>...
    stem = re.sub(r"\.nii(\.gz)?$", "", output_path.name, flags=re.IGNORECASE)
    earlier = {output_path: [re.escape(f".{stem}.partial-") + r"(?P<pid>\d+)(?:[-.].*)?"]}
    for target in [output_path] + ([dicom_output] if dicom_output else []):
        for stale in remove_stale_partials(target, earlier.get(target, [])):
            print(f"Removed {stale}: a partial output left by an interrupted run", file=sys.stderr)


def _check_writable(path: Path) -> None:
    """The folder that will hold `path` (or its nearest existing ancestor, created later) is a
    folder we can write into: tried with a probe file, so read-only mounts count too."""
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(path, f"cannot be written: {folder} is a file, not a folder")
    try:
        descriptor, probe = tempfile.mkstemp(dir=folder, prefix=".srgan-tf-write-test-")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise InputError(path, f"cannot be written: no write access to {folder} "
                               f"({error.strerror or error})") from None


def write_outputs(volume, source, output_path, dicom_output=None) -> int:
    """Write an SR `Volume` as NIfTI (and a derived DICOM series of `source`), each under a
    partial name, the DICOM folder renamed in after the NIfTI; returns the number of DICOM
    files."""
    output_path = Path(output_path)
    if not dicom_output:
        write_nifti(volume, output_path)  # itself staged (partial name, rename)
        return 0
    from srgan_tf.io.dicom_write import write_dicom_series

    dicom_output = Path(dicom_output)
    dicom_output.parent.mkdir(parents=True, exist_ok=True)
    written = False
    try:
        with staged_folder(dicom_output) as staging:  # an empty folder (checked) is replaced
            files = write_dicom_series(volume, staging, derived=True, reference=source,
                                       series_description=volume.series_description, staged=False)
            write_nifti(volume, output_path)
            written = True
        return len(files)
    except BaseException:
        if written:
            output_path.unlink(missing_ok=True)
        raise


def run_infer(model_dir, input_path, output_path, *, dicom_output=None, mode: Optional[str] = None,
              batch_size: int = 8, memory_budget_mb: float = 2048, precision: str = "auto",
              clip_to_input_range: bool = True, progress: bool = True,
              slice_padding: Optional[int] = None) -> dict:
    """Super-resolve one volume with an exported generator and write the result.

    Args:
        model_dir: export directory (SavedModel + metadata.json).
        input_path: DICOM series folder, .nii or .nii.gz.
        output_path: NIfTI to write (.nii or .nii.gz).
        dicom_output: optional new folder for a derived DICOM series.
        mode: "through-plane" (anisotropic model, Exp. 3) or "in-plane" (isotropic model);
            None: the one the export's metadata names (aniso -> through-plane, iso -> in-plane).
        batch_size: images per model call at most.
        memory_budget_mb: activation memory per model call; larger images are tiled.
        precision: "auto" (bfloat16 where native and exported, else float32), "float32",
            or "bfloat16".
        clip_to_input_range: clip the SR intensities to the input's [min, max]: the generator
            overshoots at edges, and magnitude MR must not go negative.
        progress: tqdm bar over batches.
        slice_padding: through-plane: reflected slices beyond each end (None: the model's
            receptive field, exact end slices).

    Returns:
        Summary dict (shapes, spacings, outputs, seconds, peak_rss_mb, ...).

    Example:
        >>> run_infer("runs/exp2/export", "t2_tse_tra/", "sr.nii.gz", dicom_output="sr_dicom")
    """
    started = time.perf_counter()
    output_path = Path(output_path)
    dicom_output = Path(dicom_output) if dicom_output else None
    refuse_overwriting_inputs([input_path, model_dir], {"--output": output_path,
                                                        "--dicom-output": dicom_output})
    check_output_locations(output_path, dicom_output)
    # The volume is read and checked before the model loads (seconds for a large export):
    # a bad input is refused at once, with the mode the export's metadata names.
    volume = read_input_volume(input_path, mode or _declared_mode(model_dir))
    model, mode, precision = load_for_inference(model_dir, mode, precision)
    if mode == "through-plane" and volume.shape[0] < 2:
        check_input_volume(volume, input_path, mode)
    summary = infer_volume(model, mode, precision, volume, output_path, dicom_output=dicom_output,
                           batch_size=batch_size, memory_budget_mb=memory_budget_mb,
                           clip_to_input_range=clip_to_input_range, progress=progress,
                           slice_padding=slice_padding)
    return {"input": str(input_path), **summary,
            "seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}


def _declared_mode(model_dir) -> str:
    """The inference mode an export's metadata.json names, read without loading the model
    ("in-plane", the mode with the fewest input checks, when it names none or is unreadable:
    the load then says what is wrong)."""
    try:
        metadata = json.loads((Path(model_dir) / "metadata.json").read_text())
        return INFERENCE_MODE_OF.get(metadata.get("mode"), "in-plane")
    except (OSError, ValueError, AttributeError):
        return "in-plane"


def load_for_inference(model_dir, mode: Optional[str] = None, precision: str = "auto"):
    """(loaded export, mode, precision) for `run_infer` / `infer_volume`: the mode the export's
    metadata names unless given, checked against the model; "auto" precision resolved."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None. Received: {mode!r}")
    start_tensorflow()
    from srgan_tf.inference.exported_model import load_exported
    from srgan_tf.inference.volume_sr import check_mode

    model = load_exported(model_dir)
    if mode is None:
        mode = INFERENCE_MODE_OF.get(model.mode)
        if mode is None:
            raise InputError(model_dir, f"the export's metadata names no known model mode "
                                        f"(mode {model.mode!r}, not iso or aniso): pass --mode")
    check_mode(model, mode, model_dir)
    return model, mode, resolve_precision(precision, model)


def infer_volume(model, mode: str, precision: str, volume, output_path, *, dicom_output=None,
                 batch_size: int = 8, memory_budget_mb: float = 2048,
                 clip_to_input_range: bool = True, progress: bool = True,
                 slice_padding: Optional[int] = None) -> dict:
    """Super-resolve a read volume with a loaded export and write the outputs (whose locations
    the caller checked); the summary of `run_infer` without input, seconds and memory."""
    from srgan_tf.inference.output_grid import clip_to_range
    from srgan_tf.inference.volume_sr import super_resolve_volume

    output_path = Path(output_path)
    dicom_output = Path(dicom_output) if dicom_output else None
    mismatch = None
    if mode == "through-plane":
        from srgan_tf.inference.degradation_check import degradation_warning

        mismatch = degradation_warning(model.metadata, volume)
        if mismatch:
            warn(mismatch)
    result = super_resolve_volume(model, volume, mode, batch_size=batch_size,
                                  memory_budget_mb=memory_budget_mb, precision=precision,
                                  progress=progress, slice_padding=slice_padding)
    clipped = "off"
    if clip_to_input_range:
        low, high = float(np.min(volume.array)), float(np.max(volume.array))
        result.volume, outside = clip_to_range(result.volume, low, high)
        clipped = (f"to the input range [{low:g}, {high:g}], {outside} voxels "
                   f"({outside / max(result.volume.array.size, 1):.2%})")
    dicom_files = write_outputs(result.volume, volume, output_path, dicom_output)
    return {
        "input_shape": list(volume.shape),
        "input_spacing_mm": [round(s, 6) for s in volume.spacing],
        "output": str(output_path),
        "output_shape": list(result.volume.shape),
        "output_spacing_mm": [round(s, 6) for s in result.volume.spacing],
        "dicom_output": str(dicom_output) if dicom_output else None,
        "dicom_files": dicom_files,
        "mode": mode,
        "scale_hw": list(model.scale_hw),
        "precision": precision,
        "clipped": clipped,
        "slice_padding": (min(model.receptive_field[0], slice_padding) if slice_padding is not None
                          else model.receptive_field[0]) if mode == "through-plane" else None,
        "degradation_warning": mismatch,
        "batches": result.batches,
        "tiles_per_image": result.tiles_per_image,
    }
