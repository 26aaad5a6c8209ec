"""Flag values that parse but cannot be meant (refused, one line, exit 2) or are unusual but
usable (one warning line), checked before any work.

Ranges of single config knobs live in `config.RANGES` (the flag parsers read them); this
module holds what a range cannot say: values judged against each other or against habit.
"""
import argparse
from typing import List

from srgan_tf import config as config_lib
from srgan_tf.presets import preset

# Above these, training still runs but is unlikely to be what was meant.
UNUSUAL_LEARNING_RATE = 1e-2  # Ledig et al. train with 1e-4 (1e-5 in the adversarial phase)
UNUSUAL_ADVERSARIAL_WEIGHT = 0.1  # the paper's 1e-3; above 0.1 the GAN term drowns the content
UNUSUAL_TEST_FRACTION = 0.5  # more patients held out than trained on
FEW_SELF_SUPERVISED_STEPS = 100  # the default is the preset's 270; below 100 it barely learns


def command_warnings(args: argparse.Namespace) -> List[str]:
    """Warnings for the flags of a `srgan-tf` subcommand (`args.command`)."""
    messages = []
    if args.command == "self-supervised":
        schedule = preset("self-supervised").train
        steps = schedule.total_steps if args.steps is None else args.steps
        epochs = schedule.pretrain_epochs if args.epochs is None else args.epochs
        if epochs > steps:
            messages.append(f"--epochs {epochs} exceeds --steps {steps}: training runs {steps} "
                            "epochs of 1 step")
        elif steps % epochs:
            messages.append(f"--steps {steps} is not a multiple of --epochs {epochs}: training "
                            f"runs {epochs} epochs of {steps // epochs} steps "
                            f"({steps // epochs * epochs} steps)")
        if steps < FEW_SELF_SUPERVISED_STEPS:
            messages.append(f"--steps {steps}: the model barely trains in fewer than "
                            f"{FEW_SELF_SUPERVISED_STEPS} steps (default "
                            f"{schedule.total_steps}); the output is close to cubic "
                            "interpolation")
    if args.command == "prepare" and args.test_fraction > UNUSUAL_TEST_FRACTION:
        messages.append(f"--test-fraction {args.test_fraction:g} holds out more patients than "
                        "it trains on")
    return messages


def config_warnings(config: config_lib.ExperimentConfig) -> List[str]:
    """Warnings for a training config (the flags of `train` and the experiment scripts)."""
    messages = []
    if config.train.learning_rate > UNUSUAL_LEARNING_RATE:
        messages.append(f"--learning-rate {config.train.learning_rate:g} is above "
                        f"{UNUSUAL_LEARNING_RATE:g} (the paper: 1e-4): Adam on the generator "
                        "tends to diverge")
    if config.loss.adversarial_weight > UNUSUAL_ADVERSARIAL_WEIGHT:
        messages.append(f"--adversarial-weight {config.loss.adversarial_weight:g} is above "
                        f"{UNUSUAL_ADVERSARIAL_WEIGHT:g} (the paper: 1e-3): the adversarial "
                        "term outweighs the content loss")
    return messages


def warn_about_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`run_main`'s `check` of `srgan-tf`: one warning line per unusual flag value."""
    from srgan_tf.console import warn

    for message in command_warnings(args):
        warn(message)
