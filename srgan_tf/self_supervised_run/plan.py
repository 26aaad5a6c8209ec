"""Planning of `srgan-tf self-supervised`: what the command decides about a volume before
any training (entry level: it reads data, training and inference facts).

The acquisition model from the volume's geometry (`data.acquisition`: low-resolution axis,
factor, slice thickness, output grid); the slice profile (`--slice-profile`: estimated from the
volume, box/gaussian of the slice thickness, or a `.npy` file); the training config and the
recipe a trained model depends on (`plan.json` beside it, `self_supervised_run.model`).
"""
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np


@dataclass(frozen=True)
class VolumeIO:
    """Where `srgan-tf self-supervised` reads and writes: the volume (or a folder of volumes),
    the NIfTI output (or output folder), a derived DICOM series, the work folder."""

    input: str
    output: str
    dicom_output: Optional[str] = None
    work_dir: Optional[str] = None


@dataclass(frozen=True)
class SelfSupervisedOptions:
    """How `srgan-tf self-supervised` decides and trains (see `--help`): the slice profile, the
    output grid, the training knobs; where it reads and writes is a `VolumeIO`."""

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
    from srgan_tf.data.degradation.slice_profile import NAMED_SHAPES
    from srgan_tf.io.errors import InputError

    if option in ("auto", *NAMED_SHAPES):
        return None
    path = Path(option)
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise InputError("--slice-profile", f"expected auto, {', '.join(NAMED_SHAPES)} or an existing "
                                            f".npy file. Received: {option!r}")
    return path


def resolve_profile(option: str, volume, acquisition, intensity_range, source):
    """(SliceProfile, reason, ProfileChoice or None) for `--slice-profile`; "auto" combines the
    volume's spectrum with the header's thickness (`data.profile_choice`)."""
    from srgan_tf.console import warn
    from srgan_tf.data.degradation.profile_choice import choose_slice_profile
    from srgan_tf.data.degradation.slice_profile import NAMED_SHAPES, SliceProfile, load_profile_file
    from srgan_tf.io.errors import InputError

    if option in NAMED_SHAPES:
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


def plan_volume(volume, options: SelfSupervisedOptions, source: str,
                timings: Optional[Timings] = None) -> VolumePlan:
    """Acquisition model, slice-first view, intensity range and slice profile of `volume`
    (`source`: its file or folder, named in messages and errors); InputError for volumes this
    command cannot handle (before any training)."""
    from srgan_tf.data.acquisition import acquisition_from_volume, to_slice_first
    from srgan_tf.data.intensity import robust_range

    timings = timings or Timings()
    acquisition = acquisition_from_volume(volume, target_spacing=options.target_spacing,
                                          thickness=options.slice_thickness, source=source)
    _say(f"Input {source}: shape {volume.shape}, spacing "
         f"{tuple(round(s, 4) for s in volume.spacing)} mm")
    _say("Acquisition: " + acquisition.describe())
    slice_first = to_slice_first(volume, acquisition.slice_axis)
    intensity_range = robust_range(slice_first.array)
    profile, reason, estimate = timings.run(
        "slice profile", resolve_profile, options.slice_profile, slice_first, acquisition,
        intensity_range, source)
    _say(f"Slice profile: {profile.describe()} ({reason})")
    return VolumePlan(acquisition, slice_first, intensity_range, profile, reason, estimate)


def training_config(acquisition, options: SelfSupervisedOptions):
    """The training config of a model for volumes of this acquisition."""
    from srgan_tf.training.own_slices import self_supervised_config

    return self_supervised_config(acquisition.model_factor, steps=options.steps,
                                  epochs=options.epochs, seed=options.seed)


def volume_training_slices(plan: VolumePlan, config) -> np.ndarray:
    """The planned volume's in-plane slices as training images (training pixels, [-1, 1])."""
    from srgan_tf.data.pipelines.self_supervised import training_slices

    return training_slices(plan.slice_first.array, plan.acquisition, plan.intensity_range,
                           config.data.min_foreground, config.data.train_size)


def model_recipe(plan: VolumePlan, options: SelfSupervisedOptions) -> dict:
    """What a trained model depends on (JSON-ready): the training geometry, the slice
    profile and the training settings."""
    from srgan_tf.data.pipelines.self_supervised import training_pixel_mm

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


def self_supervised_inputs(paths: VolumeIO, options: SelfSupervisedOptions) -> list:
    """The paths the command reads: the volume, the --init-model export, a profile file."""
    from srgan_tf.data.degradation.slice_profile import NAMED_SHAPES

    profile = None if options.slice_profile in ("auto", *NAMED_SHAPES) else options.slice_profile
    return [paths.input, options.init_model, profile]
