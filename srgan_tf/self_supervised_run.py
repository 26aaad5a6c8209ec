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
   (`trained_model`; `--retrain` trains anew). The cohort run (`cohort.runs`) calls the same
   steps: plan, `trained_model` / `train_model` once per protocol, `apply_model` per volume;
5. through-plane SR of both in-plane orientations, averaged (`inference.volume_sr`), then
   resampling along the slices onto the target grid, clipping to the input's range, and
   the input's empty support kept empty (`inference.slice_grid.keep_empty_support`);
6. the NIfTI (and DICOM series) written as `srgan-tf infer` writes them, and a report
   (decisions, profile plot, loss curve, timings) in the work dir.
"""
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np


@dataclass
class SelfSupervisedOptions:
    """Everything `srgan-tf self-supervised` takes (see `--help`)."""

    input: str
    output: str
    dicom_output: Optional[str] = None
    work_dir: Optional[str] = None
    slice_profile: str = "auto"  # auto | box | gaussian | path to .npy
    slice_thickness: Optional[float] = None
    target_spacing: Optional[float] = None
    init_model: Optional[str] = None
    steps: Optional[int] = None
    epochs: Optional[int] = None
    batch_size: int = 8
    precision: str = "auto"
    seed: int = 0
    clip: bool = True
    progress: bool = True
    retrain: bool = False


PLAN_FILE = "plan.json"  # beside a trained model: the recipe it was trained for


@dataclass
class Timings:
    phases: Dict[str, float] = field(default_factory=dict)

    def run(self, name, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.phases[name] = time.perf_counter() - start
        print(f"[{name}] {self.phases[name]:.1f} s", flush=True)
        return result


def _say(text: str) -> None:
    print(text, flush=True)


def profile_file(option: str) -> Optional[Path]:
    """The .npy file `--slice-profile` names (None for auto, box or gaussian); InputError when
    it is neither."""
    from srgan_tf.io.errors import InputError

    if option in ("auto", "box", "gaussian"):
        return None
    path = Path(option)
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise InputError("--slice-profile", f"expected auto, box, gaussian or an existing .npy "
                                            f"file. Received: {option!r}")
    return path


def resolve_profile(option: str, volume, acquisition, intensity_range, source):
    """(SliceProfile, reason, ProfileChoice or None) for `--slice-profile`; "auto" combines the
    volume's spectrum with the header's thickness (`data.profile_choice`)."""
    from srgan_tf.console import warn
    from srgan_tf.data.profile_choice import choose_slice_profile
    from srgan_tf.data.slice_profile import SliceProfile, load_profile_file
    from srgan_tf.io.errors import InputError

    if option in ("box", "gaussian"):
        return (SliceProfile(option, acquisition.thickness),
                f"chosen with --slice-profile {option}; width = slice thickness "
                f"{acquisition.thickness:.4g} mm (from {acquisition.thickness_source})", None)
    if option == "auto":
        header = None if acquisition.thickness_source == "spacing" else acquisition.thickness
        choice = choose_slice_profile(volume.array, volume.spacing, header_thickness=header,
                                      header_source=acquisition.thickness_source)
        if choice.warning:
            warn(choice.warning)
        return choice.profile, choice.reason, choice
    path = profile_file(option)
    try:
        profile = load_profile_file(path, min(acquisition.in_plane_spacing))
    except ValueError as error:
        raise InputError(path, str(error)) from None
    return profile, f"read from {path} (samples at the in-plane spacing)", None


@dataclass
class VolumePlan:
    """What the command decided about one volume before training."""

    acquisition: object  # data.acquisition.Acquisition
    slice_first: object  # the volume with its low-resolution axis first
    intensity_range: tuple
    profile: object  # data.slice_profile.SliceProfile
    reason: str
    estimate: object = None  # data.profile_choice.ProfileChoice for "auto"


def plan_volume(volume, options: SelfSupervisedOptions, timings: Optional[Timings] = None) -> VolumePlan:
    """Acquisition model, slice-first view, intensity range and slice profile of `volume`;
    InputError for volumes this command cannot handle (before any training)."""
    from srgan_tf.data.acquisition import acquisition_from_volume, to_slice_first
    from srgan_tf.data.intensity import robust_range

    timings = timings or Timings()
    acquisition = acquisition_from_volume(volume, target_spacing=options.target_spacing,
                                          thickness=options.slice_thickness, source=options.input)
    _say(f"Input {options.input}: shape {volume.shape}, spacing "
         f"{tuple(round(s, 4) for s in volume.spacing)} mm")
    _say("Acquisition: " + acquisition.describe())
    slice_first = to_slice_first(volume, acquisition.slice_axis)
    intensity_range = robust_range(slice_first.array)
    profile, reason, estimate = timings.run(
        "slice profile", resolve_profile, options.slice_profile, slice_first, acquisition,
        intensity_range, options.input)
    _say(f"Slice profile: {profile.describe()} ({reason})")
    return VolumePlan(acquisition, slice_first, intensity_range, profile, reason, estimate)


def training_config(acquisition, options: SelfSupervisedOptions):
    """The training config of a model for volumes of this acquisition."""
    from srgan_tf.training.own_slices import self_supervised_config

    return self_supervised_config(acquisition.model_factor, steps=options.steps,
                                  epochs=options.epochs, seed=options.seed)


def volume_training_slices(plan: VolumePlan, config) -> np.ndarray:
    """The planned volume's in-plane slices as training images (training pixels, [-1, 1])."""
    from srgan_tf.data.self_supervised import training_slices

    return training_slices(plan.slice_first.array, plan.acquisition, plan.intensity_range,
                           config.data.min_foreground, config.data.train_size)


def model_recipe(plan: VolumePlan, options: SelfSupervisedOptions) -> dict:
    """What a trained model depends on (JSON-ready): the training geometry, the slice
    profile and the training settings."""
    from srgan_tf.data.self_supervised import training_pixel_mm

    # The resolved schedule, not the flags: a model trained under other defaults (a version
    # with another step count or learning rate) is not reused for this one.
    train = training_config(plan.acquisition, options).train
    schedule = {"steps_per_epoch": train.steps_per_epoch, "epochs": train.pretrain_epochs,
                "adversarial_epochs": train.adversarial_epochs,
                "learning_rate": train.learning_rate,
                "learning_rate_schedule": train.learning_rate_schedule,
                "warmup_fraction": train.warmup_fraction,
                "bn_calibration_batches": train.bn_calibration_batches}
    return json.loads(json.dumps({
        "model_factor": plan.acquisition.model_factor,
        "training_pixel_mm": round(training_pixel_mm(plan.acquisition), 6),
        "in_plane_spacing_mm": [round(s, 6) for s in plan.acquisition.in_plane_spacing],
        "slice_profile": plan.profile.to_dict(), "training": schedule,
        "seed": options.seed, "init_model": options.init_model}))


def trained_model(model_dir: Path, recipe: dict, train, *, retrain: bool = False):
    """The model of `recipe` in `model_dir`: reused when a finished one was trained for the
    same recipe (`plan.json`), else trained by `train(model_dir / "model")`.

    A model of another recipe (or of a version that wrote no plan.json) is refused unless
    `retrain`; a training that was interrupted (plan.json, no finished export) starts over.

    Returns:
        (loaded export, True when it was reused).
    """
    import shutil

    from srgan_tf.files import atomic_write_text
    from srgan_tf.inference.exported_model import load_exported
    from srgan_tf.io.errors import InputError
    from srgan_tf.io.paths_guard import lies_within

    recipe = json.loads(json.dumps(recipe))
    plan_file, run_dir = Path(model_dir) / PLAN_FILE, Path(model_dir) / "model"
    export = run_dir / "export"
    if plan_file.is_file() and not retrain:
        saved = json.loads(plan_file.read_text())
        if saved == recipe and (export / "metadata.json").is_file():
            _say(f"Reusing the model trained for this plan: {export} (--retrain trains a new one)")
            return load_exported(export), True
        if saved != recipe:
            changed = sorted(k for k in set(saved) | set(recipe) if saved.get(k) != recipe.get(k))
            raise InputError(model_dir, f"holds a model trained for another plan (it differs in "
                                        f"{', '.join(changed)}); pass --retrain to replace it, "
                                        "or choose a new --work-dir")
    elif run_dir.exists() and any(run_dir.iterdir()) and not retrain:
        raise InputError(model_dir, "already holds a trained model (model/) without the plan.json "
                                    "it was trained for; pass --retrain to replace it, or choose "
                                    "a new --work-dir")
    start = recipe.get("init_model")
    if start and lies_within(start, run_dir):
        raise InputError(start, f"--init-model lies inside {run_dir}, which this run replaces "
                                "with the model it trains; copy the export elsewhere first")
    shutil.rmtree(run_dir, ignore_errors=True)
    atomic_write_text(plan_file, json.dumps(recipe, indent=2) + "\n")
    return train(run_dir), False


def train_model(images, acquisition, profile, options: SelfSupervisedOptions, run_dir: Path):
    """Train and export a self-supervised model on `images` (one volume's training slices, or
    the pooled slices of several volumes of one acquisition); the loaded export."""
    from srgan_tf.data.self_supervised import profile_taps, training_pixel_mm
    from srgan_tf.inference.exported_model import load_exported
    from srgan_tf.training.own_slices import train_on_volume
    from srgan_tf.training_run import RunExporter

    config = training_config(acquisition, options)
    pixel = training_pixel_mm(acquisition)
    taps = profile_taps(profile, acquisition.model_factor, pixel)
    _say(f"Training: {len(images)} in-plane slices of {images.shape[1]}x{images.shape[2]} "
         f"pixels of {pixel:.4g} mm, x{acquisition.model_factor} height-only, "
         f"{config.train.pretrain_epochs} epochs x {config.train.steps_per_epoch} steps of "
         f"{config.data.batch_size} patches {config.data.train_size}^2")
    initial = None
    if options.init_model:
        initial, model = _initial_weights(options.init_model, config)
        config = config.updated(model=model)
        _say(f"Fine-tuning {options.init_model} ({config.model.num_residual_blocks} blocks x "
             f"{config.model.filters} filters) on this volume")
    exporter = RunExporter()
    train_on_volume(images, taps, config, Path(run_dir), progress=options.progress,
                    initial_weights=initial, on_phase_end=exporter)
    return load_exported(exporter.written["final"])


def apply_model(model, plan: VolumePlan, volume, options: SelfSupervisedOptions, output: Path,
                dicom_output: Optional[Path], timings: Timings) -> dict:
    """Super-resolve a planned volume with a trained model and write its outputs; returns
    `{"shape", "spacing", "dicom_files", "clipped"}` of what was written."""
    sr = timings.run("super-resolution", _super_resolve, model, plan.slice_first,
                     plan.acquisition, plan.intensity_range, plan.profile, options)
    return timings.run("writing", _write, sr, volume, plan.acquisition, output, dicom_output)


def run_self_supervised(options: SelfSupervisedOptions) -> dict:
    """Run the whole command; returns a summary dict (also written to the work dir)."""
    from srgan_tf.evaluation.self_supervised_report import write_self_supervised_report
    from srgan_tf.files import DirectoryLock, DirectoryLocked
    from srgan_tf.inference.infer import check_output_locations, peak_rss_mb, read_input_volume
    from srgan_tf.io.errors import InputError
    from srgan_tf.io.nifti import nifti_stem
    from srgan_tf.io.paths_guard import refuse_overwriting_inputs

    started = time.perf_counter()
    timings = Timings()
    output = Path(options.output)
    dicom_output = Path(options.dicom_output) if options.dicom_output else None
    work_dir = Path(options.work_dir) if options.work_dir else output.with_name(
        nifti_stem(output) + "_work")
    refuse_overwriting_inputs(self_supervised_inputs(options), {
        "--output": output, "--dicom-output": dicom_output, "--work-dir": work_dir})
    check_output_locations(output, dicom_output)
    if work_dir.exists() and not work_dir.is_dir():
        raise InputError(work_dir, "--work-dir exists and is not a folder")

    volume = timings.run("read", read_input_volume, options.input, "self-supervised")
    plan = plan_volume(volume, options, timings)
    acquisition, profile = plan.acquisition, plan.profile
    from srgan_tf import runtime

    _make_work_dir(work_dir)  # only now: a refused input leaves nothing behind
    try:
        lock = DirectoryLock(work_dir).acquire()
    except DirectoryLocked as error:
        raise InputError(work_dir, f"in use by another run ({error.holder})") from None
    try:
        runtime.start_tensorflow()  # after every check: bad input never waits for TensorFlow
        recipe = {"input": str(Path(options.input).resolve()), **model_recipe(plan, options),
                  "intensity_range": [float(v) for v in plan.intensity_range]}

        def train(run_dir):
            images = volume_training_slices(plan, training_config(acquisition, options))
            return train_model(images, acquisition, profile, options, run_dir)

        model, _ = timings.run("training", trained_model, work_dir, recipe, train,
                               retrain=options.retrain)
        written = apply_model(model, plan, volume, options, output, dicom_output, timings)
        total = time.perf_counter() - started
        summary = {
            "input": str(options.input), "input_shape": list(volume.shape),
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


def self_supervised_inputs(options: SelfSupervisedOptions) -> list:
    """The paths the command reads: the volume, the --init-model export, a profile file."""
    profile = None if options.slice_profile in ("auto", "box", "gaussian") else options.slice_profile
    return [options.input, options.init_model, profile]


def _make_work_dir(work_dir: Path) -> None:
    from srgan_tf.io.errors import InputError

    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(work_dir, f"cannot create the work folder ({error.strerror or error})") from None


def _initial_weights(init_model, config):
    """(weights file, model config) of a supervised export for fine-tuning: the run trains the
    export's generator (its GeneratorSpec: blocks, filters, bicubic residual), which must
    upsample by the factor this volume needs."""
    import dataclasses

    from srgan_tf.inference.export import METADATA_FILE, WEIGHTS_FILE
    from srgan_tf.inference.exported_model import spec_from_metadata
    from srgan_tf.io.errors import InputError

    path = Path(init_model)
    weights, metadata_path = path / WEIGHTS_FILE, path / METADATA_FILE
    if not metadata_path.is_file() or not weights.is_file():
        raise InputError(path, f"--init-model needs an srgan-tf export with {METADATA_FILE} and "
                               f"{WEIGHTS_FILE} (exports written by this version; re-export an older "
                               "run with `srgan-tf export --run RUN --output DIR`)")
    try:
        spec = spec_from_metadata(json.loads(metadata_path.read_text()))
    except (ValueError, TypeError, KeyError) as error:
        raise InputError(metadata_path, f"does not describe a generator ({error})") from None
    if spec.scale_hw != config.data.scale_hw:
        raise InputError(path, f"--init-model upsamples by {spec.scale_hw} (height, width); "
                               f"this volume needs a height-only x{config.data.scale} model "
                               f"({config.data.scale_hw}); train one with `exp2_aniso.py --scale "
                               f"{config.data.scale}` or choose --target-spacing accordingly")
    return str(weights), dataclasses.replace(
        config.model, num_residual_blocks=spec.num_residual_blocks, filters=spec.filters,
        bicubic_residual=spec.bicubic_residual)


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
