"""Damaged and odd inputs: one bad file costs that file, and every refusal is one InputError line."""
import os
import subprocess
import sys
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest

from srgan_tf.data.slice_cache.cache import SliceCache
from srgan_tf.data.slice_cache.prepare import build_cache
from srgan_tf.files import partial_path, remove_stale_partials
from srgan_tf.io.dicom import read_dicom_tree
from srgan_tf.io.dicom_write import write_dicom_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import read_nifti
from srgan_tf.io.reader import read_volume
from srgan_tf.io.volume import Volume

SLICES = 8


def _series(folder, patient="P-1", seed=0):
    """A tiny integer-valued axial series (8 slices of 16x16, 2.5 mm apart); its files."""
    array = np.random.default_rng(seed).integers(0, 900, size=(SLICES, 16, 16)).astype(np.float32)
    volume = Volume(array, spacing=(2.5, 0.5, 0.5), origin=(0.0, 0.0, 10.0), patient_id=patient,
                    source_tags={"PatientID": patient})
    return volume, write_dicom_series(volume, folder, series_description="t2_tse_tra",
                                      derived=False)


def _cut_pixels(source, target):
    """A copy of `source` whose header reads but whose pixel data stops short."""
    target.write_bytes(source.read_bytes()[:-100])
    return target


def _drop_pixels(path):
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return path


def _one_line(error):
    return "\n" not in str(error)


@pytest.mark.parametrize("same_sop", [True, False], ids=["same-sop", "same-position"])
def test_damaged_copy_of_a_slice_costs_only_that_file(tmp_path, same_sop):
    volume, paths = _series(tmp_path / "series")
    copy = _cut_pixels(paths[3], tmp_path / "series" / "IM-0004-copy.dcm")
    if not same_sop:  # a different instance at the same position, unreadable
        ds = pydicom.dcmread(paths[3])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(copy, enforce_file_format=True)
        _cut_pixels(copy, copy)
    volumes, skipped = read_dicom_tree(tmp_path, series_filter=None)
    assert len(volumes) == 1 and volumes[0].shape == (SLICES, 16, 16)
    np.testing.assert_array_equal(volumes[0].array, volume.array)
    assert [error.path for error in skipped] == [str(copy)]
    assert "unreadable pixel data" in skipped[0].reason and str(paths[3]) in skipped[0].reason
    np.testing.assert_array_equal(read_volume(tmp_path / "series").array, volume.array)


def test_exact_copy_of_a_slice_is_one_slice(tmp_path):
    volume, paths = _series(tmp_path / "series")
    copy = tmp_path / "series" / "zz-copy.dcm"
    copy.write_bytes(paths[0].read_bytes())
    volumes, skipped = read_dicom_tree(tmp_path, series_filter=None)
    assert volumes[0].shape == volume.shape
    assert len(skipped) == 1 and skipped[0].path == str(copy)
    assert "another copy of SOP instance" in skipped[0].reason


@pytest.mark.parametrize("damage", [_drop_pixels, lambda path: _cut_pixels(path, path)],
                         ids=["no-pixel-data", "pixels-cut"])
def test_missing_middle_slice(tmp_path, damage):
    volume, paths = _series(tmp_path / "dicom" / "series")
    bad = damage(paths[3])
    reason = "no PixelData" if damage is _drop_pixels else "unreadable pixel data"

    # A volume (infer, through-plane) needs every slice: the error names the file and the gap.
    with pytest.raises(InputError) as raised:
        read_volume(tmp_path / "dicom" / "series")
    message = str(raised.value)
    assert raised.value.path == str(bad) and _one_line(raised.value)
    assert reason in message and f"slice 4 of {SLICES}" in message and "z=17.5 mm" in message

    # The cache (in-plane training) keeps the other slices and records the gap.
    output = tmp_path / "cache.h5"
    summary = build_cache(tmp_path / "dicom", output, series_filter=None, test_fraction=0,
                          progress=False)
    assert [error.path for error in summary.skipped] == [str(bad)]
    assert reason in summary.skipped[0].reason
    assert summary.written[0].shape == (SLICES - 1, 16, 16)
    assert summary.written[0].missing_slices == 1
    assert "1 missing slice(s)" in summary.text() and str(bad) in summary.text()
    with SliceCache(output) as cache:
        info = cache.series()[0]
        assert info.shape == (SLICES - 1, 16, 16)
        assert [(gap.index, gap.path) for gap in info.missing_slices] == [(3, str(bad))]
        assert reason in info.missing_slices[0].reason
        np.testing.assert_allclose(info.missing_slices[0].position, (0.0, 0.0, 17.5))
        assert info.grid_indices().tolist() == [0, 1, 2, 4, 5, 6, 7]
        np.testing.assert_array_equal(cache.read_volume(info.key),
                                      np.delete(volume.array, 3, axis=0))
        assert f"slice 4 of {SLICES}: {bad}" in cache.info_text()
        with pytest.raises(InputError, match="in-plane training only"):
            cache.volume(info.key)


@pytest.mark.parametrize("header_cut", [False, True], ids=["file-deleted", "header-cut"])
def test_slice_no_file_holds(tmp_path, header_cut):
    volume, paths = _series(tmp_path / "dicom" / "series")
    if header_cut:  # the header pass cannot read it, so its slice has no file
        paths[5].write_bytes(paths[5].read_bytes()[:300])
    else:
        paths[5].unlink()
    folder = str(tmp_path / "dicom" / "series")
    with pytest.raises(InputError) as raised:
        read_volume(folder)
    assert raised.value.path == folder and _one_line(raised.value)
    assert "no file holds this slice" in str(raised.value)
    assert f"slice 6 of {SLICES}" in str(raised.value) and "z=22.5 mm" in str(raised.value)
    assert (str(paths[5]) in str(raised.value)) == header_cut
    summary = build_cache(tmp_path / "dicom", tmp_path / "cache.h5", series_filter=None,
                          test_fraction=0, progress=False)
    assert [error.path for error in summary.skipped] == [str(paths[5])] * header_cut + [folder]
    with SliceCache(tmp_path / "cache.h5") as cache:
        info = cache.series()[0]
        assert info.grid_indices().tolist() == [0, 1, 2, 3, 4, 6, 7]
        assert info.missing_slices[0].path == "" and info.spacing[0] == pytest.approx(2.5)
        np.testing.assert_array_equal(cache.read_volume(info.key),
                                      np.delete(volume.array, 5, axis=0))
        assert f"slice 6 of {SLICES}: no file holds" in cache.info_text()


def test_cache_of_schema_version_1_still_reads(tmp_path):
    _series(tmp_path / "dicom")
    output = tmp_path / "cache.h5"
    build_cache(tmp_path / "dicom", output, series_filter=None, test_fraction=0, progress=False)
    import h5py

    with h5py.File(output, "r+") as handle:
        handle.attrs["schema_version"] = 1
    with SliceCache(output) as cache:
        assert cache.series()[0].missing_slices == ()
        assert cache.volume(cache.series()[0].key).shape == (SLICES, 16, 16)


def _nifti(path, array):
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.float32), np.eye(4)), str(path))
    return path


def test_non_finite_nifti_voxels_skip_the_series_with_their_count(tmp_path):
    array = np.random.default_rng(0).uniform(1, 2, (16, 16, 4)).astype(np.float32)
    array[0, :3, 0] = np.nan
    array[1, 0, 1] = np.inf
    folder = tmp_path / "nifti"
    folder.mkdir()
    path = _nifti(folder / "holes.nii.gz", array)
    _nifti(folder / "ok.nii.gz", np.where(np.isfinite(array), array, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reader neither warns nor changes a voxel
        volume = read_nifti(path)
    assert np.count_nonzero(~np.isfinite(volume.array)) == 4
    summary = build_cache(folder, tmp_path / "cache.h5", progress=False)
    assert [item.patient_id for item in summary.written] == ["ok"]
    assert "4 of 1024 voxels are not finite (3 NaN, 1 infinite)" in summary.text()


def test_one_patient_warns_and_bad_test_fraction_raises(tmp_path):
    _series(tmp_path / "dicom")
    summary = build_cache(tmp_path / "dicom", tmp_path / "cache.h5", series_filter=None,
                          progress=False)
    assert summary.split["test"] == []
    assert "Warning: no test patients (only 1 patient)" in summary.text()
    for fraction in (1.5, -0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="Received"):
            build_cache(tmp_path / "dicom", tmp_path / "other.h5", test_fraction=fraction,
                        progress=False)
    assert not (tmp_path / "other.h5").exists()


def test_stale_partial_cache_is_removed_and_live_one_kept(tmp_path):
    _series(tmp_path / "dicom")
    output = tmp_path / "out" / "cache.h5"
    output.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # exited, so no process owns it (pids are not reused this fast)
    stale = [output.parent / f".cache.h5.partial-{dead_pid}",
             output.parent / f"cache.h5.tmp-{dead_pid}"]  # the older name
    live = output.parent / f".cache.h5.partial-{os.getppid()}"
    other = output.parent / f".other.h5.partial-{dead_pid}"
    for path in (*stale, live, other):
        path.write_bytes(b"\0" * 64)
    summary = build_cache(tmp_path / "dicom", output, series_filter=None, progress=False)
    assert sorted(os.listdir(output.parent)) == sorted(["cache.h5", live.name, other.name])
    assert all(f"removed {path}" in summary.text() for path in stale)
    assert partial_path(output).name.startswith(f".cache.h5.partial-{os.getpid()}@")
    assert remove_stale_partials(output) == []


def _nan_position(folder):
    _, paths = _series(folder)
    for path in paths:
        ds = pydicom.dcmread(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns of the invalid DS value
            ds["ImagePositionPatient"].value = ["nan", "0", "0"]
            ds.save_as(path, enforce_file_format=True)
    return folder


@pytest.mark.parametrize("build, word", [
    (lambda folder: _nifti(folder / "series.nii.gz", np.zeros((8, 8, 4, 3))), "3-D"),
    (lambda folder: _nifti(folder / "flat.nii", np.zeros((8, 8))), "3-D"),
    (lambda folder: (folder / "empty").mkdir() or folder / "empty", "no"),
    (lambda folder: (folder / "notes.txt").write_text("hi") and folder / "notes.txt",
     "expected a DICOM"),
    (lambda folder: (folder / "f").mkdir() or (folder / "f" / "a.dcm").write_text("hi")
     and folder / "f", "not a DICOM"),
    (lambda folder: _nifti(folder / "none.nii", np.zeros((0, 8, 4))), "no voxels"),
    (lambda folder: _nan_position(folder / "s"), "non-finite geometry"),
    (lambda folder: (folder / "n").mkdir() or _nifti(folder / "n" / "a.nii", np.ones((4, 4, 2, 2)))
     and folder / "n", "a.nii"),
], ids=["4d", "2d", "empty-folder", "text-file", "folder-of-non-dicom", "no-voxels",
        "nan-position", "folder-of-bad-nifti"])
def test_unusable_inputs_are_one_line_input_errors(tmp_path, build, word):
    path = build(tmp_path)
    for read in (read_volume, lambda p: build_cache(p, tmp_path / "c.h5", progress=False)):
        with pytest.raises(InputError) as raised:
            read(path)
        first_line = str(raised.value).split("\n")[0]  # prepare lists several skipped files
        assert str(path) in first_line and word in str(raised.value)
        assert _one_line(raised.value) or "\n  " in str(raised.value)
    assert not (tmp_path / "c.h5").exists()


def test_folder_of_nifti_files_asks_for_one(tmp_path):
    _nifti(tmp_path / "a.nii.gz", np.ones((8, 8, 4)))
    with pytest.raises(InputError, match=r"holds NIfTI files \(a.nii.gz\): pass one of them"):
        read_volume(tmp_path)


def test_output_location_is_checked_before_any_work(tmp_path):
    _series(tmp_path / "dicom")
    (tmp_path / "afile").write_text("x")
    nifti = _nifti(tmp_path / "t2.nii", np.ones((8, 8, 4)))
    cases = [(tmp_path / "afile" / "sub" / "cache.h5", "is a file"),
             (tmp_path, "is a directory")]
    for output, word in cases:
        with pytest.raises(InputError, match=word) as raised:
            build_cache(tmp_path / "dicom", output, progress=False)
        assert _one_line(raised.value)
    with pytest.raises(InputError, match="is the input"):
        build_cache(nifti, nifti, progress=False)
    assert nifti.read_bytes()[:4] != b"\x89HDF"
    with pytest.raises(ValueError, match="seed must be a non-negative integer. Received: -1"):
        build_cache(tmp_path / "dicom", tmp_path / "c.h5", seed=-1, progress=False)
