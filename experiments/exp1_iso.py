"""Experiment 1 (Sood & Rusu, Sec. 3): isotropic in-plane SR, x4 (56x56 -> 224x224) or x8 (28x28).

    python experiments/exp1_iso.py --scale 4                 # built-in sample, quick preset
    python experiments/exp1_iso.py --cache cache.h5 --preset paper --scale 8
"""
import sys

from srgan_tf.experiment import experiment_main, experiment_parser


def build_parser():
    return experiment_parser("exp1", __doc__)


def main(argv=None) -> int:
    return experiment_main("exp1", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
