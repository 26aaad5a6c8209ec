"""What `srgan-tf train` and `experiments/exp*.py` share: flags -> config, data, VGG policy, run dir.

Entry points stay thin: they parse arguments with `add_experiment_arguments`, build the config
with `config_from_args` and call `run_experiment`.
"""
import argparse
import datetime
import json
import logging
import sys
from pathlib import Path

from srgan_tf import config as config_lib

log = logging.getLogger("srgan_tf")

DEFAULT_SAMPLE_ROOT = Path("data") / "sample"

OFFLINE_WARNING = """
==============================================================================
WARNING: ImageNet VGG19 weights are not available ({reason}).
The built-in-sample demo continues with the SRGAN-MSE variant (content loss = pixel MSE)
instead of the paper's VGG54 content loss. This run's config.json, export metadata and
report record content_loss = "mse". To train with VGG54, see the README ("VGG19 weights").
==============================================================================
"""


def add_experiment_arguments(parser: argparse.ArgumentParser, experiment: str) -> None:
    """Flags for every knob of `ExperimentConfig`; defaults come from the chosen preset."""
    default_mode = "iso" if experiment == "exp1" else "aniso"
    parser.add_argument("--cache", help="HDF5 slice cache from `srgan-tf prepare`; "
                        "default: the built-in synthetic sample (generated once)")
    parser.add_argument("--preset", choices=("quick", "paper"),
                        help="named config; default: quick without --cache, paper with it")
    parser.add_argument("--mode", choices=config_lib.MODES, default=default_mode,
                        help="iso: both axes (Exp. 1); aniso: height only (Exp. 2)")
    parser.add_argument("--scale", type=int, choices=(2, 4, 8), default=4)
    parser.add_argument("--output", help="run directory (default runs/<experiment>-<scale>x-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    parser.add_argument("--sample-root", default=str(DEFAULT_SAMPLE_ROOT),
                        help="where the built-in sample is generated and cached")
    group = parser.add_argument_group("config overrides (default: the preset's value)")
    for section, cls in (("data", config_lib.DataConfig), ("model", config_lib.ModelConfig),
                         ("loss", config_lib.LossConfig), ("train", config_lib.TrainConfig)):
        for field in config_lib.dataclasses.fields(cls):
            if field.name in ("cache", "mode", "scale"):
                continue
            flag = "--" + field.name.replace("_", "-")
            kind = field.type if isinstance(field.type, type) else str
            if "bool" in str(field.type):
                group.add_argument(flag, dest=f"{section}.{field.name}", default=None,
                                   type=_parse_bool, metavar="{true,false}")
            else:
                if "int" in str(field.type):
                    kind = int
                elif "float" in str(field.type):
                    kind = float
                group.add_argument(flag, dest=f"{section}.{field.name}", default=None, type=kind)


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false. Received: {text!r}")


def config_from_args(args: argparse.Namespace, experiment: str) -> config_lib.ExperimentConfig:
    """Preset first, then every flag the user gave."""
    preset_name = args.preset or ("paper" if args.cache else "quick")
    config = config_lib.preset(preset_name, experiment=experiment, mode=args.mode, scale=args.scale)
    config.data.cache = args.cache
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, name = key.split(".")
            setattr(getattr(config, section), name, value)
    config.output_dir = args.output
    return config_lib.ExperimentConfig.from_dict(config.to_dict())  # re-validates


def default_run_dir(config: config_lib.ExperimentConfig) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.experiment}-{config.data.mode}-{config.data.scale}x-{stamp}"


def resolve_cache(config: config_lib.ExperimentConfig, sample_root) -> Path:
    """The user's cache, or the built-in sample (generated and cached on first use)."""
    if config.data.cache:
        path = Path(config.data.cache)
        if not path.exists():
            raise FileNotFoundError(f"{path}: cache file not found (build one with `srgan-tf prepare`)")
        return path
    from srgan_tf.data.sample import ensure_sample_cache

    print(f"No --cache given: using the built-in SYNTHETIC sample under {sample_root}")
    return Path(ensure_sample_cache(sample_root, patients=config.data.sample_patients,
                                    seed=config.train.seed))


def resolve_content_loss(config: config_lib.ExperimentConfig, using_sample: bool):
    """Build the VGG extractor, or apply the offline policy.

    With the user's own data, missing ImageNet weights stop the run before training with the
    way to fix it. Only the built-in-sample demo falls back to SRGAN-MSE, loudly.

    Returns:
        The content extractor, or None for pixel MSE.
    """
    requested = config.loss.content_loss
    if requested == "mse":
        return None
    from srgan_tf.models.vgg import VGGWeightsUnavailable, build_content_extractor

    weights = None if config.loss.vgg_weights == "none" else config.loss.vgg_weights
    try:
        return build_content_extractor(requested, weights=weights)
    except VGGWeightsUnavailable as error:
        if not using_sample:
            raise
        print(OFFLINE_WARNING.format(reason=str(error).splitlines()[0]), file=sys.stderr)
        config.loss.content_loss = "mse"
        config.loss.content_loss_note = (
            f"{requested} requested; ImageNet VGG19 weights unavailable, fell back to mse")
        return None


def run_experiment(config: config_lib.ExperimentConfig, *, resume=False, sample_root=DEFAULT_SAMPLE_ROOT,
                   evaluate=True) -> dict:
    """Data -> train -> export -> evaluate -> report. Returns the metrics dict."""
    from srgan_tf.training.trainer import train

    using_sample = not config.data.cache
    cache = resolve_cache(config, sample_root)
    config.data.cache = str(cache)
    run_dir = Path(config.output_dir) if config.output_dir else default_run_dir(config)
    config.output_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    extractor = resolve_content_loss(config, using_sample)
    result = train(config, run_dir, resume=resume, content_extractor=extractor)
    metrics = {}
    if evaluate:
        from srgan_tf.evaluation.run import evaluate_run

        metrics = evaluate_run(config, run_dir, result.export_dir)
    print(f"\nRun directory: {run_dir}")
    table = run_dir / "report.md"
    if table.exists():
        print(table.read_text())
    return metrics


def load_json(path) -> dict:
    return json.loads(Path(path).read_text())
