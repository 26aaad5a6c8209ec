"""Refuse what cannot be meant, before any work, and say what is unusual: volumes with no
signal or non-finite voxels (one rule for `prepare`, `infer`, `self-supervised`), flag values
that parse but cannot be meant, and warnings printed as the command's own lines."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from srgan_tf.cli import main
from srgan_tf.data.usable_volume import little_signal, unusable_reason
from srgan_tf.flag_checks import config_warnings
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.volume import Volume
from srgan_tf.presets import preset

ROOT = Path(__file__).resolve().parents[1]


def _volume(array, spacing=(3.0, 0.5, 0.5), patient="P1"):
    return Volume(np.asarray(array, np.float32), spacing, patient_id=patient,
                  series_description="t2_tse_tra")


def _tissue(shape=(6, 32, 32)):
    return (500 + 400 * np.random.default_rng(0).random(shape)).astype(np.float32)


def _holes(shape=(6, 32, 32)):
    array = _tissue(shape)
    array[0, 0, :3] = np.nan
    array[1, 2, 2] = np.inf
    return array


HOLES = "4 of 6144 voxels are not finite (3 NaN, 1 infinite)"


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as error:
        code = error.code
    return code, capsys.readouterr()


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    import keras

    from srgan_tf.config import GeneratorSpec
    from srgan_tf.inference.export import export_generator
    from srgan_tf.models.generator import generator_from_spec

    keras.utils.set_random_seed(1)
    spec = GeneratorSpec((2, 1), num_residual_blocks=2, filters=8)
    return export_generator(generator_from_spec(spec), tmp_path_factory.mktemp("m") / "export",
                            {}, spec=spec)


def test_unusable_and_sparse_volumes():
    sparse = np.zeros((4, 32, 32), np.float32)
    sparse[0, 0, :5] = 3.0
    assert unusable_reason(np.zeros((4, 8, 8))) == "holds no signal: every voxel is 0"
    assert unusable_reason(np.full((4, 8, 8), 7.0)) == "holds no signal: every voxel is 7"
    assert "only 5 lie above it" in unusable_reason(sparse)
    assert unusable_reason(_holes()).startswith(HOLES)
    assert unusable_reason(_tissue()) is None and little_signal(_tissue()) is None
    band = np.zeros((4, 32, 32), np.float32)
    band[:, :1] = 5.0  # 3% of the voxels: used, with a warning
    assert unusable_reason(band) is None and "(3.12%) lie above" in little_signal(band)


def test_prepare_skips_series_without_signal_or_with_non_finite_voxels(tmp_path, capsys):
    folder = tmp_path / "nifti"
    write_nifti(_volume(_tissue(), patient="ok"), folder / "ok.nii.gz")
    write_nifti(_volume(np.zeros((6, 32, 32))), folder / "zeros.nii.gz")
    write_nifti(_volume(_holes()), folder / "holes.nii.gz")
    code, printed = _run(["prepare", "--input", folder, "--output", tmp_path / "c.h5"], capsys)
    assert code == 0
    assert "Wrote 1 series" in printed.out
    assert "zeros.nii.gz: holds no signal: every voxel is 0" in printed.out
    assert f"holes.nii.gz: {HOLES}" in printed.out
    # the summary's warnings are the command's own lines, on stderr
    assert "srgan-tf prepare: warning: no test patients (only 1 patient)" in printed.err
    assert "Warning:" not in printed.out


@pytest.mark.parametrize("case", ["zeros", "holes"])
def test_self_supervised_refuses_before_training(tmp_path, capsys, case):
    array = np.zeros((6, 32, 32)) if case == "zeros" else _holes()
    source = write_nifti(_volume(array), tmp_path / "in.nii.gz")
    code, printed = _run(["self-supervised", "--input", source, "--output",
                          tmp_path / "sr.nii.gz"], capsys)
    words = "holds no signal: every voxel is 0" if case == "zeros" else HOLES
    assert code == 2 and f"srgan-tf self-supervised: error: {source}: {words}" in printed.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]  # no work dir


def test_infer_applies_the_same_rule_and_warns_on_little_signal(tmp_path, capsys, export):
    infer = ["infer", "--model", export, "--precision", "float32", "--input"]
    for name, array, words in (("zeros", np.zeros((6, 32, 32)), "holds no signal"),
                               ("holes", _holes(), HOLES)):
        source = write_nifti(_volume(array), tmp_path / f"{name}.nii.gz")
        code, printed = _run(infer + [source, "--output", tmp_path / f"{name}_sr.nii.gz"], capsys)
        assert code == 2 and f"srgan-tf infer: error: {source}: {words}" in printed.err
        assert not (tmp_path / f"{name}_sr.nii.gz").exists()
    band = np.zeros((6, 32, 32), np.float32)
    band[:, :1] = 500.0
    source = write_nifti(_volume(band), tmp_path / "band.nii.gz")
    code, printed = _run(infer + [source, "--output", tmp_path / "band_sr.nii.gz"], capsys)
    assert code == 0
    assert f"srgan-tf infer: warning: {source}: only 192 of 6144 voxels" in printed.err


def test_score_refuses_non_finite_voxels_with_their_count(tmp_path, capsys):
    truth = write_nifti(_volume(_tissue()), tmp_path / "truth.nii.gz")
    holes = write_nifti(_volume(_holes()), tmp_path / "sr.nii.gz")
    code, printed = _run(["score", "--truth", truth, "--input", holes], capsys)
    assert code == 2 and f"srgan-tf score: error: {holes}: {HOLES}" in printed.err


@pytest.mark.parametrize("argv, words", [
    (["train", "--seed", "-1"], "--seed: must be an integer in [0, 4294967295]"),
    (["train", "--learning-rate", "1"], "--learning-rate: must be a number in (0, 1)"),
    (["train", "--slice-thickness-ratio", "4"], "--slice-thickness-ratio: must be a number in (0, 3]"),
    (["prepare", "--input", "x", "--output", "y", "--seed", "-1"], "--seed: must be an integer"),
    (["sample", "--output", "x", "--seed", "4294967296"], "--seed: must be an integer"),
    (["self-supervised", "--input", "x", "--output", "y.nii.gz", "--seed", "-5"],
     "--seed: must be an integer"),
])
def test_numbers_that_cannot_be_meant_are_refused_at_parse_time(argv, words, capsys):
    code, printed = _run(argv, capsys)
    assert code == 2 and words in printed.err


@pytest.mark.parametrize("argv, words", [
    (["self-supervised", "--steps", "5", "--epochs", "10"],
     ["--epochs 10 exceeds --steps 5", "--steps 5: the model barely trains"]),
    (["self-supervised", "--steps", "700", "--epochs", "6"],
     ["--steps 700 is not a multiple of --epochs 6: training runs 6 epochs of 116 steps (696"]),
    (["prepare", "--test-fraction", "0.8"], ["--test-fraction 0.8 holds out more patients"]),
])
def test_unusual_flags_warn_in_the_commands_own_lines(argv, words, tmp_path, capsys):
    io = ["--input", tmp_path / "missing.nii.gz", "--output", tmp_path / "o.nii.gz"]
    code, printed = _run(argv[:1] + io + argv[1:], capsys)
    assert code == 2  # the missing input still stops it, after the warnings
    warnings = [line for line in printed.err.splitlines() if ": warning: " in line]
    assert len(warnings) == len(words)
    for line, word in zip(warnings, words):
        assert line.startswith(f"srgan-tf {argv[0]}: warning: {word}"), line


def test_training_configs_that_are_unusual_warn():
    config = preset("quick")
    assert config_warnings(config) == []
    config = config.updated(train={"learning_rate": 0.05}, loss={"adversarial_weight": 0.5})
    assert [m.split(" is above")[0] for m in config_warnings(config)] == [
        "--learning-rate 0.05", "--adversarial-weight 0.5"]


def test_warnings_survive_pythonwarnings_ignore(tmp_path):
    """A filter on Python's `warnings` cannot swallow them: they are the CLI's own lines."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "srgan_tf.cli", "self-supervised", "--input",
         str(tmp_path / "missing.nii.gz"), "--output", str(tmp_path / "o.nii.gz"), "--steps", "5",
         "--epochs", "1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert lines[0].startswith("srgan-tf self-supervised: warning: --steps 5: the model barely")
    assert lines[-1].startswith("srgan-tf self-supervised: error:")
