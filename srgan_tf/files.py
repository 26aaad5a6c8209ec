"""Small file helpers shared by the layers."""
import os
import socket
import uuid
from pathlib import Path


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename: a reader (or a run killed
    mid-write) sees the old file or the new one, never half of one."""
    path = Path(path)
    # pid alone is not unique across machines or containers (every pod's first process is
    # pid 1), and parts of a study may write one file of a shared folder at once
    temporary = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}."
                               f"{uuid.uuid4().hex[:8]}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


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
        import socket

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
