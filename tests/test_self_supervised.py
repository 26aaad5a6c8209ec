"""Self-supervised through-plane SR: acquisition model, training pairs, the command end to end."""
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from srgan_tf.data.pipelines import self_supervised as ss
from srgan_tf.data.acquisition import (acquisition_from_volume, from_slice_first, target_grid,
                                       to_slice_first)
from srgan_tf.data.degradation.degrade import slice_profile_degrade
from srgan_tf.data.intensity import robust_range
from srgan_tf.data.degradation.slice_profile import SliceProfile
from srgan_tf.inference.slice_grid import interpolation_matrix, resample_axis0
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import read_nifti, write_nifti
from srgan_tf.io.volume import Volume


def thick_volume(shape=(6, 40, 36), spacing=(2.0, 0.5, 0.5), seed=0):
    noise = np.random.default_rng(seed).normal(size=shape)
    array = ndimage.gaussian_filter(noise, (0.5, 2.0, 2.0)) * 400 + 600
    return Volume(array.astype(np.float32), spacing=spacing, patient_id="THICK")


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_low_resolution_axis_is_the_largest_spacing_on_any_axis(axis):
    spacing = [0.5, 0.5, 0.5]
    spacing[axis] = 3.6
    shape = [20, 20, 20]
    shape[axis] = 5
    volume = thick_volume(tuple(shape), tuple(spacing))
    acquisition = acquisition_from_volume(volume)
    assert acquisition.slice_axis == axis
    assert acquisition.factor == pytest.approx(7.2) and acquisition.model_factor == 8
    assert acquisition.target_spacing == pytest.approx(0.5)
    first = to_slice_first(volume, axis)
    assert first.shape[0] == 5 and first.spacing[0] == pytest.approx(3.6)
    np.testing.assert_allclose(first.affine_lps()[:3, 3], volume.affine_lps()[:3, 3])
    back = from_slice_first(first, axis)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine_lps(), volume.affine_lps())


@pytest.mark.parametrize("spacing, problem", [
    ((1.0, 1.0, 1.0), "isotropic"),
    ((1.2, 1.0, 1.0), "only 1.2"),
    ((3.0, 3.0, 1.0), "ambiguous"),
])
def test_volumes_without_a_usable_slice_axis_are_refused(spacing, problem):
    with pytest.raises(InputError, match=problem):
        acquisition_from_volume(thick_volume(spacing=spacing))


def test_single_slice_is_refused():
    with pytest.raises(InputError, match="single slice"):
        acquisition_from_volume(thick_volume((1, 40, 36), (4.0, 0.5, 0.5)))


def test_dicom_thickness_with_a_gap_sets_the_profile_width():
    volume = thick_volume(spacing=(3.6, 0.5, 0.5))
    volume.source_tags["SliceThickness"] = "3.0"
    acquisition = acquisition_from_volume(volume)
    assert acquisition.thickness == pytest.approx(3.0)
    assert acquisition.thickness_source == "SliceThickness"
    assert acquisition.gap == pytest.approx(0.6)
    assert "gap 0.6 mm" in acquisition.describe()
    # NIfTI-like input: no SliceThickness, the spacing is the thickness
    del volume.source_tags["SliceThickness"]
    assert acquisition_from_volume(volume).thickness == pytest.approx(3.6)


def test_non_integer_factor_grid_keeps_the_slab():
    volume = thick_volume((26, 24, 24), (3.6, 0.5, 0.5))
    acquisition = acquisition_from_volume(volume)
    count, step, first = target_grid(volume, acquisition)
    assert step == pytest.approx(0.5)
    assert count == round(26 * 3.6 / 0.5)  # 187 slices
    slab_start, slab_end = -1.8, 25 * 3.6 + 1.8
    low, high = first - step / 2, first + (count - 1) * step + step / 2
    assert low >= slab_start - 1e-9 and high <= slab_end + 1e-9
    assert (low - slab_start) == pytest.approx(slab_end - high)  # centred in the slab


def test_slice_resampling_is_exact_on_linear_ramps():
    source = np.arange(16, dtype=np.float32)[:, None, None] * np.ones((1, 3, 2), np.float32)
    matrix = interpolation_matrix(16, 0.0, 0.45, 14, 0.3, 0.5)
    out = resample_axis0(source * 0.45, matrix)  # value = position in mm
    expected = 0.3 + 0.5 * np.arange(14)
    inner = (expected > 0.9) & (expected < 15 * 0.45 - 0.9)  # away from the clamped edges
    np.testing.assert_allclose(out[inner, 0, 0], expected[inner], atol=1e-5)


def test_empty_thick_voxels_keep_their_output_voxels_empty():
    from srgan_tf.inference.slice_grid import keep_empty_support

    thick = np.ones((3, 4, 4), np.float32) * 5
    thick[:, :2] = 0  # zero background in the first two rows, all slices
    thick[1, 2, 2] = 0  # one empty column in the middle slice only
    output = np.full((12, 4, 4), 0.3, np.float32)
    positions = (np.arange(12) - 1.5) / 4  # x4, output centres in thick-slice units
    changed = keep_empty_support(output, thick, positions, half_support=0.5)
    assert (output[:, :2] == 0).all() and changed >= 12 * 8
    np.testing.assert_array_equal(output[4:8, 2, 2], 0)  # covered by slice 1 only
    assert (output[:4, 2, 2] == 0.3).all() and (output[8:, 2, 2] == 0.3).all()
    assert (output[:, 3] == 0.3).all()


def test_pairs_are_the_in_plane_slices_degraded_with_the_profile():
    volume = thick_volume()
    acquisition = acquisition_from_volume(volume)
    images = ss.training_slices(volume.array, acquisition, robust_range(volume.array), 0.0, 16)
    taps = SliceProfile("box", acquisition.thickness).sampling_taps(4, ss.training_pixel_mm(acquisition))
    dataset, (val_lr, val_hr) = ss.self_supervised_dataset(images, taps, 4, patch_size=16,
                                                           batch_size=4, val_slices=2, val_size=32)
    lr, hr = (t.numpy() for t in next(iter(dataset)))
    assert hr.shape == (4, 16, 16, 1) and lr.shape == (4, 4, 16, 1)
    assert hr.min() >= -1.0 and hr.max() <= 1.0 and hr.std() > 0.05
    box = SliceProfile("box", 4)  # the slice thickness in training pixels
    np.testing.assert_allclose(lr, slice_profile_degrade(hr, 1, 4, box), atol=1e-5)
    np.testing.assert_allclose(val_lr, slice_profile_degrade(val_hr, 1, 4, box), atol=1e-5)
    again = next(iter(ss.self_supervised_dataset(images, taps, 4, patch_size=16, batch_size=4)[0]))
    np.testing.assert_array_equal(again[1].numpy(), hr)  # stateless draws: same seed, same batch


def test_training_pixels_are_resampled_for_non_integer_factors():
    volume = thick_volume((4, 40, 36), (3.6, 0.5, 0.5))
    acquisition = acquisition_from_volume(volume)  # x7.2: model x8, pixels of 0.45 mm
    images = ss.training_slices(volume.array, acquisition, robust_range(volume.array), 0.0, 16)
    assert ss.training_pixel_mm(acquisition) == pytest.approx(0.45)
    assert images.shape[1:] == (round(40 * 0.5 / 0.45), round(36 * 0.5 / 0.45))


def _phantom_nifti(path, spacing=(3.0, 1.0, 1.0), shape=(8, 40, 32)):
    """A smooth blob phantom on a background of zeros, as NIfTI, slice axis = k."""
    rng = np.random.default_rng(1)
    field = ndimage.gaussian_filter(rng.normal(size=shape), (0.6, 2.0, 2.0))
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    head = (grid[0] ** 2 * 0.5 + grid[1] ** 2 + grid[2] ** 2) < 0.7
    array = np.where(head, 500 + 2000 * field, 0).clip(0, None).astype(np.float32)
    volume = Volume(array, spacing=spacing, origin=(10.0, -20.0, 5.0), patient_id="PHANTOM")
    write_nifti(volume, path)
    return volume


def test_command_end_to_end_on_a_small_nifti(tmp_path, capsys):
    from srgan_tf.cli import main

    source = _phantom_nifti(tmp_path / "thick.nii.gz", spacing=(2.5, 1.0, 1.0))
    output, work = tmp_path / "sr.nii.gz", tmp_path / "work"
    code = main(["self-supervised", "--input", str(tmp_path / "thick.nii.gz"), "--output",
                 str(output), "--work-dir", str(work), "--slice-profile", "box", "--steps", "2",
                 "--epochs", "1", "--dicom-output", str(tmp_path / "dicom")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "low-resolution axis" in printed and "factor 2.5" in printed and "box" in printed
    sr = read_nifti(output)
    count = round(8 * 2.5 / 1.0)  # x2.5: model x4, resampled onto 1 mm slices
    assert sr.shape == (count, 40, 32)
    assert sr.spacing == pytest.approx((1.0, 1.0, 1.0))
    # the output slab is the input slab: first centre at origin - 2.5/2 + 0.5
    np.testing.assert_allclose(sr.origin, np.array(source.origin) + np.array([0, 0, 1.0]) * -0.75,
                               atol=1e-4)
    assert sr.array.min() >= source.array.min() and sr.array.max() <= source.array.max()
    summary = json.loads((work / "summary.json").read_text())
    assert summary["acquisition"]["model_factor"] == 4
    assert (work / "report.md").is_file() and (work / "model" / "export" / "metadata.json").is_file()
    assert len(list((tmp_path / "dicom").iterdir())) == count
    assert nib.load(str(output)).header.get_zooms() == pytest.approx((1.0, 1.0, 1.0))

    # fine-tuning from an export (here the one just trained) runs the same way
    code = main(["self-supervised", "--input", str(tmp_path / "thick.nii.gz"), "--output",
                 str(tmp_path / "tuned.nii.gz"), "--init-model", str(work / "model" / "export"),
                 "--slice-profile", "box", "--steps", "1", "--epochs", "1"])
    assert code == 0 and "Fine-tuning" in capsys.readouterr().out
    assert read_nifti(tmp_path / "tuned.nii.gz").shape == (count, 40, 32)


@pytest.mark.parametrize("case", ["isotropic", "low_factor", "single_slice", "2d", "nan",
                                  "unwritable", "4d", "bad_profile"])
def test_bad_inputs_fail_before_training_with_one_line(tmp_path, capsys, case):
    from srgan_tf.cli import main

    path = tmp_path / "in.nii.gz"
    output = tmp_path / "sr.nii.gz"
    extra = []
    if case == "isotropic":
        _phantom_nifti(path, spacing=(1.0, 1.0, 1.0))
    elif case == "low_factor":
        _phantom_nifti(path, spacing=(1.3, 1.0, 1.0))
    elif case == "single_slice":
        _phantom_nifti(path, spacing=(3.0, 1.0, 1.0), shape=(1, 40, 32))
    elif case == "2d":
        nib.save(nib.Nifti1Image(np.ones((16, 16), np.float32), np.eye(4)), str(path))
    elif case == "nan":
        volume = _phantom_nifti(path)
        volume.array[2, 10, 10] = np.nan
        write_nifti(volume, path)
    elif case == "unwritable":
        _phantom_nifti(path)
        (tmp_path / "afile").write_text("x")
        output = tmp_path / "afile" / "sr.nii.gz"
    elif case == "4d":
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.float32), np.diag([1, 1, 3, 1])), str(path))
    else:
        _phantom_nifti(path)
        extra = ["--slice-profile", "triangle"]
    code = main(["self-supervised", "--input", str(path), "--output", str(output),
                 "--work-dir", str(tmp_path / "work"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("srgan-tf self-supervised: error:") and "Traceback" not in err
    assert not output.exists() and not (tmp_path / "work").exists()


def test_self_supervised_config_warms_up_then_decays_the_rate_to_zero():
    from srgan_tf.presets import preset
    from srgan_tf.training.own_slices import self_supervised_config
    from srgan_tf.training.trainer import generator_learning_rate

    peak = preset("self-supervised").train.learning_rate
    config = self_supervised_config(4, steps=200, epochs=2)
    assert config.train.pretrain_epochs * config.train.steps_per_epoch == 200
    assert config.train.learning_rate_schedule == "cosine" and config.loss.pixel_loss == "mse"
    rate = generator_learning_rate(config)
    values = [float(rate(step)) for step in (0, 5, 10, 105, 199, 200)]
    warmup = round(config.train.warmup_fraction * 200)
    assert values[0] < values[1] < float(rate(warmup)) == pytest.approx(peak)
    assert values[3] == pytest.approx(peak / 2, rel=0.05)
    assert values[-1] == pytest.approx(0.0, abs=1e-9) and values[-2] < 1e-6
    constant = self_supervised_config(4, schedule="constant", learning_rate=2e-4)
    assert generator_learning_rate(constant) == 2e-4
    assert self_supervised_config(2) == preset("self-supervised", scale=2)  # the defaults: the preset's
    assert self_supervised_config(2).train.total_steps == 270


def test_schedule_and_pixel_loss_are_checked():
    from srgan_tf.config import ConfigError, ExperimentConfig

    with pytest.raises(ConfigError, match="steps_per_epoch"):
        ExperimentConfig.from_dict({"train": {"learning_rate_schedule": "cosine"}})
    with pytest.raises(ConfigError, match="learning_rate_schedule"):
        ExperimentConfig.from_dict({"train": {"learning_rate_schedule": "step", "steps_per_epoch": 3}})
    with pytest.raises(ConfigError, match="pixel_loss"):
        ExperimentConfig.from_dict({"loss": {"pixel_loss": "l2"}})


def test_pixel_losses():
    import tensorflow as tf

    from srgan_tf.training.srgan import CHARBONNIER_EPSILON, pixel_loss

    hr, sr = tf.zeros([1, 2, 2, 1]), tf.constant([0.0, 0.5, -0.5, 1.0], shape=[1, 2, 2, 1])
    assert float(pixel_loss("mse", hr, sr)) == pytest.approx((0.25 + 0.25 + 1) / 4)
    assert float(pixel_loss("l1", hr, sr)) == pytest.approx(0.5)
    expected = np.mean(np.sqrt(np.array([0, 0.25, 0.25, 1.0]) + CHARBONNIER_EPSILON ** 2))
    assert float(pixel_loss("charbonnier", hr, sr)) == pytest.approx(expected, rel=1e-5)
