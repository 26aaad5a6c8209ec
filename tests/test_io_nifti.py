"""NIfTI read/write with the (col, row, slice) + RAS convention, and `read_volume` dispatch."""
import nibabel as nib
import numpy as np
import pytest

from srgan_tf.io.dicom_write import write_dicom_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import read_nifti, write_nifti
from srgan_tf.io.reader import read_volume
from srgan_tf.io.volume import Volume


def _volume(integer=False, seed=0):
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation[:, 0] = np.cross(rotation[:, 2], rotation[:, 1])  # right-handed, as DICOM reads
    array = rng.uniform(-50.0, 700.0, size=(6, 16, 20)).astype(np.float32)
    if integer:
        array = np.rint(array)
    return Volume(array, spacing=(3.0, 0.5, 0.625), origin=(10.0, -22.5, 31.0),
                  direction=rotation.T, series_description="t2_tse_tra", patient_id="P-1")


def _assert_same(read, volume):
    np.testing.assert_array_equal(read.array, volume.array)
    np.testing.assert_allclose(read.spacing, volume.spacing, rtol=1e-6)
    np.testing.assert_allclose(read.origin, volume.origin, atol=1e-5)
    np.testing.assert_allclose(read.direction, volume.direction, atol=1e-6)


@pytest.mark.parametrize("name", ["volume.nii", "volume.nii.gz"])
def test_round_trip_keeps_array_and_geometry(tmp_path, name):
    volume = _volume()
    read = read_nifti(write_nifti(volume, tmp_path / name))
    _assert_same(read, volume)
    assert read.array.dtype == np.float32 and read.array.shape == (6, 16, 20)
    assert read.series_description == "t2_tse_tra" and read.patient_id == "volume"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_file_follows_the_col_row_slice_ras_convention(tmp_path):
    volume = _volume(integer=True)
    image = nib.load(write_nifti(volume, tmp_path / "v.nii.gz"))
    assert image.get_data_dtype() == np.int16  # integer values are stored exactly
    np.testing.assert_array_equal(np.asarray(image.dataobj), volume.array.transpose(2, 1, 0))
    assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
    assert image.header.get_xyzt_units()[0] == "mm"
    slice_index, row, col = 4, 3, 7
    lps = volume.affine_lps() @ [slice_index, row, col, 1]
    ras = image.affine @ [col, row, slice_index, 1]
    np.testing.assert_allclose(ras[:3], lps[:3] * [-1, -1, 1], atol=1e-4)


def test_reads_any_affine_and_a_singleton_fourth_dimension(tmp_path):
    data = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3, 1)
    affine = np.array([[-0.8, 0, 0, 90.0], [0, 0, 2.5, -30.0], [0, 0.7, 0, 12.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "any.nii.gz")
    read = read_nifti(tmp_path / "any.nii.gz")
    np.testing.assert_array_equal(read.array, data[..., 0].transpose(2, 1, 0))
    np.testing.assert_allclose(read.spacing, (2.5, 0.7, 0.8), rtol=1e-6)
    np.testing.assert_allclose(read.origin, (-90.0, 30.0, 12.0))
    np.testing.assert_allclose(read.direction, [[0, -1, 0], [0, 0, 1], [1, 0, 0]], atol=1e-7)


def test_rejects_four_dimensional_series(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), tmp_path / "t.nii")
    with pytest.raises(InputError, match=r"t\.nii.*3-D"):
        read_nifti(tmp_path / "t.nii")


@pytest.mark.parametrize("name, content", [
    ("text.nii", b"this is not an image\n" * 30),
    ("broken.nii.gz", b"\x1f\x8b\x08\x00garbage"),
    ("cut.nii.gz", None)])
def test_corrupt_files_raise_input_error_naming_the_file(tmp_path, name, content):
    if content is None:  # a valid file cut in the middle of its data
        write_nifti(_volume(), tmp_path / "whole.nii.gz")
        content = (tmp_path / "whole.nii.gz").read_bytes()[:400]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError) as raised:
        read_nifti(tmp_path / name)
    assert raised.value.path == str(tmp_path / name)


def test_read_volume_dispatches_on_the_path(tmp_path):
    volume = _volume(integer=True)
    write_nifti(volume, tmp_path / "a.nii.gz")
    _assert_same(read_volume(tmp_path / "a.nii.gz"), volume)
    paths = write_dicom_series(volume, tmp_path / "series", series_description="t2_tse_tra")
    read = read_volume(tmp_path / "series")
    np.testing.assert_array_equal(read.array, volume.array)
    assert read.source_paths == [str(p) for p in paths]
    with pytest.raises(InputError, match="series folder"):
        read_volume(paths[0])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported"):
        read_volume(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "missing.nii.gz")


def test_read_volume_asks_to_choose_among_several_series(tmp_path):
    for name in ("t2_tse_tra", "t2_tse_cor"):
        write_dicom_series(_volume(), tmp_path / name, series_description=name)
    with pytest.raises(InputError) as raised:
        read_volume(tmp_path)
    assert "t2_tse_tra" in str(raised.value) and "t2_tse_cor" in str(raised.value)
    assert read_volume(tmp_path, series_filter="cor").series_description == "t2_tse_cor"


def test_gzip_compressed_file_named_nii_is_an_input_error(tmp_path):
    write_nifti(_volume(), tmp_path / "v.nii.gz")
    (tmp_path / "v.nii").write_bytes((tmp_path / "v.nii.gz").read_bytes())
    with pytest.raises(InputError, match=r"v\.nii: .*rename it to \.nii\.gz"):
        read_nifti(tmp_path / "v.nii")
