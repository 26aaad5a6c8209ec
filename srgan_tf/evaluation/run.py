"""Evaluation of a finished run or of an export: `metrics.json`, figures and `report.md`."""
import json
from pathlib import Path
from typing import Optional

from srgan_tf.evaluation.evaluate import evaluate_model
from srgan_tf.evaluation.report import write_report
from srgan_tf.io.paths_guard import refuse_overwriting_inputs
from srgan_tf.run_directory import RunDirectory

TITLES = {"exp1": "Experiment 1: isotropic SR", "exp2": "Experiment 2: anisotropic SR (height only)"}


def evaluate_run(config, run_dir, export_dir, figures: int = 3) -> dict:
    """Score the run's exported generator (and its SRResNet stage, when kept) against bicubic.

    Args:
        config: the run's `ExperimentConfig`.
        run_dir: the run directory; metrics.json, figures/ and report.md are written there.
        export_dir: the final export (SRGAN after the adversarial phase).
        figures: comparison figures to draw (one slice of each of the first test patients).
    """
    run_dir = Path(run_dir)
    models = {}
    srresnet = RunDirectory(run_dir).export_pretrain  # the generator after the MSE phase
    if srresnet.is_dir() and config.train.adversarial_epochs > 0:
        models["srresnet"] = srresnet
    models["sr"] = Path(export_dir)
    metrics = evaluate_model(models, config.data.cache, split="test", data_config=config.data,
                             output_dir=run_dir, figures=figures, progress=True)
    title = (f"{TITLES.get(config.experiment, config.experiment)}, x{config.data.scale} "
             f"({config.preset} preset)")
    write_report(run_dir, title, metrics, config.to_dict(), figures=metrics.get("figures", []))
    return metrics


def evaluate_export(model_dir, cache, *, split: str = "test", output_dir: Optional[str] = None,
                    max_slices_per_patient: Optional[int] = None, figures: int = 3) -> dict:
    """`srgan-tf evaluate`: score an export on a cache with the training run's HR protocol."""
    from srgan_tf.config import ExperimentConfig
    from srgan_tf.inference.exported_model import load_exported

    output_dir = Path(output_dir) if output_dir else Path(model_dir).resolve().parent
    refuse_overwriting_inputs([model_dir, cache], {"--output": output_dir})
    exported = load_exported(model_dir)
    config_dict = exported.metadata.get("config") or {}
    data_config = ExperimentConfig.from_dict(config_dict).data if config_dict else None
    metrics = evaluate_model(exported, cache, split=split, data_config=data_config,
                             max_slices_per_patient=max_slices_per_patient, output_dir=output_dir,
                             figures=figures, progress=True)
    write_report(output_dir, f"Evaluation of {model_dir} on {cache} ({split} split)", metrics,
                 config_dict, figures=metrics.get("figures", []))
    sr, bicubic = metrics["sr"], metrics["bicubic"]
    print(json.dumps({"sr": {k: sr[k] for k in ("psnr", "ssim", "hfen", "gmsd", "edge_f1")},
                      "bicubic": {k: bicubic[k] for k in ("psnr", "ssim", "hfen", "gmsd", "edge_f1")}},
                     indent=2))
    print(f"metrics.json and report.md written to {output_dir}")
    return metrics
