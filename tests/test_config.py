import dataclasses
import json

import pytest

from srgan_tf import config as config_lib
from srgan_tf.arguments import config_from_args
from srgan_tf.cli import build_parser
from srgan_tf.config import ExperimentConfig
from srgan_tf.presets import PRESETS, preset, preset_changes


def test_presets_follow_the_paper_and_quick_is_smaller():
    paper = preset("paper")
    assert paper.data.batch_size == 16 and paper.data.hr_size == 224 and paper.data.patch_size is None
    assert (paper.train.pretrain_epochs, paper.train.adversarial_epochs) == (20, 50)
    assert paper.train.learning_rate == 1e-4 and paper.train.beta_1 == 0.9
    assert paper.loss.content_loss == "vgg54" and paper.loss.adversarial_weight == 1e-3
    assert paper.model.num_residual_blocks == 16 and paper.model.filters == 64
    quick = preset("quick")
    assert quick.model.num_residual_blocks < paper.model.num_residual_blocks
    assert quick.data.train_size < paper.data.train_size


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_data_that_round_trip_through_config_json(name, tmp_path):
    top_level = {f.name for f in dataclasses.fields(ExperimentConfig)}
    for key, value in preset_changes(name).items():  # every key names a field
        assert key in top_level
        if key in config_lib.SECTIONS:
            assert set(value) <= {f.name for f in dataclasses.fields(config_lib.SECTIONS[key])}
    config = preset(name, experiment="exp1", mode="iso", scale=8)
    assert (config.preset, config.experiment, config.data.scale_hw) == (name, "exp1", (8, 8))
    config.save(tmp_path / "config.json")
    assert ExperimentConfig.load(tmp_path / "config.json") == config
    assert ExperimentConfig.from_dict(json.loads(json.dumps(preset(name).to_dict()))) == preset(name)


def test_the_self_supervised_setting_is_the_quick_networks_generator_only():
    quick, selfsup = preset("quick"), preset("self-supervised")
    assert selfsup.model == quick.model and selfsup.experiment == "self-supervised"
    assert selfsup.train.adversarial_epochs == 0 and selfsup.loss.content_loss == "mse"
    assert (selfsup.train.total_steps, selfsup.train.pretrain_epochs) == (270, 2)
    with pytest.raises(config_lib.ConfigError, match="Unknown preset.*Received: 'fast'"):
        preset("fast")


def test_scale_per_axis():
    assert preset("paper", mode="iso", scale=8).data.scale_hw == (8, 8)
    assert preset("paper", mode="aniso", scale=4).data.scale_hw == (4, 1)


def test_mode_of_is_the_inverse_of_scale_hw():
    for mode in config_lib.MODES:
        for scale in config_lib.SCALES:
            assert config_lib.mode_of(preset("quick", mode=mode, scale=scale).data.scale_hw) == mode
    with pytest.raises(ValueError, match="Received: scale_hw=\\(1, 2\\)"):
        config_lib.mode_of((1, 2))


def test_config_round_trips_through_json(tmp_path):
    config = preset("quick", experiment="exp1", mode="iso", scale=8).updated(
        loss={"content_loss_note": "fell back"})
    config.save(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["data"]["scale"] == 8
    assert config_lib.ExperimentConfig.load(tmp_path / "config.json") == config


def test_a_config_is_never_changed_in_place_only_derived():
    config = preset("quick")
    for part, name in ((config, "output_dir"), (config.data, "scale"), (config.model, "filters"),
                       (config.loss, "pixel_weight"), (config.train, "seed")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(part, name, getattr(part, name))
    derived = config.updated(data={"scale": 8}, train={"seed": 3}, output_dir="runs/x8")
    assert (derived.data.scale, derived.train.seed, derived.output_dir) == (8, 3, "runs/x8")
    assert (config.data.scale, config.train.seed, config.output_dir) == (4, 0, None)
    assert derived.model is config.model  # untouched sections are shared, safely
    with pytest.raises(config_lib.ConfigError, match="divisible by scale"):  # checked as built
        config.updated(data={"patch_size": 98})


@pytest.mark.parametrize("change, message", [
    ({"data": {"mode": "diagonal"}}, "mode must be one of"),
    ({"data": {"scale": 3}}, "scale must be 2, 4 or 8"),
    ({"loss": {"content_loss": "vgg33"}}, "content_loss must be one of"),
    ({"data": {"hr_size": 100, "scale": 8}}, "divisible by scale"),
])
def test_bad_values_are_rejected_with_the_received_value(change, message):
    values = preset("paper").to_dict()
    for section, fields in change.items():
        values[section].update(fields)
    with pytest.raises(ValueError, match=message) as info:
        config_lib.ExperimentConfig.from_dict(values)
    assert "Received" in str(info.value)


def test_every_knob_is_a_flag_and_flags_override_the_preset():
    args = build_parser().parse_args([
        "train", "--cache", "c.h5", "--scale", "8", "--num-residual-blocks", "3", "--flips", "false",
        "--learning-rate", "3e-4", "--patch-size", "64", "--content-loss", "mse", "--precision",
        "mixed_bfloat16", "--jit-compile", "true"])
    config = config_from_args(args, "exp2")
    assert config.preset == "paper"  # --cache given: the paper's protocol by default
    assert config.data.scale_hw == (8, 1) and config.data.patch_size == 64 and config.data.flips is False
    assert config.model.num_residual_blocks == 3 and config.train.learning_rate == 3e-4
    assert config.loss.content_loss == "mse" and config.train.precision == "mixed_bfloat16"
    assert config.train.jit_compile is True
    quick = config_from_args(build_parser().parse_args(["train"]), "exp2")
    assert quick.preset == "quick" and quick.data.cache is None


def test_auto_precision_resolves_to_a_concrete_policy(monkeypatch):
    from srgan_tf import runtime

    assert runtime.training_precision("mixed_float16") == "mixed_float16"
    monkeypatch.setattr(runtime, "native_bfloat16", lambda: True)
    assert runtime.training_precision("auto") == "mixed_bfloat16"  # CPU-only test machine
    monkeypatch.setattr(runtime, "native_bfloat16", lambda: False)
    assert runtime.training_precision("auto") == "float32"
    config = config_lib.ExperimentConfig.from_dict({"train": {"precision": "auto"}})
    assert config.train.precision == "auto"


def test_resume_takes_the_runs_config_and_only_schedule_flags(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    saved = preset("quick", mode="iso", scale=8).updated(
        data={"cache": str(tmp_path / "c.h5"), "degradation": "bicubic"})
    saved.save(run / "config.json")
    parser = build_parser()
    # no --mode, --scale, --cache: the run's iso x8 on its cache, not the defaults (aniso x4, sample)
    args = parser.parse_args(["train", "--output", str(run), "--resume", "--adversarial-epochs", "5"])
    config = config_from_args(args, "exp2")
    assert (config.data.mode, config.data.scale, config.data.cache) == ("iso", 8, saved.data.cache)
    assert config.train.adversarial_epochs == 5 and config.data.degradation == "bicubic"
    args = parser.parse_args(["train", "--output", str(run), "--resume", "--filters", "16"])
    with pytest.raises(config_lib.ConfigError, match="--filters 16 \\(the run's: 32\\)"):
        config_from_args(args, "exp2")


def test_every_field_has_one_resume_class():
    assert set(config_lib.FIELD_CLASSES) == set(config_lib.field_values(ExperimentConfig()))
    assert set(config_lib.FIELD_CLASSES.values()) == set(config_lib.RESUME_CLASSES)


@pytest.mark.parametrize("name, value", [
    ("train.seed", 3), ("data.batch_size", 8), ("loss.pixel_weight", 0.5),  # learned
    ("train.adversarial_epochs", 9), ("train.steps_per_epoch", 7),  # schedule
    ("train.precision", "mixed_bfloat16"), ("data.val_slices", 3), ("train.strategy", "default"),
])
def test_the_trainer_the_flags_and_table1_read_one_resume_rule(name, value, tmp_path):
    from srgan_tf.table1.plan import SubRun, run_differences
    from srgan_tf.run_directory import RunDirectory
    from srgan_tf.training.checkpoints import check_resume

    kind = config_lib.FIELD_CLASSES[name]
    run = tmp_path / "run"
    run.mkdir()
    saved = preset("quick").updated(data={"cache": str(tmp_path / "c.h5")}, output_dir=str(run))
    saved.save(run / "config.json")
    section, field = name.split(".")
    requested = saved.updated(**{section: {field: value}})
    flag = "--" + field.replace("_", "-")
    args = build_parser().parse_args(["train", "--output", str(run), "--resume", flag, str(value)])
    table1 = run_differences(SubRun("aniso-x4", "improved", requested, run))
    if kind == config_lib.LEARNED:
        with pytest.raises(ValueError, match=f"resume needs .*{name} was"):
            check_resume(requested, RunDirectory(run))
        with pytest.raises(config_lib.ConfigError, match=f"{flag} {value} \\(the run's: "):
            config_from_args(args, "exp2")
    else:
        check_resume(requested, RunDirectory(run))
        assert config_from_args(args, "exp2") == requested
    assert table1[kind] == [f"{name}: {getattr(getattr(saved, section), field)!r} in the run, "
                            f"{value!r} requested"]
    assert sum(map(len, table1.values())) == 1


def test_what_the_run_records_of_itself_is_no_flag_and_never_compared(tmp_path):
    assert config_lib.FIELD_CLASSES["loss.content_loss_note"] == config_lib.RECORD
    assert "--content-loss-note" not in build_parser().format_help()
    saved = preset("quick").updated(loss={"content_loss": "mse",
                                          "content_loss_note": "vgg54 requested; fell back"})
    # the run asked for vgg54 and fell back: asking for vgg54 again is asking for this run
    differ = config_lib.resume_differences(saved, config_lib.field_values(preset("quick")))
    assert not differ[config_lib.LEARNED] and list(differ[config_lib.RECORD]) == [
        "loss.content_loss_note"]
    assert list(config_lib.resume_differences(saved, {"loss.content_loss": "vgg22"})[
        config_lib.LEARNED]) == ["loss.content_loss"]
