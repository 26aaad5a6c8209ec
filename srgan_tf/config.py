"""Every knob of an experiment, as frozen dataclasses saved to `config.json` in each run.

Presets (`paper`, `quick`, `self-supervised`) are named configs, kept as data in
`srgan_tf.presets`.
"""
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from srgan_tf.files import atomic_write_text

MODES = ("iso", "aniso")
# The paper's experiment of each mode (run names, reports); Exp. 3 reuses the aniso model.
EXPERIMENT_OF_MODE = {"iso": "exp1", "aniso": "exp2"}
SCALES = (2, 4, 8)
CONTENT_LOSSES = ("vgg54", "vgg22", "mse")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
# The generator's learning rate over its steps: as set, or a linear warm-up to it then a
# cosine decay to zero at the last step (short schedules converge further at a higher peak).
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
# The generator-only phase's pixel loss; Charbonnier is sqrt(d^2 + eps^2), a smooth L1.
PIXEL_LOSSES = ("mse", "l1", "charbonnier")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
# Inference: an export's serving signatures ("auto": bfloat16 where native and exported),
# and the two ways a volume is super-resolved.
INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")
INFERENCE_MODES = ("through-plane", "in-plane")
# How a volume is super-resolved with each kind of model (Exp. 3 uses the aniso model).
INFERENCE_MODE_OF = {"aniso": "through-plane", "iso": "in-plane"}
# Slice profiles of simulated thick slices; srgan_tf.data.degradation.slice_profile.NAMED_SHAPES
# is built from it.
# Kept here so argument parsers list them without importing TensorFlow.
SLICE_PROFILES = ("gaussian", "box")
# How Exp. 2 makes its LR height: the paper's bicubic, or a thick-slice profile (Exp. 3 inputs).
DEGRADATIONS = ("bicubic", "slice-profile")
# The discriminator halves its input four times: 16 pixels is the smallest it takes.
MIN_TRAIN_SIZE = 16


def mode_of(scale_hw) -> str:
    """The one rule for which model is which: "iso" (s, s), "aniso" (s, 1) with s > 1.

    Args:
        scale_hw: upsampling per axis (scale_h, scale_w) of a config, generator or export.

    Example:
        >>> mode_of((4, 1))  # "aniso": Exp. 2, height only
    """
    scale_h, scale_w = (int(s) for s in scale_hw)
    if scale_h == scale_w:
        return "iso"
    if scale_w == 1 and scale_h > 1:
        return "aniso"
    raise ValueError("scale_hw must be (s, s) (iso) or (s, 1) with s > 1 (aniso, height only). "
                     f"Received: scale_hw={tuple(scale_hw)}")


def check_scale_hw(scale_hw, power_of_two: bool = False) -> Tuple[int, int]:
    """The one validator of an upsampling pair: two positive integers (scale_h, scale_w),
    both powers of two when `power_of_two` (the generator's x2 sub-pixel stages).

    Returns:
        (scale_h, scale_w) as ints.
    """
    try:
        scale_h, scale_w = (int(factor) for factor in scale_hw)
        valid = all(int(factor) == factor for factor in scale_hw)
    except (TypeError, ValueError):
        valid = False
    if valid and min(scale_h, scale_w) >= 1 and not (
            power_of_two and ((scale_h & (scale_h - 1)) or (scale_w & (scale_w - 1)))):
        return scale_h, scale_w
    kind = "two powers of two" if power_of_two else "two positive integers"
    raise ValueError(f"`scale_hw` must be {kind} (scale_h, scale_w), e.g. (4, 4) or (8, 1). "
                     f"Received: scale_hw={scale_hw!r}")


@dataclass(frozen=True)
class GeneratorSpec:
    """One description of a generator, made once from the config (`ExperimentConfig.
    generator_spec()`) and carried by checkpoints (`checkpoints/generator.json`) and exports
    (metadata.json "generator"); evaluation, export and inference read it back.

    Args:
        scale_hw: upsampling per axis (scale_h, scale_w), powers of two: (s, s) iso,
            (s, 1) aniso (Exp. 2, height only).
        num_residual_blocks: residual blocks (16 in Ledig et al.).
        filters: feature channels (64 in Ledig et al.).
        bicubic_residual: output = bicubic(LR) + learned correction (beyond the paper).

    Example:
        >>> GeneratorSpec((4, 1), num_residual_blocks=6, filters=32).mode  # "aniso"
    """

    scale_hw: Tuple[int, int]
    num_residual_blocks: int = 16
    filters: int = 64
    bicubic_residual: bool = False

    def __post_init__(self):
        # the scale here; blocks and filters are checked by the builder (models.generator)
        object.__setattr__(self, "scale_hw", check_scale_hw(self.scale_hw, power_of_two=True))
        mode_of(self.scale_hw)

    @property
    def mode(self) -> str:
        return mode_of(self.scale_hw)

    @property
    def scale(self) -> int:
        """The upsampling factor of the upsampled axes."""
        return self.scale_hw[0]

    def to_dict(self) -> dict:
        """JSON-ready; "mode" is written for readers, and ignored by `from_dict`."""
        return {"scale_hw": list(self.scale_hw), "num_residual_blocks": self.num_residual_blocks,
                "filters": self.filters, "bicubic_residual": self.bicubic_residual,
                "mode": self.mode}

    @classmethod
    def from_dict(cls, values: dict) -> "GeneratorSpec":
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def save(self, path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path) -> "GeneratorSpec":
        return cls.from_dict(json.loads(Path(path).read_text()))


class ConfigError(ValueError):
    """A knob outside its allowed values; entry points print it in one line (exit 2)."""


@dataclass(frozen=True)
class Range:
    """Allowed numeric values of a knob: low/high bounds, each inclusive or not."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __contains__(self, value) -> bool:
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not self.high_inclusive)):
            return False
        return value == value  # NaN is in no range

    def text(self) -> str:
        low, high = _number_text(self.low), _number_text(self.high)
        if self.low is not None and self.high is not None:
            return (f"in {'[' if self.low_inclusive else '('}{low}, "
                    f"{high}{']' if self.high_inclusive else ')'}")
        if self.low is not None:
            return f"{'>=' if self.low_inclusive else '>'} {low}"
        if self.high is not None:
            return f"{'<=' if self.high_inclusive else '<'} {high}"
        return "any number"


def _number_text(value) -> str:
    """Integers in full (a seed's 4294967295, not 4.29497e+09); other numbers as %g."""
    return str(value) if isinstance(value, int) else f"{value:g}" if value is not None else ""


# Allowed values of every numeric knob, by field name (unique across the sections); the
# `--flag` parsers and `ExperimentConfig` validation both read this table.
RANGES = {
    "hr_size": Range(MIN_TRAIN_SIZE),
    "patch_size": Range(MIN_TRAIN_SIZE),
    "batch_size": Range(1),
    "memory_budget_mb": Range(1),
    "min_foreground": Range(0, 1),
    "sample_patients": Range(2),  # one patient leaves none for testing
    "val_slices": Range(0),
    # a slice thicker than 3 slice spacings is not an MR slice stack
    "slice_thickness_ratio": Range(0, 3, low_inclusive=False),
    "num_residual_blocks": Range(1),
    "filters": Range(1),
    "discriminator_filters": Range(1),
    "discriminator_dense": Range(1),
    "adversarial_weight": Range(0),
    "pixel_weight": Range(0),
    "ema_decay": Range(0, 1, high_inclusive=False),
    "pretrain_epochs": Range(0),
    "adversarial_epochs": Range(0),
    "learning_rate": Range(0, 1, low_inclusive=False, high_inclusive=False),  # Adam at 1 diverges
    "warmup_fraction": Range(0, 1, high_inclusive=False),
    "beta_1": Range(0, 1, high_inclusive=False),
    "steps_per_epoch": Range(1),  # None (not 0) means "the whole split"
    "bn_calibration_batches": Range(0),
    "seed": Range(0, 2 ** 32 - 1),  # NumPy's and TensorFlow's seeds are unsigned 32-bit
}


@dataclass(frozen=True)
class DataConfig:
    """What the networks see.

    Args:
        cache: HDF5 slice cache; None means the built-in synthetic sample.
        mode: "iso" (Exp. 1: both axes downsampled) or "aniso" (Exp. 2: height only).
        scale: downsampling factor (2, 4 or 8).
        hr_size: HR slices are center-cropped / resized to hr_size x hr_size (paper: 224).
        patch_size: if set, random HR patches of this size are cut from the hr_size slice.
        batch_size: per-replica batch size (global = batch_size x replicas).
        flips: random horizontal/vertical flips during training (every epoch is a full
            seeded permutation of the split's slices, so there is no shuffle buffer to size).
        memory_budget_mb: cache volumes are loaded into memory when they fit, else streamed.
        min_foreground: skip slices whose fraction of voxels above -0.9 (normalised) is lower.
        sample_patients: patients in the built-in sample when no cache is given.
        val_slices: fixed validation slices shown in TensorBoard image panels.
        degradation: aniso LR height: "bicubic" (the paper's Exp. 2) or "slice-profile"
            (thick slices, what through-plane inputs of Exp. 3 are); iso mode is always bicubic.
        slice_profile: "gaussian" (FWHM = thickness) or "box", for "slice-profile".
        slice_thickness_ratio: slice thickness / slice spacing (the scale): 1.0 =
            contiguous slices, < 1 leaves a gap, > 1 overlaps; for "slice-profile".
    """

    cache: Optional[str] = None
    mode: str = "aniso"
    scale: int = 4
    hr_size: int = 224
    patch_size: Optional[int] = None
    batch_size: int = 16
    flips: bool = True
    memory_budget_mb: int = 4096
    min_foreground: float = 0.05
    sample_patients: int = 8
    val_slices: int = 4
    degradation: str = "bicubic"
    slice_profile: str = "box"
    slice_thickness_ratio: float = 1.0

    @property
    def scale_hw(self) -> Tuple[int, int]:
        """Upsampling factor per image axis (height, width)."""
        return (self.scale, self.scale) if self.mode == "iso" else (self.scale, 1)

    @property
    def train_size(self) -> int:
        """Square HR size of a training example."""
        return self.patch_size or self.hr_size


@dataclass(frozen=True)
class ModelConfig:
    """Generator and discriminator sizes (Ledig et al.: 16 blocks, 64 filters).

    Args:
        bicubic_residual: beyond the paper: the generator adds its output to the bicubic
            upsampling of its input (global residual learning, as VDSR), so it starts at
            bicubic quality and short CPU schedules beat bicubic. False is the paper's network.
    """

    num_residual_blocks: int = 16
    filters: int = 64
    bicubic_residual: bool = False
    discriminator_filters: int = 64
    discriminator_dense: int = 1024


@dataclass(frozen=True)
class LossConfig:
    """Objective. Paper: VGG54 content + 1e-3 adversarial.

    Args:
        content_loss: "vgg54", "vgg22" or "mse"; the one actually used is written here.
        vgg_weights: "imagenet" (Keras download/cache), a path to a weights file, or
            "none" (random weights: tests and plumbing only).
        adversarial_weight: weight of the generator's adversarial term.
        pixel_weight: weight of an extra MSE pixel term in the adversarial phase
            (beyond the paper; 0 keeps the paper's objective).
        relativistic: relativistic average discriminator (ESRGAN) instead of plain BCE.
        ema_decay: exponential moving average of generator weights (0 disables).
        content_loss_note: why the content loss differs from the one asked for (offline
            fallback), empty otherwise; recorded in config.json, metadata and report.
        pixel_loss: the generator-only (pretrain) phase's loss: "mse" (the paper's), "l1" or
            "charbonnier".
    """

    content_loss: str = "vgg54"
    vgg_weights: str = "imagenet"
    adversarial_weight: float = 1e-3
    pixel_weight: float = 0.0
    relativistic: bool = False
    ema_decay: float = 0.0
    content_loss_note: str = ""
    pixel_loss: str = "mse"


@dataclass(frozen=True)
class TrainConfig:
    """Schedule and runtime. Paper: Adam 1e-4, beta1 0.9, 20 pretrain + 50 adversarial epochs.

    `bn_calibration_batches`: training batches over which the generator's batch-norm
    statistics are recomputed each epoch for inference (0 keeps Keras' moving averages).
    `learning_rate_schedule`: "constant", or "cosine": the generator's rate rises linearly to
    `learning_rate` over the first `warmup_fraction` of its steps, then decays to zero along a
    cosine at its last step (needs `steps_per_epoch`); the discriminator's stays constant.
    `precision`: float32, mixed_bfloat16, mixed_float16, or auto (mixed_bfloat16 on a CPU-only
    machine with native bf16, else float32; the trainer records the resolved name).
    """

    pretrain_epochs: int = 20
    adversarial_epochs: int = 50
    learning_rate: float = 1e-4
    learning_rate_schedule: str = "constant"
    warmup_fraction: float = 0.0
    beta_1: float = 0.9
    steps_per_epoch: Optional[int] = None
    strategy: str = "auto"
    sync_batch_norm: bool = False
    precision: str = "float32"
    jit_compile: bool = False
    seed: int = 0
    bn_calibration_batches: int = 20

    @property
    def total_steps(self) -> Optional[int]:
        """Training steps of both phases; None without `steps_per_epoch` (an epoch is then one
        pass over the training slices)."""
        if not self.steps_per_epoch:
            return None
        return (self.pretrain_epochs + self.adversarial_epochs) * self.steps_per_epoch


# The sections of an `ExperimentConfig`, by field name.
SECTIONS = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole run: name, data, model, loss, training and where results go.

    Frozen, like its sections: a changed config is a new one (`updated`), checked as it is built.
    """

    experiment: str = "exp2"
    preset: str = "custom"
    output_dir: Optional[str] = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        """Every knob checked at construction (raises `ConfigError`, a ValueError)."""
        check_choice("mode", self.data.mode, MODES)
        if self.data.scale not in SCALES:
            raise ConfigError(f"scale must be 2, 4 or 8. Received: scale={self.data.scale}")
        check_choice("content_loss", self.loss.content_loss, CONTENT_LOSSES)
        check_choice("degradation", self.data.degradation, DEGRADATIONS)
        check_choice("slice_profile", self.data.slice_profile, SLICE_PROFILES)
        check_choice("strategy", self.train.strategy, STRATEGIES)
        check_choice("precision", self.train.precision, PRECISIONS)
        check_choice("learning_rate_schedule", self.train.learning_rate_schedule,
                     LEARNING_RATE_SCHEDULES)
        check_choice("pixel_loss", self.loss.pixel_loss, PIXEL_LOSSES)
        if self.train.learning_rate_schedule != "constant" and not self.train.steps_per_epoch:
            raise ConfigError("a learning-rate schedule needs steps_per_epoch (its length). "
                              "Received: steps_per_epoch=None")
        for section in (self.data, self.model, self.loss, self.train):
            for name, value in dataclasses.asdict(section).items():
                if name in RANGES and value is not None:
                    check_range(name, value, RANGES[name])
        data = self.data
        if data.patch_size is not None and data.patch_size > data.hr_size:
            raise ConfigError(f"patch_size must not exceed hr_size. "
                              f"Received: patch_size={data.patch_size}, hr_size={data.hr_size}")
        if data.train_size % data.scale:
            size = "patch_size" if data.patch_size else "hr_size"  # the HR training size
            raise ConfigError(f"{size} must be divisible by scale. "
                              f"Received: {size}={data.train_size}, scale={data.scale}")
        if self.train.pretrain_epochs + self.train.adversarial_epochs < 1:
            raise ConfigError("at least one epoch must be trained (pretrain_epochs + "
                              "adversarial_epochs >= 1). Received: pretrain_epochs="
                              f"{self.train.pretrain_epochs}, adversarial_epochs="
                              f"{self.train.adversarial_epochs}")

    def generator_spec(self) -> GeneratorSpec:
        """The generator this run trains: built, checkpointed and exported from this alone."""
        return GeneratorSpec(self.data.scale_hw, self.model.num_residual_blocks,
                             self.model.filters, self.model.bicubic_residual)

    def updated(self, **changes) -> "ExperimentConfig":
        """A new config with `changes`, checked like any other (`dataclasses.replace`).

        Args:
            **changes: top-level fields by value; a section (data, model, loss, train) as a
                {field: value} dict of the fields that change, or as a whole section.

        Example:
            >>> config.updated(data={"cache": "cache.h5"}, output_dir="runs/demo")
        """
        values = {name: dataclasses.replace(getattr(self, name), **value)
                  if name in SECTIONS and isinstance(value, dict) else value
                  for name, value in changes.items()}
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ExperimentConfig":
        kwargs = {k: v for k, v in values.items() if k not in SECTIONS}
        for name, section in SECTIONS.items():
            known = {f.name for f in dataclasses.fields(section)}
            kwargs[name] = section(**{k: v for k, v in values.get(name, {}).items() if k in known})
        return cls(**kwargs)

    def save(self, path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path) -> "ExperimentConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


# What each field is to a run that goes on (`--resume`, the trainer's resume, Table 1's reuse):
# the one rule of what may differ between a run's config.json and the config that continues it.
#   learned:  what the run is and what its checkpoints learned from: must match;
#   schedule: how long it trains: may differ, the run goes on to the new end;
#   runtime:  how and where it runs: free (and no reason to retrain a finished run);
#   record:   what the run writes of itself: not a knob (no flag), never compared.
LEARNED, SCHEDULE, RUNTIME, RECORD = "learned", "schedule", "runtime", "record"
RESUME_CLASSES = (LEARNED, SCHEDULE, RUNTIME, RECORD)
FIELD_CLASSES = {
    "experiment": LEARNED, "preset": LEARNED, "output_dir": RUNTIME,
    "data.cache": LEARNED, "data.mode": LEARNED, "data.scale": LEARNED,
    "data.hr_size": LEARNED, "data.patch_size": LEARNED, "data.batch_size": LEARNED,
    "data.flips": LEARNED, "data.memory_budget_mb": RUNTIME, "data.min_foreground": LEARNED,
    "data.sample_patients": LEARNED,
    "data.val_slices": RUNTIME,  # the validation panels and scores logged, not trained on
    "data.degradation": LEARNED, "data.slice_profile": LEARNED,
    "data.slice_thickness_ratio": LEARNED,
    "model.num_residual_blocks": LEARNED, "model.filters": LEARNED,
    "model.bicubic_residual": LEARNED, "model.discriminator_filters": LEARNED,
    "model.discriminator_dense": LEARNED,
    "loss.content_loss": LEARNED,
    "loss.vgg_weights": RUNTIME,  # where the VGG19 weights are read from (offline: a file)
    "loss.adversarial_weight": LEARNED, "loss.pixel_weight": LEARNED,
    "loss.relativistic": LEARNED, "loss.ema_decay": LEARNED,
    "loss.content_loss_note": RECORD, "loss.pixel_loss": LEARNED,
    "train.pretrain_epochs": SCHEDULE, "train.adversarial_epochs": SCHEDULE,
    "train.steps_per_epoch": SCHEDULE,
    "train.learning_rate": LEARNED, "train.learning_rate_schedule": LEARNED,
    "train.warmup_fraction": LEARNED, "train.beta_1": LEARNED,
    "train.strategy": RUNTIME, "train.sync_batch_norm": LEARNED,
    "train.precision": RUNTIME,  # the arithmetic, not the data or objective; hardware-bound
    "train.jit_compile": RUNTIME, "train.seed": LEARNED, "train.bn_calibration_batches": LEARNED,
}


def field_values(config: ExperimentConfig) -> Dict[str, Any]:
    """Every field of `config` by its name in `FIELD_CLASSES` ("preset", "data.scale", ...)."""
    values = {}
    for name, value in config.to_dict().items():
        if name in SECTIONS:
            values.update({f"{name}.{key}": item for key, item in value.items()})
        else:
            values[name] = value
    return values


def resume_differences(saved: ExperimentConfig, requested: Dict[str, Any]) -> Dict[str, dict]:
    """The requested values that differ from a run's, by class (`FIELD_CLASSES`).

    A value asks for the run's own when it is equal, and also: a `data.cache` of None (the
    run's cache) or the same file by another path; a `loss.content_loss` the run asked for and
    fell back from (offline VGG19 weights: its `content_loss_note` starts "<loss> requested").

    Args:
        saved: the run's config (its config.json).
        requested: {field name: value} asked of the run: a whole config (`field_values`) or
            the flags given.

    Returns:
        {class: {field name: (the run's value, the requested value)}}, every class present.

    Example:
        >>> resume_differences(saved, {"train.adversarial_epochs": 80})[SCHEDULE]
    """
    found = {kind: {} for kind in RESUME_CLASSES}
    values = field_values(saved)
    for name, value in requested.items():
        old = values[name]
        if value == old:
            continue
        if name == "data.cache" and (value is None or (
                old is not None and Path(value).resolve() == Path(old).resolve())):
            continue
        if name == "loss.content_loss" and saved.loss.content_loss_note.startswith(
                f"{value} requested"):
            continue
        found[FIELD_CLASSES[name]][name] = (old, value)
    return found


def check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}. "
                          f"Received: {name}={value!r}")


def check_range(name, value, allowed: Range):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in allowed:
        raise ConfigError(f"{name} must be {allowed.text()}. Received: {name}={value!r}")
