"""Two-phase SRGAN training (paper Sec. 3): generator alone on MSE, then adversarial.

A run directory holds config.json, checkpoints/ (one per epoch and the `GeneratorSpec` they
hold; `resume=True` continues from the last), logs/ (TensorBoard) and history.csv. Exports
are the orchestrator's (`srgan_tf.training_run`): `train` reports each phase end to
`on_phase_end`.

Example:
    config = preset("quick").updated(data={"cache": "cache.h5"})
    result = train(config, "runs/demo")
    print(result.history["val_psnr"][-1])
"""
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from srgan_tf.config import (LEARNED, ExperimentConfig, GeneratorSpec, field_values,
                             resume_differences)
from srgan_tf.runtime import training_precision
from srgan_tf.training.callbacks import (EpochCheckpoint, EpochLog, HistoryCSV, TensorBoardLogger,
                                         TrainingState, history_columns, read_history,
                                         truncate_history)
from srgan_tf.training.batchnorm import BatchNormCalibration
from srgan_tf.training.srgan import SRGAN, clone_model_with
from srgan_tf.training.strategy import (check_workers_agree, distributable, global_batch_size,
                                        is_chief, make_strategy, task_index)
from srgan_tf.training.workspace import Workspace


SPEC_FILE = "generator.json"  # in checkpoints/: the GeneratorSpec of the checkpointed generator


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


@contextlib.contextmanager
def precision_policy(name: str):
    """Keras dtype policy for the layers built inside the block (e.g. "mixed_bfloat16")."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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


def train(config: ExperimentConfig, run_dir, *, resume=False, content_extractor=None,
          progress=True, train_dataset=None, validation=None, initial_weights=None,
          on_phase_end: Optional[Callable[[PhaseEnd], None]] = None) -> TrainResult:
    """Trains an SRGAN as configured.

    Args:
        config: the experiment; `config.data.cache` must name the HDF5 slice cache.
        run_dir: where config.json, checkpoints/, logs/ and history.csv go.
        resume: continue from the last checkpoint in run_dir (fresh start if there is none).
        content_extractor: a VGG feature model already built by the caller (offline weights
            policy), or None to build it from `config.loss`.
        progress: Keras progress bars.
        train_dataset: a `tf.data.Dataset` of (lr, hr) batches of the global batch size to
            train on in both phases instead of the cache (e.g. self-supervised data);
            needs `config.train.steps_per_epoch`.
        validation: (lr, hr) numpy batch to validate on instead of the cache's test slices.
        initial_weights: a generator `.weights.h5` file to start from (fine-tuning); a
            resumed checkpoint takes precedence.
        on_phase_end: called on the chief with a `PhaseEnd` when the pretraining phase ends
            before an adversarial one (also when a resumed run starts exactly there) and when
            the run ends: the orchestrator exports there.

    Returns:
        TrainResult with the run directory, history and the config as trained.
    """
    strategy = make_strategy(config.train.strategy)  # first: multiworker needs a fresh runtime
    # config.json records the precision as used ("auto" resolved)
    config = config.updated(train={"precision": training_precision(config.train.precision)})
    run_dir = Path(run_dir)
    if train_dataset is not None and not config.train.steps_per_epoch:
        raise ValueError("train_dataset needs config.train.steps_per_epoch (a dataset's length "
                         "is not known in advance). Received: steps_per_epoch="
                         f"{config.train.steps_per_epoch}")
    if train_dataset is None or validation is None:
        cache = _cache_path(config)
    else:
        cache = None
    chief = is_chief(strategy)
    with Workspace(run_dir, chief, task_index(strategy)) as workspace:
        _check_run_dir(config, run_dir, resume)
        keras.utils.set_random_seed(config.train.seed)
        with strategy.scope():
            model = build_srgan(config, content_extractor)
            g_optimizer, d_optimizer = make_optimizers(config)
            model.compile(g_optimizer=g_optimizer, d_optimizer=d_optimizer,
                          jit_compile=config.train.jit_compile)
        if chief:
            config.save(run_dir / "config.json")
        # Every worker saves (saving may need all of them); only the chief's copy is kept.
        state = TrainingState(model, workspace.directory / "checkpoints", max_to_keep=2 if chief else 1)
        if chief:  # beside the checkpoints: what they hold, for whoever rebuilds the generator
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            config.generator_spec().save(run_dir / "checkpoints" / SPEC_FILE)
        epochs_done = _restore(state, run_dir, resume, workspace)
        if initial_weights and not epochs_done:
            _load_generator_weights(model, initial_weights)
        check_workers_agree(strategy, epochs_done, "the epochs done before this run")
        truncate_history(workspace.directory / "history.csv", epochs_done)
        report = _phase_reporter(on_phase_end, model, config, workspace) if chief else None
        epochs_done = _fit_phases(model, config, cache, workspace, state, epochs_done, strategy,
                                  progress, train_dataset, validation, report)
        if report:
            report("final", epochs_done)
        history = history_columns(read_history(workspace.directory / "history.csv"))
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


def _restore(state, run_dir: Path, resume: bool, workspace) -> int:
    """Restores the run's last checkpoint (every worker reads the chief's) when resuming.
    Returns the epochs done."""
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints")) if resume else None
    if latest:
        epochs_done, phase = state.restore(latest)
        workspace.note(f"Resuming from {latest}: {epochs_done} epochs done, phase {phase}",
                       echo=workspace.chief)
        return epochs_done
    if resume:
        workspace.note(f"No checkpoint in {run_dir / 'checkpoints'}: starting from scratch",
                       echo=workspace.chief)
    return 0


def _fit_phases(model, config, cache, workspace, state, epochs_done, strategy, progress,
                train_dataset=None, validation=None, report=None) -> int:
    """Pretrain then adversarial `fit()` calls from `epochs_done` on; returns the epochs done.

    `report("pretrain", epochs)` (chief only) when the pretraining phase ends in this call, or
    ended exactly at the resumed checkpoint, and an adversarial phase follows.
    """
    from srgan_tf.data.pipeline import make_dataset, validation_batch

    global_batch = global_batch_size(config.data.batch_size, strategy)
    val_lr, val_hr = validation if validation is not None else validation_batch(cache, config.data)
    steps = config.train.steps_per_epoch or default_steps_per_epoch(cache, global_batch)
    pretrain_end = config.train.pretrain_epochs
    total = pretrain_end + config.train.adversarial_epochs
    directory = workspace.directory
    # The history row before the checkpoint: a run stopped between the two resumes from the
    # previous checkpoint and drops the row (truncate_history); the other order lost the row.
    callbacks = [HistoryCSV(directory / "history.csv"), EpochCheckpoint(state),
                 TensorBoardLogger(directory / "logs", (val_lr, val_hr), config.data.scale_hw),
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
        if train_dataset is not None:
            dataset = distributable(train_dataset)
        else:  # a new seed per fit() call: a resumed run does not replay the batches it has seen
            dataset = distributable(make_dataset(
                cache, dataclasses.replace(config.data, batch_size=global_batch), split="train",
                training=True, seed=config.train.seed + epochs_done))
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


def restore_generator(run_dir):
    """The generator of a run's last checkpoint (EMA weights when the run kept them), float32.

    Args:
        run_dir: a run directory from `train` (config.json and checkpoints/).

    Returns:
        (generator, its GeneratorSpec, the run's ExperimentConfig, epochs done).
    """
    from srgan_tf.models.generator import generator_from_spec

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path}: no config.json (is {run_dir} a training run?)")
    config = ExperimentConfig.load(config_path)
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if latest is None:
        raise FileNotFoundError(f"{run_dir / 'checkpoints'}: no checkpoint to export")
    spec_path = run_dir / "checkpoints" / SPEC_FILE  # runs before it: their config's
    spec = GeneratorSpec.load(spec_path) if spec_path.exists() else config.generator_spec()
    with precision_policy("float32"):
        generator = generator_from_spec(spec)
    epoch = tf.Variable(0, dtype=tf.int64)
    items = {"generator": generator, "epoch": epoch}
    if config.loss.ema_decay > 0:
        items["ema"] = [keras.Variable(w.numpy(), trainable=False) for w in generator.weights]
    tf.train.Checkpoint(**items).restore(latest).expect_partial().assert_existing_objects_matched()
    if "ema" in items:
        generator.set_weights([w.numpy() for w in items["ema"]])
    return generator, spec, config, int(epoch.numpy())


def default_steps_per_epoch(cache, global_batch: int) -> int:
    """Training slices // global batch (at least 1): one pass over the slices per epoch."""
    from srgan_tf.data.pipeline import list_candidates

    return max(1, list_candidates(cache, "train").count // global_batch)


def _cache_path(config: ExperimentConfig) -> Path:
    if not config.data.cache:
        raise ValueError("config.data.cache must name an HDF5 slice cache (srgan-tf prepare). "
                         "Received: cache=None")
    path = Path(config.data.cache)
    if not path.exists():
        raise FileNotFoundError(f"{path}: cache file not found (build one with `srgan-tf prepare`)")
    return path


def _check_run_dir(config: ExperimentConfig, run_dir: Path, resume: bool):
    """Never mixes two runs: a fresh start needs an unused run_dir, a resume what the run
    learned from (`config.FIELD_CLASSES`: only the schedule and the runtime may differ)."""
    if not resume:
        if tf.train.latest_checkpoint(str(run_dir / "checkpoints")):
            raise ValueError(f"{run_dir} already holds checkpoints: pass resume=True (--resume) to "
                             f"continue that run, or choose another run directory. Received: run_dir={run_dir}")
        return
    saved_path = run_dir / "config.json"
    if not saved_path.exists():
        return
    saved = ExperimentConfig.load(saved_path)
    differ = resume_differences(saved, field_values(config))[LEARNED]
    if differ:
        raise ValueError(f"resume needs what {saved_path} learned from; these differ: "
                         + "; ".join(f"{name} was {old!r}" for name, (old, _) in differ.items())
                         + ". Received: " + ", ".join(f"{name}={new!r}"
                                                      for name, (_, new) in differ.items()))


def _verbosity(progress: bool) -> int:
    """Keras fit verbosity: a live bar on a terminal, one line per epoch in a log file."""
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2
