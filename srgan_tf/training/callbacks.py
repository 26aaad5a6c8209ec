"""Training callbacks: history CSV, train.log lines, TensorBoard scalars and images (the epoch
checkpoint is `checkpoints.EpochCheckpoint`).

Epochs count across both phases and from 1, as the console shows them ("Epoch 1/70"):
pretrain 1..P, adversarial P+1..P+A, in history.csv, train.log and TensorBoard steps alike.
Scalars are tagged `<phase>/<metric>` so the two objectives never share a curve.
"""
import csv
import io
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from srgan_tf.data.degradation.degrade import upsample_bicubic
from srgan_tf.files import atomic_write_text
class EpochLog(keras.callbacks.Callback):
    """One line per epoch, as the console shows it, for the run's train.log.

    Args:
        write: `write(line, echo=False)` appends a line to the log (`Workspace.note`).
        total_epochs: both phases together, for "Epoch 3/70".
    """

    def __init__(self, write, total_epochs: int):
        super().__init__()
        self.write, self.total_epochs = write, total_epochs
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        values = " - ".join(f"{key}: {float(value):.4g}" for key, value in (logs or {}).items())
        self.write(f"Epoch {epoch + 1}/{self.total_epochs} ({self.model.phase}) - "
                   f"{time.perf_counter() - self._start:.1f}s - {values}", echo=False)


class HistoryCSV(keras.callbacks.Callback):
    """Appends one row per epoch (epoch, phase, every log, learning rates) to a CSV file.

    Columns are the union over phases; the file is rewritten atomically each epoch.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "phase": self.model.phase}  # Keras counts from 0
        row.update({key: float(value) for key, value in (logs or {}).items()})
        row.update(learning_rates(self.model))
        rows = read_history(self.path) + [row]
        write_history(self.path, rows)


def read_history(path):
    """Rows of a history CSV as dicts (numbers as float, epoch as int); [] when missing."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append({key: _parse(key, value) for key, value in row.items() if value != ""})
    return rows


def write_history(path, rows):
    """Writes rows (dicts) with the union of their keys as columns, via a temporary file."""
    columns = ["epoch", "phase"]
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), buffer.getvalue())


def truncate_history(path, epochs_done: int):
    """Drops rows of epochs a resumed run will redo (saved after the last checkpoint)."""
    rows = read_history(path)
    kept = [row for row in rows if row["epoch"] <= epochs_done]
    if len(kept) != len(rows):
        write_history(path, kept)


def history_columns(rows):
    """{column: [values per epoch]} (None where a phase lacks the column)."""
    columns = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    return {key: [row.get(key) for row in rows] for key in columns}


class TensorBoardLogger(keras.callbacks.Callback):
    """TensorBoard: per-epoch scalars by phase, learning rates, and LR | bicubic | SR | HR panels.

    Writers: logs/train (training scalars, learning rates), logs/validation (validation
    scalars, same tags so TensorBoard overlays them) and logs/images (image panels).

    Args:
        log_dir: run_dir/logs.
        panels: (lr, hr) numpy batch of fixed validation slices, or None.
        scale_hw: (sh, sw) of the experiment (nearest and bicubic upsampling of the LR).
    """

    def __init__(self, log_dir, panels=None, scale_hw=(4, 4)):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.scale_hw = tuple(scale_hw)
        self.panels = None
        if panels is not None:
            lr, hr = (np.asarray(x, np.float32) for x in panels)
            nearest = np.repeat(np.repeat(lr, self.scale_hw[0], axis=1), self.scale_hw[1], axis=2)
            bicubic = np.clip(upsample_bicubic(lr, self.scale_hw).numpy(), -1.0, 1.0)
            self.panels = (lr, hr, nearest, bicubic)
        self.writers = {}
        self._epoch_start = None

    def on_train_begin(self, logs=None):
        self.writers = {name: tf.summary.create_file_writer(str(self.log_dir / name))
                        for name in ("train", "validation", "images")}

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        phase, epoch = self.model.phase, epoch + 1
        with self.writers["train"].as_default(step=epoch):
            for key, value in (logs or {}).items():
                if not key.startswith("val_"):
                    tf.summary.scalar(f"{phase}/{key}", value)
            for key, value in learning_rates(self.model).items():
                tf.summary.scalar(f"learning_rate/{key.replace('learning_rate_', '')}", value)
            tf.summary.scalar("time/epoch_seconds", time.perf_counter() - self._epoch_start)
        with self.writers["validation"].as_default(step=epoch):
            for key, value in (logs or {}).items():
                if key.startswith("val_"):
                    tf.summary.scalar(f"{phase}/{key[4:]}", value)
        if self.panels is not None:
            with self.writers["images"].as_default(step=epoch):
                images = self.panel_images()
                tf.summary.image("LR | bicubic | SR | HR", images, max_outputs=len(images))
        for writer in self.writers.values():
            writer.flush()

    def panel_images(self) -> np.ndarray:
        """[N, H, 4W, 1] in [0, 1]: nearest-upsampled LR, bicubic, SR, HR side by side."""
        lr, hr, nearest, bicubic = self.panels
        sr = np.clip(np.asarray(self.model.generator(lr, training=False), np.float32), -1.0, 1.0)
        return (np.concatenate([nearest, bicubic, sr, hr], axis=2) + 1.0) / 2.0

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()


def learning_rates(model) -> dict:
    """Current learning rates of both optimizers of an SRGAN."""
    return {f"learning_rate_{name}": float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            for name, optimizer in (("generator", model.g_optimizer), ("discriminator", model.d_optimizer))}


def _parse(key, value):
    if key == "epoch":
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value

