"""Volume inference: through-plane averaging, in-plane SR, exact tiling, output geometry
(NIfTI affine, derived DICOM series) and bad input that leaves no output behind."""
import json

import keras
import nibabel as nib
import numpy as np
import pydicom
import pytest

from srgan_tf.inference.export import export_generator
from srgan_tf.inference.exported_model import load_exported
from srgan_tf.inference.infer import run_infer
from srgan_tf.inference.tiling import plan_axis, plan_tiles, predict_tiled
from srgan_tf.inference.volume_sr import super_resolve_volume
from srgan_tf.io.dicom_write import write_dicom_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import read_nifti, write_nifti
from srgan_tf.io.volume import Volume
from srgan_tf.config import GeneratorSpec
from srgan_tf.models.generator import generator_from_spec

SPACING = (3.0, 0.5, 0.6)
ORIGIN = (10.0, -20.0, 30.0)


def _rotation(degrees):
    angle = np.deg2rad(degrees)
    # Oblique axial: slice normal tilted about the L axis, so every axis has LPS components.
    return np.array([[0.0, np.sin(angle), np.cos(angle)],
                     [0.0, np.cos(angle), -np.sin(angle)],
                     [1.0, 0.0, 0.0]])


def _volume(shape=(6, 24, 20), seed=0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    body = 800.0 * np.exp(-(yy ** 2 + xx ** 2) * 2) * (1.0 + 0.3 * zz)
    array = (body + rng.normal(0.0, 20.0, shape)).astype(np.float32)
    return Volume(array, SPACING, ORIGIN, _rotation(20), patient_id="TEST-0001",
                  series_description="t2_tse_tra", study_uid="1.2.826.0.1.3680043.8.498.1",
                  source_tags={"PatientID": "TEST-0001", "PatientName": "Test^Patient",
                               "StudyDescription": "prostate"})


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    keras.utils.set_random_seed(2)
    specs = {"aniso": GeneratorSpec((2, 1), num_residual_blocks=2, filters=8),
             "iso": GeneratorSpec((2, 2), num_residual_blocks=2, filters=8)}
    return {mode: export_generator(generator_from_spec(spec), root / mode, {}, spec=spec)
            for mode, spec in specs.items()}


@pytest.fixture(scope="module")
def aniso(exports):
    return load_exported(exports["aniso"])


@pytest.fixture(scope="module")
def nifti_input(tmp_path_factory):
    return write_nifti(_volume(), tmp_path_factory.mktemp("input") / "t2.nii.gz")


def _expected_origin(origin, spacing, direction, factors):
    shift = sum((-d / 2 + d / (2 * s)) * direction[axis]
                for axis, (d, s) in enumerate(zip(spacing, factors)))
    return np.asarray(origin) + shift


def test_through_plane_average_of_two_directions(aniso):
    volume = _volume()
    result = super_resolve_volume(aniso, volume, return_directions=True)
    coronal, sagittal = result.directions["coronal"].array, result.directions["sagittal"].array
    assert result.volume.shape == coronal.shape == sagittal.shape == (12, 24, 20)
    scale = (result.intensity_range[1] - result.intensity_range[0]) / 2
    np.testing.assert_allclose(result.volume.array, (coronal + sagittal) / 2, atol=1e-5 * scale)
    assert np.abs(coronal - sagittal).max() > 1e-3 * scale  # two genuinely different estimates
    # Orientation: the coronal volume's row r is the model's output on volume[:, r, :] (padded
    # along the slices by reflection, the padding's output cropped).
    low, high = result.intensity_range
    image = np.clip((volume.array[:, 5, :] - low) * 2 / (high - low) - 1, -1, 1)
    pad = aniso.receptive_field[0]
    padded = np.pad(image, ((pad, pad), (0, 0)), mode="symmetric")
    direct = aniso.predict(padded[None, :, :, None])[0, 2 * pad:2 * (pad + 6), :, 0]
    np.testing.assert_allclose(coronal[:, 5, :], (direct + 1) * scale + low, atol=1e-4 * scale)
    streamed = super_resolve_volume(aniso, volume, batch_size=3)  # accumulating path
    np.testing.assert_allclose(streamed.volume.array, result.volume.array, atol=1e-5 * scale)


def test_plan_axis_covers_every_pixel_once():
    for size, tile, margin in [(96, 24, 15), (100, 30, 7), (5, 8, 3), (26, 13, 40)]:
        plan = plan_axis(size, tile, margin)
        cores = np.concatenate([np.arange(lo, hi) for _, _, lo, hi in plan])
        np.testing.assert_array_equal(cores, np.arange(size))
        for src_lo, src_hi, lo, hi in plan:
            assert src_lo == max(0, lo - margin) and src_hi == min(size, hi + margin)


def test_tiled_output_equals_untiled(aniso):
    images = np.random.default_rng(4).uniform(-1, 1, (2, 6, 96, 1)).astype(np.float32)
    whole = aniso.predict(images)
    tiles = plan_tiles((6, 96), (6, 24), aniso.receptive_field, aniso.scale_hw)
    assert len(tiles) == 4
    tiled = predict_tiled(aniso.predict, images, aniso.scale_hw, tiles)
    assert np.abs(tiled - whole).max() < 1e-4
    # A margin well under the receptive field leaves visible seams: the check has teeth.
    seamy = predict_tiled(aniso.predict, images, aniso.scale_hw,
                          plan_tiles((6, 96), (6, 24), (0, 1), aniso.scale_hw))
    assert np.abs(seamy - whole).max() > 1e-3


def test_memory_budget_tiles_volume_without_seams(aniso):
    volume = _volume(shape=(6, 40, 100), seed=1)
    whole = super_resolve_volume(aniso, volume)
    tiled = super_resolve_volume(aniso, volume, memory_budget_mb=0.05)
    assert whole.tiles_per_image == 1 and tiled.tiles_per_image > 1
    scale = (whole.intensity_range[1] - whole.intensity_range[0]) / 2
    assert np.abs(tiled.volume.array - whole.volume.array).max() < 1e-3 * scale


def test_in_plane_iso_model_slice_by_slice(exports):
    iso = load_exported(exports["iso"])
    volume = _volume()
    result = super_resolve_volume(iso, volume, mode="in-plane")
    assert result.volume.shape == (6, 48, 40)
    assert result.volume.spacing == (3.0, 0.25, 0.3)
    np.testing.assert_allclose(result.volume.origin, _expected_origin(
        ORIGIN, SPACING, volume.direction, (1, 2, 2)), atol=1e-9)


def test_nifti_output_geometry(exports, nifti_input, tmp_path):
    output = tmp_path / "sr.nii.gz"
    summary = run_infer(exports["aniso"], nifti_input, output, progress=False,
                        precision="float32")
    assert summary["output_shape"] == [12, 24, 20] and summary["peak_rss_mb"] > 0
    assert summary["mode"] == "through-plane"  # no mode given: the aniso export's own
    image = nib.load(str(output))
    assert image.shape == (20, 24, 12)  # (cols, rows, slices)
    np.testing.assert_allclose(image.header.get_zooms(), (0.6, 0.5, 1.5), atol=1e-5)
    source = read_nifti(nifti_input)
    lps = _expected_origin(source.origin, source.spacing, source.direction, (2, 1, 1))
    np.testing.assert_allclose(image.affine[:3, 3], lps * [-1, -1, 1], atol=1e-4)
    # SR slice centres lie inside the original slab, symmetric about its centre.
    result = read_nifti(output)
    np.testing.assert_allclose(result.direction, source.direction, atol=1e-6)
    centre = lambda v: v.slice_positions().mean(axis=0)  # noqa: E731
    np.testing.assert_allclose(centre(result), centre(source), atol=1e-4)


def test_mode_defaults_to_the_exports_own(exports, nifti_input, tmp_path):
    from srgan_tf.cli import build_parser

    args = build_parser().parse_args(["infer", "--model", "m", "--input", "i", "--output", "o"])
    assert args.mode is None
    summary = run_infer(exports["iso"], nifti_input, tmp_path / "sr.nii.gz", progress=False,
                        precision="float32")
    assert summary["mode"] == "in-plane" and summary["output_shape"] == [6, 48, 40]


def test_dicom_output_is_a_derived_series(exports, tmp_path):
    source_dir = tmp_path / "t2_tse_tra"
    source_files = write_dicom_series(_volume(), source_dir, series_description="t2_tse_tra",
                                      derived=False)
    source = pydicom.dcmread(source_files[0])
    out_dir = tmp_path / "sr_dicom"
    summary = run_infer(exports["aniso"], source_dir, tmp_path / "sr.nii", dicom_output=out_dir,
                        progress=False)
    files = sorted(out_dir.glob("*.dcm"))
    assert summary["dicom_files"] == len(files) == 12
    slices = [pydicom.dcmread(path) for path in files]
    assert len({ds.SeriesInstanceUID for ds in slices}) == 1
    assert slices[0].SeriesInstanceUID != source.SeriesInstanceUID
    assert len({ds.SOPInstanceUID for ds in slices} | {source.SOPInstanceUID}) == 13
    assert "DERIVED" in slices[0].ImageType
    assert slices[0].SeriesDescription == "t2_tse_tra SR x2 srgan-tf"
    assert float(slices[0].SliceThickness) == pytest.approx(1.5)
    assert float(slices[0].SpacingBetweenSlices) == pytest.approx(1.5)
    assert (slices[0].Rows, slices[0].Columns) == (24, 20)
    assert [float(v) for v in slices[0].PixelSpacing] == pytest.approx([0.5, 0.6])
    assert slices[0].PatientID == "TEST-0001" and slices[0].StudyDescription == "prostate"
    assert slices[0].StudyInstanceUID == source.StudyInstanceUID
    normal = _rotation(20)[0]
    first = _expected_origin([float(v) for v in source.ImagePositionPatient], SPACING,
                             _rotation(20), (2, 1, 1))
    for index, ds in enumerate(slices):
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient],
                                   first + index * 1.5 * normal, atol=1e-3)
    nifti = nib.load(str(tmp_path / "sr.nii"))
    assert nifti.shape == (20, 24, 12)
    np.testing.assert_allclose(nifti.header.get_zooms(), (0.6, 0.5, 1.5), atol=1e-5)


def _bad_inputs(tmp_path, exports, nifti_input):
    text = tmp_path / "notes.nii.gz"
    text.write_text("not a volume")
    single = write_nifti(_volume(shape=(1, 24, 20)), tmp_path / "single.nii.gz")
    foreign = tmp_path / "foreign_model"
    foreign.mkdir()
    (foreign / "saved_model.pb").write_bytes((exports["aniso"] / "saved_model.pb").read_bytes())
    (foreign / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    return {
        "non-volume file": (exports["aniso"], text, {}, "NIfTI"),
        "single slice": (exports["aniso"], single, {}, "single slice"),
        "iso model through-plane": (exports["iso"], nifti_input, {"mode": "through-plane"},
                                    "anisotropic model"),
        "aniso model in-plane": (exports["aniso"], nifti_input, {"mode": "in-plane"},
                                 "isotropic model"),
        "missing model dir": (tmp_path / "no_such_model", nifti_input, {}, "does not exist"),
        "foreign model dir": (foreign, nifti_input, {}, "not an srgan-tf export"),
    }


@pytest.mark.parametrize("case", ["non-volume file", "single slice", "iso model through-plane",
                                  "aniso model in-plane", "missing model dir",
                                  "foreign model dir"])
def test_bad_input_raises_and_leaves_no_output(case, exports, nifti_input, tmp_path):
    model_dir, input_path, options, message = _bad_inputs(tmp_path, exports, nifti_input)[case]
    out_dir = tmp_path / "out"
    with pytest.raises(InputError, match=message):
        run_infer(model_dir, input_path, out_dir / "sr.nii.gz", dicom_output=out_dir / "dicom",
                  progress=False, **options)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_cli_reports_bad_input_and_exits_nonzero(tmp_path, nifti_input, capsys):
    from srgan_tf.cli import main

    code = main(["infer", "--model", str(tmp_path / "missing"), "--input", str(nifti_input),
                 "--output", str(tmp_path / "sr.nii.gz")])
    assert code != 0
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "sr.nii.gz").exists()
