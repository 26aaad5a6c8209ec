"""SavedModel export: round trip (in process and in a process without srgan_tf), metadata,
atomic writes, mixed precision, and clear errors for anything that is not an export."""
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from srgan_tf.files import remove_stale_partials
from srgan_tf.inference import export
from srgan_tf.inference.export import FORMAT, export_generator
from srgan_tf.inference.exported_model import load_exported
from srgan_tf.inference.introspection import receptive_radius
from srgan_tf.io.errors import InputError
from srgan_tf.config import GeneratorSpec
from srgan_tf.models.generator import generator_from_spec

SCALE_HW = (4, 1)
SPEC = GeneratorSpec(SCALE_HW, num_residual_blocks=2, filters=8)
# the hand-built models below upsample the height by 2; their spec says so
PLAIN_SPEC = GeneratorSpec((2, 1), num_residual_blocks=0, filters=4)


def _trained_like(generator, seed=0):
    """Non-trivial batch-norm statistics and PReLU slopes (one outside [0, 1]), as after
    training, so that folding them into the serving graph is actually exercised."""
    rng = np.random.default_rng(seed)
    for layer in generator.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, size), rng.normal(0, 0.1, size),
                               rng.normal(0, 0.2, size), rng.uniform(0.5, 2.0, size)])
        elif isinstance(layer, keras.layers.PReLU):
            layer.set_weights([rng.uniform(0.0, 0.5, layer.alpha.shape)])
    prelu = [layer for layer in generator.layers if isinstance(layer, keras.layers.PReLU)][0]
    prelu.set_weights([np.full(prelu.alpha.shape, 1.5, np.float32)])
    return generator


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(1)
    return _trained_like(generator_from_spec(SPEC))


@pytest.fixture(scope="module")
def export_dir(generator, tmp_path_factory):
    metadata = {"config": {"loss": {"content_loss": "vgg54"}, "data": {"scale": 4}},
                "content_loss": "mse", "metrics": {"psnr": 30.5}}
    return export_generator(generator, tmp_path_factory.mktemp("export") / "export", metadata,
                            spec=SPEC)


def _batch(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(3, 6, 20, 1), (1, 9, 13, 1)])
def test_round_trip_in_process_any_size(generator, export_dir, shape):
    batch = _batch(shape)
    expected = generator(batch, training=False).numpy()
    model = load_exported(export_dir)
    result = model.predict(batch, batch_size=2)
    assert result.dtype == np.float32
    assert result.shape == (shape[0], shape[1] * 4, shape[2], 1)
    np.testing.assert_allclose(result, expected, atol=1e-5)
    assert model.scale_hw == SCALE_HW and model.mode == "aniso"


def test_round_trip_in_fresh_process_without_srgan_tf(generator, export_dir, tmp_path):
    batch = _batch((2, 5, 11, 1), seed=3)
    np.save(tmp_path / "lr.npy", batch)
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load(sys.argv[1])
        serve = loaded.signatures["serving_default"]
        assert list(serve.structured_input_signature[1]) == ["lr"], serve.structured_input_signature
        assert serve.structured_input_signature[1]["lr"].dtype == tf.float32
        assert list(serve.structured_outputs) == ["sr"], serve.structured_outputs
        sr = serve(lr=tf.constant(np.load(sys.argv[2])))["sr"]
        assert sr.dtype == tf.float32
        np.save(sys.argv[3], sr.numpy())
        assert not any(name.startswith("srgan_tf") for name in sys.modules)
    """)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    completed = subprocess.run(
        [sys.executable, "-c", script, str(export_dir), str(tmp_path / "lr.npy"),
         str(tmp_path / "sr.npy")], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = generator(batch, training=False).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "sr.npy"), expected, atol=1e-5)


def test_metadata_contents_merged_with_caller(generator, export_dir):
    metadata = json.loads((export_dir / "metadata.json").read_text())
    assert metadata["format"] == FORMAT and metadata["format_version"] == 2
    assert metadata["scale_hw"] == [4, 1] and metadata["mode"] == "aniso"
    assert GeneratorSpec.from_dict(metadata["generator"]) == SPEC
    assert load_exported(export_dir).spec == SPEC
    assert metadata["normalization"] == {"range": "[-1,1]", "percentiles": [0.5, 99.5]}
    assert metadata["content_loss"] == "mse"  # the caller's value (the one actually used) wins
    assert metadata["config"]["data"]["scale"] == 4
    assert metadata["metrics"] == {"psnr": 30.5}
    assert metadata["created"] and metadata["srgan_tf_version"]
    assert metadata["generator"]["parameters"] == generator.count_params()
    assert metadata["generator"]["filters"] == 8
    assert metadata["generator"]["receptive_field_lr"] == list(receptive_radius(generator))
    assert metadata["signatures"]["precisions"] == {"float32": "serving_default",
                                                    "bfloat16": "serving_bfloat16"}
    assert metadata["signatures"]["graph"] == "folded"
    assert load_exported(export_dir).metadata == metadata


def test_receptive_radius_counts_each_conv_at_its_resolution(generator):
    # 9x9 input conv (4) + 2 blocks x 2 convs (4) + body conv (1), all at LR; upsampling convs
    # at x1 and x2 height; the 9x9 output conv at x4 height (4 / 4 LR pixels); the [1, 2, 1]
    # hold filters after the shuffles at x2 and x4 height.
    height = 4 + 4 + 1 + 1 + 0.5 + 1 + 0.5 + 0.25
    width = 4 + 4 + 1 + 1 + 1 + 4
    assert receptive_radius(generator) == (int(np.ceil(height)), width)


def test_bfloat16_signature_is_close_to_float32(export_dir):
    model = load_exported(export_dir)
    batch = _batch((2, 8, 16, 1), seed=5)
    full = model.predict(batch, precision="float32")
    half = model.predict(batch, precision="bfloat16")
    assert half.dtype == np.float32 and half.shape == full.shape
    assert np.abs(half - full).max() < 0.05
    with pytest.raises(ValueError, match="precision"):
        model.predict(batch, precision="float16")


def test_untranslatable_layers_fall_back_to_the_keras_model(tmp_path, caplog):
    inputs = keras.Input((None, None, 1), name="lr")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)  # not in the serving graph
    x = keras.layers.UpSampling2D((2, 1), name="up")(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="tanh", name="out")(x)
    model = keras.Model(inputs, outputs, name="plain")
    with caplog.at_level(logging.WARNING, logger="srgan_tf.user"):  # the user's warning line
        path = export_generator(model, tmp_path / "export", {}, spec=PLAIN_SPEC)
    assert "'norm': LayerNormalization has weights" in caplog.text
    loaded = load_exported(path)
    assert loaded.precisions == ("float32",) and loaded.scale_hw == (2, 1)
    assert loaded.metadata["signatures"]["graph"] == "keras"
    batch = _batch((2, 5, 7, 1))
    np.testing.assert_allclose(loaded.predict(batch), model(batch).numpy(), atol=1e-5)


def test_mixed_precision_generator_exports_float32_io(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        spec = GeneratorSpec((2, 1), num_residual_blocks=1, filters=8)
        mixed = generator_from_spec(spec)
    finally:
        keras.config.set_dtype_policy(previous)
    path = export_generator(mixed, tmp_path / "export", {}, spec=spec)
    model = load_exported(path)
    batch = _batch((2, 6, 10, 1), seed=7)
    result = model.predict(batch)
    assert result.dtype == np.float32 and result.shape == (2, 12, 10, 1)
    np.testing.assert_allclose(result, mixed(batch, training=False).numpy(), atol=0.05)
    assert model.metadata["signatures"]["graph"] == "folded"  # computed in float32
    serve = model._keep_alive.signatures["serving_default"]
    assert serve.structured_input_signature[1]["lr"].dtype.name == "float32"
    assert serve.structured_outputs["sr"].dtype.name == "float32"
    assert model.metadata["generator"]["training_dtype_policy"] == "mixed_bfloat16"


def test_export_replaces_previous_export_and_refuses_foreign_dirs(generator, tmp_path):
    target = tmp_path / "export"
    export_generator(generator, target, {"note": "first"}, spec=SPEC)
    export_generator(generator, target, {"note": "second"}, spec=SPEC)
    assert load_exported(target).metadata["note"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary leftovers
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an srgan-tf export"):
        export_generator(generator, foreign, {}, spec=SPEC)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="scale_hw"):
        export_generator(generator, tmp_path / "other", {"scale_hw": [2, 1]}, spec=SPEC)


def test_interrupted_export_leaves_no_directory(generator, tmp_path, monkeypatch):
    def killed_save(module, path, signatures=None):
        os.makedirs(path)
        open(os.path.join(path, "saved_model.pb"), "wb").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(export.tf.saved_model, "save", killed_save)
    with pytest.raises(KeyboardInterrupt):
        export_generator(generator, tmp_path / "export", {}, spec=SPEC)
    assert list(tmp_path.iterdir()) == []


def test_an_export_killed_between_its_renames_is_mended(generator, tmp_path):
    target = tmp_path / "export"
    export_generator(generator, target, {"note": "kept"}, spec=SPEC)
    # names of the version before files.staged_folder: a token, no writer
    os.replace(target, tmp_path / ".export.old-1a2b3c4d")  # killed after moving the old one aside
    (tmp_path / ".export.partial-5e6f7a8b").mkdir()
    remove_stale_partials(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert load_exported(target).metadata["note"] == "kept"


def test_load_exported_rejects_missing_and_foreign_dirs(export_dir, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_exported(tmp_path / "missing")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="found a file"):
        load_exported(tmp_path / "file.bin")
    with pytest.raises(InputError, match="saved_model.pb"):
        load_exported(tmp_path)
    copy = shutil.copytree(export_dir, tmp_path / "no_metadata")
    (copy / "metadata.json").unlink()
    with pytest.raises(InputError, match="not an srgan-tf export"):
        load_exported(copy)
    (copy / "metadata.json").write_text(json.dumps({"format": "keras-hub", "scale_hw": [4, 1]}))
    with pytest.raises(InputError, match="keras-hub"):
        load_exported(copy)
    (copy / "metadata.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        load_exported(copy)


def test_bfloat16_serving_keeps_the_bicubic_skip_in_float32(tmp_path):
    # A fresh residual generator outputs exactly bicubic(LR) (zero-initialised output conv):
    # the bf16 signature must too, so the LR image is not rounded to bf16 on its skip path.
    keras.utils.set_random_seed(2)
    spec = GeneratorSpec(SCALE_HW, num_residual_blocks=2, filters=8, bicubic_residual=True)
    model = generator_from_spec(spec)
    loaded = load_exported(export_generator(model, tmp_path / "export", {}, spec=spec))
    assert loaded.metadata["signatures"]["graph"] == "folded"
    batch = _batch((2, 6, 9, 1))
    np.testing.assert_allclose(loaded.predict(batch, precision="bfloat16"),
                               model(batch, training=False).numpy(), atol=1e-6)


def test_merge_layers_other_than_add_fall_back_to_the_keras_model(tmp_path, caplog):
    inputs = keras.Input((None, None, 1), name="lr")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Concatenate(name="concat")([x, inputs])
    x = keras.layers.UpSampling2D((2, 1), name="up")(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", name="out")(x)
    model = keras.Model(inputs, outputs)
    with caplog.at_level(logging.WARNING, logger="srgan_tf.user"):
        loaded = load_exported(export_generator(model, tmp_path / "export", {}, spec=PLAIN_SPEC))
    assert "'concat': merge layer Concatenate" in caplog.text
    assert loaded.metadata["signatures"]["graph"] == "keras"
    batch = _batch((1, 5, 7, 1))
    np.testing.assert_allclose(loaded.predict(batch), model(batch).numpy(), atol=1e-5)


class _LearnedGain(keras.layers.Layer):
    """A layer type the serving graph has never seen: one trainable gain per channel."""

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gain")

    def call(self, inputs):
        return inputs * self.gain


def test_unknown_layer_falls_back_with_one_warning_naming_it(tmp_path, caplog):
    inputs = keras.Input((None, None, 1), name="lr")
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    x = _LearnedGain(name="gain")(x)
    x = keras.layers.UpSampling2D((2, 1), name="up")(x)
    outputs = keras.layers.Conv2D(1, 1, name="out")(x)
    model = keras.Model(inputs, outputs)
    with caplog.at_level(logging.WARNING, logger="srgan_tf.user"):  # a user's warning line
        path = export_generator(model, tmp_path / "export", {}, spec=PLAIN_SPEC)
    messages = [record.getMessage() for record in caplog.records
                if "serving graph" in record.getMessage()]
    assert len(messages) == 1, messages
    assert "'gain'" in messages[0] and "_LearnedGain has weights" in messages[0]
    assert "plain Keras model" in messages[0]
    loaded = load_exported(path)
    assert loaded.metadata["signatures"]["graph"] == "keras"
    batch = _batch((1, 4, 5, 1))
    np.testing.assert_allclose(loaded.predict(batch), model(batch).numpy(), atol=1e-5)


def test_exports_of_format_version_1_still_load_with_their_spec(export_dir, tmp_path):
    # Before the GeneratorSpec, metadata.json held scale_hw and mode, and the run's config.
    copy = shutil.copytree(export_dir, tmp_path / "v1")
    metadata = json.loads((copy / "metadata.json").read_text())
    metadata["format_version"] = 1
    metadata["generator"] = {"name": "generator", "filters": 8, "receptive_field_lr": [9, 14]}
    metadata["config"]["model"] = {"num_residual_blocks": 2, "filters": 8}
    (copy / "metadata.json").write_text(json.dumps(metadata))
    assert load_exported(copy).spec == SPEC
    metadata["scale_hw"] = [3, 1]
    (copy / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(InputError, match="does not describe a generator"):
        load_exported(copy)
