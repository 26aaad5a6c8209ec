"""Training pairs: the tf.data pipeline from the cache, the self-supervised pairs from one
volume, the augmenter both use."""
