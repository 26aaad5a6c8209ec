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
    plan = plan_table1(preset_name="quick", output_dir="runs/table1-quick")
    results = reproduce_table1(plan)
    print(render_table1(results))
"""
import argparse
import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from srgan_tf import config as config_lib
from srgan_tf import experiment as experiment_lib
from srgan_tf.evaluation.metrics import METRICS
from srgan_tf.evaluation.report import DECIMALS, PAPER_TABLE1, method_key, protocol_text

SETTINGS = ("iso-x4", "iso-x8", "aniso-x4", "aniso-x8")
EXPERIMENTS = {"iso": "exp1", "aniso": "exp2"}
OBJECTIVES = ("paper", "improved")
PAPER_OBJECTIVE = {"pixel_weight": 0.0, "relativistic": False, "ema_decay": 0.0}
IMPROVED_FALLBACK = {"pixel_weight": 1.0}  # the quick preset's pixel term
# The paper's column order, then the bicubic columns it left out.
PAPER_COLUMNS = (("bicubic", "iso-x4"), ("srgan", "iso-x4"), ("srgan", "iso-x8"),
                 ("bicubic", "aniso-x8"), ("srgan", "aniso-x4"), ("srgan", "aniso-x8"))
FILLED_IN_COLUMNS = (("bicubic", "iso-x8"), ("bicubic", "aniso-x4"))
TITLES = {"bicubic": "Bicubic", "srresnet": "SRResNet", "srgan": "SRGAN"}
TARGET_SETTING = "aniso-x4"
TARGET_METRICS = ("psnr", "ssim", "hfen", "edge_f1")  # "beats bicubic on all at once"
RUNTIME_ONLY = {("train", "strategy"), ("train", "jit_compile"), ("output_dir",)}


@dataclasses.dataclass
class SubRun:
    """One trained model of the table: a setting and an objective in its own run directory."""

    setting: str
    objective: str
    config: config_lib.ExperimentConfig
    run_dir: Path

    @property
    def mode(self) -> str:
        return self.config.data.mode

    @property
    def scale(self) -> int:
        return self.config.data.scale


@dataclasses.dataclass
class Table1Plan:
    """Everything `reproduce_table1` needs: the sub-runs and where results go."""

    output_dir: Path
    runs: List[SubRun]
    preset: str
    sample_root: Path = experiment_lib.DEFAULT_SAMPLE_ROOT
    figure_slices: int = 2


def parse_setting(name: str):
    """"aniso-x4" -> ("aniso", 4)."""
    mode, _, scale = name.partition("-x")
    if name not in SETTINGS:
        raise ValueError(f"Expected a setting among {', '.join(SETTINGS)}. Received: {name!r}")
    return mode, int(scale)


def objectives_for(choice: Optional[str], preset_name: str) -> tuple:
    """`--objective` -> objectives to train. Default: "improved" (quick), "both" (paper)."""
    choice = choice or ("both" if preset_name == "paper" else "improved")
    if choice == "both":
        return OBJECTIVES
    if choice not in OBJECTIVES:
        raise ValueError(f"objective must be paper, improved or both. Received: {choice!r}")
    return (choice,)


def apply_objective(config: config_lib.ExperimentConfig, objective: str) -> config_lib.ExperimentConfig:
    """A copy of `config` with the "paper" or "improved" adversarial-phase objective."""
    config = config_lib.ExperimentConfig.from_dict(config.to_dict())
    current = {key: getattr(config.loss, key) for key in PAPER_OBJECTIVE}
    if objective == "paper":
        changes = PAPER_OBJECTIVE
    elif objective == "improved":
        changes = IMPROVED_FALLBACK if current == PAPER_OBJECTIVE else {}
    else:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}. Received: {objective!r}")
    for key, value in changes.items():
        setattr(config.loss, key, value)
    return config


def objective_label(loss: dict) -> str:
    """The objective in words, e.g. "mse content + 0.001 adversarial + 1 pixel, EMA 0.999"."""
    parts = [f"{loss.get('content_loss')} content",
             f"{loss.get('adversarial_weight'):g} {'relativistic ' if loss.get('relativistic') else ''}"
             "adversarial"]
    if loss.get("pixel_weight"):
        parts.append(f"{loss['pixel_weight']:g} pixel")
    text = " + ".join(parts)
    return text + (f", EMA {loss['ema_decay']:g}" if loss.get("ema_decay") else "")


def plan_table1(preset_name: Optional[str] = None, *, cache=None, output_dir=None,
                settings: Sequence[str] = SETTINGS, objective: Optional[str] = None,
                overrides: Optional[dict] = None, sample_root=experiment_lib.DEFAULT_SAMPLE_ROOT,
                figure_slices: int = 2) -> Table1Plan:
    """The sub-runs of the table: one config per setting and objective.

    Args:
        preset_name: "quick" or "paper"; default quick without `cache`, paper with it.
        cache: HDF5 slice cache; None trains on the built-in sample.
        output_dir: results directory; default runs/table1-<preset>.
        settings: among `SETTINGS`.
        objective: "paper", "improved" or "both"; default `objectives_for`.
        overrides: {"section.field": value} config overrides (the experiment flags).
        sample_root: where the built-in sample lives.
        figure_slices: test slices in the comparison figures.
    """
    preset_name = preset_name or ("paper" if cache else "quick")
    output_dir = Path(output_dir or Path("runs") / f"table1-{preset_name}")
    runs = []
    for setting in settings:
        mode, scale = parse_setting(setting)
        flags = {"preset": preset_name, "cache": cache, "mode": mode, "scale": scale,
                 "output": None, **(overrides or {})}
        base = experiment_lib.config_from_args(argparse.Namespace(**flags), EXPERIMENTS[mode])
        for name in objectives_for(objective, preset_name):
            config = apply_objective(base, name)
            run_dir = output_dir / f"{setting}-{name}"
            config.output_dir = str(run_dir)
            runs.append(SubRun(setting, name, config, run_dir))
    return Table1Plan(output_dir, runs, preset_name, Path(sample_root), figure_slices)


def config_differences(saved: dict, requested: dict) -> List[str]:
    """Fields where a finished sub-run's config.json differs from the requested config.

    Ignores runtime-only fields, the resolved cache path when the sample is used, and the
    content loss that the offline VGG fallback rewrote.
    """
    differences = []
    for section, values in requested.items():
        pairs = values.items() if isinstance(values, dict) else [(None, values)]
        for key, value in pairs:
            path = (section,) if key is None else (section, key)
            old = saved.get(section) if key is None else saved.get(section, {}).get(key)
            if path in RUNTIME_ONLY or key == "content_loss_note" or old == value:
                continue
            if path == ("data", "cache") and value is None:
                continue
            if key == "content_loss" and saved.get("loss", {}).get("content_loss_note"):
                continue
            differences.append(f"{'.'.join(path)}: {old!r} in the run, {value!r} requested")
    return differences


def run_or_reuse(sub_run: SubRun, sample_root=experiment_lib.DEFAULT_SAMPLE_ROOT) -> dict:
    """The sub-run's metrics: reused when finished, resumed when interrupted, else trained.

    Raises:
        ValueError: the run directory holds a run of another configuration.
    """
    metrics_path, config_path = sub_run.run_dir / "metrics.json", sub_run.run_dir / "config.json"
    if config_path.exists():
        differences = config_differences(json.loads(config_path.read_text()), sub_run.config.to_dict())
        if differences:
            raise ValueError(f"{sub_run.run_dir} holds a run of another configuration; choose "
                             f"another --output or delete it. Received: {'; '.join(differences)}")
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        if "sr" in metrics:
            print(f"Reusing finished sub-run {sub_run.run_dir}")
            return metrics
    resume = config_path.exists()  # the trainer starts fresh when no checkpoint was written
    print(f"\n=== Table 1: {sub_run.setting}, {sub_run.objective} objective -> {sub_run.run_dir}"
          + (" (resuming)" if resume else ""))
    config = config_lib.ExperimentConfig.from_dict(sub_run.config.to_dict())
    return experiment_lib.run_experiment(config, resume=resume, sample_root=sample_root)


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


def _format(metrics: Optional[dict], name: str, show_std: bool = True) -> str:
    value = (metrics or {}).get(name)
    if value is None:
        return "–"
    if value == float("inf"):
        return "∞"
    decimals = DECIMALS.get(name, 3)
    std = metrics.get(f"{name}_std")
    return f"{value:.{decimals}f}" + (f" ± {std:.{decimals}f}" if show_std and std is not None else "")


def _paper(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2f}"  # the paper's precision


def _column_metrics(entry: dict, method: str, objective: str) -> Optional[dict]:
    return entry["bicubic"] if method == "bicubic" else entry[method].get(objective)


def paper_layout_table(results: dict) -> str:
    """PSNR / SSIM in the paper's column order (+ the filled-in bicubic columns), paper vs ours."""
    settings = results["settings"]
    columns = [(m, s) for m, s in PAPER_COLUMNS + FILLED_IN_COLUMNS if s in settings]
    names = [method_key(TITLES[m], *parse_setting(s)) + ("*" if (m, s) in FILLED_IN_COLUMNS else "")
             for m, s in columns]
    lines = ["| Metric | Source | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(columns)]
    for spec in METRICS[:2]:
        cells = [PAPER_TABLE1.get(method_key(m, *parse_setting(s)), {}).get(spec.name) for m, s in columns]
        lines.append(f"| {spec.label} | paper | " + " | ".join(_paper(c) for c in cells) + " |")
        for objective in results["objectives"]:
            cells = [_format(_column_metrics(settings[s], m, objective), spec.name, show_std=False)
                     for m, s in columns]
            lines.append(f"| {spec.label} | ours, {objective} objective | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def full_table(results: dict) -> str:
    """Every setting and method with all metrics (mean ± std over patients), paper beside ours."""
    header = ["Setting", "Method", "Objective"]
    for spec in METRICS:
        header.append(f"{spec.label} {'↑' if spec.higher_is_better else '↓'}")
        if spec.name in ("psnr", "ssim"):
            header.append(f"{spec.label.split()[0]} (paper)")
    header.append("Patients / slices")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting, entry in results["settings"].items():
        mode, scale = parse_setting(setting)
        rows = [("bicubic", "–", entry["bicubic"])]
        rows += [("srresnet", f"pretrain of the {o} run", m) for o, m in entry["srresnet"].items()]
        rows += [("srgan", f"{o}: {entry['runs'][o]['objective']}", m) for o, m in entry["srgan"].items()]
        best = _best_values([m for _, _, m in rows])
        for method, objective, metrics in rows:
            paper = PAPER_TABLE1.get(method_key(method, mode, scale), {})
            if method == "srgan" and "paper" in entry["srgan"] and not objective.startswith("paper"):
                paper = {}  # the paper's numbers sit beside the paper objective only
            cells = [f"{mode} ×{scale}", TITLES[method], objective]
            for spec in METRICS:
                text = _format(metrics, spec.name)
                bold = metrics.get(spec.name) is not None and metrics.get(spec.name) == best.get(spec.name)
                cells.append(f"**{text}**" if bold else text)
                if spec.name in ("psnr", "ssim"):
                    cells.append(_paper(paper.get(spec.name)))
            cells.append(f"{metrics.get('patients', '–')} / {metrics.get('slices', '–')}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _best_values(rows: List[dict]) -> dict:
    best = {}
    for spec in METRICS:
        values = [m[spec.name] for m in rows if m.get(spec.name) is not None]
        if len(set(values)) > 1:
            best[spec.name] = max(values) if spec.higher_is_better else min(values)
    return best


def render_table1(results: dict) -> str:
    """table1.md: paper-layout table, full table, quality target, protocol, figures, runs."""
    parts = [f"# Table 1 reproduction (Sood & Rusu), {results['preset']} preset", "",
             "## Table 1 in the paper's layout (PSNR [dB] / SSIM)", "", paper_layout_table(results),
             "\\* not in the paper: bicubic columns filled in from the same evaluation.", "",
             "## All settings and metrics (test split, mean ± std over patients; best per setting "
             "in bold)", "", full_table(results),
             "SRResNet = the generator after the MSE pretraining phase; SRGAN = after the "
             "adversarial phase. Paper numbers: Sood & Rusu, Table 1 (TCIA prostate T2: their "
             "data, split and protocol, not ours).", ""]
    if any(not entry["srresnet"] for entry in results["settings"].values()):
        parts += ["SRResNet rows are missing where the run kept no `export_pretrain/`.", ""]
    target = results.get("quality_target") or {}
    if target:
        mode, scale = parse_setting(TARGET_SETTING)
        parts += [f"## Quality target: SRGAN {mode} ×{scale} beats bicubic on PSNR, SSIM, HFEN "
                  "and edge F1 at once", ""]
        labels = {spec.name: spec.label.replace(" [dB]", "") for spec in METRICS}
        for objective, verdict in target.items():
            checks = ", ".join(f"{labels[name]} {_short(name, check)}"
                               for name, check in verdict["checks"].items())
            parts.append(f"- {objective} objective: **{'met' if verdict['met'] else 'not met'}** "
                         f"({checks})")
        parts.append("")
    protocol = {k: v for k, v in next(iter(results["settings"].values()), {}).get("protocol", {}).items()
                if k not in ("scale_hw", "border")}
    parts += ["## Protocol", "", protocol_text(protocol), ""]
    if results.get("figures"):
        parts += ["## Figures", ""]
        for figure in results["figures"]:
            link = Path(figure)
            if link.is_relative_to(results["output_dir"]):
                link = link.relative_to(results["output_dir"])
            parts += [f"![{link.stem}]({link.as_posix()})", ""]
    parts += ["## Runs", ""]
    for setting, entry in results["settings"].items():
        for objective, run in entry["runs"].items():
            note = run["loss"].get("content_loss_note")
            run_dir = Path(run["run_dir"])
            if run_dir.is_relative_to(results["output_dir"]):
                run_dir = run_dir.relative_to(results["output_dir"])
            parts.append(f"- {setting}, {objective}: `{run_dir.as_posix()}/` ({run['objective']})"
                         + (f"; {note}" if note else ""))
    return "\n".join(parts) + "\n"


def _short(name: str, check: dict) -> str:
    decimals = DECIMALS.get(name, 3)
    mark = "✓" if check["better"] else "✗"
    return f"{check['srgan']:.{decimals}f} vs {check['bicubic']:.{decimals}f} {mark}"


def _saved_config(run: SubRun) -> config_lib.ExperimentConfig:
    """The config the run actually used (resolved cache, content loss), else the planned one."""
    path = run.run_dir / "config.json"
    return config_lib.ExperimentConfig.load(path) if path.exists() else run.config


def write_figures(plan: Table1Plan) -> List[str]:
    """Per mode and fixed test slice: HR | LR | Bicubic | SRResNet | SRGAN rows, one per scale.

    Each row is `save_comparison_figure` (zoomed inset on an edge-rich region, error maps of
    bicubic and the last SRGAN); rows are stacked into one PNG per mode and slice, which is
    also logged to TensorBoard under OUT/logs.
    """
    import cv2
    import numpy as np
    import tensorflow as tf

    from srgan_tf.data.degrade import degrade, upsample_bicubic
    from srgan_tf.data.pipeline import validation_batch
    from srgan_tf.evaluation.figures import save_comparison_figure
    from srgan_tf.inference.export import load_exported
    from srgan_tf.training.callbacks import write_images  # works without the tensorboard package

    by_mode: Dict[str, Dict[str, List[SubRun]]] = {}
    for run in plan.runs:
        by_mode.setdefault(run.mode, {}).setdefault(run.setting, []).append(run)
    writer = tf.summary.create_file_writer(str(plan.output_dir / "logs"))
    paths = []
    for mode, settings in by_mode.items():
        first = _saved_config(next(iter(settings.values()))[0])
        _, hr = validation_batch(first.data.cache, first.data, count=plan.figure_slices, split="test")
        rows: List[list] = [[] for _ in hr]
        for setting, runs in settings.items():
            scale_hw, suffix = runs[0].config.data.scale_hw, f" ×{runs[0].scale}"
            lr = degrade(hr, scale_hw).numpy()
            outputs = [("Bicubic", upsample_bicubic(lr, scale_hw).numpy())]
            if (runs[0].run_dir / "export_pretrain").is_dir():
                outputs.append(("SRResNet", load_exported(runs[0].run_dir / "export_pretrain").predict(lr)))
            outputs += [(f"SRGAN {run.objective}", load_exported(run.run_dir / "export").predict(lr))
                        for run in runs]
            for index in range(len(hr)):
                panels = [("HR", hr[index, ..., 0]), ("LR" + suffix, lr[index, ..., 0])]
                panels += [(title + suffix, np.clip(image[index, ..., 0], -1.0, 1.0))
                           for title, image in outputs]
                rows[index].append(save_comparison_figure(
                    None, panels, error_map_of=["Bicubic" + suffix, panels[-1][0]]))
        for index, images in enumerate(rows):
            combined = _stack_rows(images)
            path = plan.output_dir / "figures" / f"table1-{mode}-slice{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), combined[..., ::-1])  # OpenCV writes BGR
            with writer.as_default(step=0):
                write_images(f"table1/{mode}/slice_{index}", combined[None] / 255.0)
            paths.append(str(path))
    writer.flush()
    return paths


def _stack_rows(images):
    """RGB images one above the other, padded with white to the widest."""
    import numpy as np

    width = max(image.shape[1] for image in images)
    return np.concatenate([np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)),
                                  constant_values=255) for image in images])


def write_table1(results: dict, output_dir) -> str:
    """Write OUT/table1.md and OUT/table1.json; returns the markdown."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    text = render_table1(results)
    (output_dir / "table1.md").write_text(text)
    (output_dir / "table1.json").write_text(json.dumps(results, indent=2) + "\n")
    return text


def reproduce_table1(plan: Table1Plan) -> dict:
    """Train (or reuse) every sub-run, then write table1.md, table1.json and the figures."""
    metrics, saved = {}, {}
    for run in plan.runs:
        metrics[str(run.run_dir)] = run_or_reuse(run, plan.sample_root)
        saved[str(run.run_dir)] = _saved_config(run).to_dict()
    results = collect(plan, metrics, saved)
    if plan.figure_slices > 0:
        results["figures"] = write_figures(plan)
    write_table1(results, plan.output_dir)
    return results


def add_table1_arguments(parser: argparse.ArgumentParser) -> None:
    """The experiment flags (cache, preset, config overrides) plus the table's own.

    --mode and --scale, which pick one setting in the experiment scripts, here only narrow
    the settings; finished sub-runs are always reused and interrupted ones resumed.
    """
    experiment_lib.add_experiment_arguments(parser, "exp2")
    parser.set_defaults(mode=None, scale=None)
    parser.add_argument("--columns", nargs="+", choices=SETTINGS, default=list(SETTINGS),
                        help="settings to train and score (each gives its bicubic column too)")
    parser.add_argument("--objective", choices=OBJECTIVES + ("both",),
                        help="adversarial-phase objective: paper (content + 1e-3 adversarial), "
                             "improved (the preset's pixel term / relativistic / EMA), or both; "
                             "default improved with the quick preset, both with paper")
    parser.add_argument("--figure-slices", type=int, default=2,
                        help="fixed test slices drawn per mode (0: no figures)")


def plan_from_args(args: argparse.Namespace) -> Table1Plan:
    """`add_table1_arguments` flags -> the plan."""
    settings = [s for s in args.columns
                if (args.mode is None or parse_setting(s)[0] == args.mode)
                and (args.scale is None or parse_setting(s)[1] == args.scale)]
    if not settings:
        raise ValueError(f"No Table 1 setting matches. Received: columns={args.columns}, "
                         f"mode={args.mode}, scale={args.scale}")
    overrides = {key: value for key, value in vars(args).items() if "." in key and value is not None}
    return plan_table1(args.preset, cache=args.cache, output_dir=args.output, settings=settings,
                       objective=args.objective, overrides=overrides, sample_root=args.sample_root,
                       figure_slices=args.figure_slices)
