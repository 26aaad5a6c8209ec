"""Two-phase SRGAN training (paper Sec. 3): generator alone on MSE, then adversarial.

`train` takes the data and the strategy from its caller and trains: into the run directory
(`RunDirectory`: config.json, checkpoints/, logs/, history.csv, train.log), resuming from the
last checkpoint with `resume=True`. What the run directory may hold, the cache, the VGG
weights and the strategy are the entry level's (`srgan_tf.experiment`,
`srgan_tf.training_run`), and so are the exports: `train` reports each phase end to
`on_phase_end`.

Example:
    strategy = make_strategy(config.train.strategy)
    result = train(config, "runs/demo", strategy=strategy, train_dataset=batches,
                   validation=(val_lr, val_hr))
    print(result.history["val_psnr"][-1])
"""
import dataclasses
import sys
from pathlib import Path
from typing import Callable, Optional, Union

import keras
import numpy as np
import tensorflow as tf

from srgan_tf.config import ExperimentConfig
from srgan_tf.run_directory import RunDirectory
from srgan_tf.runtime import precision_policy, training_precision
from srgan_tf.training.batchnorm import BatchNormCalibration
from srgan_tf.training.callbacks import (EpochLog, HistoryCSV, TensorBoardLogger, history_columns,
                                         read_history, truncate_history)
from srgan_tf.training.checkpoints import (EpochCheckpoint, TrainingState, resume_training,
                                           save_generator_spec)
from srgan_tf.training.srgan import SRGAN, clone_model_with
from srgan_tf.training.strategy import (check_workers_agree, distributable, global_batch_size,
                                        is_chief, task_index)
from srgan_tf.training.workspace import Workspace

# A dataset of (lr, hr) batches of the global batch size, or `batches(epochs_done)` drawing one
# per fit() call (a resumed run then does not replay the batches it has seen).
TrainingData = Union[tf.data.Dataset, Callable[[int], tf.data.Dataset]]


@dataclasses.dataclass
class TrainResult:
    """What a training run produced: the run directory, per-epoch history, the config as
    trained (precision resolved; what config.json holds) and, when the orchestrator exported
    it, the export."""

    run_dir: Path
    history: dict
    config: ExperimentConfig
    chief: bool = True  # False: a multi-worker run's other worker, which wrote nothing
    export_dir: Optional[Path] = None  # set by the orchestrator (`training_run.train_and_export`)


@dataclasses.dataclass
class PhaseEnd:
    """What `train` tells `on_phase_end` (on the chief only) when a phase's generator is final.

    phase: "pretrain" (the generator after the MSE phase, SRResNet in Ledig et al., reported
        when an adversarial phase follows) or "final" (the run's generator).
    """

    phase: str
    generator: keras.Model  # a float32 copy, EMA weights where the run keeps them
    config: ExperimentConfig  # its generator_spec() describes `generator`
    epochs_done: int
    run_dir: Path
    note: Callable[[str], None]  # a line for the run's train.log (and the console)


def build_srgan(config: ExperimentConfig, content_extractor=None) -> SRGAN:
    """Generator, discriminator and content extractor from the config, in its precision.

    Call inside `strategy.scope()`. A caller's extractor is copied into the run's precision
    (and scope); without one, it is built from `config.loss` unless the content loss is "mse".
    """
    from srgan_tf.models.discriminator import build_discriminator
    from srgan_tf.models.generator import generator_from_spec

    precision, size = training_precision(config.train.precision), config.data.train_size
    with precision_policy(precision):
        generator = generator_from_spec(config.generator_spec())
        discriminator = build_discriminator((size, size), config.model.discriminator_filters,
                                            config.model.discriminator_dense)
        if config.train.sync_batch_norm:  # batch statistics over the global batch
            generator = clone_model_with(generator, synchronized_bn=True)
            discriminator = clone_model_with(discriminator, synchronized_bn=True)
        if config.loss.content_loss == "mse":
            content_extractor = None
        elif content_extractor is None:
            from srgan_tf.models.vgg import build_content_extractor

            weights = None if config.loss.vgg_weights == "none" else config.loss.vgg_weights
            content_extractor = build_content_extractor(config.loss.content_loss, weights=weights)
        else:
            content_extractor = clone_model_with(content_extractor, dtype=precision)
            content_extractor.trainable = False
    return SRGAN(generator, discriminator, content_extractor, config.loss)


def make_optimizers(config: ExperimentConfig):
    """Adam for the generator and for the discriminator (paper: lr 1e-4, beta_1 0.9); the
    generator's rate follows `config.train.learning_rate_schedule`."""
    train_config = config.train
    rates = {"g": generator_learning_rate(config), "d": train_config.learning_rate}
    return tuple(keras.optimizers.Adam(rates[prefix], beta_1=train_config.beta_1,
                                       name=f"{prefix}_adam") for prefix in ("g", "d"))


def generator_learning_rate(config: ExperimentConfig):
    """The generator's learning rate: a float, or a schedule over all its steps (both phases).
    The optimizer's step counter is checkpointed, so a resumed run continues the schedule."""
    train_config = config.train
    if train_config.learning_rate_schedule == "constant":
        return train_config.learning_rate
    steps = train_config.total_steps
    warmup = int(round(train_config.warmup_fraction * steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else train_config.learning_rate,
        decay_steps=max(1, steps - warmup), alpha=0.0,
        warmup_target=train_config.learning_rate if warmup else None, warmup_steps=warmup)


def train(config: ExperimentConfig, run_dir, *, train_dataset: TrainingData, validation,
          strategy: tf.distribute.Strategy,
          steps_per_epoch: Optional[int] = None, resume=False, content_extractor=None,
          progress=True, initial_weights=None,
          on_phase_end: Optional[Callable[[PhaseEnd], None]] = None) -> TrainResult:
    """Trains an SRGAN as configured, on the data given.

    Args:
        config: the experiment.
        run_dir: where config.json, checkpoints/, logs/ and history.csv go (`RunDirectory`).
        train_dataset: (lr, hr) batches of the global batch size for both phases, or
            `batches(epochs_done)` returning them anew for each fit() call.
        validation: (lr, hr) numpy batch to validate on.
        strategy: the `tf.distribute.Strategy` to train under (made first by the caller:
            multiworker needs a fresh runtime; the datasets were batched for it).
        steps_per_epoch: steps of each epoch; default `config.train.steps_per_epoch`.
        resume: continue from the last checkpoint in run_dir (fresh start if there is none).
        content_extractor: a VGG feature model already built by the caller (offline weights
            policy), or None to build it from `config.loss`.
        progress: Keras progress bars.
        initial_weights: a generator `.weights.h5` file to start from (fine-tuning); a
            resumed checkpoint takes precedence.
        on_phase_end: called on the chief with a `PhaseEnd` when the pretraining phase ends
            before an adversarial one (also when a resumed run starts exactly there) and when
            the run ends: the orchestrator exports there.

    Returns:
        TrainResult with the run directory, history and the config as trained.
    """
    # config.json records the precision as used ("auto" resolved)
    config = config.updated(train={"precision": training_precision(config.train.precision)})
    run_dir = Path(run_dir)
    steps_per_epoch = steps_per_epoch or config.train.steps_per_epoch
    if not steps_per_epoch:
        raise ValueError("train needs steps_per_epoch (a dataset's length is not known in "
                         f"advance). Received: steps_per_epoch={steps_per_epoch}")
    chief = is_chief(strategy)
    with Workspace(run_dir, chief, task_index(strategy)) as workspace:
        keras.utils.set_random_seed(config.train.seed)
        with strategy.scope():
            model = build_srgan(config, content_extractor)
            g_optimizer, d_optimizer = make_optimizers(config)
            model.compile(g_optimizer=g_optimizer, d_optimizer=d_optimizer,
                          jit_compile=config.train.jit_compile)
        files = workspace.files
        if chief:
            config.save(files.config)
        # Every worker saves (saving may need all of them); only the chief's copy is kept.
        state = TrainingState(model, files.checkpoints, max_to_keep=2 if chief else 1)
        if chief:
            save_generator_spec(config, files)
        epochs_done = resume_training(state, RunDirectory(run_dir), resume, workspace.note,
                                      echo=chief)
        if initial_weights and not epochs_done:
            _load_generator_weights(model, initial_weights)
        check_workers_agree(strategy, epochs_done, "the epochs done before this run")
        truncate_history(files.history, epochs_done)
        report = _phase_reporter(on_phase_end, model, config, workspace) if chief else None
        epochs_done = _fit_phases(model, config, workspace, state, epochs_done, strategy, progress,
                                  train_dataset, validation, steps_per_epoch, report)
        if report:
            report("final", epochs_done)
        history = history_columns(read_history(files.history))
    return TrainResult(run_dir, history, config, chief)


def _phase_reporter(on_phase_end, model, config: ExperimentConfig, workspace):
    """`report(phase, epochs_done)` calling `on_phase_end` with the generator as it is now."""
    if on_phase_end is None:
        return None

    def report(phase: str, epochs_done: int) -> None:
        on_phase_end(PhaseEnd(phase, model.generator_for_export(), config, epochs_done,
                              workspace.run_dir, workspace.note))

    return report


def _load_generator_weights(model: SRGAN, path) -> None:
    """Starts the generator (and its EMA copy) from a `.weights.h5` file."""
    model.generator.load_weights(str(path))
    for average, weight in zip(model.ema_weights, model.generator.weights):
        average.assign(weight)


def _fit_phases(model, config, workspace, state, epochs_done, strategy, progress,
                train_dataset, validation, steps, report=None) -> int:
    """Pretrain then adversarial `fit()` calls from `epochs_done` on; returns the epochs done.

    `report("pretrain", epochs)` (chief only) when the pretraining phase ends in this call, or
    ended exactly at the resumed checkpoint, and an adversarial phase follows.
    """
    global_batch = global_batch_size(config.data.batch_size, strategy)
    val_lr, val_hr = validation
    pretrain_end = config.train.pretrain_epochs
    total = pretrain_end + config.train.adversarial_epochs
    files = workspace.files
    # The history row before the checkpoint: a run stopped between the two resumes from the
    # previous checkpoint and drops the row (truncate_history); the other order lost the row.
    callbacks = [HistoryCSV(files.history), EpochCheckpoint(state),
                 TensorBoardLogger(files.logs, (val_lr, val_hr), config.data.scale_hw),
                 EpochLog(workspace.note, total)]
    calibration = None
    for phase, first, last in (("pretrain", 0, pretrain_end), ("adversarial", pretrain_end, total)):
        if (phase == "adversarial" and epochs_done == pretrain_end > 0 and total > pretrain_end
                and report):  # without an adversarial phase the final generator is that one
            report("pretrain", epochs_done)
        if epochs_done >= last:
            continue
        model.phase = phase
        workspace.note(f"Phase {phase}: epochs {max(first, epochs_done) + 1}-{last} of {total}, "
                       f"{steps} steps of {global_batch} ({strategy.num_replicas_in_sync} replica(s))",
                       echo=progress and workspace.chief)
        dataset = distributable(train_dataset(epochs_done) if callable(train_dataset)
                                else train_dataset)
        if calibration is None and config.train.bn_calibration_batches > 0:
            calibration = _calibration_batches(dataset, config)
            callbacks.insert(0, BatchNormCalibration(calibration))  # before the checkpoint
        model.fit(dataset, epochs=last, initial_epoch=max(first, epochs_done), steps_per_epoch=steps,
                  validation_data=(val_lr, val_hr), validation_batch_size=len(val_lr),
                  shuffle=False, callbacks=callbacks, verbose=_verbosity(progress and workspace.chief))
        epochs_done = last
    return epochs_done


def _calibration_batches(dataset, config: ExperimentConfig) -> list:
    """LR inputs of the first `bn_calibration_batches` batches, at the batch size training
    normalises over: per replica, or the global batch with synchronised batch norm."""
    size = None if config.train.sync_batch_norm else config.data.batch_size
    return [np.asarray(batch[0])[:size]
            for batch in dataset.take(config.train.bn_calibration_batches).as_numpy_iterator()]


def _verbosity(progress: bool) -> int:
    """Keras fit verbosity: a live bar on a terminal, one line per epoch in a log file."""
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2
