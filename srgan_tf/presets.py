"""Named configs as data: each preset is the fields it changes, on `ExperimentConfig`'s
defaults or on the preset it is `based_on`, and `preset` is the one function that reads them.

Example:
    >>> preset("quick", mode="iso", scale=8).model.num_residual_blocks  # 6
"""
from typing import Optional

from srgan_tf.config import SECTIONS, ConfigError, ExperimentConfig

PRESETS = {
    # The paper's protocol: whole 224x224 slices, batch 16, Adam 1e-4, 20 + 50 epochs, VGG54
    # content + 1e-3 adversarial, 16 blocks x 64 filters: `ExperimentConfig`'s defaults.
    "paper": {},
    # A CPU demo on the built-in sample that finishes in minutes: a smaller generator on HR
    # patches, a short schedule, and a pixel term that keeps PSNR above bicubic.
    "quick": {
        # Through-plane inputs are thick slices: on real MR (MNI152, x4 box slices) a
        # slice-profile model scores 36.09 dB / SSIM 0.9840 vs 35.51 / 0.9812 for bicubic.
        # The profile must match the scanner's: the box model on Gaussian slices scores
        # 34.77 dB vs 34.96 bicubic-trained and 36.29 Gaussian-trained (--slice-profile).
        "data": {"patch_size": 96, "batch_size": 16, "degradation": "slice-profile"},
        "model": {"num_residual_blocks": 6, "filters": 32, "discriminator_filters": 32,
                  "discriminator_dense": 256, "bicubic_residual": True},
        "loss": {"pixel_weight": 1.0},
        # precision: bf16 where the CPU has it, same scores, 1.2x faster here
        "train": {"pretrain_epochs": 4, "adversarial_epochs": 2, "steps_per_epoch": 60,
                  "learning_rate": 2e-4, "precision": "auto"},
    },
    # `srgan-tf self-supervised`: the quick networks as an anisotropic model, the generator
    # alone on pixel MSE (no VGG features needed), 2 epochs x 135 = 270 steps at a rate warmed
    # up linearly over the first 5 % of the steps to 1e-3, then decayed to zero along a cosine.
    # On MNI152 x4 box slices (true profile; ../shared/realmr) 270 such steps score 35.77 dB /
    # SSIM 0.9833 / HFEN 0.186 against 35.78 / 0.9835 / 0.186 for the earlier 600 steps at a
    # constant 2e-4, and on its perturbed copy (SNR 20, bias 0.2, in-plane FWHM 1.2 mm) 300
    # steps 32.29 / 0.7961 / 0.213 against 32.29 / 0.7964 / 0.216. Training time is
    # proportional to the steps (benchmarks/bench_selfsup.py --versus). Epochs only set how
    # often batch norm is calibrated and a checkpoint written (each costs about 4 training
    # steps); the batches drawn are the same whatever their number. Batch-norm statistics
    # over 10 batches x 16 patches: a calibration costs 6 training steps per 20 batches on
    # the quick networks, and runs every epoch.
    "self-supervised": {
        "based_on": "quick",
        "experiment": "self-supervised",
        "data": {"mode": "aniso"},
        "loss": {"content_loss": "mse", "vgg_weights": "none"},
        "train": {"pretrain_epochs": 2, "adversarial_epochs": 0, "steps_per_epoch": 135,
                  "learning_rate": 1e-3, "learning_rate_schedule": "cosine",
                  "warmup_fraction": 0.05, "bn_calibration_batches": 10},
    },
}

# How `srgan-tf self-supervised` applies its model (not a training knob): slices reflected
# beyond each end of the slice axis before through-plane SR (the model's receptive field is
# 21+ LR slices, which more than doubles the SR time of a 26-slice volume); with 8, the end
# slices differ from those of full padding about as much as bf16 inference differs from fp32
# (at most 0.2 % of the range; docs/self-supervised.md, "Time and memory").
SELF_SUPERVISED_SLICE_PADDING = 8


def preset_changes(name: str) -> dict:
    """The fields preset `name` sets, its `based_on` chain merged in: {"experiment": ...,
    "data": {field: value}, ...}.

    Raises:
        ConfigError: `name` is not in `PRESETS`.
    """
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset. Expected one of {', '.join(PRESETS)}. "
                          f"Received: {name!r}")
    entry = PRESETS[name]
    changes = preset_changes(entry["based_on"]) if "based_on" in entry else {}
    for key, value in entry.items():
        if key in SECTIONS:
            changes[key] = {**changes.get(key, {}), **value}
        elif key != "based_on":
            changes[key] = value
    return changes


def preset(name: str, experiment: Optional[str] = None, mode: Optional[str] = None,
           scale: Optional[int] = None) -> ExperimentConfig:
    """The config of preset `name`, for an experiment, mode and scale (each by default the
    preset's, else `ExperimentConfig`'s: exp2, aniso, 4).

    Args:
        name: a key of `PRESETS`: "paper", "quick" or "self-supervised".
        experiment: the run's experiment name (exp1, exp2, exp3...).
        mode: "iso" or "aniso".
        scale: 2, 4 or 8.
    """
    changes = {**preset_changes(name), "preset": name}
    if experiment is not None:
        changes["experiment"] = experiment
    given = {key: value for key, value in (("mode", mode), ("scale", scale)) if value is not None}
    changes["data"] = {**changes.get("data", {}), **given}
    return ExperimentConfig().updated(**changes)
