"""Staged writes and stale partials (srgan_tf/files.py): an output is whole or absent, and only
the partials of dead writers on this machine are removed."""
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from srgan_tf.files import (atomic_write_text, machine, partial_path, remove_stale_partials,
                            staged_file, staged_folder)


def _dead_pid() -> int:
    """The id of a process that has exited (pids are not reused this fast)."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_a_partial_is_hidden_owned_and_never_under_the_final_name(tmp_path):
    target = tmp_path / "sr.nii.gz"
    target.write_text("old")
    with staged_file(target) as partial:
        partial.write_text("new, half")
        assert target.read_text() == "old"  # readers see the old file until the rename
        assert partial.parent == tmp_path
        assert partial.name.startswith(f".sr.nii.gz.partial-{os.getpid()}@{machine()}-")
        assert not partial.name.endswith((".nii", ".gz", ".h5", ".dcm"))
    assert target.read_text() == "new, half" and os.listdir(tmp_path) == ["sr.nii.gz"]
    assert partial_path(target) != partial_path(target)  # two writes of one file stay apart


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    with pytest.raises(RuntimeError), staged_file(tmp_path / "new.h5") as partial:
        partial.write_bytes(b"\0" * 64)
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []
    atomic_write_text(tmp_path / "config.json", "{}\n")
    with pytest.raises(KeyboardInterrupt), staged_file(tmp_path / "config.json") as partial:
        partial.write_text('{"half')
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["config.json"]
    assert (tmp_path / "config.json").read_text() == "{}\n"


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "export"
    with pytest.raises(RuntimeError), staged_folder(target) as partial:
        partial.mkdir()
        (partial / "saved_model.pb").write_bytes(b"half")
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []
    with staged_folder(target) as partial:
        partial.mkdir()
        (partial / "a").write_text("1")
        assert not target.exists()
    assert os.listdir(target) == ["a"]


def test_an_existing_folder_is_refused_replaced_or_merged_as_asked(tmp_path):
    target = tmp_path / "series"
    target.mkdir()  # an empty folder is taken over in every mode
    with staged_folder(target) as partial:
        partial.mkdir()
        (partial / "IM-0001.dcm").write_text("new")
    with pytest.raises(FileExistsError, match="series exists and is not an empty folder"):
        with staged_folder(target) as partial:
            partial.mkdir()
    with staged_folder(target, existing="merge") as partial:
        partial.mkdir()
        (partial / "IM-0002.dcm").write_text("merged")
    assert sorted(os.listdir(target)) == ["IM-0001.dcm", "IM-0002.dcm"]
    with staged_folder(target, existing="replace") as partial:
        partial.mkdir()
        (partial / "saved_model.pb").write_text("replaced")
    assert os.listdir(target) == ["saved_model.pb"] and os.listdir(tmp_path) == ["series"]
    with pytest.raises(ValueError, match="Received: 'overwrite'"):
        with staged_folder(target, existing="overwrite"):
            pass


def test_stale_partials_of_dead_writers_go_and_live_or_foreign_ones_stay(tmp_path):
    target = tmp_path / "cache.h5"
    dead, here = _dead_pid(), machine()
    stale = [tmp_path / f".cache.h5.partial-{dead}@{here}-0a1b2c3d",
             tmp_path / f".cache.h5.partial-{dead}",  # earlier names: the pid alone
             tmp_path / f".cache.h5.partial-{dead}-0a1b2c3d",
             tmp_path / f".cache.h5.{socket.gethostname()}.{dead}.0a1b2c3d.tmp"]
    kept = [tmp_path / f".cache.h5.partial-{os.getppid()}@{here}-0a1b2c3d",  # a live writer
            tmp_path / f".cache.h5.partial-{os.getpid()}@{here}-1a1b2c3d",  # this process
            tmp_path / f".cache.h5.partial-{dead}@other-node+4026531836-2a1b2c3d",
            tmp_path / f".other.h5.partial-{dead}@{here}-3a1b2c3d",  # another destination
            tmp_path / "cache.h5"]
    for path in stale + kept:
        path.write_bytes(b"\0")
    folder = tmp_path / f".cache.h5.partial-{dead}@{here}-4a1b2c3d"  # a partial folder
    (folder / "inner").mkdir(parents=True)
    assert sorted(remove_stale_partials(target)) == sorted(stale + [folder])
    assert sorted(os.listdir(tmp_path)) == sorted(path.name for path in kept)
    assert remove_stale_partials(tmp_path / "missing" / "x.h5") == []


def test_earlier_names_given_by_the_caller_are_cleaned(tmp_path):
    dead = _dead_pid()
    older = tmp_path / f"cache.h5.tmp-{dead}"
    older.write_bytes(b"\0")
    assert remove_stale_partials(tmp_path / "cache.h5", [rf"cache\.h5\.tmp-(?P<pid>\d+)"]) == [older]


def test_a_replace_killed_between_its_renames_gets_the_old_folder_back(tmp_path):
    target = tmp_path / "export"
    dead, here = _dead_pid(), machine()
    retired = tmp_path / f".export.old-{dead}@{here}-0a1b2c3d"
    retired.mkdir()
    (retired / "metadata.json").write_text("kept")
    (tmp_path / f".export.partial-{dead}@{here}-0a1b2c3d").mkdir()
    remove_stale_partials(target)
    assert os.listdir(tmp_path) == ["export"]
    assert (target / "metadata.json").read_text() == "kept"


def test_a_killed_writer_leaves_only_a_hidden_partial_that_the_next_write_removes(tmp_path):
    target = tmp_path / "sr.nii.gz"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from srgan_tf.files import staged_file
        with staged_file({str(target)!r}) as partial:
            partial.write_bytes(b"half")
            print("writing", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline().strip() == "writing"
        (partial,) = os.listdir(tmp_path)
        assert partial.startswith(f".sr.nii.gz.partial-{child.pid}@")
        assert remove_stale_partials(target) == []  # its writer lives
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert os.listdir(tmp_path) == [partial] and not target.exists()
    atomic_write_text(target, "whole")
    assert os.listdir(tmp_path) == ["sr.nii.gz"]
