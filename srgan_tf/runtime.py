"""What the hardware runs well (training precision "auto", inference), and a quiet TensorFlow start.

TensorFlow is imported inside functions, so entry points that only parse arguments (`--help`)
start in a fraction of a second.
"""
import contextlib
import os
import re
import sys
import tempfile

# Start-up lines TensorFlow's C++ side prints on every import (before its log level applies) and
# at the first device query of a machine without a GPU driver: information a user reads as
# errors ("E0000 ... failed call to cuInit"). Anything else on stderr is passed through.
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+ +\d+ \S+\] .*"
    r"|E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit.*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)$"
)
_started = False
# Environment variables that size the numpy/BLAS, OpenMP and TensorFlow thread pools: each
# library reads its own when it starts, so `set_threads` sets them all before any starts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
_threads = None


def set_threads(count) -> None:
    """Use at most `count` CPU threads for the computing pools: TensorFlow's intra-op pool
    (one op's work split) and inter-op pool (ops run side by side), OpenMP, BLAS and OpenCV.
    None leaves every library's default (all cores). Call before TensorFlow starts (the
    entry points call it first thing); pools that already started keep their size, except
    OpenCV's and, with threadpoolctl installed, BLAS's, which are resized here."""
    global _threads
    if count is None:
        return
    _threads = int(count)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(_threads)
    try:
        import cv2

        cv2.setNumThreads(_threads)
    except ImportError:
        pass
    try:  # numpy may be imported already (its BLAS pool read the environment then)
        from threadpoolctl import threadpool_limits

        threadpool_limits(_threads)
    except ImportError:
        pass
    if "tensorflow" in sys.modules:
        _apply_tensorflow_threads(sys.modules["tensorflow"])


def _apply_tensorflow_threads(tf) -> None:
    if _threads is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(_threads)
        tf.config.threading.set_inter_op_parallelism_threads(_threads)
    except RuntimeError:  # TensorFlow's context exists already: its pools keep their size
        pass


def quiet_tensorflow_logs() -> None:
    """Environment for a quiet TensorFlow: C++ INFO and WARNING lines off unless the user chose
    a level (TF_CPP_MIN_LOG_LEVEL). Call before TensorFlow is imported; cheap, imports nothing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def start_tensorflow():
    """Imports TensorFlow and queries its devices once, dropping only the known start-up noise
    (`STARTUP_NOISE`) from stderr; Python warnings and real errors still show.

    With TF_CPP_MIN_LOG_LEVEL=0 nothing is filtered.

    Returns:
        The `tensorflow` module.
    """
    global _started
    quiet_tensorflow_logs()
    if _started or "tensorflow" in sys.modules:
        import tensorflow as tf

        _started = True
        return tf
    verbose = os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"  # the user asked for everything
    with contextlib.nullcontext() if verbose else _filtered_stderr():
        import tensorflow as tf

        _apply_tensorflow_threads(tf)  # before the device query creates the context
        tf.config.list_physical_devices()  # cuInit happens here, inside the filter
    try:  # absl's Python logger repeats TensorFlow-internal notes (untraced functions, ...)
        from absl import logging as absl_logging

        if os.environ["TF_CPP_MIN_LOG_LEVEL"] >= "2":
            absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    _started = True
    return tf


class _filtered_stderr:
    """Redirects file descriptor 2 (C++ and Python writes alike) to a temporary file and, on
    exit, writes back every line that is not start-up noise."""

    def __enter__(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._capture = tempfile.TemporaryFile()
        os.dup2(self._capture.fileno(), 2)
        return self

    def __exit__(self, *exc):
        try:
            sys.stderr.flush()
        finally:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        self._capture.seek(0)
        text = self._capture.read().decode("utf-8", "replace")
        self._capture.close()
        kept = [line for line in text.splitlines() if not STARTUP_NOISE.match(line)]
        if kept:
            sys.stderr.write("\n".join(kept) + "\n")
            sys.stderr.flush()
        return False


def native_bfloat16() -> bool:
    """True where bfloat16 convolutions run natively: GPUs of compute capability 8.0 or newer
    (Ampere on), or, without a GPU, a CPU with AVX512-BF16 or AMX."""
    tf = start_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return tuple(details.get("compute_capability") or (0, 0)) >= (8, 0)
    try:
        with open("/proc/cpuinfo") as info:
            flags = info.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_precision(precision: str) -> str:
    """Resolves the training precision "auto": mixed_bfloat16 on a CPU-only machine whose CPU
    has native bf16 (1.6-2x faster steps there, see benchmarks/bench_train.py), float32
    otherwise (GPUs: choose mixed_float16 or mixed_bfloat16 explicitly). Other names pass."""
    if precision != "auto":
        return precision
    if start_tensorflow().config.list_physical_devices("GPU"):
        return "float32"
    return "mixed_bfloat16" if native_bfloat16() else "float32"


@contextlib.contextmanager
def precision_policy(name: str):
    """Keras dtype policy for the layers built inside the block (e.g. "mixed_bfloat16")."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
