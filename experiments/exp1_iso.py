"""Experiment 1 (Sood & Rusu, Sec. 3): isotropic in-plane SR, x4 (56x56 -> 224x224) or x8 (28x28).

    python experiments/exp1_iso.py --scale 4                 # built-in sample, quick preset
    python experiments/exp1_iso.py --cache cache.h5 --preset paper --scale 8
"""
import argparse
import sys

from srgan_tf.experiment import (HelpFormatter, add_experiment_arguments, config_from_args,
                                 run_experiment, run_main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    add_experiment_arguments(parser, "exp1")
    return parser


def run(args):
    config = config_from_args(args, "exp1")
    run_experiment(config, resume=args.resume, sample_root=args.sample_root)


def main(argv=None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
