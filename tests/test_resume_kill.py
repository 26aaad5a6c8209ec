"""A training killed (SIGKILL) in the middle of a phase, then `srgan-tf train --resume`: it
finishes, every epoch is in history.csv exactly once, the exports load, and nothing of the
killed process is left (lock, partial files)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from srgan_tf.cli import main
from srgan_tf.inference.exported_model import load_exported
from srgan_tf.training.callbacks import read_history

REPO = Path(__file__).resolve().parents[1]
# Two pretraining epochs long enough that the kill lands inside the second one.
FLAGS = ["--mode", "aniso", "--preset", "quick", "--scale", "4", "--hr-size", "32",
         "--patch-size", "32", "--batch-size", "2", "--num-residual-blocks", "2", "--filters", "8",
         "--discriminator-filters", "8", "--discriminator-dense", "16", "--val-slices", "2",
         "--pretrain-epochs", "2", "--adversarial-epochs", "1", "--steps-per-epoch", "40",
         "--bn-calibration-batches", "1", "--precision", "float32", "--min-foreground", "0.1",
         "--content-loss", "mse", "--no-evaluate"]
START_TIMEOUT_S = 300  # a loaded 2-core machine needs most of a minute to import and trace


def _first_epoch_done(run_dir: Path) -> bool:
    """Epoch 1 is checkpointed and in history.csv (both are written at the epoch's end)."""
    return (tf.train.latest_checkpoint(str(run_dir / "checkpoints")) is not None
            and len(read_history(run_dir / "history.csv")) >= 1)


def _wait_for_first_epoch(process, run_dir: Path, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _first_epoch_done(run_dir):
        if process.poll() is not None:
            pytest.fail(f"training ended (exit {process.returncode}) before its first epoch ended:"
                        f"\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"epoch 1 not checkpointed in {run_dir} after {START_TIMEOUT_S} s:"
                        f"\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def _leftovers(run_dir: Path):
    """Files a killed process may leave: the lock, partial exports, temporary files."""
    return [str(path.relative_to(run_dir)) for path in run_dir.rglob("*")
            if path.name == ".lock" or ".partial" in path.name or path.name.endswith(".tmp")
            or path.name.endswith("_temp")]


def test_killed_training_resumes_to_a_complete_run(training_cache, tmp_path):
    run_dir = tmp_path / "run"
    argv = ["train", "--cache", str(training_cache), *FLAGS, "--output", str(run_dir)]
    log = tmp_path / "killed.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "srgan_tf.cli", *argv], cwd=tmp_path,
                                   env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_for_first_epoch(process, run_dir, log)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == -signal.SIGKILL, \
        f"training ended before the kill:\n{log.read_text()[-3000:]}"
    assert not (run_dir / "export").exists()  # killed before the end
    assert (run_dir / ".lock").exists()  # SIGKILL: no clean-up ran

    assert main([*argv, "--resume"]) == 0
    log_text = (run_dir / "train.log").read_text()
    for line in ("Took over the lock", "Resuming from", "Epoch 2/3 (pretrain)",
                 "Epoch 3/3 (adversarial)"):
        assert line in log_text, line
    history = read_history(run_dir / "history.csv")
    assert [(row["epoch"], row["phase"]) for row in history] == [
        (1, "pretrain"), (2, "pretrain"), (3, "adversarial")], history
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-3")
    assert load_exported(run_dir / "export").metadata["epochs"] == 3
    assert load_exported(run_dir / "export_pretrain").metadata["epochs"] == 2
    assert _leftovers(run_dir) == []


def test_stopped_right_after_a_checkpoint_keeps_that_epochs_history(training_cache, tmp_path,
                                                                     monkeypatch):
    run_dir = tmp_path / "run"
    argv = ["train", "--cache", str(training_cache), *FLAGS, "--pretrain-epochs", "2",
            "--adversarial-epochs", "0", "--steps-per-epoch", "1", "--output", str(run_dir)]
    save = tf.train.CheckpointManager.save

    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt  # the user's Ctrl-C, just after the checkpoint is on disk

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save_then_stop)
    assert main(argv) == 130
    monkeypatch.undo()
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-1")
    assert main([*argv, "--resume"]) == 0
    assert [row["epoch"] for row in read_history(run_dir / "history.csv")] == [1, 2]
