"""`srgan-tf self-supervised`: one thick-slice volume made near-isotropic, no training data.

The run, phase by phase (each timed and printed):
1. read the volume (DICOM series folder or NIfTI) and check the output locations;
2. the acquisition model from its geometry (`data.acquisition`): low-resolution axis,
   factor (any real >= 1.5), slice thickness, output grid;
3. the slice profile: estimated from the volume (`--slice-profile auto`), or box/gaussian
   of the slice thickness, or a `.npy` file;
4. training on the volume's own in-plane slices degraded with that profile
   (`training.own_slices`), exported to `<work dir>/model/export`; the plan it was
   trained for is `<work dir>/plan.json`, and a re-run whose plan matches reuses the model
   (`model.trained_model`; `--retrain` trains anew). The cohort run (`cohort.runs`) calls the
   same steps: `plan.plan_volume`, `model.trained_model` / `model.train_model` once per
   protocol, `apply_model` per volume;
5. through-plane SR of both in-plane orientations, averaged (`inference.volume_sr`), then
   put on the output grid (`inference.output_grid`): resampled along the slices onto the
   target grid, clipped to the input's range, the input's empty support kept empty;
6. the NIfTI (and DICOM series) written as `srgan-tf infer` writes them, and a report
   (decisions, profile plot, loss curve, timings) in the work dir
   (`evaluation.self_supervised_report`).
"""
import time
from pathlib import Path
from typing import Optional

from srgan_tf.self_supervised_run.model import train_volume_model, trained_model
from srgan_tf.self_supervised_run.plan import (SelfSupervisedOptions, Timings, VolumeIO,
                                               VolumePlan, model_recipe, plan_volume,
                                               self_supervised_inputs)


def apply_model(model, plan: VolumePlan, volume, options: SelfSupervisedOptions, output: Path,
                dicom_output: Optional[Path], timings: Timings) -> dict:
    """Super-resolve a planned volume with a trained model and write its outputs; returns
    `{"shape", "spacing", "dicom_files", "clipped"}` of what was written."""
    sr = timings.run("super-resolution", _super_resolve, model, plan.slice_first,
                     plan.acquisition, plan.intensity_range, plan.profile, options)
    return timings.run("writing", _write, sr, volume, plan.acquisition, output, dicom_output)


def run_self_supervised(paths: VolumeIO, options: SelfSupervisedOptions) -> dict:
    """Run the whole command on one volume; returns a summary dict (also written to the work
    dir)."""
    from srgan_tf.evaluation.self_supervised_report import write_self_supervised_report
    from srgan_tf.files import DirectoryLock, DirectoryLocked
    from srgan_tf.inference.infer import check_output_locations, peak_rss_mb, read_input_volume
    from srgan_tf.io.errors import InputError
    from srgan_tf.io.nifti import nifti_stem
    from srgan_tf.io.paths_guard import refuse_overwriting_inputs

    started = time.perf_counter()
    timings = Timings()
    output = Path(paths.output)
    dicom_output = Path(paths.dicom_output) if paths.dicom_output else None
    work_dir = Path(paths.work_dir) if paths.work_dir else output.with_name(
        nifti_stem(output) + "_work")
    refuse_overwriting_inputs(self_supervised_inputs(paths, options), {
        "--output": output, "--dicom-output": dicom_output, "--work-dir": work_dir})
    check_output_locations(output, dicom_output)
    if work_dir.exists() and not work_dir.is_dir():
        raise InputError(work_dir, "--work-dir exists and is not a folder")

    volume = timings.run("read", read_input_volume, paths.input, "self-supervised")
    plan = plan_volume(volume, options, paths.input, timings)
    acquisition, profile = plan.acquisition, plan.profile
    from srgan_tf import runtime

    _make_work_dir(work_dir)  # only now: a refused input leaves nothing behind
    try:
        lock = DirectoryLock(work_dir).acquire()
    except DirectoryLocked as error:
        raise InputError(work_dir, f"in use by another run ({error.holder})") from None
    try:
        runtime.start_tensorflow()  # after every check: bad input never waits for TensorFlow
        recipe = {"input": str(Path(paths.input).resolve()), **model_recipe(plan, options),
                  "intensity_range": [float(v) for v in plan.intensity_range]}

        def train(run_dir):
            return train_volume_model(plan, options, run_dir)

        model, _ = timings.run("training", trained_model, work_dir, recipe, train,
                               retrain=options.retrain)
        written = apply_model(model, plan, volume, options, output, dicom_output, timings)
        total = time.perf_counter() - started
        summary = {
            "input": str(paths.input), "input_shape": list(volume.shape),
            "input_spacing_mm": [round(s, 6) for s in volume.spacing],
            "output": str(output), "output_shape": list(written["shape"]),
            "output_spacing_mm": [round(s, 6) for s in written["spacing"]],
            "dicom_output": str(dicom_output) if dicom_output else None,
            "dicom_files": written["dicom_files"],
            "acquisition": acquisition.to_dict(),
            "slice_profile": profile.to_dict(), "slice_profile_reason": plan.reason,
            "slice_profile_choice": plan.estimate.to_dict() if plan.estimate else None,
            "model_export": str(model.path), "clipped_to_input_range": written["clipped"],
            "work_dir": str(work_dir),
            "seconds": {**{k: round(v, 1) for k, v in timings.phases.items()}, "total": round(total, 1)},
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        write_self_supervised_report(work_dir, summary, plan.estimate)
    finally:
        lock.release()
    return summary


def _make_work_dir(work_dir: Path) -> None:
    from srgan_tf.io.errors import InputError

    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(work_dir, f"cannot create the work folder ({error.strerror or error})") from None


def _super_resolve(model, slice_first, acquisition, intensity_range, profile, options):
    from srgan_tf.inference.infer import resolve_precision
    from srgan_tf.inference.output_grid import onto_target_grid
    from srgan_tf.inference.volume_sr import super_resolve_volume
    from srgan_tf.presets import SELF_SUPERVISED_SLICE_PADDING

    precision = resolve_precision(options.precision, model)
    result = super_resolve_volume(model, slice_first, "through-plane", batch_size=options.batch_size,
                                  precision=precision, progress=options.progress,
                                  intensity_range=intensity_range,
                                  slice_padding=SELF_SUPERVISED_SLICE_PADDING)
    return onto_target_grid(result.volume, slice_first, acquisition, profile,
                            clip=options.clip), options.clip


def _write(sr, volume, acquisition, output, dicom_output):
    from srgan_tf.data.acquisition import from_slice_first
    from srgan_tf.inference.infer import write_outputs

    sr_volume, clipped = sr
    sr_volume = from_slice_first(sr_volume, acquisition.slice_axis)
    files = write_outputs(sr_volume, volume, output, dicom_output)
    return {"shape": sr_volume.shape, "spacing": sr_volume.spacing, "dicom_files": files,
            "clipped": clipped}
