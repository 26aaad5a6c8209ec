"""Test-wide settings: CPU only, quiet TensorFlow, no network."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402  (the environment above must be set first)


@pytest.fixture(scope="session")
def training_cache(tmp_path_factory):
    """A tiny HDF5 cache for training runs: 3 NIfTI patients of 6 slices 32x32 (one held out
    for testing). Imports stay inside: collecting the suite needs no TensorFlow."""
    import numpy as np
    import tensorflow as tf

    from srgan_tf.data.slice_cache.prepare import build_cache
    from srgan_tf.io.nifti import write_nifti
    from srgan_tf.io.volume import Volume

    root = tmp_path_factory.mktemp("training_cache")
    rng = np.random.default_rng(1)
    for index in range(3):
        coarse = rng.uniform(100, 1000, (6, 4, 4)).astype(np.float32)
        array = tf.image.resize(coarse[..., None], (32, 32), method="bicubic").numpy()[..., 0]
        volume = Volume(array=array, spacing=(3.0, 0.5, 0.5), patient_id=f"P{index}",
                        series_description="t2_tse_tra")
        write_nifti(volume, root / "nifti" / f"P{index}.nii.gz")
    build_cache(root / "nifti", root / "cache.h5", test_fraction=0.34, seed=0, progress=False)
    return root / "cache.h5"
