"""srgan-tf: SRGAN super-resolution for prostate MRI (Sood & Rusu) in TensorFlow/Keras 3."""

__version__ = "0.1.0"
