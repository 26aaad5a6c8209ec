"""Errors raised for bad input. Messages always name the file and the problem."""


class InputError(ValueError):
    """A file or series that cannot be used, with a one-line reason.

    Args:
        path: the offending file or directory.
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def error_summary(error: Exception) -> str:
    """"TypeName: message" on one line, for the reason of an InputError caused by `error`."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"

