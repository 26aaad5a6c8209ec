"""Two-worker MultiWorkerMirroredStrategy on localhost, started as a user would (`srgan-tf
train` twice with TF_CONFIG): both finish, only the chief writes the run, the other worker
leaves nothing behind, and the losses equal a one-worker run on the same global batch."""
import argparse
import json
import os
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from srgan_tf.arguments import add_experiment_arguments, config_from_args
from srgan_tf.training.callbacks import read_history
from srgan_tf.run_directory import RunDirectory
from srgan_tf.training.strategy import make_strategy
from srgan_tf.training.trainer import train
from srgan_tf.training_run import cache_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = "import sys; from srgan_tf.cli import main; sys.exit(main())"  # `srgan-tf` as a user runs it
PER_REPLICA_BATCH = 2
# Tiny networks, one step per phase; synchronised batch norm so that two replicas of 2
# normalise exactly like one device on the global batch of 4.
FLAGS = ["--mode", "iso", "--scale", "4", "--preset", "quick", "--content-loss", "mse",
         "--hr-size", "32", "--patch-size", "32", "--num-residual-blocks", "2", "--filters", "8",
         "--discriminator-filters", "8", "--discriminator-dense", "16", "--val-slices", "2",
         "--pretrain-epochs", "1", "--adversarial-epochs", "1", "--steps-per-epoch", "1",
         "--bn-calibration-batches", "1", "--sync-batch-norm", "true", "--precision", "float32",
         "--min-foreground", "0.1"]


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("localhost", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    except OSError as error:
        pytest.skip(f"cannot bind loopback ports for the workers: {error}")
    finally:
        for probe in sockets:
            probe.close()


def _config(*flags):
    parser = argparse.ArgumentParser()
    add_experiment_arguments(parser, "exp1")
    return config_from_args(parser.parse_args(list(flags)), "exp1")


def test_two_workers_train_like_one(training_cache, tmp_path):
    run_dir, scratch = tmp_path / "run", tmp_path / "scratch"
    scratch.mkdir()
    cluster = [f"localhost:{port}" for port in _free_ports(2)]
    command = [sys.executable, "-c", CLI, "train",
               "--cache", str(training_cache), *FLAGS, "--batch-size", str(PER_REPLICA_BATCH),
               "--strategy", "multiworker", "--no-evaluate", "--output", str(run_dir)]
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, PYTHONPATH=REPO, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(scratch),
                   TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        workers.append(subprocess.Popen(command, cwd=tmp_path, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        # Meanwhile, one worker on the same global batch (the workers mostly wait on each other).
        config = _config("--cache", str(training_cache), *FLAGS, "--strategy", "default",
                         "--batch-size", str(2 * PER_REPLICA_BATCH))
        strategy = make_strategy(config.train.strategy)
        single_run = train(config, tmp_path / "single", strategy=strategy, progress=False,
                           **cache_data(config, strategy))
        single = read_history(RunDirectory(single_run.run_dir).history)
        outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for index, (worker, output) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}:\n{output[-3000:]}"

    # Only the chief wrote, and only into the run directory; worker 1's scratch is gone.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "scratch", "single"]
    assert list(scratch.iterdir()) == []
    assert {"config.json", "checkpoints", "export", "export_pretrain", "history.csv", "train.log",
            "logs"} <= {path.name for path in run_dir.iterdir()}
    assert not (run_dir / ".lock").exists()
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-2")
    assert "Epoch 2/2 (adversarial)" in (run_dir / "train.log").read_text()
    assert "Epoch 1/2" not in outputs[1]  # the other worker trains silently
    history = read_history(run_dir / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2]

    # As one worker on the same global batch: same first-step losses, same update.
    for key in ("g_loss", "psnr", "val_psnr"):
        assert history[0][key] == pytest.approx(single[0][key], rel=1e-4), key
    for key in ("d_loss", "g_loss", "val_psnr"):
        assert history[1][key] == pytest.approx(single[1][key], rel=1e-3), key
