"""A training run with its exports: `train` (training layer) plus the SavedModel exports
(inference layer) at each phase end. Entry level, because it joins the two layers.

    run_dir/export_pretrain/   the generator after the MSE phase (SRResNet in Ledig et al.),
                               when an adversarial phase follows
    run_dir/export/            the run's generator

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
from srgan_tf.training.trainer import PhaseEnd, TrainResult, restore_generator, train

EXPORT_DIRS = {"pretrain": "export_pretrain", "final": "export"}


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
        target = Path(end.run_dir) / EXPORT_DIRS[end.phase]
        remove_stale_partials(target)  # a run killed while exporting: the old export comes back
        if end.phase == "pretrain" and (target / METADATA_FILE).exists():
            self.written[end.phase] = target
            return
        self.written[end.phase] = Path(export_generator(
            end.generator, target, export_metadata(end.config, end.epochs_done),
            spec=end.config.generator_spec()))
        if end.phase == "final":
            end.note(f"Exported the generator after {end.epochs_done} epochs to {target}")


def train_and_export(config: ExperimentConfig, run_dir, **train_options) -> TrainResult:
    """`train(config, run_dir, **train_options)` exporting as it goes (chief only).

    Returns:
        The `TrainResult` with `export_dir` set (None on a multi-worker run's other workers).
    """
    exporter = RunExporter()
    result = train(config, run_dir, on_phase_end=exporter, **train_options)
    return dataclasses.replace(result, export_dir=exporter.written.get("final"))


def export_from_checkpoint(run_dir, output_dir) -> Path:
    """Re-exports a run's last checkpoint (EMA weights when the run kept them) as a SavedModel.

    Args:
        run_dir: a run directory from `train` (config.json and checkpoints/).
        output_dir: export directory to write.
    """
    run_dir = Path(run_dir)
    refuse_overwriting_inputs([run_dir / "config.json", run_dir / "checkpoints"],
                              {"--output": output_dir}, replaced=["--output"])
    generator, spec, config, epochs_done = restore_generator(run_dir)
    return Path(export_generator(generator, Path(output_dir), export_metadata(config, epochs_done),
                                 spec=spec))
