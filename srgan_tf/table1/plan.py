"""Table 1 plan: settings, objectives, one experiment config per sub-run, and the CLI flags.

`srgan_tf.table1.reproduce` trains (or reuses) the planned sub-runs and collects their
numbers; `srgan_tf.table1.report` renders them.
"""
import argparse
import dataclasses
from pathlib import Path
from typing import List, Optional, Sequence

from srgan_tf import arguments
from srgan_tf import config as config_lib
from srgan_tf.io.paths_guard import refuse_overwriting_inputs
from srgan_tf.run_directory import RunDirectory

SETTINGS = ("iso-x4", "iso-x8", "aniso-x4", "aniso-x8")
EXPERIMENTS = config_lib.EXPERIMENT_OF_MODE
OBJECTIVES = ("paper", "improved")
PAPER_OBJECTIVE = {"pixel_weight": 0.0, "relativistic": False, "ema_decay": 0.0}
IMPROVED_FALLBACK = {"pixel_weight": 1.0}  # the quick preset's pixel term
TARGET_SETTING = "aniso-x4"
TARGET_METRICS = ("psnr", "ssim", "hfen", "edge_f1")  # "beats bicubic on all at once"


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
    sample_root: Path = arguments.DEFAULT_SAMPLE_ROOT
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
    """`config` with the "paper" or "improved" adversarial-phase objective."""
    current = {key: getattr(config.loss, key) for key in PAPER_OBJECTIVE}
    if objective == "paper":
        changes = PAPER_OBJECTIVE
    elif objective == "improved":
        changes = IMPROVED_FALLBACK if current == PAPER_OBJECTIVE else {}
    else:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}. Received: {objective!r}")
    return config.updated(loss=changes)


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
                overrides: Optional[dict] = None, sample_root=arguments.DEFAULT_SAMPLE_ROOT,
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
    refuse_overwriting_inputs([cache], {"--output": output_dir})
    runs = []
    for setting in settings:
        mode, scale = parse_setting(setting)
        # Table 1 is the paper's protocol: bicubic LR, whatever the preset's degradation.
        flags = {"preset": preset_name, "cache": cache, "mode": mode, "scale": scale,
                 "output": None, "data.degradation": "bicubic", **(overrides or {})}
        base = arguments.config_from_args(argparse.Namespace(**flags), EXPERIMENTS[mode])
        for name in objectives_for(objective, preset_name):
            run_dir = output_dir / f"{setting}-{name}"
            config = apply_objective(base, name).updated(output_dir=str(run_dir))
            runs.append(SubRun(setting, name, config, run_dir))
    return Table1Plan(output_dir, runs, preset_name, Path(sample_root), figure_slices)


def run_differences(run: SubRun) -> dict:
    """{class: ["field: the run's value in the run, the planned one requested"]} of the fields
    where the sub-run's config.json differs from its planned config, by the one resume rule
    (`config.resume_differences`): a learned field refuses the directory, a schedule field
    resumes it (a finished run trains on to the new end), runtime fields are ignored. Empty
    lists when the run has no config.json yet."""
    path = RunDirectory(run.run_dir).config
    if not path.exists():
        return {kind: [] for kind in config_lib.RESUME_CLASSES}
    differ = config_lib.resume_differences(config_lib.ExperimentConfig.load(path),
                                           config_lib.field_values(run.config))
    return {kind: [f"{name}: {old!r} in the run, {new!r} requested"
                   for name, (old, new) in fields.items()] for kind, fields in differ.items()}


def saved_config(run: SubRun) -> config_lib.ExperimentConfig:
    """The config the run actually used (resolved cache, content loss), else the planned one."""
    path = RunDirectory(run.run_dir).config
    return config_lib.ExperimentConfig.load(path) if path.exists() else run.config


def add_table1_arguments(parser: argparse.ArgumentParser) -> None:
    """The experiment flags (cache, preset, config overrides) plus the table's own.

    --mode and --scale, which pick one setting in the experiment scripts, here only narrow
    the settings; finished sub-runs are always reused and interrupted ones resumed.
    """
    arguments.add_experiment_arguments(parser, "exp2")
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
