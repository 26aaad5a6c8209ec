"""Where one training process writes: the run directory (chief) or a throw-away one (others).

The chief of a run (the only process on one machine) locks the run directory, so a second
training on the same directory fails at once, and keeps `train.log` there. If it fails before
its first checkpoint, it removes what it created, so no orphan run directory is left. Other
workers of a multi-worker run write their checkpoints (every worker must take part in saving)
and logs to a temporary directory that is removed at the end (or, after a kill, when the
worker starts again).

Example:
    with Workspace(run_dir, chief=True) as workspace:
        workspace.note("Phase pretrain: ...")
        ... train, writing under workspace.directory ...
"""
import datetime
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from srgan_tf.files import DirectoryLock, DirectoryLocked
from srgan_tf.io.errors import InputError
from srgan_tf.run_directory import RunDirectory
from srgan_tf.training.checkpoints import latest_checkpoint


class Workspace:
    """Context manager for a training process's output directory.

    Args:
        run_dir: the run directory (created by the chief if missing).
        chief: True: write the run in `run_dir`, locked; False: write in a temporary directory.
        worker: the worker's index, for the temporary directory's name.

    Raises:
        InputError: on entry, another live training holds `run_dir`.
    """

    def __init__(self, run_dir, chief: bool = True, worker: int = 0):
        self.run_dir = Path(run_dir)
        self.chief = chief
        self.worker = worker
        self.directory = self.run_dir
        self._lock = None
        self._existing = None

    def __enter__(self) -> "Workspace":
        if not self.chief:
            # One name per run and worker: a restarted worker first removes what it left when
            # it was killed.
            digest = hashlib.sha1(str(self.run_dir.resolve()).encode()).hexdigest()[:12]
            self.directory = Path(tempfile.gettempdir()) / f"srgan-tf-worker{self.worker}-{digest}"
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._existing = set(os.listdir(self.run_dir))
        try:
            self._lock = DirectoryLock(self.run_dir).acquire()
        except DirectoryLocked as error:
            raise InputError(self.run_dir, f"another training is using this run directory "
                             f"({error.holder}); wait for it to end or choose another "
                             "--output") from None
        if self._lock.stale_holder:
            self.note(f"Took over the lock of a training that is no longer running "
                      f"({self._lock.stale_holder})")
        return self

    @property
    def files(self) -> RunDirectory:
        """The layout this process writes: the run directory's, or the temporary one's."""
        return RunDirectory(self.directory)

    def note(self, message: str, echo: bool = True) -> None:
        """Prints `message` and appends it, time-stamped, to train.log."""
        if echo:
            print(message)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        with open(self.files.train_log, "a") as handle:
            handle.write(f"{stamp} {message}\n")

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None and issubclass(exc_type, tf.errors.UnavailableError):
            self.note("A worker of the cluster stopped (see above); start every worker again with "
                      "--resume to continue from the last checkpoint")
        if not self.chief:
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        try:
            if exc_type is not None and latest_checkpoint(RunDirectory(self.run_dir)) is None:
                self._remove_created()
        finally:
            self._lock.release()
        if exc_type is not None and not self._existing:
            try:
                self.run_dir.rmdir()  # only succeeds when nothing is left in it
            except OSError:
                pass

    def _remove_created(self):
        """What this run added to the run directory (config.json, logs/, train.log, ...),
        but not the lock, which is released after."""
        for name in set(os.listdir(self.run_dir)) - self._existing - {DirectoryLock.FILE_NAME}:
            path = self.run_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
