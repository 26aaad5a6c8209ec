"""The one augmenter: patch corners, transpose and flips read from the draws in their order."""
import numpy as np
import tensorflow as tf

from srgan_tf.data.pipelines.augment import augment_draws, element_draws, random_patch_and_flips

IMAGE = np.arange(6 * 8, dtype=np.float32).reshape(6, 8, 1)


def _augment(draws, patch=4, **options):
    return random_patch_and_flips(tf.constant(IMAGE), tf.constant(draws, tf.float32), patch,
                                  **options).numpy()


def test_patch_corners_span_every_position():
    np.testing.assert_array_equal(_augment([0.0, 0.0, 0.9, 0.9]), IMAGE[:4, :4])
    np.testing.assert_array_equal(_augment([0.999, 0.999, 0.9, 0.9]), IMAGE[2:, 4:])
    np.testing.assert_array_equal(_augment([0.5, 0.5, 0.9, 0.9]), IMAGE[1:5, 2:6])  # 3 tops, 5 lefts
    whole = random_patch_and_flips(tf.constant(IMAGE[:4, :4]), tf.constant([0.7, 0.3, 0.9, 0.9]), 4)
    np.testing.assert_array_equal(whole.numpy(), IMAGE[:4, :4])  # image = patch: left as it is


def test_flips_and_transpose_read_their_draws_in_order():
    patch = IMAGE[:4, :4]
    np.testing.assert_array_equal(_augment([0, 0, 0.2, 0.9]), patch[::-1])
    np.testing.assert_array_equal(_augment([0, 0, 0.9, 0.2]), patch[:, ::-1])
    np.testing.assert_array_equal(_augment([0, 0, 0.2, 0.2], flips=False), patch)
    transposed = patch.transpose(1, 0, 2)
    np.testing.assert_array_equal(_augment([0, 0, 0.2, 0.9, 0.9], transpose=True), transposed)
    np.testing.assert_array_equal(_augment([0, 0, 0.9, 0.2, 0.9], transpose=True), patch[::-1])
    np.testing.assert_array_equal(_augment([0, 0, 0.2, 0.9, 0.2], transpose=True),
                                  transposed[:, ::-1])
    assert augment_draws(transpose=False) == 4 and augment_draws(transpose=True) == 5


def test_element_draws_are_stateless_in_stream_and_number():
    first = element_draws(3, tf.constant(7, tf.int64), 6).numpy()
    np.testing.assert_array_equal(first, element_draws(3, tf.constant(7, tf.int64), 6).numpy())
    assert first.min() >= 0.0 and first.max() < 1.0
    assert not np.array_equal(first, element_draws(4, tf.constant(7, tf.int64), 6).numpy())
    assert not np.array_equal(first, element_draws(3, tf.constant(8, tf.int64), 6).numpy())
