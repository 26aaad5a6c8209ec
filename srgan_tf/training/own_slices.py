"""Training on one volume's own in-plane slices (self-supervision): its config and its run.

The pairs come from `srgan_tf.data.pipelines.self_supervised`; the networks, schedule and trainer are
the SRGAN ones. The default objective is the generator alone on a pixel loss (the SRResNet
phase): on real MR the adversarial phase trades fidelity (PSNR, SSIM) for texture that a
radiologist cannot tell from structure, and it is 4-5x slower per step on a CPU. It stays
available (`adversarial_epochs`) for users who want it.

The rate warms up to a peak of 1e-3 and decays to zero along a cosine (the `self-supervised`
preset, `srgan_tf.presets`): a short run converges further per step than at the `quick`
preset's constant 2e-4, and the time is proportional to the steps. Measured and left out: an
L1 pixel loss (behind MSE on PSNR at every step of a 300-step run), XLA (`jit_compile` fails
to convert the bf16 train step on CPU, and would bypass oneDNN's AMX kernels that make bf16
pay), a vectorised input pipeline (14 ms of CPU per batch of 16, ~2 % of a training step's).
"""
from pathlib import Path
from typing import Optional

from srgan_tf.config import ExperimentConfig
from srgan_tf.data.pipelines.self_supervised import self_supervised_dataset
from srgan_tf.presets import preset


def self_supervised_config(model_factor: int, *, steps: Optional[int] = None,
                           epochs: Optional[int] = None, seed: Optional[int] = None,
                           precision: Optional[str] = None, learning_rate: Optional[float] = None,
                           schedule: Optional[str] = None) -> ExperimentConfig:
    """The `self-supervised` preset as an anisotropic x`model_factor` model: the `quick`
    networks, generator-only training on pixel MSE at a warmed-up, cosine-decayed rate.
    Each argument left None keeps the preset's.

    Args:
        model_factor: the model's through-plane factor (2, 4 or 8).
        steps: training steps in all, split evenly over `epochs` (an epoch ends with
            batch-norm calibration, validation and a checkpoint).
        epochs: epochs of the schedule.
        seed: random seed of the weights and the patch draws.
        precision: training precision ("auto": bf16 where the CPU has it).
        learning_rate: the peak learning rate (the constant one with schedule "constant").
        schedule: "cosine" (warm-up over the preset's `warmup_fraction` of the steps, then a
            cosine decay to zero) or "constant".
    """
    config = preset("self-supervised", scale=model_factor)
    train = config.train
    steps = train.total_steps if steps is None else int(steps)
    epochs = train.pretrain_epochs if epochs is None else int(epochs)
    if steps < 1 or epochs < 1:
        raise ValueError(f"steps and epochs must be >= 1. Received: steps={steps}, epochs={epochs}")
    epochs = min(epochs, steps)
    schedule = schedule or train.learning_rate_schedule
    return config.updated(train={
        "pretrain_epochs": epochs, "steps_per_epoch": max(1, steps // epochs),
        "seed": train.seed if seed is None else int(seed),
        "precision": precision or train.precision,
        "learning_rate": train.learning_rate if learning_rate is None else float(learning_rate),
        "learning_rate_schedule": schedule,
        "warmup_fraction": train.warmup_fraction if schedule == "cosine" else 0.0})


def train_on_volume(images, taps, config: ExperimentConfig, run_dir, *, progress: bool = True,
                    initial_weights=None, on_phase_end=None):
    """Train `config`'s generator on pairs made from `images` (`on_phase_end`: see `train`).

    Args:
        images: (count, rows, cols) training slices from `data.self_supervised.training_slices`.
        taps: slice-profile taps in training pixels (`SliceProfile.sampling_taps`).
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
    return train(config, Path(run_dir), strategy=strategy, progress=progress, train_dataset=dataset,
                 validation=validation, on_phase_end=on_phase_end, **extra)
