"""Strategy selection, TF_CONFIG checks, and MirroredStrategy = one device on the same batch."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from srgan_tf.training.strategy import check_tf_config, global_batch_size, make_strategy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two logical CPU devices must be configured before TensorFlow initialises: a fresh process.
MIRRORED_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from srgan_tf.config import ExperimentConfig
    from srgan_tf.data.degradation.degrade import degrade
    from srgan_tf.training.batchnorm import calibrate_batch_norm, calibrate_ema
    from srgan_tf.training.strategy import make_strategy
    from srgan_tf.training.trainer import build_srgan, make_optimizers

    config = ExperimentConfig().updated(
        data={"mode": "iso", "hr_size": 32, "batch_size": 4},
        model={"num_residual_blocks": 2, "filters": 8, "discriminator_filters": 8,
               "discriminator_dense": 16},
        loss={"content_loss": "mse", "pixel_weight": 0.5, "ema_decay": 0.5},
        train={"sync_batch_norm": True})  # batch statistics over the global batch, as on one device
    hr = np.tanh(np.random.default_rng(0).normal(size=(8, 32, 32, 1))).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((degrade(hr, (4, 4)), hr)).batch(4).repeat()
    weights, results = None, {}
    for name in ("default", "mirrored"):
        strategy = make_strategy(name)
        keras.utils.set_random_seed(0)  # same initial weights, so the EMA copies start equal too
        with strategy.scope():
            model = build_srgan(config)
            model.compile(*make_optimizers(config))
        if weights is None:
            weights = (model.generator.get_weights(), model.discriminator.get_weights())
        model.generator.set_weights(weights[0])
        model.discriminator.set_weights(weights[1])
        model.phase = "adversarial"  # both updates: discriminator, then generator
        logs = model.fit(dataset, epochs=2, steps_per_epoch=1, shuffle=False, verbose=0).history
        # batch-norm calibration assigns mirrored variables from the cross-replica context
        lr_batch = degrade(hr[:4], (4, 4))
        calibrate_batch_norm(model.generator, [lr_batch])
        calibrate_ema(model, [lr_batch])
        results[name] = {"replicas": strategy.num_replicas_in_sync, "logs": logs,
                         "generator": [float(np.sum(np.abs(w))) for w in model.generator.get_weights()],
                         "ema": [float(np.sum(np.abs(w.numpy()))) for w in model.ema_weights]}
    print("RESULT" + json.dumps(results))
""")


def _run(script, *args, env=None, timeout=300):
    environment = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    environment.update(env or {})
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                            timeout=timeout, env=environment, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_mirrored_over_two_cpus_matches_one_device():
    output = _run(MIRRORED_SCRIPT)
    results = json.loads(output.split("RESULT", 1)[1])
    single, mirrored = results["default"], results["mirrored"]
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    assert set(single["logs"]) == set(mirrored["logs"])
    assert {"d_loss", "g_loss", "content_loss", "d_real_logit"} <= set(single["logs"])
    for key, values in single["logs"].items():
        assert values == pytest.approx(mirrored["logs"][key], rel=1e-5, abs=1e-5), key
    # abs: calibrated batch-norm means (and their EMA copies) sum values near 0 in another
    # order on two replicas
    assert single["generator"] == pytest.approx(mirrored["generator"], rel=1e-5, abs=5e-5)
    assert single["ema"] == pytest.approx(mirrored["ema"], rel=1e-5, abs=5e-5)


def test_default_auto_and_mirrored_on_cpu():
    assert not tf.config.list_logical_devices("GPU")
    for name in ("default", "auto"):
        strategy = make_strategy(name)
        assert strategy is tf.distribute.get_strategy()
        assert strategy.num_replicas_in_sync == 1
    mirrored = make_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == len(tf.config.list_logical_devices("CPU"))
    assert global_batch_size(16, mirrored) == 16 * mirrored.num_replicas_in_sync


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="strategy must be one of .* Received: strategy='tpu'"):
        make_strategy("tpu")


def test_multiworker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        make_strategy("multiworker")


@pytest.mark.parametrize("text,message", [
    ("{not json", "must be JSON"),
    ('{"cluster": {"chief": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "'worker' list"),
    ('{"cluster": {"worker": ["a:1"]}}', "'worker' list"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "task index"),
])
def test_invalid_tf_config_is_explained(text, message):
    with pytest.raises(ValueError, match=message):
        check_tf_config(text)


def test_multiworker_from_tf_config_single_worker():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    tf_config = json.dumps({"cluster": {"worker": [f"localhost:{port}"]}, "task": {"type": "worker", "index": 0}})
    script = ("from srgan_tf.training.strategy import make_strategy\n"
              "strategy = make_strategy('multiworker')\n"
              "import tensorflow as tf\n"
              "print(isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), strategy.num_replicas_in_sync)\n")
    assert "True 1" in _run(script, env={"TF_CONFIG": tf_config}, timeout=120)
