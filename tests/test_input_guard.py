"""Inputs are sacred: every command refuses, in one line with exit 2 and before any work, an
output that is an input, lies inside an input folder, or would replace a file it reads
(`srgan_tf.io.paths_guard`). Each case checks the input is byte-for-byte intact after."""
import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from srgan_tf.cli import main
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.paths_guard import refuse_overwriting_inputs
from srgan_tf.io.volume import Volume

ROOT = Path(__file__).resolve().parents[1]


def _volume(shape=(4, 32, 32)):
    array = (500 + 400 * np.random.default_rng(0).random(shape)).astype(np.float32)
    return Volume(array, (3.0, 0.5, 0.5), patient_id="P1", series_description="t2_tse_tra")


def _digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def _dicom_series(folder: Path) -> Path:
    from srgan_tf.io.dicom_write import write_dicom_series

    write_dicom_series(_volume(), folder, series_description="t2_tse_tra", derived=False)
    return folder


def _refused(argv, capsys, words, kept):
    """Runs the CLI; asserts exit 2, one error line holding `words`, `kept` paths unchanged."""
    before = {path: _digest(path) for path in kept}
    try:
        code = main([str(a) for a in argv])
    except SystemExit as error:
        code = error.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error:" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in errors[0], (word, errors[0])
    assert {path: _digest(path) for path in kept} == before


# --- the rule itself -------------------------------------------------------------------------

def test_rule_same_file_symlink_hard_link_and_twin(tmp_path):
    source = write_nifti(_volume(), tmp_path / "in.nii.gz")
    (tmp_path / "link.nii.gz").symlink_to(source)
    os.link(source, tmp_path / "hard.nii.gz")
    for output, words in ((source, "is the input"), (tmp_path / "link.nii.gz", "is the input"),
                          (tmp_path / "hard.nii.gz", "is the input"),
                          (tmp_path / "sub" / ".." / "in.nii.gz", "is the input"),
                          (tmp_path / "in.nii", "NIfTI twin")):
        with pytest.raises(InputError, match=words):
            refuse_overwriting_inputs([source], {"--output": output})
    refuse_overwriting_inputs([source], {"--output": tmp_path / "sr.nii.gz", "--x": None})


def test_rule_folders_and_outputs_that_do_not_exist_yet(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    (tmp_path / "alias").symlink_to(series)
    with pytest.raises(InputError, match="--output lies inside the input folder"):
        refuse_overwriting_inputs([series], {"--output": tmp_path / "alias" / "new" / "sr.nii.gz"})
    with pytest.raises(InputError, match="replaced as a whole and holds the input"):
        refuse_overwriting_inputs([series / "a.dcm"], {"--output": tmp_path}, replaced=["--output"])
    refuse_overwriting_inputs([series / "a.dcm"], {"--output": tmp_path})  # written into: fine
    refuse_overwriting_inputs([series], {"--output": tmp_path / "series_sr" / "x.nii.gz"})


# --- one case per command --------------------------------------------------------------------

def test_infer_refuses_its_input_as_output_and_dicom_output_in_the_series(tmp_path, capsys):
    source = write_nifti(_volume(), tmp_path / "in.nii.gz")
    series = _dicom_series(tmp_path / "series")
    infer = ["infer", "--model", tmp_path / "no_model"]
    _refused(infer + ["--input", source, "--output", source], capsys,
             ["in.nii.gz", "--output is the input"], [source])
    _refused(infer + ["--input", series, "--output", tmp_path / "sr.nii.gz", "--dicom-output",
                      series / "sr"], capsys, ["--dicom-output lies inside the input folder"],
             [series])
    _refused(infer + ["--input", series, "--output", series / "sr.nii.gz"], capsys,
             ["--output lies inside the input folder"], [series])
    assert not (tmp_path / "sr.nii.gz").exists() and not (series / "sr").exists()


def test_self_supervised_refuses_output_work_dir_and_dicom_output_over_inputs(tmp_path, capsys):
    source = write_nifti(_volume(), tmp_path / "in.nii.gz")
    series = _dicom_series(tmp_path / "series")
    profile = tmp_path / "profile.npy"
    np.save(profile, np.ones(3))
    command = ["self-supervised", "--input"]
    _refused(command + [source, "--output", source], capsys, ["--output is the input"], [source])
    _refused(command + [series, "--output", tmp_path / "sr.nii.gz", "--work-dir", series / "w"],
             capsys, ["--work-dir lies inside the input folder"], [series])
    _refused(command + [series, "--output", tmp_path / "sr.nii.gz", "--dicom-output",
                        series / "d"], capsys, ["--dicom-output lies inside"], [series])
    _refused(command + [source, "--output", tmp_path / "profile.npy.nii.gz", "--slice-profile",
                        profile, "--work-dir", profile], capsys, ["--work-dir is the input"],
             [profile])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz", "profile.npy", "series"]


def test_prepare_refuses_a_cache_inside_the_input_tree_or_over_the_input(tmp_path, capsys):
    series = _dicom_series(tmp_path / "tree" / "P1" / "series")
    source = write_nifti(_volume(), tmp_path / "in.nii.gz")
    _refused(["prepare", "--input", tmp_path / "tree", "--output", series / "cache.h5"], capsys,
             ["--output lies inside the input folder"], [tmp_path / "tree"])
    _refused(["prepare", "--input", source, "--output", source], capsys,
             ["--output is the input"], [source])


def test_train_refuses_its_cache_as_the_run_directory(tmp_path, capsys, training_cache):
    _refused(["train", "--cache", training_cache, "--output", training_cache], capsys,
             ["--output is the input"], [training_cache])


def test_export_refuses_to_replace_the_run_it_reads(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoints" / "checkpoint").write_text("model_checkpoint_path: 'ckpt-1'\n")
    _refused(["export", "--run", run, "--output", run], capsys,
             ["replaced as a whole and holds the input"], [run])
    _refused(["export", "--run", run, "--output", run / "checkpoints" / "export"], capsys,
             ["lies inside the input folder"], [run])


def test_evaluate_refuses_an_output_inside_the_model(tmp_path, capsys, training_cache):
    model = tmp_path / "export"
    model.mkdir()
    (model / "metadata.json").write_text("{}")
    _refused(["evaluate", "--model", model, "--cache", training_cache, "--output",
              model / "eval"], capsys, ["--output lies inside the input folder"], [model])


def test_score_json_refuses_to_overwrite_a_scored_volume(tmp_path, capsys):
    truth = write_nifti(_volume(), tmp_path / "truth.nii.gz")
    _refused(["score", "--truth", truth, "--input", truth, "--json", truth], capsys,
             ["--json is the input"], [truth])


def test_sample_refuses_a_folder_holding_data_it_did_not_write(tmp_path, capsys):
    _dicom_series(tmp_path / "study" / "dicom" / "P1")
    _refused(["sample", "--output", tmp_path / "study", "--patients", "2"], capsys,
             ["dicom", "did not write"], [tmp_path / "study"])


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiment_scripts_refuse_outputs_over_their_inputs(tmp_path, capsys, training_cache):
    hr = tmp_path / "hr"
    hr.mkdir()
    write_nifti(_volume(), hr / "P1.nii.gz")
    cases = (("exp2_aniso", ["--cache", training_cache, "--output", training_cache],
              "--output is the input"),
             ("exp3_throughplane", ["--cache", training_cache, "--hr-dir", hr, "--output",
                                    hr / "run"], "--output lies inside the input folder"),
             ("reproduce_table1", ["--cache", training_cache, "--output", training_cache],
              "--output is the input"))
    for name, argv, words in cases:
        assert _script(name).main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert words in err.strip().splitlines()[-1] and "Traceback" not in err, err
    with pytest.raises(InputError, match="--work is the input"):
        _script("generalise_real").main(["--split", str(hr / "P1.nii.gz"), "--work",
                                         str(hr / "P1.nii.gz")])
    assert sorted(p.name for p in hr.iterdir()) == ["P1.nii.gz"]
