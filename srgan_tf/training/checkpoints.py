"""The checkpoint of a training run: what it holds (`TrainingState`), where it lies
(`RunDirectory.checkpoints`, with the `GeneratorSpec` it holds beside it), its per-epoch save,
the resume from it, and the generator read back from it (export).

A run's checkpoints decide what the run directory is: a new run needs a directory without
them (`refuse_existing_run`), a resumed one the config they learned from (`check_resume`).

Example:
    state = TrainingState(model, RunDirectory(run_dir).checkpoints)
    epochs_done = resume_training(state, RunDirectory(run_dir), resume=True, note=print)
"""
from typing import Callable, Optional

import keras
import tensorflow as tf

from srgan_tf.config import LEARNED, ExperimentConfig, GeneratorSpec, field_values, resume_differences
from srgan_tf.io.errors import InputError
from srgan_tf.run_directory import RunDirectory
from srgan_tf.runtime import precision_policy
from srgan_tf.training.srgan import PHASES

CHECKPOINT_PREFIX = "ckpt"  # ckpt-<epochs done>.index / .data-*, and TensorFlow's "checkpoint"
PHASE_CODES = {phase: code for code, phase in enumerate(PHASES)}


class TrainingState:
    """What a checkpoint holds: generator, discriminator, both optimizers, EMA, epoch, phase.

    `tf.train.CheckpointManager` writes each checkpoint completely before it updates its index
    file (atomic rename), so a run killed while saving resumes from the previous one.

    Args:
        model: compiled `SRGAN` (optimizers built).
        directory: checkpoint directory (run_dir/checkpoints).
        max_to_keep: checkpoints kept on disk.
    """

    def __init__(self, model, directory, max_to_keep=2):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.phase = tf.Variable(0, dtype=tf.int64, trainable=False, name="phase")
        items = dict(generator=model.generator, discriminator=model.discriminator,
                     g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer,
                     epoch=self.epoch, phase=self.phase)
        if model.ema_weights:
            items["ema"] = list(model.ema_weights)
        self.checkpoint = tf.train.Checkpoint(**items)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory),
                                                  max_to_keep=max_to_keep, checkpoint_name=CHECKPOINT_PREFIX)

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def save(self, epochs_done: int, phase: str) -> str:
        self.epoch.assign(epochs_done)
        self.phase.assign(PHASE_CODES[phase])
        return self.manager.save(checkpoint_number=epochs_done)

    def restore(self, path=None):
        """Restores `path` (default: the latest checkpoint). Returns (epochs_done, phase)."""
        path = path or self.latest
        if path is None:
            raise FileNotFoundError(f"{self.manager.directory}: no checkpoint to resume from")
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return int(self.epoch.numpy()), PHASES[int(self.phase.numpy())]


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves a `TrainingState` at every epoch end: a killed run loses at most one epoch."""

    def __init__(self, state: TrainingState):
        super().__init__()
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        self.state.save(epoch + 1, self.model.phase)




def latest_checkpoint(run: RunDirectory) -> Optional[str]:
    """The run's last complete checkpoint, or None."""
    return tf.train.latest_checkpoint(str(run.checkpoints))


def refuse_existing_run(run: RunDirectory) -> None:
    """A new run needs a directory without checkpoints: refused before any data is touched.

    Raises:
        InputError: the directory holds checkpoint files (even an index without its data).
    """
    if not run.checkpoints.is_dir():
        return
    if any(path.name.startswith((CHECKPOINT_PREFIX, "checkpoint"))  # not the spec
           for path in run.checkpoints.iterdir()):
        raise InputError(run.path, "already holds a training run (checkpoints/): pass --resume "
                                   "to continue it, or choose another --output")


def check_resume(config: ExperimentConfig, run: RunDirectory) -> None:
    """A resume needs what the run learned from (`config.FIELD_CLASSES`: only the schedule and
    the runtime may differ); a run without config.json yet starts fresh.

    Raises:
        ValueError: a learned field differs from the run's config.json.
    """
    if not run.config.exists():
        return
    saved = ExperimentConfig.load(run.config)
    differ = resume_differences(saved, field_values(config))[LEARNED]
    if differ:
        raise ValueError(f"resume needs what {run.config} learned from; these differ: "
                         + "; ".join(f"{name} was {old!r}" for name, (old, _) in differ.items())
                         + ". Received: " + ", ".join(f"{name}={new!r}"
                                                      for name, (_, new) in differ.items()))


def save_generator_spec(config: ExperimentConfig, run: RunDirectory) -> None:
    """Beside the checkpoints: what they hold, for whoever rebuilds the generator."""
    run.checkpoints.mkdir(exist_ok=True)
    config.generator_spec().save(run.generator_spec)


def resume_training(state: TrainingState, run: RunDirectory, resume: bool,
                    note: Callable[..., None], echo: bool = True) -> int:
    """Restores the run's last checkpoint (every worker reads the chief's) when resuming.

    Args:
        state: the model's `TrainingState`.
        run: the run directory (the chief's, on every worker).
        resume: False: start from scratch.
        note: `note(line, echo=...)` for train.log (`Workspace.note`).
        echo: print the line too.

    Returns:
        The epochs done.
    """
    latest = latest_checkpoint(run) if resume else None
    if latest:
        epochs_done, phase = state.restore(latest)
        note(f"Resuming from {latest}: {epochs_done} epochs done, phase {phase}", echo=echo)
        return epochs_done
    if resume:
        note(f"No checkpoint in {run.checkpoints}: starting from scratch", echo=echo)
    return 0


def restore_generator(run_dir):
    """The generator of a run's last checkpoint (EMA weights when the run kept them), float32.

    Args:
        run_dir: a run directory from `train` (config.json and checkpoints/).

    Returns:
        (generator, its GeneratorSpec, the run's ExperimentConfig, epochs done).
    """
    from srgan_tf.models.generator import generator_from_spec

    run = RunDirectory(run_dir)
    if not run.config.exists():
        raise FileNotFoundError(f"{run.config}: no config.json (is {run.path} a training run?)")
    config = ExperimentConfig.load(run.config)
    latest = latest_checkpoint(run)
    if latest is None:
        raise FileNotFoundError(f"{run.checkpoints}: no checkpoint to export")
    spec_path = run.generator_spec  # runs before it: their config's
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
