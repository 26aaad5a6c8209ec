"""The user's journey through the public entry points, on tiny settings: an experiment run end
to end and resumed, the offline VGG fallback, `srgan-tf evaluate`, and every experiment
script's `main()`.

Only public paths are called (`run_experiment`, the scripts' `main(argv)`, `srgan_tf.cli.main`,
`evaluate_export`) and the assertions are on what a user sees: files in the run directory,
exit codes, metadata fields, finite numbers. One trained Exp. 2 run (the one column of a
`reproduce_table1.py` table on the user's cache) serves every test that needs an export.
"""
import functools
import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from srgan_tf import exp3
from srgan_tf.config import ExperimentConfig
from srgan_tf.experiment import resolve_content_loss
from srgan_tf.inference.exported_model import load_exported
from srgan_tf.training.callbacks import read_history

ROOT = Path(__file__).resolve().parents[1]
# 2 residual blocks, 8 filters, 32x32 HR, one step per phase: the journey, not the quality.
TINY = ["--preset", "quick", "--scale", "4", "--hr-size", "32", "--patch-size", "32",
        "--batch-size", "2", "--num-residual-blocks", "2", "--filters", "8",
        "--discriminator-filters", "8", "--discriminator-dense", "16", "--val-slices", "2",
        "--pretrain-epochs", "1", "--adversarial-epochs", "1", "--steps-per-epoch", "1",
        "--bn-calibration-batches", "1", "--precision", "float32", "--min-foreground", "0.1"]
METRIC_NAMES = ("psnr", "ssim", "hfen", "gmsd", "edge_f1")
# The built-in sample at 32x32 with 12 slices (the default geometry takes minutes to render).
SMALL_SAMPLE = {"matrix": 32, "slices": 12}


def script(name):
    """An `experiments/<name>.py` module, imported from its path as a user runs it."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_sample(monkeypatch):
    """The built-in sample's first use renders the small geometry (same data, same code)."""
    from srgan_tf.data.synthetic import sample

    monkeypatch.setattr(sample, "ensure_sample_cache",
                        functools.partial(sample.ensure_sample_cache, **SMALL_SAMPLE))


def one_error_line(stderr: str, words) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in lines if ": error:" in line]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def assert_scores(entry):
    for name in METRIC_NAMES:
        assert math.isfinite(entry[name]), (name, entry)
    assert entry["patients"] >= 1 and entry["slices"] >= 1


@pytest.fixture(scope="module")
def table1_dir(training_cache, tmp_path_factory):
    """`experiments/reproduce_table1.py --columns aniso-x4 ...` on the user's cache: one
    finished, evaluated Exp. 2 run (through `run_experiment`) and the table."""
    output = tmp_path_factory.mktemp("table1")
    argv = ["--cache", str(training_cache), *TINY, "--content-loss", "mse", "--columns",
            "aniso-x4", "--figure-slices", "0", "--output", str(output)]
    assert script("reproduce_table1").main(argv) == 0
    return output


@pytest.fixture(scope="module")
def exp2_run(table1_dir):
    return table1_dir / "aniso-x4-improved"


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    """The built-in sample at the small geometry, as `run_experiment` finds it (`small_sample`)."""
    from srgan_tf.data.synthetic.sample import ensure_sample_cache

    root = tmp_path_factory.mktemp("sample")
    ensure_sample_cache(root, patients=2, seed=ExperimentConfig().train.seed, progress=False,
                        **SMALL_SAMPLE)
    return root


def test_exp2_run_holds_what_the_user_reads_and_resume_trains_nothing(exp2_run, training_cache,
                                                                     capsys):
    run_dir = exp2_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["experiment"] == "exp2" and config["data"]["mode"] == "aniso"
    assert config["data"]["cache"] == str(training_cache)
    assert config["loss"]["content_loss"] == "mse"
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-2")
    history = read_history(run_dir / "history.csv")
    assert [(row["epoch"], row["phase"]) for row in history] == [(1, "pretrain"),
                                                                   (2, "adversarial")]
    assert all(math.isfinite(row["val_psnr"]) for row in history)

    metadata = json.loads((run_dir / "export" / "metadata.json").read_text())
    assert metadata["mode"] == "aniso" and metadata["scale_hw"] == [4, 1]
    assert metadata["content_loss"] == "mse" and metadata["epochs"] == 2
    pretrain = load_exported(run_dir / "export_pretrain")
    assert pretrain.metadata["epochs"] == 1 and pretrain.scale_hw == (4, 1)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"sr", "bicubic", "srresnet"} <= set(metrics)
    for name in ("sr", "bicubic", "srresnet"):
        assert_scores(metrics[name])
    report = (run_dir / "report.md").read_text()
    assert "Experiment 2" in report and "x4" in report
    assert not (run_dir / ".lock").exists()

    # Exp. 2's script resumes the finished run: nothing is trained again, the export stays.
    lr = np.random.default_rng(0).uniform(-1, 1, (1, 8, 32, 1)).astype(np.float32)
    before = load_exported(run_dir / "export").predict(lr)
    checkpoints = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    capsys.readouterr()
    argv = ["--cache", str(training_cache), *TINY, "--content-loss", "mse", "--output",
            str(run_dir), "--resume", "--degradation", "bicubic"]  # Table 1's Exp. 2 protocol
    assert script("exp2_aniso").main(argv) == 0
    printed = capsys.readouterr().out
    assert "Epoch " not in printed
    # The last words: the results table and where the run's files are; the protocol and the
    # configuration stay in report.md and config.json.
    assert "| Metric |" in printed and "PSNR" in printed
    assert f"Run directory: {run_dir}" in printed
    assert f"tensorboard --logdir {run_dir / 'logs'}" in printed
    assert str(run_dir / "export") in printed and str(run_dir / "report.md") in printed
    assert "## Protocol" not in printed and '"content_loss"' not in printed
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == checkpoints
    assert read_history(run_dir / "history.csv") == history
    after = load_exported(run_dir / "export")
    assert after.metadata["epochs"] == 2
    np.testing.assert_allclose(after.predict(lr), before, atol=1e-6)
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["sr"]["psnr"] == pytest.approx(metrics["sr"]["psnr"], abs=1e-6)
    assert not (run_dir / ".lock").exists()


def test_table1_script_writes_the_table_and_reuses_its_finished_run(table1_dir, training_cache,
                                                                    capsys):
    table = json.loads((table1_dir / "table1.json").read_text())
    entry = table["settings"]["aniso-x4"]
    assert_scores(entry["bicubic"])
    assert_scores(entry["srgan"]["improved"])
    assert "aniso" in (table1_dir / "table1.md").read_text()
    capsys.readouterr()
    argv = ["--cache", str(training_cache), *TINY, "--content-loss", "mse", "--columns",
            "aniso-x4", "--figure-slices", "0", "--output", str(table1_dir)]
    assert script("reproduce_table1").main(argv) == 0
    assert "Reusing finished sub-run" in capsys.readouterr().out


def test_evaluate_export_and_cli_evaluate_score_like_the_run(exp2_run, training_cache, tmp_path,
                                                           capsys):
    from srgan_tf.cli import main
    from srgan_tf.evaluation.run import evaluate_export

    run_metrics = json.loads((exp2_run / "metrics.json").read_text())
    export = exp2_run / "export"
    direct = evaluate_export(export, training_cache, output_dir=tmp_path / "direct")
    assert main(["evaluate", "--model", str(export), "--cache", str(training_cache),
                 "--output", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "metrics.json and report.md written to" in printed
    for folder in ("direct", "cli"):
        written = json.loads((tmp_path / folder / "metrics.json").read_text())
        assert (tmp_path / folder / "report.md").read_text().startswith("# Evaluation of")
        for method in ("sr", "bicubic"):
            for name in METRIC_NAMES:
                expected = pytest.approx(run_metrics[method][name], abs=1e-6)
                assert written[method][name] == expected, (folder, method, name)
    assert direct["sr"]["psnr"] == pytest.approx(run_metrics["sr"]["psnr"], abs=1e-6)


def test_offline_vgg_policy_decides_by_the_data(tmp_path, capsys):
    from srgan_tf.models.vgg import VGGWeightsUnavailable

    config = ExperimentConfig().updated(
        loss={"content_loss": "vgg54", "vgg_weights": str(tmp_path / "missing.h5")})
    with pytest.raises(VGGWeightsUnavailable, match="missing.h5"):
        resolve_content_loss(config, using_sample=False)  # the user's data: stop, say how
    assert config.loss.content_loss == "vgg54"
    fallen_back, extractor = resolve_content_loss(config, using_sample=True)
    assert extractor is None  # the demo: MSE, loudly
    assert fallen_back.loss.content_loss == "mse"
    assert "vgg54 requested" in fallen_back.loss.content_loss_note
    assert "WARNING: ImageNet VGG19 weights are not available" in capsys.readouterr().err


def test_exp1_on_the_sample_falls_back_to_mse_offline(sample_root, tmp_path, monkeypatch, capsys):
    small_sample(monkeypatch)
    run_dir = tmp_path / "run"
    # no pretraining: the content loss only matters in the adversarial phase
    argv = ["--sample-root", str(sample_root), "--sample-patients", "2", *TINY,
            "--pretrain-epochs", "0", "--content-loss", "vgg54",
            "--vgg-weights", str(tmp_path / "missing.h5"), "--output", str(run_dir)]
    assert script("exp1_iso").main(argv) == 0
    printed = capsys.readouterr()
    assert "WARNING: ImageNet VGG19 weights are not available" in printed.err
    assert "built-in SYNTHETIC sample" in printed.out
    config = json.loads((run_dir / "config.json").read_text())
    assert config["experiment"] == "exp1" and config["data"]["mode"] == "iso"
    assert config["loss"]["content_loss"] == "mse"
    assert "vgg54 requested" in config["loss"]["content_loss_note"]
    metadata = json.loads((run_dir / "export" / "metadata.json").read_text())
    assert metadata["mode"] == "iso" and metadata["scale_hw"] == [4, 4]
    assert metadata["content_loss"] == "mse" and "vgg54 requested" in metadata["content_loss_note"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert_scores(metrics["sr"])
    assert "synthetic phantom" in (run_dir / "report.md").read_text()


def _exp1_without_vgg_weights(cache, folder: Path) -> int:
    argv = ["--cache", str(cache), *TINY, "--content-loss", "vgg54",
            "--vgg-weights", str(folder / "missing.h5"), "--output", str(folder / "run")]
    return script("exp1_iso").main(argv)


def test_user_cache_without_vgg_weights_stops_in_one_line(training_cache, tmp_path, capsys):
    assert _exp1_without_vgg_weights(training_cache, tmp_path) == 2
    prog = script("exp1_iso").build_parser().prog
    one_error_line(capsys.readouterr().err, [f"{prog}: error:", "missing.h5", "--content-loss mse"])
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_user_cache_without_vgg_weights_leaves_nothing_behind(training_cache, tmp_path):
    assert _exp1_without_vgg_weights(training_cache, tmp_path) == 2
    assert not (tmp_path / "run").exists()


def test_exp3_scores_an_exp2_export_on_the_sample(exp2_run, sample_root, tmp_path, monkeypatch,
                                                  capsys):
    small_sample(monkeypatch)
    out = tmp_path / "exp3"
    argv = ["--sample-root", str(sample_root), "--sample-patients", "2", "--preset", "quick",
            "--hr-size", "32", "--patch-size", "32", "--scale", "4",
            "--model", str(exp2_run / "export"), "--max-planes", "4", "--output", str(out)]
    assert exp3.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for method in ("sr", "bicubic"):
        assert_scores(metrics[method])
    assert metrics["protocol"]
    report = (out / "report.md").read_text()
    assert "Experiment 3" in report and str(exp2_run / "export") in report
    assert "Run directory" in capsys.readouterr().out


def test_exp3_on_the_users_cache_makes_figures_only(exp2_run, training_cache, tmp_path):
    out = tmp_path / "exp3"
    argv = ["--cache", str(training_cache), "--preset", "quick", "--hr-size", "32",
            "--patch-size", "32", "--scale", "4", "--model", str(exp2_run / "export"),
            "--max-planes", "2", "--output", str(out)]
    assert exp3.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["qualitative_only"] is True and metrics["figures"]
    assert all(Path(figure).is_file() for figure in metrics["figures"])
    assert (out / "report.md").is_file()


def _head(shape=(32, 32, 32), seed=0):
    """An isotropic 1 mm 'head': a smooth blob in air, as NIfTI input to generalise_real."""
    from srgan_tf.io.volume import Volume

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt((grid**2).sum(0))
    texture = tf.image.resize(rng.uniform(0, 1, (shape[0], 4, 4, 1)), shape[1:]).numpy()[..., 0]
    array = np.where(radius < 0.8, 400 + 400 * texture, 0.0).astype(np.float32)
    return Volume(array, (1.0, 1.0, 1.0), patient_id=f"H{seed}", series_description="t1")


def test_generalise_real_trains_on_some_volumes_and_scores_another(tmp_path, capsys):
    from srgan_tf.io.nifti import write_nifti

    paths = [write_nifti(_head(seed=seed), tmp_path / f"head{seed}.nii.gz") for seed in range(3)]
    work = tmp_path / "work"
    argv = ["--train", str(paths[0]), str(paths[1]), "--test", str(paths[2]), "--work", str(work),
            *TINY, "--adversarial-epochs", "0"]
    assert script("generalise_real").main(argv) in (0, None)
    results = json.loads((work / "generalisation.json").read_text())
    assert list(results) == ["test0-box"]
    scores = results["test0-box"]
    assert set(scores) == {"bicubic", "sr"}
    for method in scores.values():
        assert all(math.isfinite(method[name]) for name in ("psnr", "ssim", "hfen", "stripe_pct"))
    assert (work / "test0-box_window0-20.png").is_file()
    assert json.loads((work / "run" / "config.json").read_text())["loss"]["content_loss"] == "mse"
    assert "Trained on 2 volume(s), tested on 1 other(s)" in capsys.readouterr().out


def test_resume_with_other_settings_keeps_the_runs_config(exp2_run, training_cache, tmp_path):
    from srgan_tf.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(exp2_run, run_dir)
    saved = (run_dir / "config.json").read_text()
    assert json.loads(saved)["data"]["degradation"] == "bicubic"  # Table 1's Exp. 2 protocol
    argv = ["train", "--mode", "aniso", "--cache", str(training_cache), *TINY,
            "--content-loss", "mse", "--output", str(run_dir), "--resume", "--no-evaluate"]
    code = main(argv)  # refusing (2) or continuing with the run's own settings (0): both fine
    assert code in (0, 2)

    def settings(text):  # the copied run lives elsewhere: its output_dir may follow it
        return {**json.loads(text), "output_dir": None}

    assert settings((run_dir / "config.json").read_text()) == settings(saved)
    metadata = json.loads((run_dir / "export" / "metadata.json").read_text())
    assert metadata["config"]["data"]["degradation"] == "bicubic"


def test_resume_refuses_a_flag_that_changes_what_the_run_learned(exp2_run, training_cache,
                                                                 tmp_path, capsys):
    from srgan_tf.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(exp2_run, run_dir)
    saved = (run_dir / "config.json").read_text()
    argv = ["train", "--output", str(run_dir), "--resume", "--no-evaluate"]
    assert main([*argv, "--degradation", "slice-profile", "--scale", "8"]) == 2
    error = capsys.readouterr().err
    assert "--degradation slice-profile (the run's: bicubic)" in error and "--scale 8" in error
    assert (run_dir / "config.json").read_text() == saved  # refused before anything is written


def test_infer_reads_the_mode_from_the_exp2_export(exp2_run, tmp_path, capsys):
    from srgan_tf.cli import main
    from srgan_tf.io.nifti import read_nifti, write_nifti
    from srgan_tf.io.volume import Volume

    rng = np.random.default_rng(2)
    coarse = rng.uniform(100, 1000, (6, 4, 4, 1)).astype(np.float32)
    thick = Volume(tf.image.resize(coarse, (32, 32)).numpy()[..., 0], (3.0, 0.5, 0.5),
                   patient_id="T1", series_description="t2_tse_tra")
    source = write_nifti(thick, tmp_path / "thick.nii.gz")
    output = tmp_path / "sr.nii.gz"
    assert main(["infer", "--model", str(exp2_run / "export"), "--input", str(source),
                 "--output", str(output)]) == 0  # no --mode: the export says aniso
    assert "mode: through-plane" in capsys.readouterr().out
    sr = read_nifti(output)  # x4 along the slices, the slice plane untouched
    assert sr.shape == (24, 32, 32)
    np.testing.assert_allclose(sr.spacing, (0.75, 0.5, 0.5), rtol=1e-5)
    assert np.isfinite(sr.array).all()
