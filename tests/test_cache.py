"""HDF5 slice cache: schema, patient split, atomic writes, version checks, NIfTI input, reader."""
import os

import h5py
import numpy as np
import pytest

from srgan_tf.data.slice_cache import cache_format
from srgan_tf.data.slice_cache import prepare as prepare_lib
from srgan_tf.data.slice_cache.cache import SliceCache
from srgan_tf.data.slice_cache.cache_format import SCHEMA_VERSION
from srgan_tf.data.intensity import robust_range
from srgan_tf.data.slice_cache.prepare import build_cache
from srgan_tf.data.slice_cache.split import split_patients
from srgan_tf.io.dicom import read_dicom_tree
from srgan_tf.io.dicom_write import write_dicom_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.volume import Volume

SHAPE = (4, 16, 12)  # rows != cols catches axis swaps


def make_volume(patient, seed=0, integer=False, shape=SHAPE):
    rng = np.random.default_rng(seed)
    array = rng.gamma(2.0, 150.0, shape).astype(np.float32)
    if integer:
        array = np.round(array)
    angle = 0.3 + seed
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0],
                         [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    direction = np.stack([np.cross(rotation[2], rotation[1]), rotation[1], rotation[2]])
    return Volume(array, spacing=(3.0, 0.6, 0.7), origin=(-10.0 + seed, 20.0, 5.5),
                  direction=direction, patient_id=patient, series_description="t2_tse_tra",
                  source_tags={"PatientID": patient})


def write_tree(root, patients, description="t2_tse_tra"):
    for index, patient in enumerate(patients):
        write_dicom_series(make_volume(patient, seed=index), root / patient / "study" / "t2",
                           series_description=description, derived=False)
    return root


@pytest.fixture
def dicom_cache(tmp_path):
    root = write_tree(tmp_path / "dicom", ["P-0", "P-1", "P-2", "P-3", "P-4"])
    summary = build_cache(root, tmp_path / "cache.h5", test_fraction=0.2, seed=3, progress=False)
    return root, tmp_path / "cache.h5", summary


def test_schema_attrs_groups_and_chunks(dicom_cache):
    root, path, summary = dicom_cache
    with h5py.File(path, "r") as handle:
        assert handle.attrs["schema_version"] == SCHEMA_VERSION
        for name in ("created_by", "created", "source", "series_filter", "test_fraction", "seed"):
            assert name in handle.attrs
        assert handle.attrs["source"] == str(root) and handle.attrs["seed"] == 3
        assert sorted(handle["patients"]) == ["P-0", "P-1", "P-2", "P-3", "P-4"]
        dataset = handle["patients"][summary.written[0].key]
        assert dataset.shape == SHAPE and dataset.chunks == (1, *SHAPE[1:])
        assert dataset.compression == "lzf"
        for name in ("spacing", "origin", "direction", "series_description", "series_uid",
                     "patient_id", "modality", "source", "intensity_range"):
            assert name in dataset.attrs
        assert np.asarray(dataset.attrs["direction"]).shape == (3, 3)
        sides = [p for side in ("train", "test") for p in handle[f"split/{side}"].asstr()[()]]
        assert sorted(sides) == ["P-0", "P-1", "P-2", "P-3", "P-4"]
    assert not [name for name in os.listdir(path.parent) if ".tmp-" in name]


def test_reader_matches_dicom_volumes(dicom_cache):
    root, path, _ = dicom_cache
    volumes, skipped = read_dicom_tree(root, series_filter=None)
    assert not skipped
    with SliceCache(path) as cache:
        infos = {info.patient_id: info for info in cache.series()}
        for source in volumes:
            info = infos[source.patient_id]
            np.testing.assert_allclose(cache.read_volume(info.key), source.array, rtol=1e-6)
            np.testing.assert_allclose(info.spacing, source.spacing)
            np.testing.assert_allclose(info.origin, source.origin)
            np.testing.assert_allclose(info.direction, source.direction)
            np.testing.assert_allclose(info.intensity_range, robust_range(source.array), rtol=1e-6)
            assert info.series_uid == source.series_uid and info.description == "t2_tse_tra"
            volume = cache.volume(info.key)
            np.testing.assert_allclose(volume.affine_lps(), source.affine_lps(), atol=1e-9)
            assert volume.patient_id == source.patient_id and volume.source_paths
            assert volume.source_tags["PatientID"] == source.patient_id
            normalized = cache.read_normalized(info.key)
            assert normalized.dtype == np.float32
            assert normalized.min() >= -1.0 and normalized.max() <= 1.0
            slices = cache.read_slices(info.key, [3, 0, 3])
            np.testing.assert_array_equal(slices, cache.read_volume(info.key)[[3, 0, 3]])
        with pytest.raises(IndexError, match="Received"):
            cache.read_slices(info.key, [4])
        with pytest.raises(KeyError, match="no series"):
            cache.read_volume("P-9/t2")
        assert cache.nbytes() == 5 * int(np.prod(SHAPE)) * 4
        assert cache.nbytes("test") == len(cache.split["test"]) * int(np.prod(SHAPE)) * 4


def test_split_by_patient_is_disjoint_deterministic_and_nonempty(dicom_cache, tmp_path):
    root, path, summary = dicom_cache
    with SliceCache(path) as cache:
        split = cache.split
        assert split == summary.split
        assert not set(split["train"]) & set(split["test"]) and split["test"]
        assert cache.patients("test") == split["test"]
        assert {info.patient_id for info in cache.series("train")} == set(split["train"])
    again = build_cache(root, tmp_path / "again.h5", test_fraction=0.2, seed=3, progress=False)
    assert again.split == split
    cache = SliceCache(tmp_path / "again.h5")  # also usable without `with`
    assert cache.split == split
    cache.close()
    assert split_patients(["B", "A"], 0.1, seed=5) == split_patients(["A", "B", "A"], 0.1, seed=5)
    assert len(split_patients(["A", "B"], 0.1)["test"]) == 1
    assert split_patients(["A"], 0.5) == {"train": ["A"], "test": []}
    splits = {tuple(split_patients("ABCDEFGHIJ", 0.3, seed)["test"]) for seed in range(10)}
    assert len(splits) > 1
    with pytest.raises(ValueError, match="Received"):
        split_patients(["A"], 1.0)


@pytest.mark.parametrize("interrupt", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_interrupted_build_leaves_no_file(tmp_path, monkeypatch, interrupt):
    root = write_tree(tmp_path / "dicom", ["P-0", "P-1"])
    output = tmp_path / "out" / "cache.h5"
    output.parent.mkdir()
    output.write_bytes(b"old cache")
    calls = []
    original = prepare_lib._write_series

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise interrupt
        return original(*args)

    monkeypatch.setattr(prepare_lib, "_write_series", failing)
    with pytest.raises(type(interrupt)):
        build_cache(root, output, progress=False)
    assert os.listdir(output.parent) == ["cache.h5"]
    assert output.read_bytes() == b"old cache"
    monkeypatch.setattr(prepare_lib, "_write_series", original)
    build_cache(root, output, progress=False)  # replaced on success
    with SliceCache(output) as cache:
        assert cache.patients() == ["P-0", "P-1"]


def test_version_and_format_errors_name_the_file(dicom_cache, tmp_path):
    _, path, _ = dicom_cache
    with h5py.File(path, "r+") as handle:
        handle.attrs["schema_version"] = 999
    with pytest.raises(InputError, match="999") as error:
        SliceCache(path)
    assert str(path) in str(error.value) and f"schema version {SCHEMA_VERSION}" in str(error.value)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["data"] = np.zeros(3)
    with pytest.raises(InputError, match="not a complete srgan-tf slice cache"):
        SliceCache(foreign)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an HDF5 file"):
        SliceCache(text)
    with pytest.raises(InputError, match="not found"):
        SliceCache(tmp_path / "missing.h5")


def test_nifti_file_folder_and_mixed_inputs(tmp_path):
    folder = tmp_path / "nifti"
    sources = {"case-a": make_volume("x", seed=0), "case-b": make_volume("y", seed=1, integer=True)}
    for name, volume in sources.items():
        write_nifti(volume, folder / f"{name}.nii.gz")
    summary = build_cache(folder, tmp_path / "nifti.h5", progress=False)
    assert sorted(item.patient_id for item in summary.written) == ["case-a", "case-b"]
    assert not summary.skipped
    with SliceCache(tmp_path / "nifti.h5") as cache:
        for info in cache.series():
            source = sources[info.patient_id]
            np.testing.assert_allclose(cache.read_volume(info.key), source.array, rtol=1e-6)
            np.testing.assert_allclose(cache.volume(info.key).affine_lps(), source.affine_lps(),
                                       atol=1e-4)
    single = build_cache(folder / "case-a.nii.gz", tmp_path / "single.h5", progress=False)
    assert [item.patient_id for item in single.written] == ["case-a"]
    write_tree(tmp_path / "nifti" / "dicom", ["case-a"])  # a folder with both kinds
    mixed = build_cache(folder, tmp_path / "mixed.h5", progress=False)
    assert not mixed.skipped
    assert sorted(item.patient_id for item in mixed.written) == ["case-a", "case-a", "case-b"]
    assert mixed.split["test"] == ["case-a"] or mixed.split["test"] == ["case-b"]


def test_info_text_and_summary_text(dicom_cache):
    _, path, summary = dicom_cache
    with SliceCache(path) as cache:
        text = cache.info_text()
        split = cache.split
    assert f"schema version {SCHEMA_VERSION}" in text
    assert "4x16x12" in text and "3x0.6x0.7" in text
    for item in summary.written:
        assert item.key in text and item.patient_id in text
    assert f"{len(split['train'])} train patients, {len(split['test'])} test patients" in text
    header = next(line for line in text.splitlines() if line.startswith("split"))
    row = next(line for line in text.splitlines() if line.startswith(("train", "test")))
    assert header.index("shape") == row.index("4x16x12")  # aligned columns
    report = summary.text()
    assert "5 series" in report and summary.written[0].key in report


def test_nothing_written_raises_and_lists_skipped(tmp_path):
    root = write_tree(tmp_path / "dicom", ["P-0"], description="ep2d_diff_tra")
    (root / "junk.txt").write_text("not dicom")
    with pytest.raises(InputError) as error:
        build_cache(root, tmp_path / "cache.h5", progress=False)
    message = str(error.value)
    assert str(root) in message and "junk.txt" in message and "no series" in message
    assert os.listdir(tmp_path) == ["dicom"]
    with pytest.raises(InputError, match="does not exist"):
        build_cache(tmp_path / "missing", tmp_path / "cache.h5", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM or NIfTI files"):
        build_cache(tmp_path / "empty", tmp_path / "cache.h5", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["dicom", "empty"]


def test_reader_errors_propagate_and_clean_up(tmp_path, monkeypatch):
    write_nifti(make_volume("x"), tmp_path / "in" / "a.nii.gz")

    def broken(path):
        raise RuntimeError("reader crashed")

    monkeypatch.setattr("srgan_tf.io.nifti.read_nifti", broken)
    with pytest.raises(RuntimeError, match="reader crashed"):
        build_cache(tmp_path / "in", tmp_path / "cache.h5", progress=False)
    assert os.listdir(tmp_path) == ["in"]


def test_skipped_items_are_reported_next_to_written_ones(tmp_path):
    root = write_tree(tmp_path / "dicom", ["P-0", "P-1"])
    (root / "broken.dcm").write_bytes(b"\0" * 10)
    summary = build_cache(root, tmp_path / "cache.h5", progress=False)
    assert len(summary.written) == 2 and len(summary.skipped) == 1
    assert "broken.dcm" in summary.text() and "Skipped 1" in summary.text()


def test_uint16_encoding_round_trip_and_fallback():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 65536, (3, 20, 20)).astype(np.uint16)
    rescaled = codes.astype(np.float32) * np.float32(0.0152590109) + np.float32(-3.25)
    stored, slope, intercept = cache_format.uint16_encoding(rescaled)
    assert stored.dtype == np.uint16
    np.testing.assert_allclose(cache_format.decode(stored, slope, intercept), rescaled, rtol=1e-6,
                               atol=1e-5)
    assert cache_format.uint16_encoding(rng.normal(size=(2, 8, 8)).astype(np.float32)) is None
    constant = np.full((2, 4, 4), 5.0, np.float32)
    stored, slope, intercept = cache_format.uint16_encoding(constant)
    np.testing.assert_array_equal(cache_format.decode(stored, slope, intercept), constant)


def test_stored_range_is_robust_range_of_what_the_reader_returns(dicom_cache, tmp_path):
    """Both encodings (uint16 codes from DICOM, float32 from non-integer NIfTI) store
    `robust_range` of the decoded volume, so normalisation has one rule."""
    _, path, _ = dicom_cache
    float_volume = make_volume("F-0")
    float_volume.array[0, 0, 0] += 0.123456  # off any 16-bit grid: stored as float32
    write_nifti(float_volume, tmp_path / "float.nii.gz")
    float_cache = build_cache(tmp_path / "float.nii.gz", tmp_path / "float.h5", progress=False)
    dtypes = set()
    for cache_path in (path, tmp_path / "float.h5"):
        with SliceCache(cache_path) as cache, h5py.File(cache_path, "r") as handle:
            for info in cache.series():
                dtypes.add(handle["patients"][info.key].dtype)
                assert info.intensity_range == robust_range(cache.read_volume(info.key))
    assert dtypes == {np.dtype(np.uint16), np.dtype(np.float32)}
    assert len(float_cache.written) == 1
