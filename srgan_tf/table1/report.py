"""Table 1 output: the markdown of table1.md, table1.json and the comparison figures.

The numbers come from `srgan_tf.table1.reproduce.collect`, the sub-runs from `table1.plan`.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional

from srgan_tf.evaluation.metrics import METRICS
from srgan_tf.evaluation.report import (DECIMALS, PAPER_TABLE1, method_key, protocol_text,
                                        scored_on_sample)
from srgan_tf.files import atomic_write_text
from srgan_tf.run_directory import RunDirectory
from srgan_tf.table1.plan import TARGET_SETTING, SubRun, Table1Plan, parse_setting, saved_config

# The paper's column order, then the bicubic columns it left out.
PAPER_COLUMNS = (("bicubic", "iso-x4"), ("srgan", "iso-x4"), ("srgan", "iso-x8"),
                 ("bicubic", "aniso-x8"), ("srgan", "aniso-x4"), ("srgan", "aniso-x8"))
FILLED_IN_COLUMNS = (("bicubic", "iso-x8"), ("bicubic", "aniso-x4"))
TITLES = {"bicubic": "Bicubic", "srresnet": "SRResNet", "srgan": "SRGAN"}


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
    first = next(iter(results["settings"].values()), {})
    synthetic = scored_on_sample({"protocol": first.get("protocol", {})}, {})
    parts = [f"# Table 1 reproduction (Sood & Rusu), {results['preset']} preset", ""]
    if synthetic:
        parts += ["**Data: the built-in synthetic phantom** (not patient MR): the paper's numbers "
                  "are on TCIA patients, ours on the phantom; compare each row with its own "
                  "bicubic, not across sources.", ""]
    parts += ["## Table 1 in the paper's layout (PSNR [dB] / SSIM)", "", paper_layout_table(results),
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


def write_figures(plan: Table1Plan) -> List[str]:
    """Per mode and fixed test slice: HR | LR | Bicubic | SRResNet | SRGAN rows, one per scale.

    Each row is `save_comparison_figure` (zoomed inset on an edge-rich region, error maps of
    bicubic and the last SRGAN); rows are stacked into one PNG per mode and slice, which is
    also logged to TensorBoard under OUT/logs.
    """
    import cv2
    import numpy as np
    import tensorflow as tf

    from srgan_tf.data.degradation.degrade import degrade, upsample_bicubic
    from srgan_tf.data.pipelines.pipeline import validation_batch
    from srgan_tf.evaluation.figures import save_comparison_figure
    from srgan_tf.inference.exported_model import load_exported

    by_mode: Dict[str, Dict[str, List[SubRun]]] = {}
    for run in plan.runs:
        by_mode.setdefault(run.mode, {}).setdefault(run.setting, []).append(run)
    writer = tf.summary.create_file_writer(str(plan.output_dir / "logs"))
    paths = []
    for mode, settings in by_mode.items():
        first = saved_config(next(iter(settings.values()))[0])
        _, hr = validation_batch(first.data.cache, first.data, count=plan.figure_slices, split="test")
        rows: List[list] = [[] for _ in hr]
        for setting, runs in settings.items():
            scale_hw, suffix = runs[0].config.data.scale_hw, f" ×{runs[0].scale}"
            lr = degrade(hr, scale_hw).numpy()
            outputs = [("Bicubic", upsample_bicubic(lr, scale_hw).numpy())]
            srresnet = RunDirectory(runs[0].run_dir).export_pretrain
            if srresnet.is_dir():
                outputs.append(("SRResNet", load_exported(srresnet).predict(lr)))
            outputs += [(f"SRGAN {run.objective}", load_exported(RunDirectory(run.run_dir).export).predict(lr))
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
                tf.summary.image(f"table1/{mode}/slice_{index}", combined[None] / 255.0)
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
    atomic_write_text(output_dir / "table1.md", text)
    atomic_write_text(output_dir / "table1.json", json.dumps(results, indent=2) + "\n")
    return text
