"""Experiment 2 (Sood & Rusu, Sec. 3): synthetic anisotropic SR, height-only downsampling.

224x224 HR slices are downsampled along the height only (x4: 56x224, x8: 28x224); the
generator upsamples the height axis only.

    python experiments/exp2_aniso.py                          # built-in sample, quick preset
    python experiments/exp2_aniso.py --cache cache.h5 --preset paper --scale 8
"""
import argparse
import sys

from srgan_tf.experiment import (HelpFormatter, add_experiment_arguments, config_from_args,
                                 run_experiment, run_main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    add_experiment_arguments(parser, "exp2")
    return parser


def run(args):
    config = config_from_args(args, "exp2")
    run_experiment(config, resume=args.resume, sample_root=args.sample_root)


def main(argv=None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
