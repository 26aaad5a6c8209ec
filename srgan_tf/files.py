"""Small file helpers shared by the layers."""
import os
from pathlib import Path


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename: a reader (or a run killed
    mid-write) sees the old file or the new one, never half of one."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
