"""tf.data pipelines from a tiny HDF5 cache built from NIfTI volumes."""
import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from srgan_tf.config import DataConfig
from srgan_tf.data.slice_cache.cache import SliceCache
from srgan_tf.data.degradation.degrade import degrade, slice_profile_degrade
from srgan_tf.data.pipelines.pipeline import (list_candidates, lr_images, make_dataset,
                                              prepare_slices, validation_batch)
from srgan_tf.data.slice_cache.prepare import build_cache
from srgan_tf.data.degradation.slice_profile import SliceProfile
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.volume import Volume

# (patient, shape): a larger slice is cropped, a smaller one is resized up to hr_size 32.
VOLUMES = [("P0", (6, 32, 32)), ("P1", (5, 40, 36)), ("P2", (4, 24, 28)), ("P3", (5, 32, 32))]
EMPTY_SLICES = {"P0": [0, 5], "P3": [2]}  # air only: skipped by the foreground filter


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)
    for patient, shape in VOLUMES:
        array = rng.uniform(100, 1000, shape).astype(np.float32)
        array[:, :2] = 0.0  # a strip of air so the robust range reaches down to it
        array[EMPTY_SLICES.get(patient, [])] = 0.0
        volume = Volume(array=array, spacing=(3.0, 0.5, 0.5), patient_id=patient,
                        series_description="t2_tse_tra")
        write_nifti(volume, root / "nifti" / f"{patient}.nii.gz")
    output = root / "cache.h5"
    build_cache(root / "nifti", output, test_fraction=0.25, seed=0, progress=False)
    return output


def _config(**changes):
    values = dict(mode="aniso", scale=4, hr_size=32, batch_size=4, flips=True, memory_budget_mb=64,
                  min_foreground=0.5)
    values.update(changes)
    return DataConfig(**values)


def _take(dataset, batches):
    return [(lr.numpy(), hr.numpy()) for lr, hr in dataset.take(batches)]


def _split_slices(cache_path, split):
    with SliceCache(cache_path) as cache:
        return [(info.patient_id, info.shape[0]) for info in cache.series(split)]


@pytest.mark.parametrize("mode,patch", [("aniso", None), ("iso", None), ("aniso", 16)])
def test_training_batches_shapes_dtypes_range(cache_path, mode, patch):
    config = _config(mode=mode, patch_size=patch)
    dataset = make_dataset(cache_path, config, training=True, seed=1)
    size = config.train_size
    scale_h, scale_w = config.scale_hw
    assert dataset.element_spec[0].shape.as_list() == [4, size // scale_h, size // scale_w, 1]
    assert dataset.element_spec[1].shape.as_list() == [4, size, size, 1]
    for lr, hr in _take(dataset, 6):  # more than one epoch: repeats
        assert lr.dtype == hr.dtype == np.float32
        assert hr.min() >= -1.0 and hr.max() <= 1.0
        np.testing.assert_allclose(lr, degrade(hr, config.scale_hw).numpy(), atol=1e-6)
        assert np.abs(lr).max() <= 1.1  # bicubic overshoot only
        # Foreground filter: no all-air slices.
        assert ((hr > -0.9).mean(axis=(1, 2, 3)) >= 0.3).all()


def test_seeded_order_is_deterministic_and_seed_dependent(cache_path):
    config = _config()
    first = _take(make_dataset(cache_path, config, seed=3), 5)
    again = _take(make_dataset(cache_path, config, seed=3), 5)
    other = _take(make_dataset(cache_path, config, seed=4), 5)
    for (lr_a, hr_a), (lr_b, hr_b) in zip(first, again):
        np.testing.assert_array_equal(hr_a, hr_b)
        np.testing.assert_array_equal(lr_a, lr_b)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))


def test_each_epoch_visits_every_foreground_slice_once(cache_path):
    config = _config(flips=False)
    train = _split_slices(cache_path, "train")
    kept = sum(n - len(EMPTY_SLICES.get(patient, [])) for patient, n in train)
    evaluation = make_dataset(cache_path, config, training=False)
    reference = np.concatenate([hr for _, hr in _take(evaluation, 100)])
    assert len(reference) == kept
    config = dataclasses.replace(config, batch_size=kept)  # one batch = one epoch
    epochs = [hr for _, hr in _take(make_dataset(cache_path, config, seed=0), 2)]
    for epoch in epochs:
        assert sorted(map(bytes, epoch)) == sorted(map(bytes, reference))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch


@pytest.mark.parametrize("training,split", [(True, "train"), (False, "train"), (False, "test")])
def test_streaming_equals_in_memory(cache_path, training, split):
    config = _config(patch_size=16 if training else None)
    streamed = dataclasses.replace(config, memory_budget_mb=0)
    memory = _take(make_dataset(cache_path, config, split, training=training, seed=5), 6)
    stream = _take(make_dataset(cache_path, streamed, split, training=training, seed=5), 6)
    assert len(memory) == len(stream) > 0
    for (lr_a, hr_a), (lr_b, hr_b) in zip(memory, stream):
        np.testing.assert_array_equal(hr_a, hr_b)
        np.testing.assert_array_equal(lr_a, lr_b)


def test_evaluation_is_finite_whole_slices_in_cache_order(cache_path):
    config = _config(patch_size=16, batch_size=3)
    batches = _take(make_dataset(cache_path, config, split="test", training=False), 100)
    (patient, slices), = _split_slices(cache_path, "test")
    kept = slices - len(EMPTY_SLICES.get(patient, []))
    assert sum(len(hr) for _, hr in batches) == kept  # last batch kept
    assert all(hr.shape[1:] == (32, 32, 1) and lr.shape[1:] == (8, 32, 1) for lr, hr in batches)
    with SliceCache(cache_path) as cache:
        key = cache.series("test")[0].key
        expected = prepare_slices(cache.read_normalized(key), 32).numpy()
    expected = expected[[i for i in range(slices) if i not in EMPTY_SLICES.get(patient, [])]]
    np.testing.assert_array_equal(np.concatenate([hr for _, hr in batches]), expected)
    again = _take(make_dataset(cache_path, config, split="test", training=False), 100)
    np.testing.assert_array_equal(np.concatenate([hr for _, hr in again]), expected)


def test_prepare_crops_large_and_resizes_small_slices():
    large = np.random.default_rng(0).uniform(-1, 1, (2, 40, 36)).astype(np.float32)
    np.testing.assert_array_equal(prepare_slices(large, 32).numpy()[..., 0], large[:, 4:36, 2:34])
    small = large[:, :24, :28]
    resized = prepare_slices(small, 32).numpy()
    assert resized.shape == (2, 32, 32, 1)
    assert resized.min() >= -1 and resized.max() <= 1
    np.testing.assert_array_equal(prepare_slices(small[:1], 32).numpy(), resized[:1])


def test_validation_batch_is_fixed(cache_path):
    config = _config(mode="iso", scale=2)
    lr, hr = validation_batch(cache_path, config, count=3)
    assert lr.shape == (3, 16, 16, 1) and hr.shape == (3, 32, 32, 1)
    assert lr.dtype == hr.dtype == np.float32
    lr_again, hr_again = validation_batch(cache_path, config, count=3)
    np.testing.assert_array_equal(hr, hr_again)
    np.testing.assert_array_equal(lr, lr_again)
    assert len({bytes(image) for image in hr}) == 3  # distinct slices
    assert validation_batch(cache_path, config, split="train")[1].shape[0] == config.val_slices


def test_list_candidates_covers_the_split(cache_path):
    candidates = list_candidates(cache_path, "train")
    assert candidates.count == sum(n for _, n in _split_slices(cache_path, "train"))
    assert len(candidates.keys) == 3


def test_bad_arguments_are_rejected(cache_path):
    with pytest.raises(ValueError, match="Received"):
        make_dataset(cache_path, _config(), split="validation")
    with pytest.raises(ValueError, match="Received"):
        make_dataset(cache_path, _config(patch_size=64))
    # No slice of the test patient is all foreground: an endless dataset would never yield.
    for budget in (64, 0):
        with pytest.raises(ValueError, match="min_foreground=1.0"):
            make_dataset(cache_path, _config(min_foreground=1.0, memory_budget_mb=budget),
                         split="test")
    empty = make_dataset(cache_path, _config(min_foreground=1.0), split="test", training=False)
    assert _take(empty, 10) == []


MIRRORED_SCRIPT = textwrap.dedent("""
    import dataclasses
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from srgan_tf.config import DataConfig
    from srgan_tf.data.pipelines.pipeline import make_dataset
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    base = DataConfig(mode="aniso", scale=4, hr_size=32, batch_size=4, min_foreground=0.5)
    for budget in (64, 0):
        config = dataclasses.replace(base, memory_budget_mb=budget)
        dataset = make_dataset(sys.argv[1], config, seed=0)
        dataset = strategy.experimental_distribute_dataset(dataset)
        lr, hr = next(iter(dataset))
        shapes = [tuple(part.shape) for part in strategy.experimental_local_results(hr)]
        lr_shapes = [tuple(part.shape) for part in strategy.experimental_local_results(lr)]
        assert shapes == [(2, 32, 32, 1)] * 2, shapes
        assert lr_shapes == [(2, 8, 32, 1)] * 2, lr_shapes
    print("OK")
""")


def test_distributes_over_two_replicas(cache_path):
    # Logical devices must be configured before TensorFlow starts: a fresh interpreter.
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(cache_path)],
                            capture_output=True, text=True, timeout=300, env=environment,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("profile,thickness", [("box", 1.0), ("gaussian", 0.75)])
def test_slice_profile_degradation_for_aniso_training(cache_path, profile, thickness):
    config = _config(degradation="slice-profile", slice_profile=profile,
                     slice_thickness_ratio=thickness)
    lr, hr = _take(make_dataset(cache_path, config, training=True, seed=1), 1)[0]
    expected = slice_profile_degrade(hr, axis=1, factor=4, profile=SliceProfile(profile, 4 * thickness))
    np.testing.assert_allclose(lr, expected, atol=1e-6)
    if profile == "box":  # contiguous box slices: the mean of 4 consecutive rows
        np.testing.assert_allclose(lr[:, 2], hr[:, 8:12].mean(axis=1), atol=1e-6)
    val_lr, val_hr = validation_batch(cache_path, config, count=2)
    np.testing.assert_allclose(val_lr, lr_images(val_hr, config).numpy(), atol=0)
    assert not np.allclose(val_lr, degrade(val_hr, (4, 1)).numpy(), atol=1e-3)


def test_iso_mode_is_always_bicubic(cache_path):
    config = _config(mode="iso", degradation="slice-profile")
    lr, hr = _take(make_dataset(cache_path, config, training=True, seed=1), 1)[0]
    np.testing.assert_allclose(lr, degrade(hr, (4, 4)).numpy(), atol=1e-6)
