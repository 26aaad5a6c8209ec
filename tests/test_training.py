"""SRGAN training: both phases learn, checkpoints resume, the trainer writes a complete run."""
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from srgan_tf.config import ExperimentConfig, GeneratorSpec, LossConfig
from srgan_tf.data.degradation.degrade import degrade
from srgan_tf.files import DirectoryLock, DirectoryLocked
from srgan_tf.inference.exported_model import load_exported
from srgan_tf.io.errors import InputError
from srgan_tf.models.generator import build_generator
from srgan_tf.models.vgg import content_loss_fn
from srgan_tf.run_directory import RunDirectory
from srgan_tf.training.callbacks import TensorBoardLogger, read_history
from srgan_tf.training.checkpoints import TrainingState, refuse_existing_run
from srgan_tf.training.srgan import SRGAN
from srgan_tf.training.trainer import build_srgan, make_optimizers, train
from srgan_tf.training_run import export_from_checkpoint, train_and_export


def tiny_config(**loss) -> ExperimentConfig:
    """2 residual blocks, 8 filters, 32x32 HR, x4 iso, VGG22 with random weights."""
    return ExperimentConfig().updated(
        data={"mode": "iso", "scale": 4, "hr_size": 32, "batch_size": 4, "val_slices": 2,
              "min_foreground": 0.1},
        model={"num_residual_blocks": 2, "filters": 8, "discriminator_filters": 8,
               "discriminator_dense": 16},
        loss={"content_loss": "vgg22", "vgg_weights": "none", **loss},
        train={"learning_rate": 1e-3})


def fixed_batch(count=4, size=32):
    """Smooth images in [-1, 1] and their x4 LR."""
    rng = np.random.default_rng(0)
    coarse = rng.normal(size=(count, size // 8, size // 8, 1)).astype(np.float32)
    hr = np.tanh(tf.image.resize(coarse, (size, size), method="bicubic").numpy())
    return degrade(hr, (4, 4)).numpy(), hr


def compiled(config) -> SRGAN:
    model = build_srgan(config)
    model.compile(*make_optimizers(config))
    return model


@pytest.fixture(scope="module")
def trained():
    """A tiny SRGAN after 20 pretrain and 30 adversarial steps, with its per-step logs."""
    keras.utils.set_random_seed(0)  # some unseeded starts miss the thresholds below
    model = compiled(tiny_config())
    lr, hr = fixed_batch()
    logs = {}
    for phase, steps in (("pretrain", 20), ("adversarial", 30)):
        model.phase = phase
        assert model.train_function is None  # a new phase traces a new graph
        logs[phase] = [model.train_on_batch(lr, hr, return_dict=True) for _ in range(steps)]
    return model, logs


def test_pretrain_lowers_pixel_mse(trained):
    _, logs = trained
    mse = [step["pixel_mse"] for step in logs["pretrain"]]
    assert set(logs["pretrain"][0]) == {"g_loss", "pixel_mse", "psnr"}
    assert mse[-1] < 0.7 * mse[0]


def test_adversarial_lowers_content_and_discriminator_losses(trained):
    _, logs = trained
    steps = logs["adversarial"]
    assert {"d_loss", "content_loss", "adversarial_loss", "d_real_logit", "d_fake_accuracy"} <= set(steps[0])
    # On one fixed batch the discriminator wins, so the adversarial term grows; content falls.
    assert steps[-1]["content_loss"] < 0.8 * steps[0]["content_loss"]
    assert steps[-1]["d_loss"] < 0.5 * steps[0]["d_loss"]
    assert all(np.isfinite(s["g_loss"]) for s in steps)


def test_validation_step_reports_psnr(trained):
    model, _ = trained
    lr, hr = fixed_batch()
    logs = model.evaluate(lr, hr, return_dict=True, verbose=0)
    assert set(logs) == {"pixel_mse", "psnr", "content_loss"}
    sr = model.generator(lr).numpy()
    expected = content_loss_fn("vgg22", model.content_extractor)(hr, sr)
    assert logs["content_loss"] == pytest.approx(float(expected), rel=1e-4)
    per_image_mse = np.mean((hr - sr) ** 2, axis=(1, 2, 3))  # PSNR of [-1, 1] images, batch mean
    assert logs["psnr"] == pytest.approx(float(np.mean(10 * np.log10(4.0 / per_image_mse))), abs=1e-3)


def test_relativistic_and_ema(tmp_path):
    config = tiny_config(content_loss="mse", relativistic=True, ema_decay=0.5)
    model = compiled(config)
    model.phase = "adversarial"
    lr, hr = fixed_batch()
    for _ in range(3):
        logs = model.train_on_batch(lr, hr, return_dict=True)
    assert np.isfinite(logs["g_loss"]) and np.isfinite(logs["d_loss"])
    live = model.generator.get_weights()
    ema = [w.numpy() for w in model.ema_weights]
    assert any(not np.allclose(a, b) for a, b in zip(live, ema))
    exported = model.generator_for_export()
    assert all(np.array_equal(a, b) for a, b in zip(exported.get_weights(), ema))


def test_phase_and_content_extractor_are_checked():
    config = tiny_config(content_loss="mse")
    model = compiled(config)
    with pytest.raises(ValueError, match="phase must be one of"):
        model.phase = "finetune"
    with pytest.raises(ValueError, match="content_extractor must be None"):
        SRGAN(model.generator, model.discriminator, None, LossConfig(content_loss="vgg54"))


def test_checkpoint_restores_weights_optimizers_epoch_and_phase(trained, tmp_path):
    model, _ = trained
    state = TrainingState(model, tmp_path / "checkpoints")
    state.save(3, "adversarial")
    fresh = compiled(tiny_config())
    assert fresh.g_optimizer.iterations.numpy() == 0
    epochs_done, phase = TrainingState(fresh, tmp_path / "checkpoints").restore()
    assert (epochs_done, phase) == (3, "adversarial")
    assert fresh.g_optimizer.iterations.numpy() == 50 and fresh.d_optimizer.iterations.numpy() == 30
    for old, new in ((model.generator, fresh.generator), (model.discriminator, fresh.discriminator),
                     (model.g_optimizer, fresh.g_optimizer), (model.d_optimizer, fresh.d_optimizer)):
        assert len(old.variables) == len(new.variables)
        for a, b in zip(old.variables, new.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _image_tags(log_dir):
    tags = set()
    for path in log_dir.rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags |= {value.tag for value in event.summary.value if value.metadata.plugin_data.plugin_name == "images"}
    return tags


def _summaries(log_dir):
    """{tag: tensor} of every summary under `log_dir` (the last value of each tag)."""
    values = {}
    for path in log_dir.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            values.update({value.tag: tf.make_ndarray(value.tensor) for value in event.summary.value})
    return values


def test_tensorboard_logger_writes_phase_scalars_and_every_panel(tmp_path):
    model = compiled(tiny_config(content_loss="mse"))
    lr, hr = fixed_batch()
    logger = TensorBoardLogger(tmp_path / "logs", panels=(lr, hr), scale_hw=(4, 4))
    logger.set_model(model)
    logger.on_train_begin()
    logger.on_epoch_begin(0)
    logger.on_epoch_end(0, {"g_loss": 0.5, "val_psnr": 20.0})
    logger.on_train_end()
    train, validation = _summaries(tmp_path / "logs" / "train"), _summaries(tmp_path / "logs" / "validation")
    assert float(train["pretrain/g_loss"]) == 0.5 and float(validation["pretrain/psnr"]) == 20.0
    assert {"learning_rate/generator", "learning_rate/discriminator", "time/epoch_seconds"} <= set(train)
    panel = _summaries(tmp_path / "logs" / "images")["LR | bicubic | SR | HR"]
    assert len(panel) == 2 + len(lr)  # width, height, then one PNG per validation slice
    assert tf.io.decode_png(panel[2]).shape == (32, 4 * 32, 1)


def test_train_writes_run_resumes_and_exports(training_cache, tmp_path):
    config = tiny_config(content_loss="mse", pixel_weight=1.0, ema_decay=0.9).updated(
        data={"cache": str(training_cache), "batch_size": 2},
        train={"pretrain_epochs": 1, "adversarial_epochs": 1, "steps_per_epoch": 2,
               "precision": "mixed_bfloat16"})
    run_dir = tmp_path / "run"
    result = train_and_export(config, run_dir, progress=False)

    assert json.loads((run_dir / "config.json").read_text())["loss"]["content_loss"] == "mse"
    assert result.config.loss.content_loss == "mse"
    assert result.history["epoch"] == [1, 2]  # as the console counts: "Epoch 1/2"
    assert result.history["phase"] == ["pretrain", "adversarial"]
    assert np.isfinite(result.history["val_psnr"]).all() and result.history["d_loss"][1] is not None
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-2")
    assert "LR | bicubic | SR | HR" in _image_tags(run_dir / "logs" / "images")
    exported = load_exported(result.export_dir)
    assert exported.scale_hw == (4, 4) and exported.metadata["content_loss"] == "mse"
    assert exported.metadata["config"]["train"]["pretrain_epochs"] == 1
    # the export is a float32 copy; its metadata names what the model was trained in
    assert exported.metadata["generator"]["training_dtype_policy"] == "mixed_bfloat16"
    pretrained = load_exported(run_dir / "export_pretrain")  # SRResNet: after pretraining
    assert pretrained.metadata["epochs"] == 1 and pretrained.scale_hw == (4, 4)
    # one description of the generator: the config's, beside the checkpoints and in the exports
    assert GeneratorSpec.load(run_dir / "checkpoints" / "generator.json") == config.generator_spec()
    assert exported.spec == pretrained.spec == config.generator_spec()

    with pytest.raises(InputError, match="already holds a training run"):
        refuse_existing_run(RunDirectory(run_dir))

    config = config.updated(train={"adversarial_epochs": 2})  # one more, from the checkpoint
    resumed = train_and_export(config, run_dir, resume=True, progress=False)
    assert resumed.history["epoch"] == [1, 2, 3]
    assert resumed.history["phase"] == ["pretrain", "adversarial", "adversarial"]
    assert [row["epoch"] for row in read_history(run_dir / "history.csv")] == [1, 2, 3]
    log = (run_dir / "train.log").read_text()
    for line in ("Epoch 1/2 (pretrain)", "Epoch 2/2 (adversarial)", "Resuming from",
                 "Epoch 3/3 (adversarial)", "Exported the generator after 3 epochs"):
        assert line in log
    assert not (run_dir / ".lock").exists()

    again = load_exported(export_from_checkpoint(run_dir, tmp_path / "again"))
    lr = np.random.default_rng(0).uniform(-1, 1, (1, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(again.predict(lr), load_exported(resumed.export_dir).predict(lr), atol=1e-5)
    assert again.metadata["epochs"] == 3


def test_batch_norm_calibration_matches_training_mode_statistics():
    from srgan_tf.training.batchnorm import calibrate_batch_norm

    keras.utils.set_random_seed(3)
    generator = build_generator((4, 1), num_residual_blocks=2, filters=8)
    lr = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 1)).astype(np.float32)
    trained_mode = generator(lr, training=True).numpy()  # also moves the moving averages a bit
    assert np.abs(generator(lr, training=False).numpy() - trained_mode).max() > 1e-3
    assert calibrate_batch_norm(generator, [(lr, None), (lr, None)]) == 2
    # calibrated on this very batch: inference mode normalises exactly like training mode
    np.testing.assert_allclose(generator(lr, training=False).numpy(), trained_mode, atol=2e-4)
    assert calibrate_batch_norm(generator, []) == 0


def test_run_directory_lock_refuses_a_second_holder_and_takes_over_a_dead_ones(tmp_path):
    with DirectoryLock(tmp_path) as lock:
        assert lock.stale_holder is None and f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()
        with pytest.raises(DirectoryLocked, match=f"in use by another process \\(pid {os.getpid()}"):
            DirectoryLock(tmp_path).acquire()
    assert not (tmp_path / ".lock").exists()
    # A holder killed with SIGKILL: the kernel dropped its flock, its .lock file remains.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from srgan_tf.files import "
                               "DirectoryLock; lock = DirectoryLock(sys.argv[1]).acquire(); print('held', "
                               "flush=True); time.sleep(60)", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(DirectoryLocked, match=f"pid {holder.pid}"):
        DirectoryLock(tmp_path).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / ".lock").exists()
    with DirectoryLock(tmp_path) as lock:
        assert f"pid {holder.pid}" in lock.stale_holder


def test_train_refuses_a_run_directory_in_use(training_cache, tmp_path):
    config = tiny_config(content_loss="mse").updated(data={"cache": str(training_cache)},
                                                     train={"steps_per_epoch": 1})
    (tmp_path / "run").mkdir()
    with DirectoryLock(tmp_path / "run"):  # another training holds it
        with pytest.raises(InputError, match=f"{tmp_path / 'run'}: another training is using this "
                                             f"run directory \\(pid {os.getpid()}"):
            train(config, tmp_path / "run", strategy=tf.distribute.get_strategy(),
                  progress=False, train_dataset=None, validation=fixed_batch())


@pytest.mark.parametrize("existing", [None, [], ["notes.txt"]])
def test_failed_train_leaves_no_orphan_run_directory(tmp_path, existing):
    """A run that fails before its first checkpoint removes what it wrote (config.json, logs,
    train.log) and the run directory itself unless it held something else."""
    run_dir = tmp_path / "run"
    if existing is not None:
        run_dir.mkdir()  # as `run_experiment` makes it before training
        for name in existing:
            (run_dir / name).write_text("mine")
    config = tiny_config(content_loss="mse").updated(train={"steps_per_epoch": 1})
    lr, hr = fixed_batch()
    broken = tf.data.Dataset.from_tensors((lr, hr[:, :16])).repeat()  # SR and HR sizes differ
    with pytest.raises(Exception, match="[Ii]ncompatible shapes|shape"):
        train(config, run_dir, strategy=tf.distribute.get_strategy(), progress=False,
              train_dataset=broken, validation=(lr, hr))
    if existing:
        assert sorted(os.listdir(run_dir)) == existing
    else:
        assert not run_dir.exists()
