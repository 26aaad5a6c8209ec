"""Bad input to the entry points: one line `<prog>: error: ...` naming the flag or file, exit 2,
no traceback, nothing left behind; Ctrl-C: one line, exit 130.

The CLI and the experiment scripts are called in-process (`main([...])`); the few subprocess
cases check what only a fresh interpreter can show (no TensorFlow import for --help, the real
`sys.exit` wiring).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from srgan_tf import config as config_lib
from srgan_tf.cli import main
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.volume import Volume
from srgan_tf.presets import PRESETS, preset

ROOT = Path(__file__).resolve().parents[1]


def _volume(shape=(4, 32, 32), patient="P1"):
    rng = np.random.default_rng(0)
    array = (500 + 400 * rng.random(shape)).astype(np.float32)
    array[:, :4] = 0.0  # a background band: the input's minimum is 0
    return Volume(array, (3.0, 0.5, 0.5), patient_id=patient, series_description="t2_tse_tra")


def _one_patient_cache(folder: Path) -> Path:
    from srgan_tf.data.slice_cache.prepare import build_cache

    source = write_nifti(_volume(), folder / "inputs" / "P1.nii.gz")
    build_cache(source, folder / "one.h5", progress=False)  # 1 patient: 0 test patients
    return folder / "one.h5"


def _fake_run(folder: Path) -> Path:
    run = folder / "existing_run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint").write_text("model_checkpoint_path: 'ckpt-1'\n")
    return run


def _cases():
    """name -> (argv builder(tmp folder), words the one error line must contain)."""
    infer = ["infer", "--model", "no_model", "--input", "in.nii.gz"]
    return {
        "infer output not writable": (lambda d: infer + ["--output", "/sys/sr.nii.gz"],
                                      ["/sys/sr.nii.gz", "cannot be written"]),
        "infer output parent is a file": (lambda d: infer + ["--output", "afile/sr.nii.gz"],
                                          ["afile", "is a file"]),
        "infer dicom output parent is a file": (
            lambda d: infer + ["--output", "sr.nii.gz", "--dicom-output", "afile/dcm"],
            ["afile", "is a file"]),
        "infer batch size 0": (lambda d: infer + ["--output", "sr.nii.gz", "--batch-size", "0"],
                               ["--batch-size", ">= 1", "Received: 0"]),
        "infer batch size -1": (lambda d: infer + ["--output", "sr.nii.gz", "--batch-size", "-1"],
                                ["--batch-size", ">= 1"]),
        "infer precision": (lambda d: infer + ["--output", "sr.nii.gz", "--precision", "fp8"],
                            ["--precision", "float32", "bfloat16"]),
        "prepare test fraction 1.5": (
            lambda d: ["prepare", "--input", "x", "--output", "c.h5", "--test-fraction", "1.5"],
            ["--test-fraction", "[0, 1)"]),
        "prepare test fraction -0.1": (
            lambda d: ["prepare", "--input", "x", "--output", "c.h5", "--test-fraction", "-0.1"],
            ["--test-fraction", "[0, 1)"]),
        "sample patients 1": (lambda d: ["sample", "--output", "s", "--patients", "1"],
                              ["--patients", ">= 2"]),
        "train batch size 0": (lambda d: ["train", "--batch-size", "0"], ["--batch-size", ">= 1"]),
        "train batch size -2": (lambda d: ["train", "--batch-size", "-2"], ["--batch-size"]),
        "train patch size 50": (lambda d: ["train", "--patch-size", "50"],
                                ["--patch-size", "divisible by --scale", "50"]),
        "train patch size 8": (lambda d: ["train", "--patch-size", "8"], ["--patch-size", ">= 16"]),
        "train precision": (lambda d: ["train", "--precision", "fp8"],
                            ["--precision", "mixed_bfloat16"]),
        "train content loss": (lambda d: ["train", "--content-loss", "vgg33"],
                               ["--content-loss", "vgg54"]),
        "train strategy": (lambda d: ["train", "--strategy", "tpu"], ["--strategy", "mirrored"]),
        "train pretrain epochs -1": (lambda d: ["train", "--pretrain-epochs", "-1"],
                                     ["--pretrain-epochs", ">= 0"]),
        "train adversarial epochs -3": (lambda d: ["train", "--adversarial-epochs", "-3"],
                                        ["--adversarial-epochs", ">= 0"]),
        "train no epochs": (lambda d: ["train", "--pretrain-epochs", "0", "--adversarial-epochs", "0"],
                            ["--pretrain-epochs", "--adversarial-epochs"]),
        "train learning rate -1": (lambda d: ["train", "--learning-rate", "-1"],
                                   ["--learning-rate", "in (0, 1)"]),
        "train learning rate nan": (lambda d: ["train", "--learning-rate", "nan"],
                                    ["--learning-rate"]),
        "train steps per epoch 0": (lambda d: ["train", "--steps-per-epoch", "0"],
                                    ["--steps-per-epoch", ">= 1"]),
        "train ema decay 1": (lambda d: ["train", "--ema-decay", "1"], ["--ema-decay", "[0, 1)"]),
        "train missing cache": (lambda d: ["train", "--cache", "missing.h5"],
                                ["missing.h5", "not found"]),
        "train existing run": (lambda d: ["train", "--output", str(_fake_run(d))],
                               ["existing_run", "--resume"]),
        "train no test patients": (lambda d: ["train", "--cache", str(_one_patient_cache(d))],
                                   ["one.h5", "'test'", "0 test", "--no-evaluate"]),
        "evaluate no test patients": (
            lambda d: ["evaluate", "--model", "no_model", "--cache", str(_one_patient_cache(d))],
            ["one.h5", "'test'", "--split train"]),
        "evaluate missing cache": (lambda d: ["evaluate", "--model", "m", "--cache", "missing.h5"],
                                   ["missing.h5"]),
    }


def _assert_one_line_error(stderr: str, prog: str, words):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    errors = [line for line in lines if f"{prog}: error:" in line]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    for word in words:
        assert word in errors[0], (word, errors[0])


@pytest.mark.parametrize("case", list(_cases()))
def test_cli_bad_input_is_one_line_exit_2(case, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "afile").write_text("a file, not a folder")
    build, words = _cases()[case]
    argv = build(tmp_path)  # fixtures (caches, runs) live outside the working folder
    before = sorted(os.listdir(work))
    try:
        code = main(argv)
    except SystemExit as error:  # argparse: parse-time errors
        code = error.code
    assert code == 2
    command = argv[0]
    _assert_one_line_error(capsys.readouterr().err, f"srgan-tf {command}", words)
    assert sorted(os.listdir(work)) == before  # nothing left behind (no runs/, no partials)


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["exp1_iso", "exp2_aniso", "exp3_throughplane"])
def test_experiment_scripts_give_the_cli_messages(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    script = _script(name)
    assert script.main(["--cache", "missing.h5"]) == 2
    _assert_one_line_error(capsys.readouterr().err, script.build_parser().prog,
                           ["missing.h5", "not found"])
    run = _fake_run(tmp_path)
    if name != "exp3_throughplane":  # Exp. 3 puts its Exp. 2 run below --output
        assert script.main(["--output", str(run)]) == 2
        _assert_one_line_error(capsys.readouterr().err, script.build_parser().prog,
                               ["existing_run", "--resume"])
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "argument --batch-size: must be an integer >= 1" in capsys.readouterr().err


def test_ctrl_c_in_an_experiment_script_is_one_line_exit_130(tmp_path, monkeypatch, capsys):
    script = _script("exp2_aniso")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("srgan_tf.experiment.run_experiment", interrupted)  # the scripts' shared main
    assert script.main(["--output", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith(": interrupted")


def test_script_exit_status_and_help_without_tensorflow(tmp_path):
    """A fresh interpreter: the real exit status, and --help of every entry point answers
    without importing TensorFlow."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    probe = (
        "import runpy, sys\n"
        "for argv in ([{exp3!r}, '--help'], [{table1!r}, '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        runpy.run_path(argv[0], run_name='__main__')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "from srgan_tf.cli import build_parser\n"
        "for command in ('train', 'infer', 'evaluate'):\n"
        "    try:\n"
        "        build_parser().parse_args([command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('TENSORFLOW', 'tensorflow' in sys.modules)\n"
    ).format(exp3=str(ROOT / "experiments" / "exp3_throughplane.py"),
             table1=str(ROOT / "experiments" / "reproduce_table1.py"))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert "TENSORFLOW False" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--content-loss {vgg54,vgg22,mse}" in done.stdout
    assert "--content-loss-note" not in done.stdout

    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "exp2_aniso.py"),
                           "--cache", "missing.h5"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    _assert_one_line_error(done.stderr, "exp2_aniso.py", ["missing.h5"])
    assert "cuInit" not in done.stderr and "I0000" not in done.stderr
    assert os.listdir(tmp_path) == []


def test_exp3_refuses_a_scale_or_a_model_that_contradicts_the_experiment(tmp_path, monkeypatch,
                                                                         capsys):
    from srgan_tf import exp3
    from srgan_tf.config import GeneratorSpec
    from srgan_tf.inference.export import export_generator
    from srgan_tf.models.generator import generator_from_spec

    monkeypatch.chdir(tmp_path)
    exports = {}
    for name, scale_hw in (("aniso", (2, 1)), ("iso", (2, 2))):
        spec = GeneratorSpec(scale_hw, num_residual_blocks=0, filters=4)
        exports[name] = export_generator(generator_from_spec(spec), tmp_path / name, spec=spec)
    prog = exp3.build_parser().prog
    for argv, words in ((["--model", str(exports["aniso"]), "--scale", "4"],
                         ["--scale 4", "contradicts", "x2"]),
                        (["--model", str(exports["iso"])], ["anisotropic", "iso"])):
        assert exp3.main([*argv, "--output", "run"]) == 2
        _assert_one_line_error(capsys.readouterr().err, prog, words)
    assert sorted(os.listdir(tmp_path)) == ["aniso", "iso"]  # refused before writing


def test_infer_clips_to_the_input_range_and_removes_stale_partials(tmp_path, capsys):
    import keras

    from srgan_tf import exp3
    from srgan_tf.config import GeneratorSpec
    from srgan_tf.inference.export import export_generator
    from srgan_tf.io.nifti import read_nifti
    from srgan_tf.models.generator import generator_from_spec

    keras.utils.set_random_seed(1)
    spec = GeneratorSpec((2, 1), num_residual_blocks=2, filters=8)
    export = export_generator(generator_from_spec(spec), tmp_path / "export", {}, spec=spec)
    source = write_nifti(_volume(), tmp_path / "in.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".sr.nii.gz.partial-999999999", out / ".sr.partial-999999998.nii.gz"]
    for path in stale:
        path.write_bytes(b"killed")
    stale_dicom = out / ".sr_dicom.partial-999999997-0a1b2c3d"
    (stale_dicom).mkdir()
    (stale_dicom / "0001.dcm").write_bytes(b"killed")
    live = out / f".sr.nii.gz.partial-{os.getppid()}"  # a running process: left alone
    live.write_bytes(b"in progress")
    argv = ["infer", "--model", str(export), "--input", str(source),
            "--output", str(out / "sr.nii.gz"), "--dicom-output", str(out / "sr_dicom"),
            "--precision", "float32"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "clipped: to the input range [0, " in printed.out
    assert all(not path.exists() for path in stale + [stale_dicom]) and live.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, "sr.nii.gz", "sr_dicom"])
    result = read_nifti(out / "sr.nii.gz").array
    assert result.min() >= 0.0 and result.max() <= _volume().array.max() + 1e-3

    raw_argv = ["infer", "--model", str(export), "--input", str(source), "--output",
                str(tmp_path / "raw.nii"), "--no-clip"]
    assert main(raw_argv) == 0
    assert "clipped: off" in capsys.readouterr().out


def test_startup_noise_filter_keeps_real_messages():
    from srgan_tf.runtime import STARTUP_NOISE

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796005962.810506    7137 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1796005968.340602    7137 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    ]
    kept = ["<string>:6: UserWarning: a real warning",
            "E0000 00:00:1796005968.340602    7137 some_op.cc:52] a real error",
            "W0000 00:00:1796005968.340602    7137 other.cc:1] a real warning"]
    assert all(STARTUP_NOISE.match(line) for line in noise)
    assert not any(STARTUP_NOISE.match(line) for line in kept)


def test_one_home_for_names_and_ranges():
    from srgan_tf.data.degradation.slice_profile import NAMED_SHAPES
    from srgan_tf.inference.volume_sr import MODES

    assert sorted(NAMED_SHAPES) == sorted(config_lib.SLICE_PROFILES)
    assert MODES == config_lib.INFERENCE_MODES
    fields = {f.name for cls in (config_lib.DataConfig, config_lib.ModelConfig,
                                 config_lib.LossConfig, config_lib.TrainConfig)
              for f in config_lib.dataclasses.fields(cls)}
    assert set(config_lib.RANGES) <= fields
    for name in PRESETS:
        preset(name)  # every preset satisfies its own ranges


def test_report_says_when_the_data_is_the_synthetic_phantom(tmp_path):
    from srgan_tf.evaluation.report import write_report

    sample = tmp_path / "sample"
    sample.mkdir()
    (sample / "sample.json").write_text("{}")
    entry = {"psnr": 30.0, "ssim": 0.8, "hfen": 0.3, "gmsd": 0.1, "edge_f1": 0.9,
             "patients": 2, "slices": 10}
    metrics = {"sr": entry, "bicubic": entry, "protocol": {"cache": str(sample / "cache.h5")}}
    config = {"data": {"mode": "aniso", "scale": 4}}
    text = write_report(tmp_path / "a", "t", metrics, config).read_text()
    assert "synthetic phantom" in text and "ours are on the synthetic phantom" in text
    metrics["protocol"]["cache"] = str(tmp_path / "user.h5")
    assert "phantom" not in write_report(tmp_path / "b", "t", metrics, config).read_text()
