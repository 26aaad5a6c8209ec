"""`srgan-tf` command line: thin wrappers that parse arguments and call the layers.

Subcommands: sample, prepare, info, train, export, infer, evaluate, self-supervised, score.
Each is one `cmd_*` function and one `add_command` block in `build_parser`; `main` runs them
through `experiment.run_main` (one-line errors, exit 2).
"""
import argparse
import sys
from pathlib import Path

from srgan_tf import __version__


def cmd_sample(args):
    from srgan_tf.data.synthetic.sample import write_sample_dataset

    root = write_sample_dataset(args.output, patients=args.patients, seed=args.seed)
    print(f"Synthetic sample dataset written to {root} (DICOM under {Path(root) / 'dicom'}).")
    print(f"Next: srgan-tf prepare --input {Path(root) / 'dicom'} --output cache.h5")


def cmd_prepare(args):
    from srgan_tf.console import warn
    from srgan_tf.data.slice_cache.prepare import build_cache
    from srgan_tf.io.dicom import DEFAULT_SERIES_FILTER

    series_filter = None if args.all_series else (args.series_filter or DEFAULT_SERIES_FILTER)
    summary = build_cache(args.input, args.output, series_filter=series_filter,
                          test_fraction=args.test_fraction, seed=args.seed, progress=True)
    print(summary.text(warnings=False))
    for message in summary.warnings:
        warn(message)


def cmd_info(args):
    from srgan_tf.data.slice_cache.cache import SliceCache

    with SliceCache(args.cache) as cache:
        print(cache.info_text())


def cmd_train(args):
    from srgan_tf.config import EXPERIMENT_OF_MODE
    from srgan_tf.arguments import config_from_args, default_mode
    from srgan_tf.experiment import run_experiment

    config = config_from_args(args, EXPERIMENT_OF_MODE[args.mode or default_mode("exp2")])
    run_experiment(config, resume=args.resume, sample_root=args.sample_root,
                   evaluate=not args.no_evaluate)


def cmd_export(args):
    from srgan_tf.training_run import export_from_checkpoint

    path = export_from_checkpoint(args.run, args.output)
    print(f"Exported SavedModel to {path}")


def _cohort_part(args):
    """The `cohort.parts.Part` of a folder-to-folder run, or None for one volume (a NIfTI
    output name, today's single-volume form)."""
    from srgan_tf.cohort.parts import resolve_part
    from srgan_tf.io.errors import InputError
    from srgan_tf.io.nifti import is_nifti_path

    if is_nifti_path(args.output) or not Path(args.input).is_dir():
        if args.num_parts is not None or args.part_id is not None:
            raise InputError("--num-parts", "splits a folder of volumes; give --output a folder")
        return None
    return resolve_part(args.num_parts, args.part_id)


def cmd_infer(args):
    from srgan_tf.inference.infer import run_infer

    part = _cohort_part(args)
    if part is not None:
        from srgan_tf.cohort.runs import run_cohort_infer

        return run_cohort_infer(args.model, args.input, args.output, part,
                                dicom_output=args.dicom_output, mode=args.mode,
                                batch_size=args.batch_size, precision=args.precision,
                                clip_to_input_range=not args.no_clip,
                                slice_padding=args.slice_padding)
    summary = run_infer(args.model, args.input, args.output, dicom_output=args.dicom_output,
                        mode=args.mode, batch_size=args.batch_size, precision=args.precision,
                        clip_to_input_range=not args.no_clip, progress=True,
                        slice_padding=args.slice_padding)
    for key, value in summary.items():
        print(f"{key}: {value}")


def cmd_evaluate(args):
    from srgan_tf.evaluation.run import evaluate_export
    from srgan_tf.experiment import check_split

    check_split(args.cache, args.split, advice=f": nothing to score; try --split "
                f"{'train' if args.split == 'test' else 'test'}")
    evaluate_export(args.model, args.cache, split=args.split, output_dir=args.output,
                    max_slices_per_patient=args.max_slices_per_patient)


def cmd_score(args):
    from srgan_tf.evaluation.volume_score import format_scores, score_files, write_scores_json
    from srgan_tf.io.paths_guard import refuse_overwriting_inputs

    refuse_overwriting_inputs([args.truth, args.input, args.thick], {"--json": args.json})
    scores = score_files(args.truth, args.input, args.thick, all_slices=args.all_slices)
    print(format_scores(scores))
    if args.json:
        print(f"Scores written to {write_scores_json(scores, args.json)}")


def cmd_self_supervised(args):
    from srgan_tf.io.errors import InputError
    from srgan_tf.self_supervised_run.command import run_self_supervised
    from srgan_tf.self_supervised_run.plan import SelfSupervisedOptions, VolumeIO

    paths = VolumeIO(input=args.input, output=args.output, dicom_output=args.dicom_output,
                     work_dir=args.work_dir)
    options = SelfSupervisedOptions(
        slice_profile=args.slice_profile,
        slice_thickness=args.slice_thickness, target_spacing=args.target_spacing,
        init_model=args.init_model, steps=args.steps, epochs=args.epochs,
        batch_size=args.batch_size, precision=args.precision, seed=args.seed,
        clip=not args.no_clip, progress=True, retrain=args.retrain)
    part = _cohort_part(args)
    if part is not None:
        from srgan_tf.cohort.runs import run_cohort_self_supervised

        if args.retrain:  # a protocol's model serves other volumes (and other parts)
            raise InputError("--retrain", "applies to one volume; to retrain a study's "
                                          "models, run into a new --output folder (or remove "
                                          "the protocol's model folder and the outputs "
                                          "cohort.csv lists for it)")
        return run_cohort_self_supervised(paths, options, part, train_only=args.train_only)
    if args.train_only:
        raise InputError("--train-only", "applies to a folder of volumes (the first step of a "
                                         "study spread over machines); one volume is trained "
                                         "and super-resolved in one run")
    summary = run_self_supervised(paths, options)
    print(f"Wrote {summary['output']} (shape {tuple(summary['output_shape'])}, spacing "
          f"{tuple(summary['output_spacing_mm'])} mm)"
          + (f" and {summary['dicom_files']} DICOM files in {summary['dicom_output']}"
             if summary["dicom_output"] else ""))
    print("Times (s): " + ", ".join(f"{k} {v}" for k, v in summary["seconds"].items()))
    print(f"Report, trained model and figures: {summary['work_dir']}")


def add_cohort_arguments(parser) -> None:
    """--num-parts/--part-id of a folder-to-folder run."""
    from srgan_tf.arguments import number_type
    from srgan_tf.config import Range

    parser.add_argument("--num-parts", type=number_type(int, Range(1)),
                        help="with an input folder: split its volumes into this many parts "
                             "(default: a SLURM array's task count, else 1)")
    parser.add_argument("--part-id", type=number_type(int, Range(0)),
                        help="which part this process runs, from 0 (default: SLURM_ARRAY_TASK_ID"
                             " - SLURM_ARRAY_TASK_MIN, or a Kubernetes JOB_COMPLETION_INDEX)")


def add_command(commands, name: str, func, help: str, tensorflow: bool = True):
    """A subcommand whose --help shows `help` as its description and every default."""
    from srgan_tf.arguments import HelpFormatter

    parser = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                                 formatter_class=HelpFormatter)
    parser.set_defaults(func=func, prog=parser.prog, tensorflow=tensorflow)
    return parser


def add_volume_io_arguments(parser) -> None:
    """--input, --output, --dicom-output of the commands that super-resolve volumes (`infer`,
    `self-supervised`): one volume or a folder of them."""
    parser.add_argument("--input", required=True, help="DICOM series folder, .nii or .nii.gz; or "
                        "a folder of volumes (NIfTI files, DICOM series) with an output folder")
    parser.add_argument("--output", required=True, help="output NIfTI (.nii or .nii.gz), or an "
                        "output folder mirroring an input folder (with cohort.csv)")
    parser.add_argument("--dicom-output", help="also write a derived DICOM series into this new "
                        "folder (a cohort: one series per volume, mirroring the input tree)")


def add_super_resolution_arguments(parser) -> None:
    """How an export is applied to a volume (`infer`, `self-supervised`)."""
    from srgan_tf.arguments import number_type
    from srgan_tf.config import INFERENCE_PRECISIONS, RANGES

    parser.add_argument("--batch-size", type=number_type(int, RANGES["batch_size"]), default=8,
                        help="images per model call")
    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS, default="auto",
                        help="auto: bfloat16 where the hardware runs it natively and the export "
                             "has it, else float32")
    parser.add_argument("--no-clip", action="store_true",
                        help="keep SR intensities outside the input's range (default: clipped to "
                             "it, so magnitude images never go negative)")


def build_parser() -> argparse.ArgumentParser:
    from srgan_tf.config import INFERENCE_MODES, INFERENCE_PRECISIONS, RANGES, Range
    from srgan_tf.arguments import add_experiment_arguments, add_threads_argument, number_type
    from srgan_tf.presets import preset

    parser = argparse.ArgumentParser(prog="srgan-tf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"srgan-tf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    sample = add_command(commands, "sample", cmd_sample, tensorflow=False,
                         help="write the built-in synthetic prostate MR phantom dataset as DICOM")
    sample.add_argument("--output", required=True, help="folder to write (DICOM under OUTPUT/dicom)")
    sample.add_argument("--patients", type=number_type(int, RANGES["sample_patients"]), default=8,
                        help="synthetic patients")
    sample.add_argument("--seed", type=number_type(int, RANGES["seed"]), default=0,
                        help="seed of the phantoms")

    prepare = add_command(commands, "prepare", cmd_prepare, tensorflow=False,
                          help="DICOM tree or NIfTI files -> HDF5 slice cache")
    prepare.add_argument("--input", required=True, help="DICOM tree (any depth), NIfTI file or folder")
    prepare.add_argument("--output", required=True, help="cache file to write (e.g. cache.h5)")
    prepare.add_argument("--series-filter", help="regular expression on SeriesDescription "
                         "(default: T2 axial, e.g. t2_tse_tra)")
    prepare.add_argument("--all-series", action="store_true", help="take every MR series")
    prepare.add_argument("--test-fraction", type=number_type(float, Range(0, 1, high_inclusive=False)),
                         default=0.1, help="share of patients held out for testing, in [0, 1)")
    prepare.add_argument("--seed", type=number_type(int, RANGES["seed"]), default=0,
                         help="seed of the patient split")
    add_threads_argument(prepare)

    info = add_command(commands, "info", cmd_info, tensorflow=False,
                       help="patients, series, shapes, spacings and split of a cache")
    info.add_argument("cache", help="HDF5 slice cache")

    train = add_command(commands, "train", cmd_train,
                        help="train an SRGAN (Exp. 1 with --mode iso, Exp. 2 with aniso), export "
                             "it and score it on the test patients")
    add_experiment_arguments(train, "exp2")
    train.add_argument("--no-evaluate", action="store_true", help="skip the test-set evaluation")

    export = add_command(commands, "export", cmd_export,
                         help="re-export a run's last checkpoint as a SavedModel")
    export.add_argument("--run", required=True, help="run directory")
    export.add_argument("--output", required=True, help="export directory to write")

    infer = add_command(commands, "infer", cmd_infer, tensorflow=False,  # started after its checks
                        help="super-resolve a volume (DICOM series dir or NIfTI) with an export")
    infer.add_argument("--model", required=True, help="export directory (SavedModel + metadata.json)")
    add_volume_io_arguments(infer)
    infer.add_argument("--mode", choices=INFERENCE_MODES, default=None,
                       help="through-plane: anisotropic model along the slices (Exp. 3); "
                            "in-plane: isotropic model on each slice (default: the one the "
                            "export's metadata.json names: aniso -> through-plane, iso -> in-plane)")
    add_super_resolution_arguments(infer)
    infer.add_argument("--slice-padding", type=number_type(int, Range(0)),
                       default=None, metavar="N",
                       help="through-plane: slices reflected beyond each end before the model "
                            "sees them (default: the model's receptive field, which makes the "
                            "end slices exact; fewer are faster on volumes of few slices, and "
                            "the end slices then only approximate it)")
    add_cohort_arguments(infer)
    add_threads_argument(infer)

    evaluate = add_command(commands, "evaluate", cmd_evaluate,
                           help="score an exported model and bicubic on a cache")
    evaluate.add_argument("--model", required=True, help="export directory")
    evaluate.add_argument("--cache", required=True, help="HDF5 slice cache")
    evaluate.add_argument("--split", default="test", choices=("train", "test"), help="patients scored")
    evaluate.add_argument("--output", help="directory for metrics.json and report.md "
                                           "(default: the export's parent)")
    add_threads_argument(evaluate)
    evaluate.add_argument("--max-slices-per-patient", type=number_type(int, Range(1)),
                          help="score at most this many slices per patient (default: all)")

    selfsup = add_command(
        commands, "self-supervised", cmd_self_supervised, tensorflow=False,
        help="make one thick-slice volume near-isotropic with no training data: learn from its "
             "own in-plane slices degraded with its slice profile, then super-resolve through "
             "the plane")
    add_volume_io_arguments(selfsup)
    selfsup.add_argument("--work-dir", help="trained model(s), reports, figures; a re-run reuses "
                         "a model trained for the same plan (default: <output name>_work next to "
                         "the output; a cohort: OUT_FOLDER/srgan-tf-work)")
    selfsup.add_argument("--retrain", action="store_true", help="one volume: train a new model "
                         "even if the work dir holds one")
    selfsup.add_argument("--slice-profile", default="auto", metavar="{auto,box,gaussian,FILE.npy}",
                         help="auto: estimated from the volume; box or gaussian: of the slice "
                              "thickness; FILE.npy: 1-D weights sampled at the in-plane spacing")
    selfsup.add_argument("--slice-thickness", type=number_type(float, Range(0, None, low_inclusive=False)),
                         help="slice thickness in mm for box/gaussian (default: DICOM "
                              "SliceThickness, else the slice spacing)")
    selfsup.add_argument("--target-spacing", type=number_type(float, Range(0, None, low_inclusive=False)),
                         help="output slice spacing in mm (default: the in-plane spacing)")
    selfsup.add_argument("--init-model", help="start from this supervised export (fine-tune it "
                                              "on the volume)")
    schedule = preset("self-supervised").train
    selfsup.add_argument("--steps", type=number_type(int, Range(1)),
                         help=f"training steps (default: {schedule.total_steps})")
    selfsup.add_argument("--epochs", type=number_type(int, Range(1)),
                         help=f"epochs the steps are split into (default: {schedule.pretrain_epochs})")
    selfsup.add_argument("--seed", type=number_type(int, RANGES["seed"]), default=0,
                         help="seed of weights and patch draws")
    add_super_resolution_arguments(selfsup)
    add_cohort_arguments(selfsup)
    selfsup.add_argument("--train-only", action="store_true", help="with an input folder: plan "
                         "every volume and train every protocol's model, write no outputs (then "
                         "run the parts, which reuse them)")
    add_threads_argument(selfsup)

    score = add_command(commands, "score", cmd_score, tensorflow=False,
                        help="PSNR, SSIM and HFEN of a volume against its isotropic truth, whole "
                             "field and in a foreground mask (and of cubic along the slices of "
                             "the thick input)")
    score.add_argument("--truth", required=True, help="isotropic reference (DICOM series folder or "
                       "NIfTI); its grid is the scoring grid")
    score.add_argument("--input", required=True, help="volume to score, on the truth's grid")
    score.add_argument("--thick", help="thick-slice volume the input was made from: adds the cubic "
                       "baseline and scores only the truth slices between its first and last centres")
    score.add_argument("--all-slices", action="store_true", help="with --thick, score every truth "
                       "slice, extrapolated ones included")
    score.add_argument("--json", help="also write the scores here as JSON")
    add_threads_argument(score)
    return parser


def main(argv=None) -> int:
    from srgan_tf.experiment import run_main
    from srgan_tf.flag_checks import warn_about_flags

    return run_main(build_parser(), lambda args: args.func(args), argv, check=warn_about_flags)


if __name__ == "__main__":
    sys.exit(main())
