"""Experiment 3 (Sood & Rusu, Sec. 3; Fig. 4), orchestrated (entry level, beside `table1/`:
it trains an Exp. 2 run through `run_experiment`, or a self-supervised model, then scores).

`experiments/exp3_throughplane.py` is its thin script: `build_parser(doc)` and `main(argv,
doc)` take the script's docstring as the help text. The scoring, figures and report are the
evaluation layer's (`evaluation.throughplane*`).
"""
import argparse
import json
import re
import time
from pathlib import Path
from typing import NamedTuple

from srgan_tf.config import SLICE_PROFILES, ConfigError, Range
from srgan_tf.arguments import (HelpFormatter, add_experiment_arguments, config_from_args,
                                number_type)
from srgan_tf.experiment import default_run_dir, resolve_cache, run_experiment, run_main
from srgan_tf.files import atomic_write_text
from srgan_tf.run_directory import RunDirectory
from srgan_tf.io.paths_guard import refuse_overwriting_inputs

# Heavy modules (TensorFlow, the evaluation layer) are imported inside functions: --help and a
# bad flag answer at once.


def build_parser(doc: str = __doc__) -> argparse.ArgumentParser:
    """Exp. 3's flags: the experiment's own and the Exp. 3 group; `doc`'s first line is the
    description (the script passes its docstring)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=HelpFormatter)
    add_experiment_arguments(parser, "exp3")
    group = parser.add_argument_group("Exp. 3")
    group.add_argument("--model", help="anisotropic export directory (default: train one with "
                                       "the Exp. 2 pipeline into <run>/exp2)")
    group.add_argument("--self-supervised", action="store_true",
                       help="also train a self-supervised model on the first test volume "
                            "(without --model: instead of the supervised one)")
    group.add_argument("--hr-dir", help="isotropic HR volumes <PatientID>.nii[.gz] to score "
                                        "against (default: the built-in sample's hr/)")
    group.add_argument("--profile", choices=SLICE_PROFILES, default="gaussian",
                       help="slice profile of the simulated thick slices")
    group.add_argument("--self-supervised-profile", default="auto",
                       metavar="{auto,box,gaussian,FILE.npy}",
                       help="slice profile of self-supervision, as `srgan-tf self-supervised "
                            "--slice-profile` (auto: estimated from the thick volume)")
    group.add_argument("--self-supervised-steps", type=number_type(int, Range(1)),
                       help="training steps of self-supervision (default: the command's)")
    group.add_argument("--crop", type=number_type(int, Range(0)),
                       help="centred in-plane crop in pixels (default: the config's hr_size; "
                            "with --self-supervised, whole slices; 0: whole slices)")
    group.add_argument("--max-volumes", type=number_type(int, Range(1)),
                       help="test patients used at most (default: all)")
    group.add_argument("--max-planes", type=number_type(int, Range(1)), default=32,
                       help="scored planes per orientation")
    group.add_argument("--save-volumes", action="store_true", help="write SR volumes as NIfTI")
    return parser


def check_args(parser, args) -> None:
    if args.mode not in (None, "aniso"):
        parser.error("Exp. 3 needs an anisotropic (height-only) model: use --mode aniso")


def parse_args(argv, doc: str = __doc__):
    parser = build_parser(doc)
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def test_data(cache, hr_dir, max_volumes):
    """(thick-slice test series, HR reference paths of the same patients that exist)."""
    from srgan_tf.data.slice_cache.cache import SliceCache

    with SliceCache(cache) as opened:
        patients = opened.split["test"][:max_volumes] or opened.patients()[:1]
        first = {}
        for info in opened.series():
            first.setdefault(info.patient_id, info.key)
        series = [opened.volume(first[patient]) for patient in patients if patient in first]
    hr_paths = []
    for patient in patients if hr_dir else []:
        found = [Path(hr_dir) / f"{patient}{suffix}" for suffix in (".nii.gz", ".nii")]
        found = [path for path in found if path.is_file()]
        if found:
            hr_paths.append(found[0])
        else:
            print(f"No HR reference for {patient} in {hr_dir}: not scored")
    return series, hr_paths


class SelfSupervisedModel(NamedTuple):
    patient: str
    export_dir: Path
    source: str  # "simulated" (thick slices made from the HR volume) or "real" (the series)


def train_self_supervised_model(config, run_dir, series, hr_paths, crop, profile, options):
    """Train on the first test volume (the thick slices it is scored on, else its series) with
    the code of `srgan-tf self-supervised`: acquisition model, slice profile, training."""
    from srgan_tf.evaluation.throughplane_volumes import crop_in_plane, simulate_thick_slices
    from srgan_tf.io.reader import read_volume
    from srgan_tf.self_supervised_run.model import train_volume_model
    from srgan_tf.self_supervised_run.plan import SelfSupervisedOptions, plan_volume

    if hr_paths:  # the very thick slices the score feeds to the models
        volume = simulate_thick_slices(crop_in_plane(read_volume(hr_paths[0]), crop),
                                       config.data.scale, profile)[1]
        source = "simulated"
    else:
        volume, source = crop_in_plane(series[0], crop), "real"
    print(f"\nSelf-supervised training on {volume.patient_id} ({source} thick slices, "
          f"shape {volume.shape}, spacing {tuple(round(s, 3) for s in volume.spacing)} mm)")
    options = SelfSupervisedOptions(progress=True, **options)
    plan = plan_volume(volume, options, volume.patient_id)
    model = train_volume_model(plan, options, Path(run_dir) / "self_supervised" / "model")
    return SelfSupervisedModel(volume.patient_id, Path(model.path), source)


def given_model(args):
    """The loaded --model (None without one), refused when it cannot do Exp. 3 as asked:
    checked before anything is written."""
    from srgan_tf.evaluation.throughplane_volumes import as_model

    if args.model is None:
        return None
    model = as_model(args.model)
    if model.mode != "aniso":
        raise ConfigError(f"--model {args.model}: Exp. 3 needs an anisotropic (Exp. 2) model; "
                          f"this one is {model.mode} with scale_hw {model.scale_hw}")
    if args.scale is not None and args.scale != model.spec.scale:
        raise ConfigError(f"--scale {args.scale} contradicts the model's through-plane scale "
                          f"x{model.spec.scale} ({args.model}): drop --scale, or pass a "
                          f"x{args.scale} model")
    return model


def supervised_model(config, args, run_dir, timings, model=None):
    """(the anisotropic export: --model (`model`, from `given_model`) or an Exp. 2 run trained
    into <run>/exp2; `config` with the export's scale)."""
    from srgan_tf.evaluation.throughplane_volumes import as_model

    if args.model is None and args.self_supervised:
        return None, config
    if args.model is None:
        start = time.perf_counter()
        # the user's cache (None: the sample's offline policy)
        supervised = config.updated(experiment="exp2", output_dir=str(run_dir / "exp2"))
        run_experiment(supervised, resume=args.resume, sample_root=args.sample_root)
        timings["Exp. 2 training + evaluation"] = time.perf_counter() - start
        model = as_model(run_dir / "exp2" / "export")
    return model, config.updated(data={"scale": model.spec.scale})  # the export fixes the factor


def write_outputs(run_dir, config, model, self_supervised, metrics, figures, timings,
                  profile=None):
    from srgan_tf.evaluation.throughplane_report import write_throughplane_report

    if not metrics:
        atomic_write_text(RunDirectory(run_dir).metrics,
                          json.dumps({"qualitative_only": True, "figures": figures}, indent=2) + "\n")
    notes = [f"Model: `{model.path}`." if model else "Model: the self-supervised one."]
    if model:
        from srgan_tf.inference.degradation_check import describe_training, training_degradation

        trained = training_degradation(model.metadata)
        notes.append(f"The model was trained with {describe_training(trained)} degradation.")
        if profile and (trained["degradation"] != "slice-profile" or trained["slice_profile"] != profile):
            notes.append(f"**Warning**: the scored thick slices were simulated with a {profile} "
                         "slice profile, which differs from the model's training degradation; "
                         "train with `--degradation slice-profile --slice-profile "
                         f"{profile}` to match (real thick slices: see `srgan-tf self-supervised`).")
    if self_supervised:
        notes.append(f"Self-supervised model: trained on {self_supervised.patient}'s "
                     f"{self_supervised.source} thick slices only (`{self_supervised.export_dir}`); "
                     "scored and shown on that volume only.")
    notes.append("Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ".")
    model_config = (model.metadata.get("config") or {}) if model else config.to_dict()
    preset = model_config.get("preset", config.preset)
    return write_throughplane_report(
        run_dir, f"Experiment 3: through-plane SR x{config.data.scale} ({preset} preset model)",
        metrics, model_config, figures=figures, notes="\n".join(notes))


def run(args):
    from srgan_tf.evaluation.throughplane import score_throughplane
    from srgan_tf.evaluation.throughplane_report import qualitative_throughplane
    from srgan_tf.evaluation.throughplane_volumes import as_model

    config = config_from_args(args, "exp3")
    given = given_model(args)
    using_sample = not config.data.cache
    cache = resolve_cache(config, args.sample_root)
    run_dir = Path(config.output_dir) if config.output_dir else default_run_dir(config)
    refuse_overwriting_inputs([config.data.cache, args.model, args.hr_dir], {"--output": run_dir})
    run_dir.mkdir(parents=True, exist_ok=True)
    hr_dir = args.hr_dir or (Path(args.sample_root) / "hr" if using_sample else None)
    series, hr_paths = test_data(cache, hr_dir, args.max_volumes)
    if args.crop is None:  # self-supervision learns from whole slices
        crop = None if args.self_supervised else config.data.hr_size
    else:
        crop = args.crop or None
    timings = {}
    model, config = supervised_model(config, args, run_dir, timings, given)
    self_supervised, extra = None, {}
    if args.self_supervised:
        start = time.perf_counter()
        self_supervised = train_self_supervised_model(
            config, run_dir, series, hr_paths, crop, args.profile,
            {"slice_profile": args.self_supervised_profile, "steps": args.self_supervised_steps,
             "seed": config.train.seed})
        timings["self-supervised training"] = time.perf_counter() - start
        extra = {"sr_self_supervised": {self_supervised.patient: self_supervised.export_dir}}
    primary = model or as_model(self_supervised.export_dir)
    if model is None:  # the self-supervised model belongs to one patient
        series, hr_paths, extra = series[:1], hr_paths[:1], {}
    metrics, figures = {}, []
    if hr_paths:
        start = time.perf_counter()
        metrics = score_throughplane(primary, hr_paths, profile=args.profile, extra_models=extra,
                                     crop=crop, max_planes=args.max_planes, output_dir=run_dir,
                                     progress=True)
        figures += metrics.get("figures", [])
        timings["scoring"] = time.perf_counter() - start
    else:
        print("No isotropic HR reference volumes (user data without --hr-dir): only the "
              "qualitative figures on the real thick-slice series are made, no scores.")
    start = time.perf_counter()
    real_extra = extra if self_supervised and self_supervised.source == "real" else {}
    figures += [str(path) for path in qualitative_throughplane(
        primary, series, run_dir, extra_models=real_extra, crop=crop,
        save_volumes=args.save_volumes, progress=True)]
    timings["qualitative figures"] = time.perf_counter() - start
    report = write_outputs(run_dir, config, model, self_supervised, metrics, figures, timings,
                           args.profile if hr_paths else None)
    print(f"\nRun directory: {run_dir}")
    print(re.split(r"\n## (?:Protocol|Figures)", report.read_text())[0])


def main(argv=None, doc: str = __doc__) -> int:
    """Run Exp. 3 from command-line arguments; the exit status."""
    return run_main(build_parser(doc), run, argv, check=check_args)
