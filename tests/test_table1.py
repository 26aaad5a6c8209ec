"""Table 1 reproduction: settings -> configs, resume/reuse, table rendering (no real training)."""
import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from srgan_tf import experiment as experiment_lib
from srgan_tf.table1.plan import (SETTINGS, add_table1_arguments, apply_objective, objectives_for,
                                  plan_from_args, plan_table1, run_differences)
from srgan_tf.table1.report import render_table1, write_figures, write_table1
from srgan_tf.table1.reproduce import collect, reproduce_table1

METRIC_NAMES = ("psnr", "ssim", "hfen", "gmsd", "edge_f1")
ROOT = Path(__file__).resolve().parents[1]


def summary(psnr, ssim, hfen, gmsd, edge_f1, patients=2, slices=10):
    values = dict(zip(METRIC_NAMES, (psnr, ssim, hfen, gmsd, edge_f1)))
    values.update({f"{name}_std": 0.01 for name in METRIC_NAMES})
    return {**values, "patients": patients, "slices": slices}


def fake_metrics(scale, sr_better=True):
    """What `evaluate_model` returns for one run: bicubic, srresnet, sr, protocol."""
    bicubic = summary(30.0 - scale, 0.80, 0.40, 0.10, 0.50)
    delta = 1.0 if sr_better else -1.0
    return {"bicubic": bicubic,
            "srresnet": summary(31.0 - scale, 0.82, 0.35, 0.09, 0.55),
            "sr": summary(30.0 - scale + delta, 0.80 + delta / 100, 0.40 - delta / 10, 0.08,
                          0.50 + delta / 10),
            "protocol": {"split": "test", "scale_hw": [scale, scale], "hr_size": 224,
                         "border": scale, "min_foreground": 0.05},
            "per_patient": {"P0": {"slices": 5}}}


def plan_of(tmp_path, **kwargs):
    kwargs.setdefault("output_dir", tmp_path / "table1")
    kwargs.setdefault("figure_slices", 0)
    return plan_table1("quick", **kwargs)


def test_plan_has_four_settings_with_their_mode_and_scale(tmp_path):
    plan = plan_of(tmp_path)
    assert [(r.mode, r.scale) for r in plan.runs] == [("iso", 4), ("iso", 8), ("aniso", 4), ("aniso", 8)]
    assert [r.config.data.scale_hw for r in plan.runs] == [(4, 4), (8, 8), (4, 1), (8, 1)]
    assert [r.config.experiment for r in plan.runs] == ["exp1", "exp1", "exp2", "exp2"]
    assert [r.run_dir.name for r in plan.runs] == ["iso-x4-improved", "iso-x8-improved",
                                                   "aniso-x4-improved", "aniso-x8-improved"]
    for run in plan.runs:
        assert run.objective == "improved" and run.config.preset == "quick"
        assert run.config.loss.pixel_weight == 1.0  # the quick preset's value
        assert run.config.output_dir == str(run.run_dir)
        assert run.config.data.cache is None  # the sample: run_experiment resolves it


def test_objective_variants(tmp_path):
    plan = plan_of(tmp_path, objective="both",
                   overrides={"loss.ema_decay": 0.999, "loss.relativistic": True})
    assert len(plan.runs) == 8
    for run in plan.runs:
        loss = run.config.loss
        if run.objective == "paper":
            assert (loss.pixel_weight, loss.relativistic, loss.ema_decay) == (0.0, False, 0.0)
        else:
            assert (loss.pixel_weight, loss.relativistic, loss.ema_decay) == (1.0, True, 0.999)
    paper_preset = plan_table1("paper", cache="cache.h5", output_dir=tmp_path)
    assert {r.objective for r in paper_preset.runs} == {"paper", "improved"}  # default: both
    improved = [r.config.loss for r in paper_preset.runs if r.objective == "improved"]
    assert all(loss.pixel_weight == 1.0 for loss in improved)  # else it equals the paper's
    assert paper_preset.runs[0].config.data.patch_size is None  # whole 224 slices
    with pytest.raises(ValueError, match="Received"):
        objectives_for("fancy", "quick")


def parse(argv):
    parser = argparse.ArgumentParser()
    add_table1_arguments(parser)
    return parser.parse_args(argv)


def test_arguments_select_settings_and_override_config(tmp_path):
    args = parse(["--columns", "aniso-x4", "iso-x8", "--objective", "paper", "--pretrain-epochs",
                  "1", "--num-residual-blocks", "2", "--output", str(tmp_path)])
    plan = plan_from_args(args)
    assert [(r.setting, r.objective) for r in plan.runs] == [("aniso-x4", "paper"), ("iso-x8", "paper")]
    assert all(r.config.train.pretrain_epochs == 1 for r in plan.runs)
    assert all(r.config.model.num_residual_blocks == 2 for r in plan.runs)
    assert plan.output_dir == tmp_path
    assert [r.setting for r in plan_from_args(parse(["--mode", "iso"])).runs] == ["iso-x4", "iso-x8"]
    assert plan_from_args(parse([])).output_dir == Path("runs/table1-quick")
    with pytest.raises(ValueError, match="No Table 1 setting"):
        plan_from_args(parse(["--scale", "2"]))


def collected(tmp_path, objective="improved", sr_better=True):
    plan = plan_of(tmp_path, objective=objective)
    metrics = {str(r.run_dir): fake_metrics(r.scale, sr_better and r.objective == "improved")
               for r in plan.runs}
    return collect(plan, metrics)


def test_table_has_paper_numbers_bicubic_everywhere_and_edge_metrics(tmp_path):
    results = collected(tmp_path)
    text = render_table1(results)
    for paper_value in ("21.68", "0.71", "29.51", "0.82", "18.73", "25.72"):
        assert paper_value in text
    for column in ("Bicubic iso x4", "SRGAN iso x8", "Bicubic aniso x8", "SRGAN aniso x4",
                   "Bicubic iso x8*", "Bicubic aniso x4*"):
        assert column in text
    for label in ("PSNR", "SSIM", "HFEN", "GMSD", "Edge F1", "SRResNet", "SRGAN", "improved"):
        assert label in text
    assert set(results["settings"]) == set(SETTINGS)
    for entry in results["settings"].values():
        assert entry["bicubic"]["psnr"] and entry["srresnet"]["improved"]["hfen"]
        assert entry["srgan"]["improved"]["edge_f1"]
    rows = [line for line in text.splitlines() if line.startswith("| aniso ×4 | Bicubic")]
    assert len(rows) == 1 and "26.00 ± 0.01" in rows[0] and "| – |" in rows[0]  # no paper value
    rows = [line for line in text.splitlines() if line.startswith("| aniso ×4 | SRGAN")]
    assert "29.51" in rows[0] and "27.00" in rows[0]


def test_both_objectives_are_labelled_and_quality_target_reported(tmp_path):
    results = collected(tmp_path, objective="both")
    target = results["quality_target"]
    assert target["improved"]["met"] and not target["paper"]["met"]
    assert set(target["improved"]["checks"]) == {"psnr", "ssim", "hfen", "edge_f1"}
    text = render_table1(results)
    assert "ours, paper objective" in text and "ours, improved objective" in text
    assert "1 pixel" in text  # the improved objective in words
    srgan_rows = [line for line in text.splitlines() if line.startswith("| aniso ×4 | SRGAN")]
    assert len(srgan_rows) == 2
    assert ("29.51" in srgan_rows[0]) == srgan_rows[0].split(" | ")[2].startswith("paper")
    assert "**met**" in text and "**not met**" in text
    write_table1(results, tmp_path / "out")
    written = json.loads((tmp_path / "out" / "table1.json").read_text())
    assert written["settings"]["iso-x8"]["bicubic"] == results["settings"]["iso-x8"]["bicubic"]
    assert (tmp_path / "out" / "table1.md").read_text() == text


@pytest.fixture
def fake_training(monkeypatch):
    """Replaces run_experiment: records calls and writes config.json + metrics.json."""
    calls = []

    def run_experiment(config, *, resume=False, sample_root=None, evaluate=True):
        calls.append((config.output_dir, resume))
        run_dir = Path(config.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        config.updated(data={"cache": "data/sample/cache.h5"}).save(run_dir / "config.json")
        metrics = fake_metrics(config.data.scale)
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr(experiment_lib, "run_experiment", run_experiment)
    return calls


def test_finished_runs_are_reused_and_interrupted_ones_resumed(tmp_path, fake_training):
    plan = plan_of(tmp_path, settings=("iso-x4", "aniso-x4", "aniso-x8"))
    finished, interrupted, fresh = plan.runs
    finished.run_dir.mkdir(parents=True)
    saved = apply_objective(finished.config, "improved").updated(
        data={"cache": "data/sample/cache.h5"},  # resolved by run_experiment
        loss={"content_loss": "mse",  # the offline VGG fallback
              "content_loss_note": "vgg54 requested; fell back to mse"})
    saved.save(finished.run_dir / "config.json")
    (finished.run_dir / "metrics.json").write_text(json.dumps(fake_metrics(4)))
    interrupted.run_dir.mkdir(parents=True)
    interrupted.config.save(interrupted.run_dir / "config.json")

    results = reproduce_table1(plan)
    assert fake_training == [(str(interrupted.run_dir), True), (str(fresh.run_dir), False)]
    assert (plan.output_dir / "table1.md").exists() and (plan.output_dir / "table1.json").exists()
    assert "fell back to mse" in render_table1(results)

    reproduce_table1(plan)  # everything finished now: nothing is retrained
    assert len(fake_training) == 2


def test_a_run_of_another_config_is_not_reused(tmp_path, fake_training):
    plan = plan_of(tmp_path, settings=("aniso-x4",))
    run = plan.runs[0]
    run.run_dir.mkdir(parents=True)
    other = apply_objective(run.config, "paper")
    other.save(run.run_dir / "config.json")
    (run.run_dir / "metrics.json").write_text(json.dumps(fake_metrics(4)))
    with pytest.raises(ValueError, match="loss.pixel_weight"):
        reproduce_table1(plan)
    assert fake_training == []


def test_script_runs_the_table(tmp_path, fake_training, capsys):
    spec = importlib.util.spec_from_file_location("reproduce_table1",
                                                  ROOT / "experiments" / "reproduce_table1.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--output", str(tmp_path), "--columns", "aniso-x8", "--figure-slices", "0",
                 "--objective", "both"])
    assert [Path(d).name for d, _ in fake_training] == ["aniso-x8-paper", "aniso-x8-improved"]
    assert "SRGAN aniso x8" in capsys.readouterr().out
    saved = json.loads((tmp_path / "aniso-x8-paper" / "config.json").read_text())
    assert saved["loss"]["pixel_weight"] == 0.0 and saved["data"]["mode"] == "aniso"


def test_figures_are_written_and_logged_to_tensorboard(tmp_path):
    import numpy as np
    import tensorflow as tf

    from srgan_tf.data.slice_cache.prepare import build_cache
    from srgan_tf.inference.export import export_generator
    from srgan_tf.io.nifti import write_nifti
    from srgan_tf.io.volume import Volume
    from srgan_tf.config import GeneratorSpec
    from srgan_tf.models.generator import generator_from_spec

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:36]
    for number in range(2):
        body = ((y - 20) / 16.0) ** 2 + ((x - 18 - number) / 15.0) ** 2 < 1
        array = np.stack([40 + 500 * body + rng.normal(0, 15, body.shape) for _ in range(4)])
        write_nifti(Volume(array=array.astype(np.float32), spacing=(3.0, 0.5, 0.5),
                           patient_id=f"P{number}", series_description="t2_tse_tra"),
                    tmp_path / "nifti" / f"P{number}.nii.gz")
    cache = tmp_path / "cache.h5"
    build_cache(tmp_path / "nifti", cache, test_fraction=0.5, seed=0, progress=False)
    plan = plan_of(tmp_path, settings=("aniso-x4",), cache=str(cache), figure_slices=1,
                   overrides={"data.hr_size": 32, "data.patch_size": 32})
    run = plan.runs[0]
    run.run_dir.mkdir(parents=True)
    run.config.save(run.run_dir / "config.json")
    spec = GeneratorSpec((4, 1), num_residual_blocks=2, filters=8)
    export_generator(generator_from_spec(spec), run.run_dir / "export", spec=spec)
    (run.run_dir / "export_pretrain").symlink_to("export")  # an SRResNet panel, one export less

    paths = write_figures(plan)
    assert [Path(p).name for p in paths] == ["table1-aniso-slice0.png"]
    image = tf.io.decode_png(tf.io.read_file(paths[0])).numpy()
    assert image.shape[2] == 3 and image.shape[1] > image.shape[0]  # panels side by side
    events = list((plan.output_dir / "logs").glob("events.out.tfevents.*"))
    tags = {value.tag for event in tf.compat.v1.train.summary_iterator(str(events[0]))
            for value in event.summary.value}
    assert "table1/aniso/slice_0" in tags


def test_a_finished_run_trains_on_when_its_schedule_grows_and_not_for_the_runtime(tmp_path,
                                                                                 fake_training):
    plan = plan_of(tmp_path, settings=("aniso-x4", "aniso-x8"))
    extended, moved = plan.runs
    for run, change in ((extended, {"adversarial_epochs": 1}),  # the plan asks for 2
                        (moved, {"precision": "mixed_float16", "strategy": "mirrored"})):
        run.run_dir.mkdir(parents=True)
        run.config.updated(train=change).save(run.run_dir / "config.json")
        (run.run_dir / "metrics.json").write_text(json.dumps(fake_metrics(run.scale)))
    assert run_differences(extended)["schedule"] == [
        "train.adversarial_epochs: 1 in the run, 2 requested"]
    assert run_differences(moved)["learned"] == run_differences(moved)["schedule"] == []
    reproduce_table1(plan)
    assert fake_training == [(str(extended.run_dir), True)]  # resumed to the new end

