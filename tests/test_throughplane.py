"""Exp. 3 scoring: metrics shape, sample placement of cubic and SR, averaging, figures, report."""
import json

import numpy as np
import pytest
from scipy import ndimage

from srgan_tf.data.degradation.degrade import upsample_bicubic
from srgan_tf.evaluation.throughplane import score_throughplane
from srgan_tf.evaluation.throughplane_report import qualitative_throughplane, write_throughplane_report
from srgan_tf.evaluation.throughplane_volumes import cubic_along_slices, reconstruct, simulate_thick_slices
from srgan_tf.io.volume import Volume

FACTOR = 2


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from srgan_tf.config import GeneratorSpec
    from srgan_tf.inference.export import export_generator
    from srgan_tf.models.generator import generator_from_spec

    spec = GeneratorSpec((FACTOR, 1), num_residual_blocks=2, filters=8)
    return export_generator(generator_from_spec(spec), tmp_path_factory.mktemp("model") / "export",
                            {}, spec=spec)


def textured_volume(patient="P1", seed=0, shape=(16, 24, 20)):
    """Isotropic HR volume in scanner-like units."""
    noise = np.random.default_rng(seed).normal(size=shape)
    return Volume((ndimage.gaussian_filter(noise, 1.5) * 300 + 500).astype(np.float32),
                  spacing=(0.8, 0.8, 0.8), origin=(10.0, -5.0, 30.0), patient_id=patient)


def ramp_volume(shape=(16, 24, 20)):
    """Linear along the slice axis: any correctly placed cubic interpolation reproduces it."""
    slices = np.arange(shape[0], dtype=np.float32)[:, None, None]
    return Volume(np.broadcast_to(100 + 10 * slices, shape).copy(), spacing=(1.0, 1.0, 1.0),
                  patient_id="RAMP")


class CubicModel:
    """Stands in for an export: Keys cubic along the height (an exactly placed 'SR')."""

    scale_hw, mode, receptive_field, filters = (FACTOR, 1), "aniso", (4, 4), 8
    path, precisions, metadata = "cubic-model", ("float32",), {}

    def predict(self, batch, batch_size=8, precision="float32", out=None):
        return upsample_bicubic(np.asarray(batch, np.float32), self.scale_hw).numpy()


def test_score_returns_every_method_and_writes_outputs(export_dir, tmp_path):
    volumes = [textured_volume("P1", 0), textured_volume("P2", 1)]
    scores = score_throughplane(export_dir, volumes, output_dir=tmp_path)
    for method in ("sr", "bicubic", "sr_sagittal", "sr_coronal"):
        entry = scores[method]
        assert entry["patients"] == 2 and entry["slices"] > 0
        for name in ("psnr", "ssim", "hfen", "psnr_std"):
            assert np.isfinite(entry[name]) and np.isfinite(entry["axial"][name])
    assert scores["protocol"]["factor"] == FACTOR and scores["protocol"]["border"] == FACTOR
    assert set(scores["per_patient"]) == {"P1", "P2"}
    assert json.loads((tmp_path / "metrics.json").read_text())["sr"]["psnr"] == scores["sr"]["psnr"]
    assert all((tmp_path / "figures" / f"{p}_exp3.png").is_file() for p in ("P1", "P2"))


def test_thick_slice_geometry_puts_lr_and_sr_samples_on_hr_slices(export_dir):
    from srgan_tf.inference.volume_sr import sr_geometry

    hr, lr = simulate_thick_slices(textured_volume(shape=(17, 24, 20)), FACTOR)
    assert hr.shape == (16, 24, 20) and lr.shape == (8, 24, 20)
    assert lr.spacing == (1.6, 0.8, 0.8)
    np.testing.assert_allclose(lr.origin, np.add(hr.origin, (0, 0, 0.4)))  # (f - 1) / 2 slices
    spacing, origin = sr_geometry(lr, (FACTOR, 1, 1))  # where SR voxel j is placed
    np.testing.assert_allclose(spacing, hr.spacing)
    np.testing.assert_allclose(origin, hr.origin)


@pytest.mark.parametrize("profile", ["box", "gaussian"])
def test_cubic_and_sr_reproduce_a_slice_axis_ramp(profile):
    hr, lr = simulate_thick_slices(ramp_volume(), FACTOR, profile)
    cubic = cubic_along_slices(lr.array, FACTOR)
    inner = slice(3 * FACTOR, -3 * FACTOR)  # away from the reflected / clamped slab ends
    np.testing.assert_allclose(cubic[inner], hr.array[inner], atol=2e-3)
    shifted = ndimage.zoom(lr.array, (FACTOR, 1, 1), order=3, grid_mode=False)  # corner-aligned
    assert np.abs(shifted[inner] - hr.array[inner]).max() > 0.5  # 250x the tolerance
    case = reconstruct(ramp_volume(), {"sr": CubicModel()}, FACTOR, profile)
    np.testing.assert_allclose(case.outputs["sr"][inner], case.hr[inner], atol=1e-3)
    scores = score_throughplane(None, [ramp_volume()], factor=FACTOR, profile=profile)
    assert scores["bicubic"]["psnr"] > 50.0


def test_average_is_the_mean_of_the_directional_volumes(export_dir):
    from srgan_tf.inference.exported_model import load_exported

    case = reconstruct(textured_volume(), {"sr": load_exported(export_dir)}, FACTOR)
    assert case.outputs["sr"].shape == case.hr.shape == (16, 24, 20)
    mean = (case.outputs["sr_coronal"] + case.outputs["sr_sagittal"]) / 2
    np.testing.assert_allclose(case.outputs["sr"], mean, atol=1e-5)
    assert np.abs(case.outputs["sr_coronal"] - case.outputs["sr_sagittal"]).max() > 1e-4


def test_extra_models_are_scored_per_patient(export_dir):
    scores = score_throughplane(export_dir, [textured_volume("P1"), textured_volume("P2", 1)],
                                   extra_models={"sr_self_supervised": {"P2": export_dir}},
                                   max_planes=4)
    assert scores["sr_self_supervised"]["patients"] == 1 and scores["sr"]["patients"] == 2
    assert scores["sr"]["slices"] <= 2 * 4 * 2


def test_factor_must_match_the_model(export_dir):
    with pytest.raises(ValueError, match="Received: factor=4"):
        score_throughplane(export_dir, [textured_volume()], factor=4)
    with pytest.raises(ValueError, match="factor is needed"):
        score_throughplane(None, [textured_volume()])


def test_a_volume_too_small_to_score_is_named(export_dir):
    from srgan_tf.io.errors import InputError

    with pytest.raises(InputError, match="P9: 12 x 24 x 20 voxels are too few"):
        score_throughplane(export_dir, [textured_volume("P9", shape=(12, 24, 20))])


def test_qualitative_figures_and_report(export_dir, tmp_path):
    thick = Volume(textured_volume().array[::FACTOR], spacing=(1.6, 0.8, 0.8), patient_id="REAL")
    paths = qualitative_throughplane(export_dir, [thick], tmp_path, crop=16, save_volumes=True)
    assert paths == [tmp_path / "figures" / "REAL_real.png"] and paths[0].is_file()
    assert (tmp_path / "volumes" / "REAL_sr.nii.gz").is_file()
    scores = score_throughplane(export_dir, [textured_volume()], max_planes=4)
    report = write_throughplane_report(tmp_path, "Exp. 3", scores, figures=paths).read_text()
    assert "SR sagittal only" in report and "Cubic (slice axis)" in report
    assert "figures/REAL_real.png" in report and "Border crop" in report
    empty = write_throughplane_report(tmp_path / "q", "Exp. 3", {}).read_text()
    assert "only the qualitative part" in empty
