"""Experiment 2 (Sood & Rusu, Sec. 3): synthetic anisotropic SR, height-only downsampling.

224x224 HR slices are downsampled along the height only (x4: 56x224, x8: 28x224); the
generator upsamples the height axis only.

    python experiments/exp2_aniso.py                          # built-in sample, quick preset
    python experiments/exp2_aniso.py --cache cache.h5 --preset paper --scale 8
"""
import sys

from srgan_tf.experiment import experiment_main, experiment_parser


def build_parser():
    return experiment_parser("exp2", __doc__)


def main(argv=None) -> int:
    return experiment_main("exp2", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
