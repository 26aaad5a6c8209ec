"""Files written whole or not at all, the partials that killed writers leave, directory locks.

Every writer of the package (NIfTI, DICOM series, the HDF5 cache, exports, JSON and text)
builds its output under a hidden partial name beside the destination and renames it into
place when complete (`staged_file`, `staged_folder`, `atomic_write_text`): a reader, or a run
killed mid-write, sees the old output or the new one, never half of one.

A partial is `.<name>.partial-<pid>@<machine>-<token>`: hidden and without a data suffix (.h5,
.nii.gz, .dcm), so no reader or glob takes it for data. <machine> is the host name and its pid
namespace, where a pid means one process (every pod's first process is pid 1; parts of a study
on several hosts share one output folder); <token> keeps two writes of one destination apart.
`remove_stale_partials` removes the partials of a destination whose writer is gone: written on
this machine by a process that no longer runs. Another machine's partial is never removed (no
process here can tell whether its writer lives). Each staged write first removes the stale
partials of its destination, so a killed write's leftovers go with the next write.
"""
import contextlib
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Iterator, List, Sequence

STAGE_EXISTING = ("refuse", "replace", "merge")
# .<name>.<kind>-<pid>@<machine>-<token>; "old" is a folder moved aside while being replaced
_OWNED = r"(?P<kind>partial|old)-(?P<pid>\d+)@(?P<machine>[A-Za-z0-9._+-]+)-[0-9a-f]{8}"
# Names of earlier versions after ".<name>.": the pid only (this machine then); an export's
# token only (written under a run directory's lock, so never a live writer's).
_EARLIER = (r"partial-(?P<pid>\d+)(?:[-.].*)?", r"(?P<kind>partial|old)-[0-9a-f]{8}")


def machine() -> str:
    """Where a pid names one process: the host name and, on Linux, its pid namespace."""
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", socket.gethostname()) or "localhost"
    try:
        return f"{host}+{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return host


def partial_path(path, kind: str = "partial") -> Path:
    """A new hidden name beside `path` for this process to write it under (unique per call)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}@{machine()}-{uuid.uuid4().hex[:8]}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs in this pid namespace (owned by anyone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # it exists, under another user
    except (OSError, OverflowError):
        return False
    return True


def remove_stale_partials(path, legacy_patterns: Sequence[str] = ()) -> List[Path]:
    """Removes the partials of `path` (files and folders) whose writer is gone; returns them.

    A folder moved aside by a killed `staged_folder(..., existing="replace")` goes back to
    `path` when nothing took its place. Partials of live processes or other machines stay.

    Args:
        path: the destination file or folder.
        legacy_patterns: regular expressions (full match, a `pid` group, this machine's) of
            other names that earlier versions gave partials of `path`.
    """
    path = Path(path)
    folder = path.absolute().parent
    if not folder.is_dir():
        return []
    prefix = re.escape(f".{path.name}.")
    patterns = [re.compile(prefix + _OWNED), *(re.compile(prefix + name) for name in _EARLIER),
                # atomic_write_text's earlier name: .<name>.<host>.<pid>.<token>.tmp
                re.compile(prefix + r"(?P<host>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp"),
                *(re.compile(pattern) for pattern in legacy_patterns)]
    stale = []
    for name in os.listdir(folder):
        match = next(filter(None, (pattern.fullmatch(name) for pattern in patterns)), None)
        if match is not None and _writer_gone(match.groupdict()):
            stale.append((match.groupdict().get("kind") == "old", folder / name))
    retired = sorted((entry for is_old, entry in stale if is_old), key=_modified)
    if retired and not os.path.lexists(folder / path.name):
        try:  # the newest copy moved aside is the last complete one
            os.replace(retired[-1], folder / path.name)
        except OSError:
            return []  # then nothing goes, the copy least of all
    return [entry for _, entry in stale if os.path.lexists(entry) and _remove(entry)]


def _writer_gone(groups: dict) -> bool:
    if groups.get("pid") is None:
        return True
    if groups.get("machine") not in (None, machine()):
        return False
    if groups.get("host") not in (None, socket.gethostname()):
        return False
    pid = int(groups["pid"])
    return pid != os.getpid() and not pid_alive(pid)


def _modified(entry: Path) -> float:
    try:
        return entry.lstat().st_mtime
    except OSError:
        return 0.0


def _remove(entry: Path) -> bool:
    """Removes a file or folder; False when it is gone already or cannot be removed (then it
    stays, hidden, rather than failing the write that found it)."""
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def staged_file(path) -> Iterator[Path]:
    """Yields a partial path to write `path` under (nibabel, pydicom, h5py, ...); renames it to
    `path` when the block ends, removes it when the block raises (an old `path` stays).

    Example:
        >>> with staged_file("cache.h5") as partial:
        ...     with h5py.File(partial, "w") as handle: ...
    """
    path = Path(path)
    remove_stale_partials(path)
    partial = partial_path(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if os.path.lexists(partial):
            _remove(partial)


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` through `staged_file`."""
    with staged_file(path) as partial:
        partial.write_text(text)


@contextlib.contextmanager
def staged_folder(path, *, existing: str = "refuse") -> Iterator[Path]:
    """Yields a partial folder path (not created yet) to build `path` in; it becomes `path` when
    the block ends, and is removed when the block raises.

    Args:
        path: the destination folder; the block creates the partial folder beside it.
        existing: what becomes of a `path` that exists at the end: "refuse" (FileExistsError,
            unless it is an empty folder), "replace" (moved aside, the new one renamed in, the
            old one removed: a kill between the renames is mended by `remove_stale_partials`)
            or "merge" (the new files moved into it one by one, same names replaced).

    Example:
        >>> with staged_folder("runs/x/export", existing="replace") as partial:
        ...     tf.saved_model.save(module, str(partial))
    """
    if existing not in STAGE_EXISTING:
        raise ValueError(f"existing must be one of {STAGE_EXISTING}. Received: {existing!r}")
    path = Path(path)
    remove_stale_partials(path)
    partial = partial_path(path)
    try:
        yield partial
        _install(partial, path, existing)
    finally:
        if os.path.lexists(partial):
            _remove(partial)


def _install(partial: Path, path: Path, existing: str) -> None:
    if not os.path.lexists(path) or (path.is_dir() and not path.is_symlink()
                                     and not os.listdir(path)):
        os.replace(partial, path)  # over an empty folder too
    elif existing == "merge":
        for name in sorted(os.listdir(partial)):
            os.replace(partial / name, path / name)
    elif existing == "replace":
        retired = partial_path(path, "old")
        os.replace(path, retired)
        try:
            os.replace(partial, path)
        except BaseException:
            os.replace(retired, path)
            raise
        _remove(retired)
    else:
        raise FileExistsError(f"{path} exists and is not an empty folder; it is not replaced")


class DirectoryLocked(OSError):
    """Another live process holds the lock of a directory (`holder` names it: pid@host)."""

    def __init__(self, directory, holder: str):
        self.directory, self.holder = Path(directory), holder
        super().__init__(f"{directory}: in use by another process ({holder or 'unknown holder'})")


class DirectoryLock:
    """An exclusive lock on a directory: `flock` on `<directory>/.lock`, which names the holder.

    The kernel drops a flock when its process dies (even by SIGKILL), so the lock of a killed
    run is free and the next run takes it over (`stale_holder` then names the dead holder).
    Released (and the file removed) by `release()` or on leaving a `with` block.

    Raises:
        DirectoryLocked: on `acquire()`, when another live process holds the lock.
    """

    FILE_NAME = ".lock"

    def __init__(self, directory):
        self.path = Path(directory) / self.FILE_NAME
        self.stale_holder = None
        self._handle = None

    def acquire(self) -> "DirectoryLock":
        import fcntl

        while True:
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(handle)
                handle.close()
                raise DirectoryLocked(self.path.parent, holder) from None
            # The previous holder may have removed the file between our open and flock:
            # then this lock is on an orphaned inode, and another process can lock a new file.
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
            handle.close()
        self.stale_holder = _read_holder(handle) or None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self.path.unlink()  # before unlocking, so no one can lock a file about to vanish
        except FileNotFoundError:
            pass
        self._handle.close()  # closing drops the flock
        self._handle = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def _read_holder(handle) -> str:
    handle.seek(0)
    return handle.read().strip()
