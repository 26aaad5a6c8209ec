"""DICOM series reading and writing: geometry round trip, series selection, bad input."""
import gzip
import random
import re
import shutil
import types

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLossless, JPEGLosslessSV1, generate_uid

from srgan_tf.io.dicom import (DEFAULT_SERIES_FILTER, iter_dicom_series, read_dicom_series,
                               read_dicom_tree)
from srgan_tf.io.dicom_write import write_dicom_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.volume import Volume

AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def _oblique_direction(seed=3):
    """A right-handed oblique frame: direction[0] = cross(row cosine, column cosine)."""
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    row, col = rotation[:, 0], rotation[:, 1]
    return np.stack([np.cross(row, col), col, row])


def _volume(slices=6, rows=16, cols=20, direction=AXIAL, integer=False, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    array = rng.uniform(-150.0, 900.0, size=(slices, rows, cols)).astype(np.float32)
    if integer:
        array = np.rint(array).astype(np.float32)
    kwargs.setdefault("source_tags", {"PatientID": "P-0001", "StudyDescription": "prostate",
                                      "MagneticFieldStrength": 3.0, "EchoTime": 104.0})
    return Volume(array, spacing=(3.3, 0.55, 0.6), origin=(-12.5, 40.0, 7.25),
                  direction=direction, patient_id="P-0001", **kwargs)


def _write_shuffled(volume, series_dir, description="t2_tse_tra"):
    """Write a series, then rename its files randomly so names say nothing about order."""
    paths = write_dicom_series(volume, series_dir, series_description=description, derived=False)
    names = [f"{random.Random(i).getrandbits(40):x}.dcm" for i in range(len(paths))]
    random.Random(7).shuffle(names)
    for path, name in zip(paths, names):
        path.rename(series_dir / name)
    return sorted(series_dir.iterdir())


def _assert_same_geometry(read, original, atol=1e-6):
    np.testing.assert_allclose(read.spacing, original.spacing, atol=atol)
    np.testing.assert_allclose(read.origin, original.origin, atol=1e-4)
    np.testing.assert_allclose(read.direction, original.direction, atol=atol)


@pytest.mark.parametrize("direction", [AXIAL, _oblique_direction()], ids=["axial", "oblique"])
def test_round_trip_keeps_array_and_geometry_with_shuffled_names(tmp_path, direction):
    volume = _volume(direction=direction)
    _write_shuffled(volume, tmp_path / "PAT" / "study" / "series")
    volumes, skipped = read_dicom_tree(tmp_path, series_filter=None)
    assert skipped == [] and len(volumes) == 1
    read = volumes[0]
    step = (volume.array.max() - volume.array.min()) / 65535
    np.testing.assert_allclose(read.array, volume.array, atol=step)
    assert read.array.dtype == np.float32
    _assert_same_geometry(read, volume)
    positions = [pydicom.dcmread(path).ImagePositionPatient for path in read.source_paths]
    np.testing.assert_allclose(np.array(positions, dtype=float), volume.slice_positions(),
                               atol=1e-4)
    assert read.patient_id == "P-0001" and read.series_description == "t2_tse_tra"
    assert read.source_tags["MagneticFieldStrength"] == 3.0
    assert read.source_tags["StudyDescription"] == "prostate"


def test_integer_data_is_stored_exactly(tmp_path):
    volume = _volume(integer=True)
    write_dicom_series(volume, tmp_path, series_description="t2_tse_tra")
    read = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(read.array, volume.array)
    assert pydicom.dcmread(tmp_path / "IM-0001.dcm").PixelRepresentation == 1  # int16


def test_written_files_are_valid_mr_storage(tmp_path):
    source = _volume(series_uid="1.2.3", study_uid="1.2.3.4")
    reference = _volume(source_tags={"PatientID": "REF-7", "StudyInstanceUID": "1.2.840.99"})
    paths = write_dicom_series(source, tmp_path, series_description="t2 SRGAN x4",
                               series_number=42, reference=reference)
    assert [path.name for path in paths] == [f"IM-{i:04d}.dcm" for i in range(1, 7)]
    files = [pydicom.dcmread(path) for path in paths]  # no force: preamble and file meta
    first = files[0]
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.SOPClassUID == pydicom.uid.MRImageStorage and first.Modality == "MR"
    assert list(first.ImageType) == ["DERIVED", "SECONDARY"]
    assert float(first.SliceThickness) == float(first.SpacingBetweenSlices) == 3.3
    assert [float(v) for v in first.PixelSpacing] == [0.55, 0.6]
    assert first.SeriesNumber == 42 and first.SeriesDescription == "t2 SRGAN x4"
    assert first.PatientID == "REF-7" and first.StudyInstanceUID == "1.2.840.99"
    assert float(first.MagneticFieldStrength) == 3.0
    assert first.SeriesInstanceUID != "1.2.3"
    assert len({ds.SeriesInstanceUID for ds in files}) == 1
    assert len({ds.SOPInstanceUID for ds in files}) == 6
    assert [ds.InstanceNumber for ds in files] == list(range(1, 7))
    original = write_dicom_series(source, tmp_path / "o", series_description="x", derived=False)
    assert list(pydicom.dcmread(original[0]).ImageType) == ["ORIGINAL", "PRIMARY"]


def test_iter_dicom_series_yields_one_volume_per_series(tmp_path):
    for index in range(3):
        write_dicom_series(_volume(seed=index), tmp_path / f"s{index}",
                           series_description="t2_tse_tra", derived=False)
    items = iter_dicom_series(tmp_path)
    assert isinstance(items, types.GeneratorType)
    volumes = list(items)
    assert len(volumes) == 3 and all(isinstance(item, Volume) for item in volumes)
    assert len({volume.series_uid for volume in volumes}) == 3


@pytest.mark.parametrize("description", [
    "t2_tse_tra", "t2_tse_tra_320_p2", "T2W_TSE_ax", "T2 AX", "t2 axial", "Ax T2 FRFSE",
    "T2_TSE_TRA_Grappa3", "t2-weighted transverse"])
def test_default_filter_picks_t2_axial(description):
    assert re.search(DEFAULT_SERIES_FILTER, description, re.IGNORECASE)


@pytest.mark.parametrize("description", [
    "t2_tse_sag", "t2_tse_cor", "ep2d_diff_tra", "ep2d_diff_tra_DYNDIST_ADC", "ADC",
    "t1_vibe_tra", "T2 map tra", "t2_loc tra", "DWI b800 ax"])
def test_default_filter_rejects_other_series(description):
    assert not re.search(DEFAULT_SERIES_FILTER, description, re.IGNORECASE)


def test_series_filter_on_a_tree(tmp_path):
    names = ["t2_tse_tra", "t2_tse_sag", "t2_tse_cor", "ep2d_diff_tra", "ADC"]
    for index, name in enumerate(names):
        write_dicom_series(_volume(slices=3, seed=index), tmp_path / "P1" / "st" / name,
                           series_description=name, derived=False)
    volumes, skipped = read_dicom_tree(tmp_path)
    assert [v.series_description for v in volumes] == ["t2_tse_tra"] and skipped == []
    volumes, _ = read_dicom_tree(tmp_path, series_filter=None)
    assert sorted(v.series_description for v in volumes) == sorted(names)
    volumes, skipped = read_dicom_tree(tmp_path, series_filter="nothing-like-this")
    assert volumes == [] and "ADC" in str(skipped[0])


# Bad input: each builder writes one bad file (or series) in `folder`, returns the file
# the skip must name and a word its reason must contain.
def _empty(folder, valid):
    (folder / "empty.dcm").write_bytes(b"")
    return folder / "empty.dcm", "empty"


def _truncated(folder, valid):
    (folder / "cut.dcm").write_bytes(valid[0].read_bytes()[:300])
    return folder / "cut.dcm", "truncated"


def _text(folder, valid):
    (folder / "README.txt").write_text("Prostate MRI export, see the cohort notes.\n")
    return folder / "README.txt", "not a DICOM"


def _gzipped(folder, valid):
    (folder / "slice.dcm.gz").write_bytes(gzip.compress(valid[0].read_bytes()))
    return folder / "slice.dcm.gz", "gzip"


def _edited(valid, folder, name, edit, series_uid=None):
    ds = pydicom.dcmread(valid[0])
    ds.SeriesInstanceUID = series_uid or generate_uid()
    edit(ds)
    ds.save_as(folder / name, enforce_file_format=True)
    return folder / name


def _without_pixels(folder, valid):
    return _edited(valid, folder, "nopix.dcm", lambda ds: delattr(ds, "PixelData")), "pixel data"


def _ct(folder, valid):
    return _edited(valid, folder, "ct.dcm", lambda ds: setattr(ds, "Modality", "CT")), "CT"


def _mixed_rows(folder, valid):
    series_uid = generate_uid()
    for index in (1, 2):
        _edited([valid[index]], folder, f"ok{index}.dcm", lambda ds: None, series_uid)

    def shrink(ds):
        ds.Rows = 8
        ds.PixelData = ds.PixelData[: 8 * ds.Columns * 2]
    return _edited(valid, folder, "odd.dcm", shrink, series_uid), "image sizes"


def _single_slice(folder, valid):
    write_dicom_series(_volume(slices=1), folder, series_description="t2_tse_tra")
    return folder / "IM-0001.dcm", "single slice"


def _gap(folder, valid):
    for path in write_dicom_series(_volume(seed=5), folder, series_description="t2_tse_tra"):
        if path.name == "IM-0003.dcm":
            path.unlink()
    return folder, "no file holds this slice"  # no file to name: the series folder


def _uneven(folder, valid):
    paths = write_dicom_series(_volume(seed=5), folder, series_description="t2_tse_tra")
    ds = pydicom.dcmread(paths[3])
    ds.ImagePositionPatient = [float(v) + (1.0 if k == 2 else 0.0)
                               for k, v in enumerate(ds.ImagePositionPatient)]
    ds.save_as(paths[3], enforce_file_format=True)
    return paths[3], "non-uniform"


def _pixels_cut(folder, valid):
    paths = write_dicom_series(_volume(seed=9), folder, series_description="t2_tse_tra")
    paths[2].write_bytes(paths[2].read_bytes()[:-100])
    return paths[2], "pixel data"


def _compressed(syntax):
    def build(folder, valid):
        series_uid = generate_uid()

        def encapsulated(ds):
            ds.file_meta.TransferSyntaxUID = syntax
            ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])
            ds["PixelData"].VR = "OB"
        for index in (0, 1):
            _edited([valid[index]], folder, f"c{index}.dcm", encapsulated, series_uid)
        return folder / "c0.dcm", str(syntax)
    build.__name__ = f"compressed_{syntax.keyword}"
    return build


@pytest.mark.parametrize("build", [
    _empty, _truncated, _text, _gzipped, _without_pixels, _ct, _mixed_rows, _single_slice, _gap, _uneven,
    _compressed(JPEG2000Lossless), _compressed(JPEGLossless), _compressed(JPEGLosslessSV1),
    _pixels_cut], ids=lambda build: build.__name__.strip("_"))
def test_bad_input_is_skipped_with_a_reason_naming_the_file(tmp_path, build):
    valid = write_dicom_series(_volume(), tmp_path / "good", series_description="t2_tse_tra")
    folder = tmp_path / "bad"
    folder.mkdir()
    bad_file, word = build(folder, valid)
    volumes, skipped = read_dicom_tree(tmp_path, series_filter=None)
    assert len(volumes) == 1 and volumes[0].source_paths == [str(p) for p in valid]
    assert len(skipped) == 1 and isinstance(skipped[0], InputError)
    message = str(skipped[0])
    assert skipped[0].path == str(bad_file) and "\n" not in message
    assert word.lower() in message.lower()


def test_compressed_reason_says_a_decoder_is_needed(tmp_path):
    valid = write_dicom_series(_volume(), tmp_path / "good", series_description="t2_tse_tra")
    folder = tmp_path / "bad"
    folder.mkdir()
    _compressed(JPEGLosslessSV1)(folder, valid)
    shutil.rmtree(tmp_path / "good")
    _, skipped = read_dicom_tree(tmp_path)
    assert "no decoder" in str(skipped[0])
    assert "pylibjpeg" in str(skipped[0]) and "gdcm" in str(skipped[0])


def test_read_dicom_series_rejects_several_series(tmp_path):
    for name in ("t2_tse_tra", "t2_tse_sag"):
        write_dicom_series(_volume(slices=3), tmp_path / name, series_description=name)
    with pytest.raises(InputError, match="series filter") as raised:
        read_dicom_series(tmp_path)
    assert "'t2_tse_tra'" in str(raised.value) and "'t2_tse_sag'" in str(raised.value)
    assert read_dicom_series(tmp_path, series_filter="sag").series_description == "t2_tse_sag"
    with pytest.raises(InputError, match="no readable MR series"):
        read_dicom_series(tmp_path / "t2_tse_tra", series_filter="nothing")
