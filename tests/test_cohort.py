"""A folder of volumes in, a folder out: discovery, skips, cohort.csv, protocols sharing a
model, re-runs, SIGKILL then re-run, two parts at once, `infer` on a folder."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from srgan_tf.cohort.parts import Part, resolve_part, share
from srgan_tf.cohort.protocols import Decision, group_protocols
from srgan_tf.io.discover import discover_volumes
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.volume import Volume

REPO = Path(__file__).resolve().parents[1]
FAST = ["--slice-profile", "box", "--steps", "2", "--epochs", "1"]
# --threads only in subprocesses: in this process it would cap the pools of later tests too
SUBPROCESS = [*FAST, "--threads", "1"]


def _volume(spacing=(3.0, 1.0, 1.0), shape=(8, 40, 32), seed=1):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), (0.6, 2.0, 2.0))
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    head = (grid[0] ** 2 * 0.5 + grid[1] ** 2 + grid[2] ** 2) < 0.7
    array = np.where(head, 500 + 2000 * field, 0).clip(0, None).astype(np.float32)
    return Volume(array, spacing=spacing, origin=(10.0, -20.0, 5.0), patient_id=f"P{seed}",
                  series_description="t2_tse_tra")


def _cohort(root: Path, bad: bool = True, other_protocol: bool = True) -> Path:
    """p1, p2 and a DICOM series of one protocol (x3 box), p3 of another (x2); with `bad`,
    an isotropic, a NaN and a single-slice volume, a corrupt DICOM file and a text file."""
    from srgan_tf.io.dicom_write import write_dicom_series

    write_nifti(_volume(seed=1), root / "site1" / "p1.nii.gz")
    write_nifti(_volume(seed=2), root / "site1" / "p2.nii.gz")
    if other_protocol:
        write_nifti(_volume((2.0, 1.0, 1.0), seed=3), root / "site2" / "p3.nii.gz")
    write_dicom_series(_volume(seed=4), root / "dicom" / "p4" / "t2", series_description="t2_tse_tra")
    if bad:
        write_nifti(_volume((1.0, 1.0, 1.0), seed=5), root / "bad" / "iso.nii.gz")
        nan = _volume(seed=6)
        nan.array[2, 10, 10] = np.nan
        write_nifti(nan, root / "bad" / "nan.nii.gz")
        write_nifti(_volume(shape=(1, 40, 32), seed=7), root / "bad" / "single.nii.gz")
        (root / "bad" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
        (root / "notes.txt").write_text("not an image")
    return root


def _rows(path: Path):
    with open(path) as stream:
        return {Path(row["input"]).name if row["input"].endswith(".gz") else row["input"]: row
                for row in csv.DictReader(stream)}


def test_discovery_finds_nifti_files_and_dicom_series_and_names_mirrored_outputs(tmp_path):
    root = _cohort(tmp_path / "in")
    volumes, problems = discover_volumes(root)
    assert [v.key for v in volumes] == ["bad/iso", "bad/nan", "bad/single", "dicom/p4/t2",
                                        "site1/p1", "site1/p2", "site2/p3"]
    assert {v.kind for v in volumes if v.key.startswith("dicom")} == {"dicom"}
    assert len(volumes[3].headers) == 8 and volumes[3].read().shape == (8, 40, 32)
    # the text file is not DICOM at all (ignored); the corrupt DICOM file is a problem
    assert [Path(p.path).name for p in problems] == ["broken.dcm"]


def test_repeated_names_never_take_another_volumes_key(tmp_path):
    """T2w.nii and T2w.nii.gz share a name; the repeat must not become the key a real T2w_2.nii
    holds (two volumes writing one output)."""
    for name in ("T2w.nii", "T2w.nii.gz", "T2w_2.nii"):
        write_nifti(_volume(seed=1, shape=(4, 8, 8)), tmp_path / "a" / name)
    volumes, _ = discover_volumes(tmp_path)
    keys = {v.source.name: v.key for v in volumes}
    assert len(set(keys.values())) == 3
    assert keys["T2w_2.nii"] == "a/T2w_2" and {keys["T2w.nii"], keys["T2w.nii.gz"]} == {"a/T2w", "a/T2w_3"}


def test_parts_come_from_flags_slurm_or_kubernetes_and_split_disjointly():
    assert resolve_part(None, None, {}) == Part(0, 1, "one part")
    assert resolve_part(3, 2, {}).index == 2
    slurm = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert resolve_part(None, None, slurm)[:2] == (2, 4)
    assert resolve_part(5, None, {"JOB_COMPLETION_INDEX": "4"})[:2] == (4, 5)
    for bad in [(None, 1, {}), (2, None, {}), (2, 2, {}), (None, None, {"JOB_COMPLETION_INDEX": "0"})]:
        with pytest.raises(InputError):
            resolve_part(*bad)
    items = list(range(11))
    parts = [share(items, Part(k, 3, "")) for k in range(3)]
    assert sorted(sum(parts, [])) == items and sum(len(p) for p in parts) == len(items)


@pytest.mark.parametrize("command", ["train", "infer", "self-supervised", "evaluate", "prepare",
                                     "score"])
def test_every_computing_command_takes_threads(command, capsys):
    from srgan_tf.cli import build_parser

    parser = build_parser()
    required = {"infer": ["--model", "m", "--input", "i", "--output", "o.nii.gz"],
                "self-supervised": ["--input", "i", "--output", "o.nii.gz"],
                "evaluate": ["--model", "m", "--cache", "c"], "prepare": ["--input", "i", "--output", "o"],
                "score": ["--truth", "t", "--input", "i"]}.get(command, [])
    assert parser.parse_args([command, *required, "--threads", "3"]).threads == 3
    with pytest.raises(SystemExit):
        parser.parse_args([command, *required, "--threads", "0"])
    assert "--threads" in capsys.readouterr().err


def _decision(key, factor=4, width=3.0, shape="box"):
    return Decision(key, {"model_factor": factor, "slice_spacing": 3.0, "in_plane_spacing": [1.0, 1.0],
                          "factor": 3.0}, {"shape": shape, "fwhm_mm": width}, "", [0.0, 1.0],
                    {"steps": 2})


def test_protocols_group_by_factor_spacing_and_profile_within_its_uncertainty():
    groups = group_protocols([
        _decision("a"), _decision("b", width=3.1),  # within 5 % of a's width
        _decision("c", width=3.3),  # 10 % wider: another protocol
        _decision("e", shape="gaussian"),  # another shape
        _decision("d", factor=8)])
    assert [g.members for g in groups] == [["a", "b"], ["c"], ["d"], ["e"]]


def _main(*argv):
    from srgan_tf.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory):
    """The self-supervised cohort command run once on the mixed folder."""
    tmp = tmp_path_factory.mktemp("cohort")
    root = _cohort(tmp / "in")
    out = tmp / "out"
    code = _main("self-supervised", "--input", root, "--output", out, "--dicom-output",
                 tmp / "dicom_out", *FAST)
    return root, out, tmp, code


def test_self_supervised_on_a_folder_skips_bad_volumes_and_shares_protocol_models(cohort_run):
    root, out, tmp, code = cohort_run
    assert code == 0  # skips for input reasons only
    rows = _rows(out / "cohort.csv")
    assert {rows[n]["status"] for n in ("p1.nii.gz", "p2.nii.gz", "p3.nii.gz")} == {"done"}
    assert "isotropic" in rows["iso.nii.gz"]["reason"]
    assert "NaN" in rows["nan.nii.gz"]["reason"]
    assert "single slice" in rows["single.nii.gz"]["reason"]
    assert all(rows[n]["status"] == "skipped" for n in ("iso.nii.gz", "nan.nii.gz", "single.nii.gz"))
    broken = next(row for key, row in rows.items() if key.endswith("broken.dcm"))
    assert broken["status"] == "skipped"
    dicom = rows[str(root / "dicom" / "p4" / "t2")]
    assert dicom["status"] == "done" and dicom["output"] == str(out / "dicom" / "p4" / "t2.nii.gz")
    # outputs mirror the input tree, DICOM outputs too
    for key in ("site1/p1", "site1/p2", "site2/p3", "dicom/p4/t2"):
        assert (out / f"{key}.nii.gz").is_file()
        assert any((tmp / "dicom_out" / key).iterdir())
    # one model per protocol: p1, p2 and the DICOM series (x3 box 3 mm) share one, p3 has its own
    assert rows["p1.nii.gz"]["model"] == rows["p2.nii.gz"]["model"] == dicom["model"]
    assert rows["p3.nii.gz"]["model"] != rows["p1.nii.gz"]["model"]
    assert len(list((out / "srgan-tf-work" / "models").iterdir())) == 2
    assert rows["p1.nii.gz"]["factor"].startswith("3 (model x4)")


def test_a_re_run_is_a_no_op_for_finished_volumes(cohort_run, capsys):
    root, out, tmp, _ = cohort_run
    outputs = sorted(out.rglob("*.nii.gz"))
    stamps = [path.stat().st_mtime_ns for path in outputs]
    code = _main("self-supervised", "--input", root, "--output", out, "--dicom-output",
                 tmp / "dicom_out", *FAST)
    printed = capsys.readouterr().out
    assert code == 0 and printed.count("done earlier") == 4
    assert [path.stat().st_mtime_ns for path in outputs] == stamps


def test_a_deleted_output_is_redone_and_an_added_first_volume_joins_the_trained_model(cohort_run,
                                                                                      capsys):
    root, out, tmp, _ = cohort_run
    argv = ["self-supervised", "--input", root, "--output", out, "--dicom-output",
            tmp / "dicom_out", *FAST]
    (out / "site1" / "p1.nii.gz").unlink()  # its DICOM series, written by the earlier run, stays
    assert _main(*argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("done earlier") == 3 and (out / "site1" / "p1.nii.gz").is_file()
    assert any((tmp / "dicom_out" / "site1" / "p1").iterdir())
    models = sorted(p.name for p in (out / "srgan-tf-work" / "models").iterdir())
    p2 = (out / "site1" / "p2.nii.gz").stat().st_mtime_ns
    write_nifti(_volume(seed=8), root / "aaa" / "p0.nii.gz")  # sorts first: a new group seed
    assert _main(*argv) == 0
    rows = _rows(out / "cohort.csv")
    assert rows["p0.nii.gz"]["status"] == "done" and rows["p0.nii.gz"]["model"] == rows["p1.nii.gz"]["model"]
    assert sorted(p.name for p in (out / "srgan-tf-work" / "models").iterdir()) == models
    assert (out / "site1" / "p2.nii.gz").stat().st_mtime_ns == p2  # not redone
    assert "training on" not in capsys.readouterr().out


def test_a_wrong_shared_flag_stops_a_folder_run_and_an_output_problem_is_a_failure(cohort_run,
                                                                                  tmp_path, capsys):
    root, out, _, _ = cohort_run
    code = _main("self-supervised", "--input", root, "--output", tmp_path / "a",
                 "--slice-profile", tmp_path / "missing.npy")
    assert code == 2 and "--slice-profile" in capsys.readouterr().err
    assert not (tmp_path / "a" / "cohort.csv").exists()
    assert _main("infer", "--model", tmp_path / "no_export", "--input", root,
                 "--output", tmp_path / "b") == 2
    assert "no_export" in capsys.readouterr().err
    # an output place taken by something else: failed (exit 1), tried again on the next run
    export = next((out / "srgan-tf-work" / "models").glob("x4-*")) / "model" / "export"
    clean = _cohort(tmp_path / "in", bad=False, other_protocol=False)
    foreign = tmp_path / "dcm" / "site1" / "p1"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("someone else's")
    argv = ["infer", "--model", export, "--input", clean, "--output", tmp_path / "sr",
            "--dicom-output", tmp_path / "dcm"]
    assert _main(*argv) == 1
    rows = _rows(tmp_path / "sr" / "cohort.csv")
    assert rows["p1.nii.gz"]["status"] == "failed" and str(foreign) in rows["p1.nii.gz"]["reason"]
    assert rows["p2.nii.gz"]["status"] == "done"
    (foreign / "notes.txt").unlink()
    assert _main(*argv) == 0
    assert _rows(tmp_path / "sr" / "cohort.csv")["p1.nii.gz"]["status"] == "done"


def test_a_derivatives_folder_inside_the_study_is_allowed_and_never_read_as_input(cohort_run,
                                                                                    tmp_path, capsys):
    _, out, _, _ = cohort_run
    export = next((out / "srgan-tf-work" / "models").glob("x4-*")) / "model" / "export"
    root = _cohort(tmp_path / "study", bad=False, other_protocol=False)
    (root / "derivatives").mkdir()
    (root / "derivatives" / "dataset_description.json").write_text("{}")
    argv = ["infer", "--model", export, "--input", root, "--output", root / "derivatives" / "sr"]
    assert _main(*argv) == 0
    assert (root / "derivatives" / "sr" / "site1" / "p1.nii.gz").is_file()
    assert _main(*argv) == 0  # the outputs are not found as new volumes
    assert "Found 3 volumes" in capsys.readouterr().out
    # inside a folder of inputs (beside p1.nii.gz), or a DICOM series: refused
    assert _main("infer", "--model", export, "--input", root, "--output", root / "site1" / "sr") == 2
    assert _main("infer", "--model", export, "--input", root, "--output",
                 root / "dicom" / "p4" / "t2" / "sr") == 2
    assert "lies inside the input folder" in capsys.readouterr().err


def test_infer_on_a_folder_loads_the_model_once(cohort_run, tmp_path, monkeypatch):
    from srgan_tf.inference import infer

    _, out, _, _ = cohort_run
    root = _cohort(tmp_path / "in", bad=False)
    export = next((out / "srgan-tf-work" / "models").glob("x4-*")) / "model" / "export"
    loads = []
    original = infer.load_for_inference
    monkeypatch.setattr(infer, "load_for_inference", lambda *a: loads.append(a) or original(*a))
    real = infer.infer_volume

    def failing(model, mode, precision, volume, output_path, **kw):
        if "p2" in str(output_path):
            raise RuntimeError("disk on fire")
        return real(model, mode, precision, volume, output_path, **kw)

    monkeypatch.setattr(infer, "infer_volume", failing)
    code = _main("infer", "--model", export, "--input", root, "--output", tmp_path / "sr")
    rows = _rows(tmp_path / "sr" / "cohort.csv")
    assert len(loads) == 1
    assert rows["p1.nii.gz"]["status"] == "done" and (tmp_path / "sr" / "site1" / "p1.nii.gz").is_file()
    assert rows["p2.nii.gz"]["status"] == "failed" and "disk on fire" in rows["p2.nii.gz"]["reason"]
    assert code == 1  # a failure that is not the input's


def _spawn(argv, log: Path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, "-m", "srgan_tf.cli", *map(str, argv)],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def test_sigkill_mid_run_then_a_re_run_completes(tmp_path):
    root = _cohort(tmp_path / "in", bad=False, other_protocol=False)  # one training: faster
    out = tmp_path / "out"
    argv = ["self-supervised", "--input", root, "--output", out, *SUBPROCESS]
    process = _spawn(argv, tmp_path / "killed.log")
    first = out / "site1" / "p1.nii.gz"  # after the DICOM series, in key order
    deadline = time.monotonic() + 900  # TensorFlow start, planning, training on a busy CPU
    try:
        while not first.exists():
            assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before the kill"
    assert not (out / "site1" / "p2.nii.gz").exists()
    assert _main(*argv) == 0
    rows = _rows(out / "cohort.csv")
    assert {row["status"] for row in rows.values()} == {"done"} and len(rows) == 3
    leftovers = [p for p in out.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp")]
    assert leftovers == []


def test_two_parts_at_once_into_one_folder_are_disjoint_complete_and_share_models(tmp_path):
    root = _cohort(tmp_path / "in", bad=False, other_protocol=False)
    out = tmp_path / "out"
    processes = [_spawn(["self-supervised", "--input", root, "--output", out, *SUBPROCESS,
                         "--num-parts", 2, "--part-id", k], tmp_path / f"part{k}.log")
                 for k in range(2)]
    for k, process in enumerate(processes):
        assert process.wait(timeout=600) == 0, (tmp_path / f"part{k}.log").read_text()[-3000:]
    parts = [_rows(out / f"cohort.part-{k}-of-2.csv") for k in range(2)]
    assert not set(parts[0]) & set(parts[1]) and len(parts[0]) + len(parts[1]) == 3
    merged = _rows(out / "cohort.csv")
    assert len(merged) == 3 and {row["status"] for row in merged.values()} == {"done"}
    # p1 (part 1) and p2 (part 0) share one protocol model: trained once, by one of them
    assert len(list((out / "srgan-tf-work" / "models").iterdir())) == 1
    assert merged["p1.nii.gz"]["model"] == merged["p2.nii.gz"]["model"]
    assert merged["p1.nii.gz"]["part"] != merged["p2.nii.gz"]["part"]
    logs = "".join((tmp_path / f"part{k}.log").read_text() for k in range(2))
    assert logs.count("training on") == 1  # one training per protocol, not per part


def test_single_volume_re_run_reuses_a_model_trained_for_the_same_plan(tmp_path, capsys):
    write_nifti(_volume(), tmp_path / "thick.nii.gz")
    argv = ["self-supervised", "--input", tmp_path / "thick.nii.gz", "--output",
            tmp_path / "sr.nii.gz", *FAST]
    assert _main(*argv) == 0
    assert "Reusing" not in capsys.readouterr().out
    assert _main(*argv) == 0  # today's refusal is now a reuse
    assert "Reusing the model trained for this plan" in capsys.readouterr().out
    assert _main(*argv[:-4], "--steps", "3", "--epochs", "1") == 2  # another plan: refused
    assert "differs in training" in capsys.readouterr().err
    assert _main(*argv[:-4], "--steps", "3", "--epochs", "1", "--retrain") == 0
    plan = json.loads((tmp_path / "sr_work" / "plan.json").read_text())
    assert plan["training"]["steps_per_epoch"] == 3 and "Reusing" not in capsys.readouterr().out


def test_train_only_trains_each_protocol_once_and_parts_then_reuse_it(tmp_path, capsys):
    root = _cohort(tmp_path / "in", bad=False, other_protocol=False)
    out = tmp_path / "out"
    argv = ["self-supervised", "--input", root, "--output", out, *FAST]
    assert _main(*argv, "--train-only") == 0
    assert "training on 24 slices of 3 volume(s)" in capsys.readouterr().out
    assert not list(out.rglob("*.nii.gz")) and not (out / "cohort.csv").exists()
    export = next((out / "srgan-tf-work" / "models").iterdir()) / "model" / "export"
    stamp = (export / "metadata.json").stat().st_mtime_ns
    assert _main(*argv, "--num-parts", "2", "--part-id", "1") == 0  # p1 only
    assert (out / "site1" / "p1.nii.gz").is_file() and not (out / "site1" / "p2.nii.gz").exists()
    assert (export / "metadata.json").stat().st_mtime_ns == stamp  # reused, not retrained
    assert Path(_rows(out / "cohort.csv")["p1.nii.gz"]["model"]).resolve() == export.resolve()


def test_retrain_refuses_an_init_model_inside_the_model_it_would_replace(tmp_path, capsys):
    write_nifti(_volume(), tmp_path / "thick.nii.gz")
    argv = ["self-supervised", "--input", tmp_path / "thick.nii.gz", "--output",
            tmp_path / "sr.nii.gz", *FAST]
    assert _main(*argv) == 0
    export = tmp_path / "sr_work" / "model" / "export"
    assert _main(*argv, "--init-model", export, "--retrain") == 2
    assert "--init-model lies inside" in capsys.readouterr().err
    assert (export / "metadata.json").is_file()  # nothing deleted


def test_retrain_with_a_folder_and_train_only_with_one_volume_are_refused(tmp_path, capsys):
    write_nifti(_volume(), tmp_path / "in" / "a.nii.gz")
    assert _main("self-supervised", "--input", tmp_path / "in", "--output", tmp_path / "out",
                 "--retrain") == 2
    assert "--retrain" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert _main("self-supervised", "--input", tmp_path / "in" / "a.nii.gz", "--output",
                 tmp_path / "sr.nii.gz", "--train-only") == 2
    assert "--train-only" in capsys.readouterr().err
