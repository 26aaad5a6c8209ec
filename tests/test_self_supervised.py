"""Self-supervised (SMORE-like) through-plane data and training from one thick-slice volume."""
import inspect

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from srgan_tf.config import DataConfig, preset
from srgan_tf.data import self_supervised as ss
from srgan_tf.data.degrade import slice_profile_degrade
from srgan_tf.io.volume import Volume


def thick_volume(shape=(6, 40, 36), spacing=(2.0, 0.5, 0.5), seed=0):
    noise = np.random.default_rng(seed).normal(size=shape)
    array = ndimage.gaussian_filter(noise, (0.5, 2.0, 2.0)) * 400 + 600
    return Volume(array.astype(np.float32), spacing=spacing, patient_id="THICK")


def data_config(**changes):
    values = dict(mode="aniso", scale=4, hr_size=32, patch_size=16, batch_size=4, val_slices=2,
                  min_foreground=0.0)
    values.update(changes)
    return DataConfig(**values)


def first_batch(dataset):
    lr, hr = next(iter(dataset))
    return lr.numpy(), hr.numpy()


def test_batches_thicken_the_height_only_with_the_slice_profile():
    dataset, (val_lr, val_hr) = ss.self_supervised_dataset(thick_volume(), 4, data_config())
    lr, hr = first_batch(dataset)
    assert hr.shape == (4, 16, 16, 1) and lr.shape == (4, 4, 16, 1)  # height / factor, width kept
    assert hr.min() >= -1.0 and hr.max() <= 1.0 and hr.std() > 0.05
    np.testing.assert_allclose(lr, slice_profile_degrade(hr, 1, 4, "gaussian"), atol=1e-5)
    assert val_hr.shape == (2, 32, 32, 1) and val_lr.shape == (2, 8, 32, 1)
    np.testing.assert_allclose(val_lr, slice_profile_degrade(val_hr, 1, 4), atol=1e-5)


def test_same_seed_same_batches_and_box_profile():
    config = data_config()
    first = first_batch(ss.self_supervised_dataset(thick_volume(), 4, config, "box", seed=3)[0])
    again = first_batch(ss.self_supervised_dataset(thick_volume(), 4, config, "box", seed=3)[0])
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_allclose(first[0], slice_profile_degrade(first[1], 1, 4, "box"), atol=1e-5)


def test_both_in_plane_axes_serve_as_height():
    varying = np.broadcast_to(np.sin(np.arange(36) / 2.0) * 300 + 600, (6, 40, 36)).copy()
    volume = Volume(varying.astype(np.float32), spacing=(2.0, 0.5, 0.5))
    _, hr = first_batch(ss.self_supervised_dataset(volume, 4, data_config(batch_size=32, flips=False))[0])
    constant_columns = np.all(np.ptp(hr, axis=1) < 1e-6, axis=(1, 2))  # as acquired
    constant_rows = np.all(np.ptp(hr, axis=2) < 1e-6, axis=(1, 2))  # transposed
    assert constant_columns.any() and constant_rows.any()
    assert np.all(constant_columns ^ constant_rows)


def test_geometry_resamples_in_plane_to_the_target_spacing():
    volume = thick_volume(spacing=(3.6, 0.5, 0.5))
    geometry = ss.self_supervised_geometry(volume, 4)
    assert geometry.resampled and geometry.target_spacing == pytest.approx(0.9)
    assert geometry.thickness == pytest.approx((4.0, 4.0))
    native = ss.self_supervised_geometry(volume, 4, resample_in_plane=False)
    assert not native.resampled and native.thickness == pytest.approx((7.2, 7.2))
    images = ss.training_slices(volume, geometry, 0.0, 16)
    assert images.shape == (6, 22, 20)  # 40 * 0.5 / 0.9, 36 * 0.5 / 0.9
    dataset, _ = ss.self_supervised_dataset(volume, 4, data_config(), resample_in_plane=False)
    lr, hr = first_batch(dataset)
    np.testing.assert_allclose(lr, slice_profile_degrade(hr, 1, 4, "gaussian", 7.2), atol=1e-5)


def test_rejects_patches_not_divisible_by_the_factor():
    with pytest.raises(ValueError, match="divisible"):
        ss.self_supervised_dataset(thick_volume(), 3, data_config(patch_size=16))


def _trainer_accepts_datasets() -> bool:
    from srgan_tf.training.trainer import train

    return {"train_dataset", "validation"} <= set(inspect.signature(train).parameters)


@pytest.mark.skipif(not _trainer_accepts_datasets(),
                    reason="trainer.train does not accept train_dataset/validation yet")
def test_training_on_a_tiny_volume_exports_an_anisotropic_model(tmp_path):
    from srgan_tf.inference.export import load_exported

    config = preset("quick", experiment="exp3", mode="aniso", scale=2)
    config.data = data_config(scale=2, batch_size=2, hr_size=16)
    config.model.num_residual_blocks, config.model.filters = 2, 8
    config.model.discriminator_filters, config.model.discriminator_dense = 8, 16
    config.loss.content_loss = "mse"
    config.train.pretrain_epochs = config.train.adversarial_epochs = 1
    config.train.steps_per_epoch = 2
    result = ss.train_self_supervised(thick_volume(spacing=(1.0, 0.5, 0.5)), config, tmp_path / "run",
                                      progress=False)
    model = load_exported(result.export_dir)
    assert model.scale_hw == (2, 1)
    assert model.predict(np.zeros((1, 4, 8, 1), np.float32)).shape == (1, 8, 8, 1)
    assert (tmp_path / "run" / "self_supervised.json").is_file()
    assert tf.io.gfile.exists(str(result.export_dir / "saved_model.pb"))
