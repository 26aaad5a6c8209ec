"""Warnings for the user, printed as the command's own lines: `srgan-tf infer: warning: ...`.

Python's `warnings` filter is the wrong channel for them: a message printed with a source path
reads like a bug, and `PYTHONWARNINGS=ignore` (common on CI and clusters) drops it. Every
user-facing warning goes through `warn`; `run_main` shows them under the command's name
(`command_warnings`). Outside a command (a library call) they reach stderr through logging's
last-resort handler, or whatever handler the caller installs on the `srgan_tf.user` logger.
"""
import contextlib
import logging
import sys

LOGGER = logging.getLogger("srgan_tf.user")
LOGGER.setLevel(logging.WARNING)  # a quieter "srgan_tf" logger must not hide them


def warn(message: str) -> None:
    """One warning line for the user (the message names the file or flag and what happened)."""
    LOGGER.warning(" ".join(str(message).split()))


class _CommandHandler(logging.Handler):
    """Writes `<prog>: warning: <message>` to the current sys.stderr (read at each line, so a
    redirected or captured stderr gets it)."""

    def __init__(self, prog: str):
        super().__init__(logging.WARNING)
        self.prog = prog

    def emit(self, record):
        print(f"{self.prog}: warning: {record.getMessage()}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def command_warnings(prog: str):
    """Within the block, `warn` prints `<prog>: warning: ...` on stderr (and only there)."""
    handler = _CommandHandler(prog)
    LOGGER.addHandler(handler)
    propagate, LOGGER.propagate = LOGGER.propagate, False
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.propagate = propagate
