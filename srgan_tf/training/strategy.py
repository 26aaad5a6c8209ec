"""Distribution strategy selection: one machine (GPUs or CPU) or several (TF_CONFIG).

Global batch = per-replica batch x `strategy.num_replicas_in_sync`. With several workers,
every worker builds the same global batches from the same seed and keeps its share
(`distributable`); only the chief (`is_chief`) writes the run directory.
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


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """Machines (TF_CONFIG chief + workers) the strategy spans; 1 for one-machine strategies."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes the run: the "chief" task, or worker 0 when the
    cluster has no chief (TensorFlow's convention); always True on one machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or worker_count(strategy) == 1:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def task_index(strategy: tf.distribute.Strategy) -> int:
    """This worker's index in its TF_CONFIG task list (0 on one machine)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(resolver.task_id or 0) if resolver is not None else 0


def distributable(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """The dataset with DATA auto-sharding: each worker builds every global batch (same seed,
    deterministic order) and keeps its replicas' slices, so the workers together train on
    exactly the batches one machine would. (The default tries to shard input files, which a
    cache- or generator-fed pipeline does not have.)"""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def check_workers_agree(strategy: tf.distribute.Strategy, value: int, what: str) -> None:
    """Raises on every worker unless all workers hold the same `value` (e.g. the epoch they
    resume from): a worker that cannot read the chief's checkpoints would otherwise train
    from other weights than its peers without a word.

    Raises:
        RuntimeError: the workers disagree.
    """
    if worker_count(strategy) == 1:
        return
    local = tf.constant([float(value), float(value) ** 2, 1.0])
    total = strategy.reduce("SUM", local, axis=None).numpy()  # identical on every worker
    count = total[2]
    if abs(count * total[1] - total[0] ** 2) > 1e-6 * max(1.0, total[0] ** 2):
        raise RuntimeError(f"the workers disagree on {what} (mean {total[0] / count:g}); every "
                           "worker must read the chief's run directory (a shared path) to resume. "
                           f"Received: {what}={value} on this worker")
