"""Flags -> config: every knob of `ExperimentConfig` as a flag (defaults from the preset), and
the config of a run from its flags, or from its config.json on --resume.

Entry points stay thin: they parse arguments with `add_experiment_arguments`, build the config
with `config_from_args` and call `experiment.run_experiment`.
"""
import argparse
import re
from pathlib import Path

from srgan_tf import config as config_lib
from srgan_tf import presets
from srgan_tf.run_directory import RunDirectory

DEFAULT_SAMPLE_ROOT = Path("data") / "sample"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after a flag's help, except where there is no default to show."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def number_type(kind, allowed: config_lib.Range):
    """argparse `type=` for an int or float flag that must lie in `allowed`: a bad value stops
    at parse time with the flag's name and the range (exit 2)."""
    noun = "an integer" if kind is int else "a number"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}. Received: {text!r}") from None
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"must be {noun} {allowed.text()}. Received: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


# Flags whose values are names: their allowed names come from config.py.
_CHOICES = {"content_loss": config_lib.CONTENT_LOSSES, "strategy": config_lib.STRATEGIES,
            "precision": config_lib.PRECISIONS, "degradation": config_lib.DEGRADATIONS,
            "slice_profile": config_lib.SLICE_PROFILES}


def default_mode(experiment: str) -> str:
    """Exp. 1 is iso; Exp. 2, Exp. 3 and every other run default to the paper's main (aniso) model."""
    return "iso" if experiment == config_lib.EXPERIMENT_OF_MODE["iso"] else "aniso"


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """--threads: the CPU threads of every computing pool (`runtime.set_threads`)."""
    parser.add_argument("--threads", type=number_type(int, config_lib.Range(1)),
                        help="CPU threads for TensorFlow's intra- and inter-op pools, OpenMP, "
                             "BLAS and OpenCV (default: all cores); e.g. 4 volumes x 4 threads "
                             "on a 16-core node")


DEFAULT_SCALE = 4


def add_experiment_arguments(parser: argparse.ArgumentParser, experiment: str) -> None:
    """Flags for every knob of `ExperimentConfig` (every field but the run's own records,
    `config.RECORD`); defaults come from the chosen preset (with --resume, from the run's
    config.json)."""
    mode = default_mode(experiment)
    parser.usage = "%(prog)s [options]"  # the full list is 40 flags: errors stay readable
    parser.add_argument("--cache", help="HDF5 slice cache from `srgan-tf prepare`; "
                        "default: the built-in synthetic sample (generated once)")
    parser.add_argument("--preset", choices=("quick", "paper"),
                        help="named config; default: quick without --cache, paper with it")
    # None defaults: a flag the user gave is told apart from a default (--resume, Exp. 3)
    parser.add_argument("--mode", choices=config_lib.MODES,
                        help=f"iso: both axes (Exp. 1); aniso: height only (Exp. 2) (default: {mode})")
    scale_default = ("the --model's, else 4" if experiment == "exp3"  # a model fixes the factor
                     else str(DEFAULT_SCALE))
    parser.add_argument("--scale", type=int, choices=config_lib.SCALES,
                        help=f"downsampling factor (default: {scale_default})")
    parser.add_argument("--output", metavar="RUN_DIR",
                        help="run directory; default: runs/<experiment>-<mode>-<scale>x-<time>, "
                             "e.g. runs/exp2-aniso-4x-20250101-120000")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output from its last checkpoint, with its "
                             "config.json (only schedule and runtime flags may change, e.g. "
                             "--adversarial-epochs, --precision, --strategy)")
    parser.add_argument("--sample-root", default=str(DEFAULT_SAMPLE_ROOT),
                        help="where the built-in sample is generated and cached")
    add_threads_argument(parser)
    group = parser.add_argument_group("config overrides (default: the preset's value, shown "
                                      "as quick / paper)")
    named = [presets.preset(name, experiment=experiment, mode=mode) for name in ("quick", "paper")]
    for section, cls in (("data", config_lib.DataConfig), ("model", config_lib.ModelConfig),
                         ("loss", config_lib.LossConfig), ("train", config_lib.TrainConfig)):
        for field in config_lib.dataclasses.fields(cls):
            if (field.name in ("cache", "mode", "scale")
                    or config_lib.FIELD_CLASSES[f"{section}.{field.name}"] == config_lib.RECORD):
                continue
            flag = "--" + field.name.replace("_", "-")
            options = dict(dest=f"{section}.{field.name}", default=None)
            values = [getattr(getattr(config, section), field.name) for config in named]
            options["help"] = f"{values[0]} / {values[1]}"
            if "bool" in str(field.type):
                options.update(type=_parse_bool, metavar="{true,false}")
            elif field.name in _CHOICES:
                options.update(choices=_CHOICES[field.name])
            elif "int" in str(field.type) or "float" in str(field.type):
                kind = int if "int" in str(field.type) else float
                allowed = config_lib.RANGES.get(field.name, config_lib.Range())
                options.update(type=number_type(kind, allowed), metavar=kind.__name__.upper())
                if allowed != config_lib.Range():
                    options["help"] += f"; {allowed.text()}"
            else:
                options.update(metavar=field.name.upper())
            group.add_argument(flag, **options)


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false. Received: {text!r}")


def config_from_args(args: argparse.Namespace, experiment: str) -> config_lib.ExperimentConfig:
    """Preset first, then every flag the user gave. A value the config refuses raises
    `ConfigError` naming the flags (e.g. --patch-size not divisible by --scale).

    With --resume and a run in --output, its config.json instead (`resumed_config`).
    """
    saved = RunDirectory(args.output).config if getattr(args, "resume", False) and args.output else None
    if saved is not None and saved.is_file():
        return resumed_config(args, saved)
    preset_name = args.preset or ("paper" if args.cache else "quick")
    config = presets.preset(preset_name, experiment=experiment,
                            mode=args.mode or default_mode(experiment),
                            scale=args.scale or DEFAULT_SCALE)
    knobs = {"data.cache": args.cache, **_given_knobs(args)}
    return _updated(config, knobs, output_dir=args.output)


def resumed_config(args: argparse.Namespace, saved_path: Path) -> config_lib.ExperimentConfig:
    """The run's own config.json for --resume, with the schedule and runtime flags the user
    gave (more epochs, another strategy or precision...). A flag that would change what the
    saved checkpoints learned from (data, degradation, networks, losses, cache, preset) is
    refused: continuing under other settings would mislabel the run and its export. The
    classes are `config.FIELD_CLASSES`, which the trainer and Table 1 read too."""
    saved = config_lib.ExperimentConfig.load(saved_path)
    given = {"data.cache": args.cache, "preset": args.preset, "data.mode": args.mode,
             "data.scale": args.scale, **_given_knobs(args)}
    differ = config_lib.resume_differences(
        saved, {name: value for name, value in given.items() if value is not None})
    if differ[config_lib.LEARNED]:
        flags = [f"--{name.split('.')[-1].replace('_', '-')} {value} (the run's: {old})"
                 for name, (old, value) in differ[config_lib.LEARNED].items()]
        raise config_lib.ConfigError(
            f"--resume continues {args.output} with its config.json, and these flags differ from "
            f"it: {', '.join(flags)}; drop them (only schedule and runtime flags such as "
            "--adversarial-epochs or --precision may change), or start a new run with another "
            "--output")
    changes = {name: value for kind in (config_lib.SCHEDULE, config_lib.RUNTIME)
               for name, (_, value) in differ[kind].items()}
    return _updated(saved, changes, output_dir=args.output)


def _given_knobs(args: argparse.Namespace) -> dict:
    """{"section.field": value} of the config-override flags the user gave."""
    return {key: value for key, value in vars(args).items() if "." in key and value is not None}


def _updated(config: config_lib.ExperimentConfig, knobs: dict,
             **fields) -> config_lib.ExperimentConfig:
    """`config` with the {"section.field": value} `knobs` and top-level `fields`; a value the
    config refuses raises `ConfigError` naming the flags."""
    sections = {}
    for name, value in knobs.items():
        section, field = name.split(".")
        sections.setdefault(section, {})[field] = value
    try:
        return config.updated(**sections, **fields)
    except config_lib.ConfigError as error:
        raise config_lib.ConfigError(_as_flags(str(error))) from None


def _as_flags(message: str) -> str:
    """Config field names in a message -> the flags that set them."""
    names = {field.name for cls in (config_lib.DataConfig, config_lib.ModelConfig,
                                    config_lib.LossConfig, config_lib.TrainConfig)
             for field in config_lib.dataclasses.fields(cls)}
    return re.sub(r"(?<![\w-])(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b",
                  lambda match: "--" + match.group(1).replace("_", "-"), message)
