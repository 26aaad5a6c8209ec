"""Self-supervised training run: a generator trained on one volume's own in-plane slices.

The pairs come from `srgan_tf.data.self_supervised`; the networks, schedule and trainer are
the SRGAN ones. The default objective is the generator alone on a pixel loss (the SRResNet
phase): on real MR the adversarial phase trades fidelity (PSNR, SSIM) for texture that a
radiologist cannot tell from structure, and it is 4-5x slower per step on a CPU. It stays
available (`adversarial_epochs`) for users who want it.

The rate warms up to a peak of 1e-3 and decays to zero along a cosine
(`SELF_SUPERVISED_SCHEDULE`): a short run converges further per step than at the preset's
constant 2e-4, and the time is proportional to the steps. Measured and left out: an L1 pixel
loss (behind MSE on PSNR at every step of a 300-step run), XLA (`jit_compile` fails to
convert the bf16 train step on CPU, and would bypass oneDNN's AMX kernels that make bf16 pay),
a vectorised input pipeline (14 ms of CPU per batch of 16, ~2 % of a training step's).
"""
from pathlib import Path
from typing import Optional

from srgan_tf.config import (SELF_SUPERVISED_CALIBRATION_BATCHES, SELF_SUPERVISED_EPOCHS,
                             SELF_SUPERVISED_LEARNING_RATE,
                             SELF_SUPERVISED_SCHEDULE, SELF_SUPERVISED_STEPS,
                             SELF_SUPERVISED_WARMUP, ExperimentConfig, preset)
from srgan_tf.data.self_supervised import self_supervised_dataset



def self_supervised_config(model_factor: int, *, steps: Optional[int] = None,
                           epochs: int = SELF_SUPERVISED_EPOCHS, seed: int = 0,
                           precision: str = "auto",
                           learning_rate: float = SELF_SUPERVISED_LEARNING_RATE,
                           schedule: str = SELF_SUPERVISED_SCHEDULE) -> ExperimentConfig:
    """The `quick` networks as an anisotropic x`model_factor` model, generator-only training
    on pixel MSE at a warmed-up, cosine-decayed learning rate.

    Args:
        model_factor: the model's through-plane factor (2, 4 or 8).
        steps: training steps in all (default SELF_SUPERVISED_STEPS), split evenly over `epochs`
            (an epoch ends with batch-norm calibration, validation and a checkpoint).
        epochs: epochs of the schedule.
        seed: random seed of the weights and the patch draws.
        precision: training precision ("auto": bf16 where the CPU has it).
        learning_rate: the peak learning rate (the constant one with schedule "constant").
        schedule: "cosine" (warm-up over SELF_SUPERVISED_WARMUP of the steps, then a cosine
            decay to zero) or "constant".
    """
    steps = SELF_SUPERVISED_STEPS if steps is None else int(steps)
    if steps < 1 or epochs < 1:
        raise ValueError(f"steps and epochs must be >= 1. Received: steps={steps}, epochs={epochs}")
    config = preset("quick", experiment="self-supervised", mode="aniso", scale=model_factor)
    epochs = min(int(epochs), steps)
    return config.updated(
        preset="self-supervised",
        loss={"content_loss": "mse", "vgg_weights": "none"},  # generator-only: no VGG features
        # Batch-norm statistics over 10 batches x 16 patches (a calibration costs 6 training
        # steps per 20 batches on the quick networks, and runs every epoch).
        train={"pretrain_epochs": epochs, "adversarial_epochs": 0,
               "steps_per_epoch": max(1, steps // epochs), "seed": int(seed),
               "precision": precision,
               "bn_calibration_batches": SELF_SUPERVISED_CALIBRATION_BATCHES,
               "learning_rate": float(learning_rate), "learning_rate_schedule": schedule,
               "warmup_fraction": SELF_SUPERVISED_WARMUP if schedule == "cosine" else 0.0})


def train_on_volume(images, taps, config: ExperimentConfig, run_dir, *, progress: bool = True,
                    initial_weights=None, on_phase_end=None):
    """Train `config`'s generator on pairs made from `images` (`on_phase_end`: see `train`).

    Args:
        images: (count, rows, cols) training slices from `data.self_supervised.training_slices`.
        taps: slice-profile taps in training pixels (`profile_taps` / `slice_profile_taps`).
        config: from `self_supervised_config` (aniso, scale = the model factor).
        run_dir: the trainer's run directory (config.json, checkpoints/, logs/, export/).
        progress: Keras progress bars.
        initial_weights: path of a `generator.weights.h5` to start from (fine-tuning).

    Returns:
        The trainer's `TrainResult`.
    """
    from srgan_tf.training.strategy import global_batch_size, make_strategy
    from srgan_tf.training.trainer import train

    if config.data.mode != "aniso":
        raise ValueError(f"self-supervised through-plane training needs an anisotropic model. "
                         f"Received: mode={config.data.mode!r}")
    strategy = make_strategy(config.train.strategy)
    global_batch = global_batch_size(config.data.batch_size, strategy)
    dataset, validation = self_supervised_dataset(
        images, taps, config.data.scale, patch_size=config.data.train_size,
        batch_size=global_batch, flips=config.data.flips, seed=config.train.seed,
        val_slices=config.data.val_slices)
    extra = {"initial_weights": initial_weights} if initial_weights else {}
    return train(config, Path(run_dir), progress=progress, train_dataset=dataset,
                 validation=validation, on_phase_end=on_phase_end, **extra)
