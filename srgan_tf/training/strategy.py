"""Distribution strategy selection: one machine (GPUs or CPU) or several (TF_CONFIG).

Global batch = per-replica batch x `strategy.num_replicas_in_sync`.
"""
import json
import os

import tensorflow as tf

STRATEGY_NAMES = ("auto", "default", "mirrored", "multiworker")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Builds the `tf.distribute.Strategy` named in `TrainConfig.strategy`.

    Args:
        name: "auto": MirroredStrategy over all visible GPUs when there is at least one,
            else the default (single-device) strategy; "default": the default strategy;
            "mirrored": MirroredStrategy over all GPUs, or over the logical CPU devices when
            there is no GPU (one CPU device unless logical devices were configured);
            "multiworker": MultiWorkerMirroredStrategy described by the TF_CONFIG
            environment variable (create it at program start, before other TF work).

    Example:
        strategy = make_strategy("auto")
        global_batch = config.data.batch_size * strategy.num_replicas_in_sync
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGY_NAMES)}. Received: strategy={name!r}")
    if name == "multiworker":  # before anything initialises the TF runtime (collective ops)
        check_tf_config(os.environ.get("TF_CONFIG"))
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise RuntimeError("strategy 'multiworker' must be created before any other TensorFlow "
                               f"work in the process (build models after it). Received: {error}") from None
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if name == "default" or (name == "auto" and not gpus):
        return tf.distribute.get_strategy()
    devices = gpus or [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def check_tf_config(text):
    """Validates the TF_CONFIG cluster description for MultiWorkerMirroredStrategy.

    Raises:
        ValueError: TF_CONFIG is missing, not JSON, or lacks a worker cluster and task.
    """
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not text:
        raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable describing "
                         f"the cluster and this worker, e.g. {example}. Received: TF_CONFIG unset")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG must be JSON ({error}), e.g. {example}. Received: {text!r}") from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not workers or not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError("TF_CONFIG must name a 'cluster' with a 'worker' list and this process's "
                         f"'task' (type, index), e.g. {example}. Received: {text!r}")
    if task["type"] in ("worker", "chief"):
        members = cluster.get(task["type"], [])
        if not isinstance(task["index"], int) or not 0 <= task["index"] < len(members):
            raise ValueError(f"TF_CONFIG task index is outside the cluster's {task['type']!r} list. "
                             f"Received: {text!r}")
    return spec


def global_batch_size(per_replica_batch: int, strategy: tf.distribute.Strategy) -> int:
    """Per-replica batch x replicas in sync."""
    return int(per_replica_batch) * strategy.num_replicas_in_sync
