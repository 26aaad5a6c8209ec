"""Reproduce Table 1 of Sood & Rusu: iso/aniso x4/x8 SRGANs, bicubic, SRResNet, edge metrics.

Trains four models (iso x4, iso x8, aniso x4, aniso x8; one run directory each under --output,
reused when finished and resumed when interrupted), scores bicubic, SRResNet and SRGAN on the
same test slices, and writes OUT/table1.md, OUT/table1.json, OUT/figures/ and OUT/logs/.

    python experiments/reproduce_table1.py                             # built-in sample, quick
    python experiments/reproduce_table1.py --objective both            # paper and improved SRGAN
    python experiments/reproduce_table1.py --cache cache.h5 --preset paper --output runs/table1
    python experiments/reproduce_table1.py --columns aniso-x4 --pretrain-epochs 1

Objectives: "paper" = content + 1e-3 adversarial; "improved" = the preset's extras (pixel term,
relativistic discriminator, EMA; see --pixel-weight, --relativistic, --ema-decay). Default:
improved with the quick preset, both with the paper preset. Default --output:
runs/table1-<preset>, so running the same command again picks up where it stopped (--resume is
implied). --mode and --scale only narrow the settings; the other flags override the preset
for every sub-run.
"""
import argparse
import sys

from srgan_tf.experiment import run_main


def build_parser() -> argparse.ArgumentParser:
    from srgan_tf.table1.plan import add_table1_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    add_table1_arguments(parser)
    return parser


def run(args):
    from srgan_tf.table1.plan import plan_from_args
    from srgan_tf.table1.report import render_table1
    from srgan_tf.table1.reproduce import reproduce_table1

    plan = plan_from_args(args)
    results = reproduce_table1(plan)
    print("\n" + render_table1(results))
    print(f"Written: {plan.output_dir / 'table1.md'}, {plan.output_dir / 'table1.json'}")


def main(argv=None) -> int:
    return run_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
