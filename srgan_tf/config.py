"""Every knob of an experiment, as dataclasses saved to `config.json` in each run.

Presets (`paper`, `quick`) are named configs, not code paths.
"""
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from srgan_tf.files import atomic_write_text

MODES = ("iso", "aniso")
CONTENT_LOSSES = ("vgg54", "vgg22", "mse")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")


@dataclass
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

    @property
    def scale_hw(self) -> Tuple[int, int]:
        """Upsampling factor per image axis (height, width)."""
        return (self.scale, self.scale) if self.mode == "iso" else (self.scale, 1)

    @property
    def train_size(self) -> int:
        """Square HR size of a training example."""
        return self.patch_size or self.hr_size


@dataclass
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


@dataclass
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
    """

    content_loss: str = "vgg54"
    vgg_weights: str = "imagenet"
    adversarial_weight: float = 1e-3
    pixel_weight: float = 0.0
    relativistic: bool = False
    ema_decay: float = 0.0
    content_loss_note: str = ""


@dataclass
class TrainConfig:
    """Schedule and runtime. Paper: Adam 1e-4, beta1 0.9, 20 pretrain + 50 adversarial epochs.

    `bn_calibration_batches`: training batches over which the generator's batch-norm
    statistics are recomputed each epoch for inference (0 keeps Keras' moving averages).
    `precision`: float32, mixed_bfloat16, mixed_float16, or auto (mixed_bfloat16 on a CPU-only
    machine with native bf16, else float32; the trainer records the resolved name).
    """

    pretrain_epochs: int = 20
    adversarial_epochs: int = 50
    learning_rate: float = 1e-4
    beta_1: float = 0.9
    steps_per_epoch: Optional[int] = None
    strategy: str = "auto"
    sync_batch_norm: bool = False
    precision: str = "float32"
    jit_compile: bool = False
    seed: int = 0
    bn_calibration_batches: int = 20


@dataclass
class ExperimentConfig:
    """A whole run: name, data, model, loss, training and where results go."""

    experiment: str = "exp2"
    preset: str = "custom"
    output_dir: Optional[str] = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        check_choice("mode", self.data.mode, MODES)
        check_choice("content_loss", self.loss.content_loss, CONTENT_LOSSES)
        check_choice("strategy", self.train.strategy, STRATEGIES)
        check_choice("precision", self.train.precision, PRECISIONS)
        if self.data.scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8. Received: scale={self.data.scale}")
        if self.data.train_size % self.data.scale:
            raise ValueError(
                f"HR training size must be divisible by scale. "
                f"Received: size={self.data.train_size}, scale={self.data.scale}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ExperimentConfig":
        sections = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig, "train": TrainConfig}
        kwargs = {k: v for k, v in values.items() if k not in sections}
        for name, section in sections.items():
            known = {f.name for f in dataclasses.fields(section)}
            kwargs[name] = section(**{k: v for k, v in values.get(name, {}).items() if k in known})
        return cls(**kwargs)

    def save(self, path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path) -> "ExperimentConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}. Received: {name}={value!r}")


def preset(name: str, experiment: str = "exp2", mode: str = "aniso", scale: int = 4) -> ExperimentConfig:
    """A named configuration.

    `paper`: the paper's protocol (whole 224x224 slices, batch 16, 20 + 50 epochs, VGG54).
    `quick`: a CPU demo on the built-in sample that finishes in minutes: a smaller generator
    on HR patches, a short schedule, and a pixel term that keeps PSNR above bicubic.
    """
    config = ExperimentConfig(experiment=experiment, preset=name,
                              data=DataConfig(mode=mode, scale=scale))
    if name == "paper":
        return config
    if name == "quick":
        config.data.patch_size = 96
        config.data.batch_size = 16
        config.model.num_residual_blocks = 6
        config.model.filters = 32
        config.model.discriminator_filters = 32
        config.model.discriminator_dense = 256
        config.model.bicubic_residual = True
        config.loss.pixel_weight = 1.0
        config.train.pretrain_epochs = 4
        config.train.adversarial_epochs = 2
        config.train.steps_per_epoch = 60
        config.train.learning_rate = 2e-4
        config.train.precision = "auto"  # bf16 where the CPU has it: same scores, 1.2x faster here
        return config
    raise ValueError(f"Unknown preset. Expected 'paper' or 'quick'. Received: {name!r}")
