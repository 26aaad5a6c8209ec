"""Experiment 3 (Sood & Rusu, Sec. 3; Fig. 4): through-plane SR of whole thick-slice volumes.

An anisotropic (Exp. 2) model super-resolves the coronal and sagittal images of each test
volume along the slice axis; the two stacks are averaged. Scored (beyond the paper) on the
built-in sample's isotropic HR volumes with simulated thick slices against cubic
interpolation along the slices; Fig. 4-style figures on the real thick-slice series.

    python experiments/exp3_throughplane.py                        # trains Exp. 2 (quick, x4) first
    python experiments/exp3_throughplane.py --model runs/<exp2 run>/export
    python experiments/exp3_throughplane.py --model EXPORT --self-supervised
    python experiments/exp3_throughplane.py --cache cache.h5 --model EXPORT   # figures only

Defaults: the --model's scale, else 4 (the quick preset; the paper shows x8: --scale 8), the centred hr_size
in-plane crop (--crop 0: whole slices), every test patient (--max-volumes), 32 planes per
orientation. --self-supervised trains one SMORE-like model on the first test volume only
(its simulated thick slices when HR exists, else its real series) to bound the time.
"""
import sys

from srgan_tf import exp3


def build_parser():
    return exp3.build_parser(__doc__)


def main(argv=None) -> int:
    return exp3.main(argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
