"""The acquisition model at clinical factors, and the numbers it refuses or warns about (issue 18):
every factor a clinic produces runs at defaults; a thickness or target spacing that cannot be
meant is refused before any work with one line saying why."""
import numpy as np
import pytest

from srgan_tf.data.acquisition import MAX_MODEL_FACTOR, acquisition_from_volume, is_isotropic
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.volume import Volume


def _volume(spacing, shape=(6, 24, 20), tags=None):
    array = np.random.default_rng(0).uniform(100, 900, shape).astype(np.float32)
    return Volume(array, spacing=spacing, source_tags=dict(tags or {}))


@pytest.mark.parametrize("spacing", [(6.5, 0.78, 0.78), (5.0, 0.45, 0.45), (8.0, 0.5, 0.5)])
def test_factors_beyond_the_model_run_at_defaults_on_the_coarsest_grid_it_reaches(spacing):
    acquisition = acquisition_from_volume(_volume(spacing))
    assert acquisition.model_factor == MAX_MODEL_FACTOR
    assert acquisition.target_spacing == pytest.approx(spacing[0] / MAX_MODEL_FACTOR)
    assert acquisition.target_source == "x8 reach"
    assert "beyond the x8 model" in acquisition.describe()
    assert acquisition.to_dict()["target_source"] == "x8 reach"


@pytest.mark.parametrize("spacing, isotropic", [((1.0, 1.0, 1.0), True), ((1.04, 1.0, 1.0), True),
                                               ((1.0, 1.0, 1.06), False), ((3.6, 0.5, 0.5), False)])
def test_one_isotropy_rule_for_refusal_and_training_planes(spacing, isotropic):
    """`is_isotropic` is the rule `acquisition_from_volume` refuses by and the one that gives
    generalise_real's isotropic training volumes their other two planes."""
    assert is_isotropic(spacing) is isotropic
    if isotropic:
        with pytest.raises(InputError, match="isotropic"):
            acquisition_from_volume(_volume(spacing))


def test_factors_the_model_reaches_keep_the_in_plane_spacing():
    acquisition = acquisition_from_volume(_volume((3.6, 0.5, 0.5)))
    assert acquisition.target_spacing == 0.5 and acquisition.target_source == "in-plane spacing"
    assert "beyond" not in acquisition.describe() and acquisition.warnings == ()


@pytest.mark.parametrize("flags,words", [
    (dict(thickness=500.0), ["--slice-thickness", "more than 3 x", "Received: 500"]),
    (dict(thickness=0.3), ["--slice-thickness", "below 0.2 x", "never be imaged"]),
    (dict(thickness=float("nan")), ["--slice-thickness", "> 0"]),
    (dict(target_spacing=0.1), ["--target-spacing", "finer than half the in-plane pixel"]),
    (dict(target_spacing=3.0), ["--target-spacing", "below the slice spacing"]),
    (dict(target_spacing=0.3), ["--target-spacing", "beyond the x8 model", "0.375"]),
])
def test_numbers_that_cannot_be_meant_are_refused_in_one_line(flags, words):
    with pytest.raises(InputError) as raised:
        acquisition_from_volume(_volume((3.0, 0.45, 0.45)), **flags)
    message = str(raised.value)
    assert "\n" not in message and all(w in message for w in words), message


@pytest.mark.parametrize("flags,tags,words", [
    (dict(thickness=1.2), {}, "gaps of 1.8 mm"),
    (dict(thickness=5.0), {}, "strongly overlapping"),
    ({}, {"SliceThickness": "12"}, "check it, or pass --slice-thickness"),
    (dict(target_spacing=2.5), {}, "little to gain"),
])
def test_unusual_but_usable_numbers_give_warnings(flags, tags, words):
    acquisition = acquisition_from_volume(_volume((3.0, 0.5, 0.5), tags=tags), **flags)
    assert any(words in w for w in acquisition.warnings), acquisition.warnings
    assert "Warning: " in acquisition.describe()


def test_command_refuses_a_thickness_that_cannot_be_meant_before_training(tmp_path, capsys):
    from srgan_tf.cli import main

    path = write_nifti(_volume((3.0, 0.5, 0.5)), tmp_path / "in.nii.gz")
    code = main(["self-supervised", "--input", str(path), "--output", str(tmp_path / "sr.nii.gz"),
                 "--slice-thickness", "500"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "more than 3 x" in err, err
    assert not (tmp_path / "sr.nii.gz").exists() and not (tmp_path / "sr_work").exists()
