"""What `srgan-tf train` and `experiments/exp*.py` run: data, VGG policy, run dir, train ->
export -> evaluate, and `run_main`, every entry point's error handling.

Entry points stay thin: they parse arguments with `arguments.add_experiment_arguments`, build
the config with `arguments.config_from_args` and call `run_experiment`.
"""
import argparse
import datetime
import logging
import sys
from pathlib import Path

from srgan_tf import config as config_lib
from srgan_tf.arguments import (DEFAULT_SAMPLE_ROOT, HelpFormatter, add_experiment_arguments,
                                config_from_args)
from srgan_tf.console import command_warnings, warn
from srgan_tf.flag_checks import config_warnings
from srgan_tf.io.errors import InputError
from srgan_tf.io.paths_guard import refuse_overwriting_inputs
from srgan_tf.run_directory import RunDirectory

log = logging.getLogger("srgan_tf")

OFFLINE_WARNING = """
==============================================================================
WARNING: ImageNet VGG19 weights are not available ({reason}).
The built-in-sample demo continues with the SRGAN-MSE variant (content loss = pixel MSE)
instead of the paper's VGG54 content loss. This run's config.json, export metadata and
report record content_loss = "mse". To train with VGG54, see docs/training.md ("VGG19 weights").
==============================================================================
"""


# Errors that are the user's to fix: one line, exit 2. Anything else is a bug: traceback.
USER_ERRORS = (InputError, config_lib.ConfigError, FileNotFoundError, FileExistsError,
               NotADirectoryError, IsADirectoryError, PermissionError)


def run_main(parser: argparse.ArgumentParser, run, argv=None, *, check=None) -> int:
    """Every entry point's `main`: parse, start TensorFlow quietly, run, and turn the user's
    errors into one line `<prog>: error: ...` (exit 2) and Ctrl-C into one line (exit 130);
    `console.warn` messages print as `<prog>: warning: ...` lines.

    Args:
        parser: the entry point's parser. `set_defaults(prog=..., tensorflow=False)` on a
            subcommand names it in messages and skips the TensorFlow start.
        run: called with the parsed arguments; an int it returns is the exit status.
        argv: arguments (default: sys.argv[1:]).
        check: optional `check(parser, args)` for parse-time checks across flags
            (it calls `parser.error`).

    Returns:
        The exit status.
    """
    from srgan_tf import runtime

    runtime.quiet_tensorflow_logs()
    args = parser.parse_args(argv)
    prog = getattr(args, "prog", None) or parser.prog
    with command_warnings(prog):
        return _run_parsed(parser, run, args, check, prog)


def _run_parsed(parser, run, args, check, prog) -> int:
    from srgan_tf import runtime

    runtime.set_threads(getattr(args, "threads", None))  # before any pool starts
    if check is not None:
        check(parser, args)
    try:
        if getattr(args, "tensorflow", True):
            runtime.start_tensorflow()
        status = run(args)
    except USER_ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # offline VGG weights: actionable message, no traceback
        if type(error).__name__ != "VGGWeightsUnavailable":
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return status if type(status) is int else 0  # a batch run's own status (failed items)


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
    from srgan_tf.data.synthetic.sample import ensure_sample_cache

    print(f"No --cache given: using the built-in SYNTHETIC sample under {sample_root}")
    return Path(ensure_sample_cache(sample_root, patients=config.data.sample_patients,
                                    seed=config.train.seed))


def resolve_content_loss(config: config_lib.ExperimentConfig, using_sample: bool):
    """Build the VGG extractor, or apply the offline policy.

    With the user's own data, missing ImageNet weights stop the run before training with the
    way to fix it. Only the built-in-sample demo falls back to SRGAN-MSE, loudly.

    Returns:
        (the config to train, the content extractor or None for pixel MSE); the config is
        `config` itself unless it fell back to mse, which it then records.
    """
    requested = config.loss.content_loss
    if requested == "mse":
        return config, None
    from srgan_tf.models.vgg import VGGWeightsUnavailable, build_content_extractor

    weights = None if config.loss.vgg_weights == "none" else config.loss.vgg_weights
    try:
        return config, build_content_extractor(requested, weights=weights)
    except VGGWeightsUnavailable as error:
        if not using_sample:
            raise
        print(OFFLINE_WARNING.format(reason=str(error).splitlines()[0]), file=sys.stderr)
        note = f"{requested} requested; ImageNet VGG19 weights unavailable, fell back to mse"
        return config.updated(loss={"content_loss": "mse", "content_loss_note": note}), None


def check_split(cache, split: str = "test", advice: str = "") -> int:
    """Raises InputError when the cache holds no series on `split`'s side, before any work.

    Returns:
        The number of series on that side.
    """
    from srgan_tf.data.slice_cache.cache import SliceCache

    with SliceCache(cache) as opened:
        count = len(opened.series(split))
        patients = {side: len(ids) for side, ids in opened.split.items()}
    if not count:
        raise InputError(cache, f"no series in the {split!r} split (split: {patients['train']} "
                                f"train, {patients['test']} test patients){advice}")
    return count


def run_experiment(config: config_lib.ExperimentConfig, *, resume=False, sample_root=DEFAULT_SAMPLE_ROOT,
                   evaluate=True) -> dict:
    """Data -> train -> export -> evaluate -> report. Returns the metrics dict.

    The run's checks are made here, once, before training: the run directory is unused
    (without `resume`) or holds a run of this config (with it), the cache exists and has test
    patients when `evaluate` is asked, the VGG weights load (or the sample's demo falls back).
    """
    from srgan_tf.training.checkpoints import check_resume, refuse_existing_run

    run_dir = Path(config.output_dir) if config.output_dir else default_run_dir(config)
    refuse_overwriting_inputs([config.data.cache], {"--output": run_dir})
    for message in config_warnings(config):
        warn(message)
    if not resume:  # before the data is touched
        refuse_existing_run(RunDirectory(run_dir))
    using_sample = not config.data.cache
    cache = resolve_cache(config, sample_root)
    if evaluate:
        check_split(cache, "test", advice=": the test-set evaluation after training needs at "
                    "least one; rebuild the cache with more patients or a larger "
                    "--test-fraction, or skip it (srgan-tf train --no-evaluate)")
    else:
        from srgan_tf.data.slice_cache.cache import SliceCache

        with SliceCache(cache) as opened:
            if not opened.series("test"):
                warn(f"{cache} has no test patients: validation uses training slices, so "
                     "its scores are optimistic")
    from srgan_tf.training.strategy import make_strategy
    from srgan_tf.training_run import train_and_export

    config = config.updated(data={"cache": str(cache)}, output_dir=str(run_dir))
    strategy = make_strategy(config.train.strategy)  # multiworker: before other TensorFlow work
    # may refuse: nothing written yet
    config, extractor = resolve_content_loss(config, using_sample)
    if resume:  # the config as it will train (cache resolved, content loss decided)
        check_resume(config, RunDirectory(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    result = train_and_export(config, run_dir, strategy=strategy, resume=resume,
                              content_extractor=extractor)
    metrics = {}
    if evaluate and result.chief:  # a multi-worker run's other workers export nothing
        from srgan_tf.evaluation.run import evaluate_run

        metrics = evaluate_run(result.config, run_dir, result.export_dir)
    print(last_words(run_dir, result.export_dir))
    return metrics


def last_words(run_dir: Path, export_dir) -> str:
    """What a finished run prints: report.md's results (title, data note, table; the protocol,
    figures and configuration stay in report.md and config.json) and where the run's files are.

    Args:
        run_dir: the run directory.
        export_dir: the final export, or None (a multi-worker run's other workers export nothing).
    """
    run = RunDirectory(run_dir)
    report = run.report
    lines = []
    if report.is_file():  # evaluated: the report up to its protocol section
        head = report.read_text().split("\n## Protocol", 1)[0].rstrip()
        lines += ["", head]
    lines += ["", f"Run directory: {run_dir}"]
    if report.is_file():
        lines.append(f"  report:       {report} (protocol, figures, configuration)")
    lines.append(f"  config:       {run.config}")
    if export_dir:
        lines.append(f"  export:       {export_dir} (srgan-tf infer --model {export_dir} ...)")
    lines.append(f"  TensorBoard:  tensorboard --logdir {run.logs}")
    return "\n".join(lines)


def experiment_parser(experiment: str, doc: str) -> argparse.ArgumentParser:
    """The parser of `experiments/exp1_iso.py` / `exp2_aniso.py`: every knob, `experiment`'s
    default mode; `doc` (the script's docstring) gives the description."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=HelpFormatter)
    add_experiment_arguments(parser, experiment)
    return parser


def experiment_main(experiment: str, doc: str, argv=None) -> int:
    """`main` of the Exp. 1 and Exp. 2 scripts: parse, then `run_experiment`; the exit status."""

    def run(args):
        config = config_from_args(args, experiment)
        run_experiment(config, resume=args.resume, sample_root=args.sample_root)

    return run_main(experiment_parser(experiment, doc), run, argv)
