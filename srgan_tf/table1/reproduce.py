"""Table 1 of Sood & Rusu, reproduced: four trained settings, bicubic everywhere, edge metrics.

The paper's Table 1 has bicubic iso x4, SRGAN iso x4 / x8, bicubic aniso x8 and SRGAN aniso
x4 / x8 (PSNR, SSIM). Here every setting (iso/aniso x4/x8) is trained once per objective with
`srgan_tf.experiment.run_experiment` into `OUT/<mode>-x<scale>-<objective>/`, and each run's
evaluation gives bicubic, SRResNet (generator after pretraining) and SRGAN on the same test
slices, so the bicubic columns the paper left out (iso x8, aniso x4) come for free.

Objectives: "paper" is content + 1e-3 adversarial (no pixel term, plain BCE discriminator, no
EMA); "improved" keeps the preset's and the user's `pixel_weight`, `relativistic` and
`ema_decay` (with the paper preset, whose objective is the paper's, `pixel_weight` 1.0).

Example:
    from srgan_tf.table1.plan import plan_table1
    from srgan_tf.table1.report import render_table1
    plan = plan_table1(preset_name="quick", output_dir="runs/table1-quick")
    results = reproduce_table1(plan)
    print(render_table1(results))
"""
import json
from typing import Dict, Optional

from srgan_tf import arguments
from srgan_tf import config as config_lib
from srgan_tf import experiment as experiment_lib
from srgan_tf.evaluation.metrics import METRICS
from srgan_tf.evaluation.report import PAPER_TABLE1
from srgan_tf.run_directory import RunDirectory
from srgan_tf.table1.plan import (EXPERIMENTS, TARGET_METRICS, TARGET_SETTING, SubRun,
                                  Table1Plan, objective_label, run_differences, saved_config)
from srgan_tf.table1.report import write_figures, write_table1


def run_or_reuse(sub_run: SubRun, sample_root=arguments.DEFAULT_SAMPLE_ROOT) -> dict:
    """The sub-run's metrics: reused when finished, resumed when interrupted or when its
    schedule is extended, else trained.

    Raises:
        ValueError: the run directory holds a run of another configuration.
    """
    files = RunDirectory(sub_run.run_dir)
    metrics_path, config_path = files.metrics, files.config
    differences = run_differences(sub_run)
    if differences[config_lib.LEARNED]:
        raise ValueError(f"{sub_run.run_dir} holds a run of another configuration; choose "
                         f"another --output or delete it. Received: "
                         f"{'; '.join(differences[config_lib.LEARNED])}")
    if metrics_path.exists() and not differences[config_lib.SCHEDULE]:
        metrics = json.loads(metrics_path.read_text())
        if "sr" in metrics:
            print(f"Reusing finished sub-run {sub_run.run_dir}")
            return metrics
    resume = config_path.exists()  # the trainer starts fresh when no checkpoint was written
    print(f"\n=== Table 1: {sub_run.setting}, {sub_run.objective} objective -> {sub_run.run_dir}"
          + (" (resuming)" if resume else ""))
    return experiment_lib.run_experiment(sub_run.config, resume=resume, sample_root=sample_root)


def collect(plan: Table1Plan, metrics_by_run: Dict[str, dict],
            saved_configs: Optional[Dict[str, dict]] = None) -> dict:
    """All numbers of the table (what table1.json holds) from each sub-run's metrics.

    Args:
        plan: the table's plan.
        metrics_by_run: {str(run_dir): metrics dict of `evaluate_model`}.
        saved_configs: {str(run_dir): config.json dict}; default the plan's configs.
    """
    saved_configs = saved_configs or {}
    settings, objectives = {}, {}
    for run in plan.runs:
        metrics = metrics_by_run[str(run.run_dir)]
        config = saved_configs.get(str(run.run_dir)) or run.config.to_dict()
        entry = settings.setdefault(run.setting, {
            "mode": run.mode, "scale": run.scale, "experiment": EXPERIMENTS[run.mode],
            "bicubic": _summary(metrics.get("bicubic")), "srresnet": {}, "srgan": {}, "runs": {},
            "protocol": metrics.get("protocol", {})})
        if metrics.get("srresnet"):
            entry["srresnet"][run.objective] = _summary(metrics["srresnet"])
        entry["srgan"][run.objective] = _summary(metrics.get("sr"))
        entry["runs"][run.objective] = {"run_dir": str(run.run_dir), "loss": config.get("loss", {}),
                                        "objective": objective_label(config.get("loss", {}))}
        objectives.setdefault(run.objective, objective_label(config.get("loss", {})))
    results = {"preset": plan.preset, "output_dir": str(plan.output_dir), "objectives": objectives,
               "settings": settings, "paper": PAPER_TABLE1}
    results["quality_target"] = quality_target(results)
    return results


def _summary(entry: Optional[dict]) -> dict:
    return {k: v for k, v in (entry or {}).items() if not isinstance(v, (dict, list))}


def quality_target(results: dict) -> dict:
    """Per objective: does SRGAN aniso x4 beat bicubic on PSNR, SSIM, HFEN and edge F1 at once?"""
    entry = results["settings"].get(TARGET_SETTING)
    if not entry:
        return {}
    higher = {spec.name: spec.higher_is_better for spec in METRICS}
    target = {}
    for objective, srgan in entry["srgan"].items():
        checks = {}
        for name in TARGET_METRICS:
            ours, bicubic = srgan.get(name), entry["bicubic"].get(name)
            if ours is None or bicubic is None:
                continue
            checks[name] = {"srgan": ours, "bicubic": bicubic,
                            "better": ours > bicubic if higher[name] else ours < bicubic}
        target[objective] = {"checks": checks, "met": len(checks) == len(TARGET_METRICS)
                             and all(check["better"] for check in checks.values())}
    return target


def reproduce_table1(plan: Table1Plan) -> dict:
    """Train (or reuse) every sub-run, then write table1.md, table1.json and the figures."""
    metrics, saved = {}, {}
    for run in plan.runs:
        metrics[str(run.run_dir)] = run_or_reuse(run, plan.sample_root)
        saved[str(run.run_dir)] = saved_config(run).to_dict()
    results = collect(plan, metrics, saved)
    if plan.figure_slices > 0:
        results["figures"] = write_figures(plan)
    write_table1(results, plan.output_dir)
    return results
