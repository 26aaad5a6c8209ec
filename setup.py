"""srgan-tf: SRGAN super-resolution for (anisotropic) prostate MRI in TensorFlow/Keras."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="srgan-tf",
    version="0.1.0",
    description="SRGAN for isotropic and anisotropic super-resolution of prostate MRI (TensorFlow/Keras 3)",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["srgan_tf", "srgan_tf.*"]),
    python_requires=">=3.9",
    install_requires=requirements,
    extras_require={
        "test": ["pytest>=7", "scikit-image>=0.21"],
        # NVIDIA GPUs on Linux: TensorFlow's CUDA and cuDNN wheels (no system CUDA needed).
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.22"],
    },
    entry_points={"console_scripts": ["srgan-tf=srgan_tf.cli:main"]},
)
