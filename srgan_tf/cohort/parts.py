"""Which share of a cohort this process takes: `--num-parts N --part-id K` (nnU-Net's
convention, K from 0), else a SLURM job array, else a Kubernetes Indexed Job.

The split is deterministic: volume i of the sorted list goes to part i mod N, so every part
computes the same split from the same folder with no coordination, and the parts are
disjoint and together complete.
"""
import os
from typing import Mapping, NamedTuple, Optional, Sequence

from srgan_tf.io.errors import InputError


class Part(NamedTuple):
    index: int  # K, from 0
    count: int  # N
    source: str  # where K and N came from, for the log

    def name(self) -> str:
        return f"part {self.index} of {self.count} ({self.source})"


def _integer(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise InputError(name, f"environment variable is not an integer: {environ[name]!r}") from None


def resolve_part(num_parts: Optional[int] = None, part_id: Optional[int] = None,
                 environ: Mapping[str, str] = os.environ) -> Part:
    """This process's part.

    Args:
        num_parts: --num-parts N (None: from the environment, else 1).
        part_id: --part-id K (None: from the environment).
        environ: the environment: SLURM_ARRAY_TASK_ID / _COUNT / _MIN of a job array
            (`sbatch --array=0-9`), or JOB_COMPLETION_INDEX of a Kubernetes Indexed Job,
            whose count (the Job's `completions`) must be given as --num-parts.
    """
    if part_id is not None:
        if num_parts is None:
            raise InputError("--part-id", "needs --num-parts (the number of parts)")
        source = "--num-parts/--part-id"
    elif "SLURM_ARRAY_TASK_ID" in environ:
        first = _integer(environ, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in environ else 0
        part_id = _integer(environ, "SLURM_ARRAY_TASK_ID") - first
        if num_parts is None:
            if "SLURM_ARRAY_TASK_COUNT" not in environ:
                raise InputError("SLURM_ARRAY_TASK_COUNT", "not set; pass --num-parts")
            num_parts = _integer(environ, "SLURM_ARRAY_TASK_COUNT")
        source = "SLURM array"
    elif "JOB_COMPLETION_INDEX" in environ:
        if num_parts is None:
            raise InputError("JOB_COMPLETION_INDEX", "a Kubernetes Indexed Job: pass --num-parts "
                                                     "equal to the Job's completions")
        part_id = _integer(environ, "JOB_COMPLETION_INDEX")
        source = "Kubernetes Indexed Job"
    elif num_parts is not None:
        raise InputError("--num-parts", "needs --part-id (or a SLURM array or Kubernetes Indexed "
                                        "Job environment to read it from)")
    else:
        return Part(0, 1, "one part")
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise InputError("--part-id", f"must lie in [0, {num_parts - 1}] for {num_parts} parts. "
                                      f"Received: {part_id} ({source}; a SLURM array needs "
                                      "consecutive task ids, e.g. --array=0-9)")
    return Part(part_id, num_parts, source)


def share(items: Sequence, part: Part) -> list:
    """The items of this part: every N-th, starting at K (items in their sorted order)."""
    return list(items[part.index::part.count])
