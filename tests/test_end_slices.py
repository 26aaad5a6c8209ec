"""Through-plane SR leaves no bands at the first and last output slices: the slice axis is
padded by reflection (the degradation's border rule) beyond the model's receptive field and the
padding cropped, so the model never sees the zeros its convolutions pad with (mid-grey in the
normalised range, where the background is -1)."""
import keras
import numpy as np
import pytest

from srgan_tf.config import GeneratorSpec
from srgan_tf.inference.export import export_generator
from srgan_tf.inference.exported_model import load_exported
from srgan_tf.inference.volume_sr import super_resolve_volume
from srgan_tf.io.volume import Volume
from srgan_tf.models.generator import generator_from_spec


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    keras.utils.set_random_seed(3)
    spec = GeneratorSpec((2, 1), num_residual_blocks=2, filters=8)
    return load_exported(export_generator(generator_from_spec(spec), tmp_path_factory.mktemp("m") / "x2",
                                          {}, spec=spec))


def test_end_slices_are_as_clean_as_interior_ones(model):
    """An object that does not change along the slices: every output slice must look like the
    interior ones, outside the object too (a band is a difference at the ends only)."""
    array = np.zeros((8, 24, 20), np.float32)
    array[:, 8:16, 6:14] = 800.0
    result = super_resolve_volume(model, Volume(array, (3.0, 0.5, 0.5)))
    out = result.volume.array  # (16, 24, 20); x2: slices come in pairs of sub-pixel phases
    outside = np.ones(out.shape[1:], bool)
    outside[6:18, 4:16] = False
    interior = np.abs(out[6:8][:, outside]).mean()
    first, last = np.abs(out[:2][:, outside]).mean(), np.abs(out[-2:][:, outside]).mean()
    scale = result.intensity_range[1] - result.intensity_range[0]
    assert abs(first - interior) < 1e-4 * scale and abs(last - interior) < 1e-4 * scale, \
        (first, interior, last)
    np.testing.assert_allclose(out[:2], out[6:8], atol=1e-4 * scale)
    np.testing.assert_allclose(out[-2:], out[6:8], atol=1e-4 * scale)


def test_slice_padding_caps_the_reflection_at_most_at_the_receptive_field(model):
    """`slice_padding` (what self-supervised runs pass) trims the reflected slices: at or above
    the receptive field the result is the default's, below it only the end slices change."""
    rng = np.random.default_rng(0)
    volume = Volume((rng.random((12, 16, 12)) * 1000).astype(np.float32), (3.0, 0.5, 0.5))
    full = super_resolve_volume(model, volume).volume.array
    same = super_resolve_volume(model, volume, slice_padding=10 ** 6).volume.array
    np.testing.assert_array_equal(same, full)
    none = super_resolve_volume(model, volume, slice_padding=0).volume.array
    changed = np.abs(none - full).max(axis=(1, 2)) > 1e-6 * np.abs(full).max()
    assert changed[0] and changed[-1]
    assert not changed[len(changed) // 2 - 1:len(changed) // 2 + 1].any() or \
        model.receptive_field[0] >= volume.shape[0] // 2


def test_infer_takes_slice_padding_and_reports_it(model, tmp_path):
    from srgan_tf.cli import main
    from srgan_tf.io.nifti import read_nifti, write_nifti

    array = np.zeros((6, 16, 12), np.float32)
    array[:, 4:12, 3:9] = 500.0
    write_nifti(Volume(array, (3.0, 0.5, 0.5)), tmp_path / "thick.nii.gz")
    argv = ["infer", "--model", str(model.path), "--input", str(tmp_path / "thick.nii.gz")]
    assert main([*argv, "--output", str(tmp_path / "a.nii.gz")]) == 0
    assert main([*argv, "--output", str(tmp_path / "b.nii.gz"), "--slice-padding", "0"]) == 0
    exact, unpadded = (read_nifti(tmp_path / f"{n}.nii.gz").array for n in "ab")
    assert exact.shape == unpadded.shape and not np.allclose(exact, unpadded)
    with pytest.raises(SystemExit):
        main([*argv, "--output", str(tmp_path / "c.nii.gz"), "--slice-padding", "-1"])
