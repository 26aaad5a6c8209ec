"""`srgan-tf` command line: thin wrappers that parse arguments and call the layers.

Subcommands: sample, prepare, info, train, export, infer, evaluate.
"""
import argparse
import sys
from pathlib import Path

from srgan_tf import __version__
from srgan_tf.io.errors import InputError


def cmd_sample(args):
    from srgan_tf.data.sample import write_sample_dataset

    root = write_sample_dataset(args.output, patients=args.patients, seed=args.seed)
    print(f"Synthetic sample dataset written to {root} (DICOM under {Path(root) / 'dicom'}).")
    print(f"Next: srgan-tf prepare --input {Path(root) / 'dicom'} --output cache.h5")


def cmd_prepare(args):
    from srgan_tf.data.prepare import build_cache
    from srgan_tf.io.dicom import DEFAULT_SERIES_FILTER

    series_filter = None if args.all_series else (args.series_filter or DEFAULT_SERIES_FILTER)
    summary = build_cache(args.input, args.output, series_filter=series_filter,
                          test_fraction=args.test_fraction, seed=args.seed, progress=True)
    print(summary.text())


def cmd_info(args):
    from srgan_tf.data.cache import SliceCache

    with SliceCache(args.cache) as cache:
        print(cache.info_text())


def cmd_train(args):
    from srgan_tf.experiment import config_from_args, run_experiment

    experiment = "exp1" if args.mode == "iso" else "exp2"
    config = config_from_args(args, experiment)
    run_experiment(config, resume=args.resume, sample_root=args.sample_root,
                   evaluate=not args.no_evaluate)


def cmd_export(args):
    from srgan_tf.training.trainer import export_from_checkpoint

    path = export_from_checkpoint(args.run, args.output)
    print(f"Exported SavedModel to {path}")


def cmd_infer(args):
    from srgan_tf.inference.infer import run_infer

    summary = run_infer(args.model, args.input, args.output, dicom_output=args.dicom_output,
                        mode=args.mode, batch_size=args.batch_size, progress=True)
    for key, value in summary.items():
        print(f"{key}: {value}")


def cmd_evaluate(args):
    from srgan_tf.evaluation.run import evaluate_export

    evaluate_export(args.model, args.cache, split=args.split, output_dir=args.output,
                    max_slices_per_patient=args.max_slices_per_patient)


def build_parser() -> argparse.ArgumentParser:
    from srgan_tf.experiment import add_experiment_arguments

    parser = argparse.ArgumentParser(prog="srgan-tf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"srgan-tf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="write the built-in synthetic prostate MR dataset as DICOM")
    sample.add_argument("--output", required=True)
    sample.add_argument("--patients", type=int, default=8)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_sample)

    prepare = commands.add_parser("prepare", help="DICOM tree or NIfTI files -> HDF5 slice cache")
    prepare.add_argument("--input", required=True, help="DICOM tree (any depth), NIfTI file or folder")
    prepare.add_argument("--output", required=True, help="cache file to write (e.g. cache.h5)")
    prepare.add_argument("--series-filter", help="regular expression on SeriesDescription "
                         "(default: T2 axial, e.g. t2_tse_tra)")
    prepare.add_argument("--all-series", action="store_true", help="take every MR series")
    prepare.add_argument("--test-fraction", type=float, default=0.1, help="patients held out for testing")
    prepare.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    prepare.set_defaults(func=cmd_prepare)

    info = commands.add_parser("info", help="patients, series, shapes, spacings and split of a cache")
    info.add_argument("cache")
    info.set_defaults(func=cmd_info)

    train = commands.add_parser("train", help="train an SRGAN (Exp. 1 with --mode iso, Exp. 2 with aniso)")
    add_experiment_arguments(train, "exp2")
    train.add_argument("--no-evaluate", action="store_true", help="skip the test-set evaluation")
    train.set_defaults(func=cmd_train)

    export = commands.add_parser("export", help="re-export a run's last checkpoint as a SavedModel")
    export.add_argument("--run", required=True)
    export.add_argument("--output", required=True)
    export.set_defaults(func=cmd_export)

    infer = commands.add_parser("infer", help="super-resolve a volume (DICOM series dir or NIfTI)")
    infer.add_argument("--model", required=True, help="export directory (SavedModel + metadata.json)")
    infer.add_argument("--input", required=True)
    infer.add_argument("--output", required=True, help="output NIfTI (.nii or .nii.gz)")
    infer.add_argument("--dicom-output", help="also write a derived DICOM series here")
    infer.add_argument("--mode", choices=("through-plane", "in-plane"), default="through-plane")
    infer.add_argument("--batch-size", type=int, default=8)
    infer.set_defaults(func=cmd_infer)

    evaluate = commands.add_parser("evaluate", help="score an exported model and bicubic on a cache")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--cache", required=True)
    evaluate.add_argument("--split", default="test", choices=("train", "test"))
    evaluate.add_argument("--output", help="directory for metrics.json and report.md")
    evaluate.add_argument("--max-slices-per-patient", type=int)
    evaluate.set_defaults(func=cmd_evaluate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as error:
        print(f"srgan-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"srgan-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"srgan-tf {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # offline VGG weights: actionable message, no traceback
        if type(error).__name__ == "VGGWeightsUnavailable":
            print(f"srgan-tf {args.command}: error: {error}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
