"""The run folder's names come from `RunDirectory` only (one fact, one home): no other module of
the package or of experiments/ spells them, so the layout on disk changes in one place."""
import ast
from pathlib import Path

from srgan_tf.run_directory import RunDirectory

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"config.json", "checkpoints", "generator.json", "history.csv", "train.log",
         "export_pretrain", "metrics.json", "report.md"}
# (file, name) pairs spelled elsewhere for a folder that is not a training run's.
ALLOWED = {
    # the self-supervised command's own folder (not a training run) has a report.md too
    ("srgan_tf/evaluation/self_supervised_report.py", "report.md"),
}


def _spelled(path: Path):
    """The layout names that appear as whole string constants in `path` (docstrings aside)."""
    return {node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and node.value in NAMES}


def test_only_run_directory_spells_the_run_folder_names():
    files = sorted((ROOT / "srgan_tf").rglob("*.py")) + sorted((ROOT / "experiments").glob("*.py"))
    found = {(str(path.relative_to(ROOT)), name) for path in files
             if path.name != "run_directory.py" for name in _spelled(path)}
    assert found - ALLOWED == set(), "name the run folder's files through RunDirectory"
    assert ALLOWED - found == set(), "an allowed pair is gone: remove it from ALLOWED"


def test_the_layout_on_disk_is_what_old_runs_hold(tmp_path):
    run = RunDirectory(str(tmp_path))
    assert run.path == tmp_path
    assert {path.relative_to(tmp_path).as_posix() for path in (
        run.config, run.checkpoints, run.generator_spec, run.logs, run.history, run.train_log,
        run.export, run.export_pretrain, run.metrics, run.report, run.figures)} == {
        "config.json", "checkpoints", "checkpoints/generator.json", "logs", "history.csv",
        "train.log", "export", "export_pretrain", "metrics.json", "report.md", "figures"}
    assert run.export_of("pretrain") == run.export_pretrain and run.export_of("final") == run.export
