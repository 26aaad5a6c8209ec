"""evaluate_model on a tiny NIfTI-built cache, with predict_fn models and an export."""
import json

import numpy as np
import pytest

from srgan_tf.config import DataConfig
from srgan_tf.data.slice_cache.prepare import build_cache
from srgan_tf.data.degradation.degrade import upsample_bicubic
from srgan_tf.evaluation.evaluate import evaluate_model
from srgan_tf.evaluation.report import write_report
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.volume import Volume

SCALE_HW = (4, 1)  # Exp. 2: height only
DATA = DataConfig(mode="aniso", scale=4, hr_size=32, min_foreground=0.1)
METRIC_NAMES = ("psnr", "ssim", "hfen", "gmsd", "edge_f1")


def phantom(seed, slices=5, rows=40, cols=36):
    """Ellipses of different brightness on dark air, with mild texture (scanner units)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    volume = np.empty((slices, rows, cols), np.float32)
    for k in range(slices):
        body = ((y - rows / 2) / (rows * 0.4)) ** 2 + ((x - cols / 2) / (cols * 0.42)) ** 2 < 1
        organ = ((y - rows / 2 - 2) / 6.0) ** 2 + ((x - cols / 2 + k - 2) / 8.0) ** 2 < 1
        volume[k] = 40 + 500 * body + 400 * organ + rng.normal(0, 15, (rows, cols))
    return volume


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    for number in range(4):
        volume = Volume(array=phantom(number), spacing=(3.0, 0.5, 0.5),
                        patient_id=f"P{number}", series_description="t2_tse_tra")
        write_nifti(volume, root / "nifti" / f"P{number}.nii.gz")
    path = root / "cache.h5"
    build_cache(root / "nifti", path, test_fraction=0.5, seed=0, progress=False)
    return path


def bicubic_predict(lr):
    return upsample_bicubic(lr, SCALE_HW).numpy()


def nearest_predict(lr):
    return np.repeat(lr, SCALE_HW[0], axis=1)


def test_predict_fn_equal_to_bicubic_scores_like_bicubic(cache_path, tmp_path):
    result = evaluate_model(bicubic_predict, cache_path, data_config=DATA, batch_size=4,
                            output_dir=tmp_path)
    written = json.loads((tmp_path / "metrics.json").read_text())
    for method in ("sr", "bicubic"):
        for name in METRIC_NAMES:
            assert isinstance(written[method][name], float)
            assert f"{name}_std" in written[method]
        assert written[method]["patients"] == 2
        assert written[method]["slices"] >= 2
    for name in METRIC_NAMES:
        assert result["sr"][name] == pytest.approx(result["bicubic"][name])
    assert 15 < result["bicubic"]["psnr"] < 60 and 0 < result["bicubic"]["ssim"] <= 1
    assert written["protocol"]["border"] == 4 and written["protocol"]["scale_hw"] == [4, 1]
    assert (written["protocol"]["hr_size"], written["protocol"]["min_foreground"]) == (32, 0.1)
    assert len(written["per_patient"]) == 2
    for patient in written["per_patient"].values():
        assert patient["slices"] >= 1 and set(METRIC_NAMES) <= set(patient["sr"])


def test_the_protocol_names_the_degradation_the_lr_was_made_with(cache_path):
    import dataclasses

    from srgan_tf.evaluation.report import protocol_text

    thick = dataclasses.replace(DATA, degradation="slice-profile", slice_profile="gaussian")
    result = evaluate_model(bicubic_predict, cache_path, scale_hw=SCALE_HW, data_config=thick,
                            max_slices_per_patient=1)
    assert "gaussian slice profile" in result["protocol"]["degradation"]
    assert "gaussian slice profile" in protocol_text(result["protocol"])  # report.md's words
    bicubic = evaluate_model(bicubic_predict, cache_path, scale_hw=SCALE_HW, data_config=DATA,
                             max_slices_per_patient=1)
    assert "bicubic" in bicubic["protocol"]["degradation"]
    # the LR really differs: the same bicubic upsampling scores differently on it
    assert result["bicubic"]["psnr"] != pytest.approx(bicubic["bicubic"]["psnr"])


def test_several_models_share_slices(cache_path, tmp_path):
    models = {"srresnet": nearest_predict, "sr": bicubic_predict}
    result = evaluate_model(models, cache_path, scale_hw=SCALE_HW, data_config=DATA,
                            max_slices_per_patient=2, output_dir=tmp_path, figures=1)
    assert result["bicubic"]["slices"] == 4  # 2 test patients x 2 slices
    assert result["srresnet"]["psnr"] < result["bicubic"]["psnr"]  # blocky LR copy is worse
    assert result["sr"]["psnr"] == pytest.approx(result["bicubic"]["psnr"])  # the same LR
    assert (tmp_path / "figures").is_dir() and len(result["figures"]) == 1
    report = write_report(tmp_path, "tiny", result, {"data": {"mode": "aniso", "scale": 4}},
                          figures=result["figures"]).read_text()
    assert "SRResNet aniso x4" in report and "SRGAN aniso x4 (paper)" in report


def test_callable_needs_scale_and_split_needs_series(cache_path):
    with pytest.raises(ValueError, match="scale_hw"):
        evaluate_model(bicubic_predict, cache_path)
    with pytest.raises(ValueError, match="HR shape"):
        evaluate_model(lambda lr: lr, cache_path, data_config=DATA)
    with pytest.raises(ValueError, match="data config makes LR"):  # LR of another factor
        evaluate_model(bicubic_predict, cache_path, scale_hw=(2, 1), data_config=DATA)


def test_export_directory_is_loaded_and_metrics_land_in_the_run_dir(cache_path, tmp_path):
    from srgan_tf.config import GeneratorSpec
    from srgan_tf.inference.export import export_generator
    from srgan_tf.models.generator import generator_from_spec

    spec = GeneratorSpec(SCALE_HW, num_residual_blocks=2, filters=8)
    export_dir = export_generator(generator_from_spec(spec), tmp_path / "run" / "export",
                                  {"config": {}}, spec=spec)
    result = evaluate_model(str(export_dir), cache_path, data_config=DATA, max_slices_per_patient=1)
    assert result["protocol"]["scale_hw"] == [4, 1]  # from the export's metadata
    assert isinstance(result["sr"]["psnr"], float) and result["sr"]["slices"] == 2
    assert (tmp_path / "run" / "metrics.json").is_file()
