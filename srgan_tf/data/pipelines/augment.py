"""The one augmenter of the training pipelines: a random square patch, a random transpose (when
asked for) and random up-down and left-right flips.

Exp. 1/2 batches from the cache (`pipeline.make_dataset`) and self-supervised pairs from one
volume (`self_supervised.self_supervised_dataset`) both draw each element's numbers statelessly
(Philox) from (stream, element number), so the same seed gives the same batches whatever the
parallelism, and hand them to `random_patch_and_flips` in one order: patch top, patch left,
transpose, up-down flip, left-right flip. The streams differ (the cache pipeline's is
2 * seed + 1, beside its shuffle's 2 * seed; self-supervised's is the seed, whose first draw
picks the slice), so each pipeline keeps its own batches.
"""
import tensorflow as tf


def element_draws(stream: int, number, count: int) -> tf.Tensor:
    """`count` uniform numbers in [0, 1) for element `number` (int64) of the seeded `stream`.

    Example:
        draws = element_draws(seed, number, augment_draws(transpose=False))
    """
    seed = tf.stack([tf.constant(stream, tf.int64), number])
    return tf.random.stateless_uniform([count], seed=seed, alg="philox")


def augment_draws(transpose: bool) -> int:
    """How many numbers `random_patch_and_flips` reads: top, left, [transpose], two flips."""
    return 5 if transpose else 4


def random_patch_and_flips(image, draws, patch: int, *, flips: bool = True,
                           transpose: bool = False) -> tf.Tensor:
    """A random `patch` x `patch` crop of an [H, W, C] image, then (if `transpose`) its two axes
    swapped, then (if `flips`) flipped up-down and left-right, each with probability 1/2.

    Args:
        image: [H, W, C] tensor with H, W >= patch (H = W = patch: the whole image).
        draws: uniform numbers in [0, 1): top, left, transpose (only if `transpose`), up-down
            flip, left-right flip; `augment_draws(transpose)` of them.
        patch: the side of the patch.
        flips: draw the flips (their numbers are read only then).
        transpose: draw the transpose (self-supervised pairs: both in-plane axes serve as the
            degraded height).

    Returns:
        The [patch, patch, C] patch.
    """
    free = tf.cast(tf.shape(image)[:2] - patch + 1, tf.float32)  # possible top and left corners
    top = tf.cast(draws[0] * free[0], tf.int32)
    left = tf.cast(draws[1] * free[1], tf.int32)
    out = image[top:top + patch, left:left + patch, :]
    flip_draws = draws[2:]
    if transpose:
        out = tf.cond(draws[2] < 0.5, lambda: tf.transpose(out, [1, 0, 2]), lambda: out)
        flip_draws = draws[3:]
    if flips:
        out = tf.cond(flip_draws[0] < 0.5, lambda: out[::-1], lambda: out)
        out = tf.cond(flip_draws[1] < 0.5, lambda: out[:, ::-1], lambda: out)
    return tf.ensure_shape(out, [patch, patch, image.shape[-1]])
