"""A training run on the cache with its exports: the strategy and the cache's datasets, `train`
(training layer), and the SavedModel exports (inference layer) at each phase end. Entry level,
because it joins the layers.

    export_pretrain/   the generator after the MSE phase (SRResNet in Ledig et al.),
                       when an adversarial phase follows (`RunDirectory.export_of("pretrain")`)
    export/            the run's generator (`RunDirectory.export`)

Example:
    result = train_and_export(config, "runs/demo")
    print(result.export_dir)
"""
import dataclasses
from pathlib import Path

from srgan_tf.config import ExperimentConfig
from srgan_tf.files import remove_stale_partials
from srgan_tf.inference.export import METADATA_FILE, export_generator
from srgan_tf.io.paths_guard import refuse_overwriting_inputs
from srgan_tf.run_directory import RunDirectory
from srgan_tf.training.checkpoints import restore_generator
from srgan_tf.training.strategy import global_batch_size, make_strategy
from srgan_tf.training.trainer import PhaseEnd, TrainResult, train


def export_metadata(config: ExperimentConfig, epochs_done: int) -> dict:
    """What an export records of the run beyond its generator (metadata.json)."""
    return {"content_loss": config.loss.content_loss,
            "content_loss_note": config.loss.content_loss_note,
            "ema": config.loss.ema_decay > 0, "epochs": epochs_done, "config": config.to_dict()}


class RunExporter:
    """`on_phase_end` of `train`: exports each phase's generator into the run directory.

    A resumed run that reports the pretraining end again keeps the export already written
    then; the final export is rewritten (the run may have trained further).
    """

    def __init__(self):
        self.written = {}

    def __call__(self, end: PhaseEnd) -> None:
        target = RunDirectory(end.run_dir).export_of(end.phase)
        remove_stale_partials(target)  # a run killed while exporting: the old export comes back
        if end.phase == "pretrain" and (target / METADATA_FILE).exists():
            self.written[end.phase] = target
            return
        self.written[end.phase] = Path(export_generator(
            end.generator, target, export_metadata(end.config, end.epochs_done),
            spec=end.config.generator_spec()))
        if end.phase == "final":
            end.note(f"Exported the generator after {end.epochs_done} epochs to {target}")


def cache_data(config: ExperimentConfig, strategy) -> dict:
    """`train`'s data from the cache `config.data.cache`: {"train_dataset", "validation",
    "steps_per_epoch"}.

    The training batches (of the global batch size) are drawn anew for each fit() call with the
    seed `config.train.seed + epochs done`: a resumed run does not replay the batches it has
    seen. Validation uses the cache's fixed test slices; an epoch is one pass over the training
    slices unless `config.train.steps_per_epoch` says otherwise.
    """
    from srgan_tf.data.pipelines.pipeline import list_candidates, make_dataset, validation_batch

    cache = config.data.cache
    global_batch = global_batch_size(config.data.batch_size, strategy)
    batch_config = dataclasses.replace(config.data, batch_size=global_batch)

    def batches(epochs_done: int):
        return make_dataset(cache, batch_config, split="train", training=True,
                            seed=config.train.seed + epochs_done)

    steps = (config.train.steps_per_epoch
             or max(1, list_candidates(cache, "train").count // global_batch))
    return {"train_dataset": batches, "validation": validation_batch(cache, config.data),
            "steps_per_epoch": steps}


def train_and_export(config: ExperimentConfig, run_dir, *, strategy=None,
                     **train_options) -> TrainResult:
    """`train` on the cache `config.data.cache` (checked by the caller), exporting as it goes
    (chief only).

    Args:
        config: the experiment.
        run_dir: the run directory.
        strategy: the strategy to train under; None makes `config.train.strategy`'s (first,
            before any other TensorFlow work, as multiworker needs).
        **train_options: `train`'s other keywords (resume, content_extractor, progress).

    Returns:
        The `TrainResult` with `export_dir` set (None on a multi-worker run's other workers).
    """
    strategy = strategy or make_strategy(config.train.strategy)
    exporter = RunExporter()
    result = train(config, run_dir, strategy=strategy, on_phase_end=exporter,
                   **cache_data(config, strategy), **train_options)
    return dataclasses.replace(result, export_dir=exporter.written.get("final"))


def export_from_checkpoint(run_dir, output_dir) -> Path:
    """Re-exports a run's last checkpoint (EMA weights when the run kept them) as a SavedModel.

    Args:
        run_dir: a run directory from `train` (config.json and checkpoints/).
        output_dir: export directory to write.
    """
    run = RunDirectory(run_dir)
    refuse_overwriting_inputs([run.config, run.checkpoints],
                              {"--output": output_dir}, replaced=["--output"])
    generator, spec, config, epochs_done = restore_generator(run.path)
    return Path(export_generator(generator, Path(output_dir), export_metadata(config, epochs_done),
                                 spec=spec))
