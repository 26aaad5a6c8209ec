"""models layer of srgan-tf (see DESIGN.md).

Importing the package registers the custom layers, so saved models load with
`keras.saving.load_model` after `import srgan_tf.models`.
"""
from srgan_tf.models import layers  # noqa: F401  (registers PixelShuffle / PixelUnshuffle)
