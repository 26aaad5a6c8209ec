"""Built-in sample data: TCIA-like DICOM series + isotropic references of the same anatomy."""
import json
import math

import numpy as np
import pydicom
import pytest

from srgan_tf.data.synthetic.sample import (MARKER, SERIES_DESCRIPTION, draw_acquisition,
                                            ensure_sample_cache, rician, slice_profile_weights,
                                            synthesize_patient, write_sample_dataset)
from srgan_tf.io.dicom import read_dicom_tree
from srgan_tf.io.nifti import read_nifti

SMALL = dict(matrix=64, slices=6)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    return write_sample_dataset(root, patients=2, seed=3, progress=False, **SMALL)


def test_tcia_layout_readable_with_expected_geometry(dataset):
    files = sorted((dataset / "dicom").glob("*/*/*/*.dcm"))
    assert len(files) == 2 * SMALL["slices"]
    assert {f.relative_to(dataset / "dicom").parts[0] for f in files} == {"SAMPLE-0000",
                                                                          "SAMPLE-0001"}
    volumes, skipped = read_dicom_tree(dataset / "dicom")  # default T2-axial series filter
    assert skipped == []
    assert sorted(v.patient_id for v in volumes) == ["SAMPLE-0000", "SAMPLE-0001"]
    for volume in volumes:
        assert volume.series_description == SERIES_DESCRIPTION
        assert volume.shape == (SMALL["slices"], SMALL["matrix"], SMALL["matrix"])
        pixel = volume.spacing[1]
        assert volume.spacing[2] == pytest.approx(pixel)
        factor = volume.spacing[0] / pixel  # thick slices are whole numbers of pixels
        assert round(factor) >= 2 and factor == pytest.approx(round(factor), abs=1e-6)
        np.testing.assert_allclose(volume.direction, [[0, 0, 1], [0, 1, 0], [1, 0, 0]],
                                   atol=1e-6)
        array = volume.array
        assert array.min() >= 0 and 300 < array.max() < 4000
        np.testing.assert_array_equal(array, np.rint(array))  # stored as integers
    header = pydicom.dcmread(files[0])
    assert header.Manufacturer == "srgan-tf synthetic"
    assert float(header.MagneticFieldStrength) == 3.0
    assert 90 <= float(header.EchoTime) <= 120
    assert list(header.ImageType)[:2] == ["ORIGINAL", "PRIMARY"]


def test_sample_json_describes_patients(dataset):
    description = json.loads((dataset / "sample.json").read_text())
    assert description["seed"] == 3 and description["patient_count"] == 2
    for record in description["patients"]:
        assert (dataset / record["dicom"]).is_dir()
        assert (dataset / record["hr"]).is_file()
        assert record["hr_spacing"] == [record["spacing"][1]] * 3


def test_hr_reference_is_isotropic_and_matches_the_series(dataset):
    volumes, _ = read_dicom_tree(dataset / "dicom")
    for series in volumes:
        hr = read_nifti(dataset / "hr" / f"{series.patient_id}.nii.gz")
        pixel, thickness = series.spacing[1], series.spacing[0]
        factor = int(round(thickness / pixel))
        np.testing.assert_allclose(hr.spacing, (pixel,) * 3, rtol=1e-5)
        assert hr.shape == (series.shape[0] * factor, *series.shape[1:])
        np.testing.assert_allclose(hr.direction, series.direction, atol=1e-6)
        # Same field of view: the slab's first fine slice starts where the first thick one does.
        expected = np.asarray(series.origin) - (thickness - pixel) / 2 * series.direction[0]
        np.testing.assert_allclose(hr.origin, expected, atol=1e-3)
        # Same anatomy: thick slices simulated from the reference look like the series.
        simulated = hr.array.reshape(series.shape[0], factor, *series.shape[1:]).mean(axis=1)
        assert np.corrcoef(simulated.ravel(), series.array.ravel())[0, 1] > 0.95


def test_same_seed_same_arrays_other_seed_other_arrays():
    first, first_hr, _ = synthesize_patient(0, seed=5, matrix=40, slices=4)
    again, again_hr, _ = synthesize_patient(0, seed=5, matrix=40, slices=4)
    other, other_hr, _ = synthesize_patient(0, seed=6, matrix=40, slices=4)
    neighbour, _, _ = synthesize_patient(1, seed=5, matrix=40, slices=4)
    np.testing.assert_array_equal(first.array, again.array)
    np.testing.assert_array_equal(first_hr.array, again_hr.array)
    assert first.source_tags["StudyInstanceUID"] == again.source_tags["StudyInstanceUID"]
    assert not np.array_equal(first_hr.array, other_hr.array)
    assert first.source_tags["StudyInstanceUID"] != other.source_tags["StudyInstanceUID"]
    assert first.shape != neighbour.shape or not np.array_equal(first.array, neighbour.array)


def test_complete_dataset_is_reused_and_incomplete_one_regenerated(tmp_path):
    root = write_sample_dataset(tmp_path, patients=1, seed=0, progress=False, matrix=32,
                                slices=4)
    first = sorted(root.glob("dicom/*/*/*/*.dcm"))
    stamps = [f.stat().st_mtime_ns for f in first]
    series_uid = pydicom.dcmread(first[0]).SeriesInstanceUID
    write_sample_dataset(root, patients=1, seed=0, progress=False, matrix=32, slices=4)
    assert [f.stat().st_mtime_ns for f in sorted(root.glob("dicom/*/*/*/*.dcm"))] == stamps

    (root / MARKER).write_text("{}")  # as a run killed before the end leaves it (written first)
    write_sample_dataset(root, patients=1, seed=0, progress=False, matrix=32, slices=4)
    assert (root / MARKER).is_file()
    again = sorted(root.glob("dicom/*/*/*/*.dcm"))
    assert len(again) == len(first)  # the old series was replaced, not duplicated
    assert pydicom.dcmread(again[0]).SeriesInstanceUID != series_uid

    write_sample_dataset(root, patients=2, seed=0, progress=False, matrix=32, slices=4)
    assert len(list(root.glob("dicom/*/*/*"))) == 2  # other settings: regenerated


def test_default_geometry_is_prostatex_like():
    for seed in range(40):
        geometry = draw_acquisition(np.random.default_rng(seed))
        pixel, factor = geometry["pixel_spacing"], geometry["slice_factor"]
        assert geometry["matrix"] in (320, 384)
        assert 0.5 <= pixel <= 0.6
        assert 3.0 - 1e-9 <= pixel * factor <= 3.6 + 1e-9
        assert 20 <= geometry["slices"] <= 26


def test_slice_profile_weights_cover_each_slice():
    weights = slice_profile_weights(slices=5, factor=6, margin=3)
    assert weights.shape == (5, 5 * 6 + 6)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    fine = np.arange(weights.shape[1]) - 3 + 0.5
    np.testing.assert_allclose(weights @ fine, (np.arange(5) + 0.5) * 6, atol=1e-4)
    assert (weights > 0.05).sum(axis=1).tolist() == [6] * 5  # about one thickness wide


def test_rician_noise_floor_and_signal():
    rng = np.random.default_rng(0)
    background = rician(rng, np.zeros(200_000, np.float32), 20.0)
    assert background.mean() == pytest.approx(20.0 * math.sqrt(math.pi / 2), rel=0.02)
    bright = rician(rng, np.full(200_000, 800.0, np.float32), 20.0)
    assert bright.mean() == pytest.approx(800.0, rel=0.01)
    assert bright.std() == pytest.approx(20.0, rel=0.05)


def test_ensure_sample_cache_builds_once(tmp_path):
    from srgan_tf.data.slice_cache.cache import SliceCache

    cache = ensure_sample_cache(tmp_path, patients=2, seed=0, progress=False, matrix=32,
                                slices=4)
    assert cache == tmp_path / "cache.h5"
    stamp = cache.stat().st_mtime_ns
    with SliceCache(cache) as opened:
        assert sorted(opened.patients()) == ["SAMPLE-0000", "SAMPLE-0001"]
        assert len(opened.split["test"]) == 1
    assert ensure_sample_cache(tmp_path, patients=2, seed=0, progress=False, matrix=32,
                               slices=4) == cache
    assert cache.stat().st_mtime_ns == stamp
