"""Names for files being written, and clean-up of those a killed run left behind.

A file is written as `.<name>.partial-<pid>` beside its destination and renamed over it when
complete: hidden, and with no data suffix (.h5, .nii.gz), so no reader or glob takes it for
data. A run killed mid-write leaves it behind; the next write of the same destination removes
it once no live process owns it.
"""
import os
import re
import shutil
from pathlib import Path
from typing import List, Sequence


def partial_path(path) -> Path:
    """Where this process writes `path` before renaming it into place."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (owned by anyone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return False
    return True


def remove_stale_partials(path, legacy_patterns: Sequence[str] = ()) -> List[Path]:
    """Remove the partials of `path` whose writing process is gone; returns them.

    A partial is `.<name>.partial-<pid>`, optionally followed by `-` or `.` and more (a
    partial folder may carry a unique token); files and folders alike.

    Args:
        path: the destination file or folder.
        legacy_patterns: regular expressions (full match, a `pid` group) of names that
            earlier versions gave partial files of `path`.
    """
    path = Path(path)
    patterns = [re.escape(f".{path.name}.partial-") + r"(?P<pid>\d+)(?:[-.].*)?",
                *legacy_patterns]
    if not path.parent.is_dir():
        return []
    removed = []
    for candidate in path.parent.iterdir():
        match = next((found for found in (re.fullmatch(pattern, candidate.name)
                                          for pattern in patterns) if found), None)
        if match is None or pid_alive(int(match.group("pid"))):
            continue
        try:
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
            removed.append(candidate)
        except FileNotFoundError:  # another run cleaned it first
            continue
    return removed
