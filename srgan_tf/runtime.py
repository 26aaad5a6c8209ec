"""What the hardware runs well: shared by training (precision "auto") and inference."""
import tensorflow as tf


def native_bfloat16() -> bool:
    """True where bfloat16 convolutions run natively: GPUs of compute capability 8.0 or newer
    (Ampere on), or, without a GPU, a CPU with AVX512-BF16 or AMX."""
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
    if tf.config.list_physical_devices("GPU"):
        return "float32"
    return "mixed_bfloat16" if native_bfloat16() else "float32"
