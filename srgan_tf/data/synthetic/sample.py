"""Built-in sample data: synthetic T2-weighted prostate MRI as DICOM (TCIA layout) + HR NIfTI.

Each patient is one random pelvis (`srgan_tf.data.synthetic.phantom`) rendered on an isotropic grid
whose voxel equals the in-plane pixel. The isotropic volume (with coil bias and Rician noise)
is the high-resolution reference `hr/<PatientID>.nii.gz`; the axial series is the same noise-free
signal integrated over each thick slice's profile, then given its own Rician noise, so a thick
volume simulated from the reference shows exactly the anatomy of the DICOM series.
"""
import json
import math
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid
from tqdm.auto import tqdm

from srgan_tf.data.synthetic.phantom import render_pelvis
from srgan_tf.data.synthetic.phantom_canvas import random_field
from srgan_tf.files import atomic_write_text
from srgan_tf.io.dicom_write import write_dicom_series
from srgan_tf.io.errors import InputError
from srgan_tf.io.nifti import write_nifti
from srgan_tf.io.volume import Volume

SAMPLE_FORMAT = "srgan-tf-sample"
SAMPLE_VERSION = 1
SERIES_DESCRIPTION = "t2_tse_tra"
HR_DESCRIPTION = "t2_iso_reference (synthetic)"
MARKER = ".complete"  # written last: its absence means an interrupted or foreign run
SERIES_NUMBER = 3
TEST_FRACTION = 0.25  # 8 sample patients -> 2 held out for testing
_EDGE_SIGMA = 0.1  # slice-profile edge width, as a fraction of the slice thickness


def patient_id(index: int) -> str:
    """Patient id of the `index`-th sample patient: SAMPLE-0000, SAMPLE-0001, ..."""
    return f"SAMPLE-{index:04d}"


def draw_acquisition(rng, matrix=None, slices=None) -> dict:
    """Random PROSTATEx-like axial T2 geometry and patient placement (mm, LPS).

    About 0.5-0.6 mm pixels on a 320 (sometimes 384) matrix, 20-26 slices of 3.0-3.6 mm.
    The slice thickness is a whole number of pixels (`slice_factor`), so the isotropic
    reference grid subdivides every thick slice exactly. `matrix` and `slices` override the
    random choice (small values keep tests fast; the field of view stays about 180 mm).
    """
    large = rng.uniform() < 0.15
    if matrix is None:
        matrix = 384 if large else 320
        pixel = 0.5 if large else float(rng.choice([0.5, 0.5625, 0.6]))
    else:
        pixel = 180.0 / matrix
    target = rng.uniform(3.0, 3.6)
    factors = [k for k in range(2, 13) if 3.0 - 1e-9 <= k * pixel <= 3.6 + 1e-9]
    factor = (min(factors, key=lambda k: abs(k * pixel - target)) if factors
              else max(2, int(round(target / pixel))))
    if slices is None:
        slices = int(rng.integers(20, 23 if large else 27))
    prostate = np.array([rng.normal(0, 5), rng.normal(0, 8), rng.uniform(-40, 40)])
    centre = prostate[:2] + [rng.normal(0, 3), rng.uniform(-2, 6)]
    slab_start = prostate[2] - rng.uniform(0.36, 0.44) * slices * factor * pixel
    return {"matrix": int(matrix), "pixel_spacing": pixel, "slice_factor": factor,
            "slices": int(slices), "prostate": prostate.tolist(), "image_centre": centre.tolist(),
            "slab_start": float(slab_start), "angle": float(rng.normal(0, 0.06)),
            "noise_sigma": float(rng.uniform(18, 28))}


def slice_profile_weights(slices, factor, margin):
    """(slices, slices*factor + 2*margin) weights of each thick slice over the fine slices.

    A rectangle of the slice thickness with Gaussian-blurred edges (a real 2-D TSE slice
    profile), sampled at the fine slice centres and normalised to sum 1.
    """
    fine = np.arange(slices * factor + 2 * margin) - margin + 0.5  # in fine-voxel units
    centres = (np.arange(slices) + 0.5) * factor
    offset = fine[None, :] - centres[:, None]
    scale = math.sqrt(2) * _EDGE_SIGMA * factor
    half = factor / 2
    erf = np.vectorize(math.erf)
    weights = 0.5 * (erf((offset + half) / scale) - erf((offset - half) / scale))
    weights[weights < 1e-6] = 0.0
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def coil_bias(rng, x, y, z, geometry):
    """Smooth multiplicative bias: phased-array coils anterior and posterior, ~1 at the prostate."""
    px, py, pz = geometry["prostate"]
    top, bottom = y[0], y[-1]
    rows = 0.7 + 0.35 * np.exp((top - y) / 55.0) + 0.3 * np.exp((y - bottom) / 60.0)
    cols = 1.0 - 0.08 * ((x - px) / 100.0) ** 2
    plane = rows[:, None] * cols[None, :]
    step = max(1.0, 25.0 / abs(x[1] - x[0]) if len(x) > 1 else 1.0)
    plane *= 1.0 + 0.06 * random_field(rng, (1, len(y), len(x)), step, step)[0]
    along = 1.0 - 0.12 * ((z - pz) / 80.0) ** 2
    row, col = np.argmin(np.abs(y - py)), np.argmin(np.abs(x - px))
    plane /= plane[row, col]
    return plane.astype(np.float32), along.astype(np.float32)


def rician(rng, signal, sigma):
    """Magnitude of the signal plus complex Gaussian noise of standard deviation `sigma`."""
    real = rng.standard_normal(signal.shape, dtype=np.float32)
    real *= sigma
    real += signal
    imaginary = rng.standard_normal(signal.shape, dtype=np.float32)
    imaginary *= sigma
    np.square(real, out=real)
    np.square(imaginary, out=imaginary)
    real += imaginary
    return np.sqrt(real, out=real)


def _patient_tags(rng, seed, index) -> dict:
    """Patient, study and acquisition tags (deterministic UIDs) carried into every slice."""
    def uid(kind):
        return generate_uid(entropy_srcs=[SAMPLE_FORMAT, str(seed), str(index), kind])
    study_date = date(2011, 7, 1) + timedelta(days=int(rng.integers(0, 1500)))
    return {
        "PatientID": patient_id(index), "PatientName": f"SAMPLE^{index:04d}",
        "PatientSex": "M", "PatientAge": f"{int(rng.integers(52, 78)):03d}Y",
        "StudyInstanceUID": uid("study"), "FrameOfReferenceUID": uid("frame"),
        "StudyDate": study_date.strftime("%Y%m%d"), "StudyTime": "101500",
        "StudyDescription": "MR prostate (synthetic)", "StudyID": "1",
        "AccessionNumber": f"SYN{seed % 1000:03d}{index:05d}",
        "Manufacturer": "srgan-tf synthetic", "ManufacturerModelName": "pelvis phantom",
        "MagneticFieldStrength": 3, "ImagingFrequency": 123.2, "BodyPartExamined": "PROSTATE",
        "PatientPosition": "HFS", "ProtocolName": SERIES_DESCRIPTION,
        "ScanningSequence": "SE", "SequenceVariant": ["SK", "SP", "OSP"],
        "ScanOptions": "PFP", "MRAcquisitionType": "2D", "SequenceName": "*tse2d1_25",
        "RepetitionTime": round(float(rng.uniform(3800, 6500)), 1),
        "EchoTime": round(float(rng.uniform(98, 112)), 1), "EchoTrainLength": 25,
        "FlipAngle": 160, "NumberOfAverages": 3, "PixelBandwidth": 200,
    }


def synthesize_patient(index: int, seed: int = 0, *, matrix=None, slices=None):
    """One sample patient: (axial series Volume, isotropic reference Volume, geometry dict).

    Deterministic in (seed, index): patient `index` is the same whatever the patient count.

    Args:
        index: patient number (0-based).
        seed: dataset seed.
        matrix, slices: optional overrides of the random geometry (see `draw_acquisition`).
    """
    streams = [np.random.default_rng(s)
               for s in np.random.SeedSequence([seed, index]).spawn(4)]
    geometry = draw_acquisition(streams[0], matrix, slices)
    n, k, p, size = (geometry[key] for key in ("slices", "slice_factor", "pixel_spacing",
                                                 "matrix"))
    margin = int(math.ceil(0.3 * k)) + 1  # room for the blurred edges of the outer slices
    offsets = (np.arange(size) - (size - 1) / 2) * p
    x, y = geometry["image_centre"][0] + offsets, geometry["image_centre"][1] + offsets
    z = geometry["slab_start"] + (np.arange(n * k + 2 * margin) - margin + 0.5) * p
    signal = render_pelvis(x, y, z, geometry["prostate"], geometry["angle"], streams[1])
    np.clip(signal, 0.0, None, out=signal)
    plane, along = coil_bias(streams[2], x, y, z, geometry)
    signal *= plane[None]
    signal *= along[:, None, None]
    # Each thick slice integrates the signal over its profile (only a band of fine slices).
    weights = slice_profile_weights(n, k, margin)
    thick = np.empty((n, size, size), np.float32)
    for i, row in enumerate(weights):
        used = np.flatnonzero(row)
        lo, hi = used[0], used[-1] + 1
        thick[i] = (row[lo:hi] @ signal[lo:hi].reshape(hi - lo, -1)).reshape(size, size)
    sigma = geometry["noise_sigma"]
    thick = rician(streams[3], thick, sigma)
    reference = rician(streams[3], signal[margin:margin + n * k], sigma)
    del signal
    np.rint(thick, out=thick)  # scanner magnitudes are integers
    np.rint(reference, out=reference)
    tags = _patient_tags(streams[0], seed, index)
    # Array axes (slice, row, col) run superior, posterior, patient-left: axial, head first.
    axial = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    common = dict(direction=axial, patient_id=patient_id(index), modality="MR",
                  study_uid=tags["StudyInstanceUID"], source_tags=tags)
    series = Volume(thick, spacing=(k * p, p, p),
                    origin=(x[0], y[0], geometry["slab_start"] + k * p / 2),
                    series_description=SERIES_DESCRIPTION, **common)
    isotropic = Volume(reference, spacing=(p, p, p),
                       origin=(x[0], y[0], geometry["slab_start"] + p / 2),
                       series_description=HR_DESCRIPTION, **common)
    return series, isotropic, geometry


def _write_patient(output_dir: Path, series: Volume, reference: Volume, geometry: dict) -> dict:
    """Write one patient's DICOM series (TCIA layout) and reference NIfTI; its sample.json entry."""
    tags = series.source_tags
    # TCIA folder names: "<study date>-NA-<study description>-<5 digits>" and
    # "<series number>.000000-<series description>-<5 digits>".
    study_number, series_number = (int(tags[key][-5:]) for key in ("StudyInstanceUID",
                                                                  "FrameOfReferenceUID"))
    study_date = f"{tags['StudyDate'][4:6]}-{tags['StudyDate'][6:]}-{tags['StudyDate'][:4]}"
    series_name = SERIES_DESCRIPTION.replace("_", "")
    folder = (Path("dicom") / series.patient_id
              / f"{study_date}-NA-MR-prostate-synthetic-{study_number:05d}"
              / f"{SERIES_NUMBER}.000000-{series_name}-{series_number:05d}")
    files = write_dicom_series(series, output_dir / folder, series_description=SERIES_DESCRIPTION,
                               derived=False, series_number=SERIES_NUMBER)
    hr_path = Path("hr") / f"{series.patient_id}.nii.gz"
    write_nifti(reference, output_dir / hr_path)
    return {
        "patient_id": series.patient_id, "dicom": folder.as_posix(), "files": len(files),
        "hr": hr_path.as_posix(), "shape": list(series.shape), "spacing": list(series.spacing),
        "origin": list(series.origin), "hr_shape": list(reference.shape),
        "hr_spacing": list(reference.spacing), "hr_origin": list(reference.origin),
        "direction": series.direction.tolist(), "slice_factor": geometry["slice_factor"],
        "slice_profile": f"rectangle of the slice thickness, Gaussian edges "
                         f"(sigma {_EDGE_SIGMA} x thickness)",
        "noise_sigma": round(geometry["noise_sigma"], 3),
        "prostate_centre": [round(v, 3) for v in geometry["prostate"]],
    }


def _request(patients, seed, matrix, slices) -> dict:
    return {"format": SAMPLE_FORMAT, "version": SAMPLE_VERSION, "patients": patients,
            "seed": seed, "matrix": matrix, "slices": slices}


def _is_complete(output_dir: Path, request: dict) -> bool:
    try:
        return json.loads((output_dir / MARKER).read_text()) == request
    except (OSError, ValueError):
        return False


def _refuse_foreign_data(output_dir: Path) -> None:
    """InputError when `output_dir` holds a dicom/ or hr/ folder this module did not write
    (no marker): regenerating the sample replaces both, and they may be the user's data."""
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(output_dir, "--output is a file; the sample needs a folder")
    if (output_dir / MARKER).exists():
        return
    for name in ("dicom", "hr"):
        if (output_dir / name).exists():
            raise InputError(output_dir / name, f"--output {output_dir} holds a {name}/ folder "
                             "that `srgan-tf sample` did not write, and writing the sample "
                             f"replaces {name}/: choose a new or empty --output")


def write_sample_dataset(output_dir, patients: int = 8, seed: int = 0, progress: bool = True,
                         *, matrix=None, slices=None) -> Path:
    """Write the synthetic prostate T2 dataset, or reuse a complete one made with the same settings.

    Layout: `dicom/<PatientID>/<study>/<series>/IM-*.dcm` (TCIA-like, SeriesDescription
    "t2_tse_tra"), `hr/<PatientID>.nii.gz` (isotropic reference of the same anatomy, spacing =
    the in-plane pixel), `sample.json` (patients, geometry, seed) and a marker written last.
    An incomplete or different dataset in `output_dir` is replaced (only those entries).

    Args:
        output_dir: destination folder.
        patients: number of patients (SAMPLE-0000, SAMPLE-0001, ...).
        seed: dataset seed; the same seed gives the same images.
        progress: show a progress bar.
        matrix, slices: override the random in-plane matrix / slice count (fast tests).

    Returns:
        `output_dir` as a Path.

    Example:
        >>> root = write_sample_dataset("data/sample", patients=8)
        >>> volumes, skipped = read_dicom_tree(root / "dicom")
    """
    if int(patients) < 1:
        raise ValueError(f"patients must be at least 1. Received: {patients}")
    for name, value in (("matrix", matrix), ("slices", slices)):
        if value is not None and int(value) < 2:
            raise ValueError(f"{name} must be at least 2 (or None). Received: {value}")
    output_dir = Path(output_dir)
    request = _request(int(patients), int(seed), matrix, slices)
    if _is_complete(output_dir, request):
        return output_dir
    _refuse_foreign_data(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / MARKER, "{}")  # ours from now on, though not complete
    (output_dir / "sample.json").unlink(missing_ok=True)
    for name in ("dicom", "hr"):  # leftovers of an interrupted run would add stray series
        shutil.rmtree(output_dir / name, ignore_errors=True)
    records = []
    for index in tqdm(range(int(patients)), desc="sample data", unit="patient",
                      disable=not progress):
        series, reference, geometry = synthesize_patient(index, int(seed), matrix=matrix,
                                                         slices=slices)
        records.append(_write_patient(output_dir, series, reference, geometry))
    description = dict(request, description="synthetic axial T2 TSE prostate MRI "
                       "(srgan-tf pelvis phantom) with isotropic references",
                       series_description=SERIES_DESCRIPTION, hr_description=HR_DESCRIPTION,
                       patients=records, patient_count=len(records))
    atomic_write_text(output_dir / "sample.json", json.dumps(description, indent=2))
    atomic_write_text(output_dir / MARKER, json.dumps(request))
    return output_dir


def _cache_is_current(cache: Path, marker: Path) -> bool:
    """A readable cache built after the sample it was made from."""
    if not cache.is_file() or cache.stat().st_mtime < marker.stat().st_mtime:
        return False
    from srgan_tf.data.slice_cache.cache import SliceCache
    try:
        with SliceCache(cache) as opened:
            return bool(opened.series())
    except (InputError, OSError, KeyError, ValueError):
        return False


def ensure_sample_cache(root="data/sample", patients: int = 8, seed: int = 0,
                        progress: bool = True, *, matrix=None, slices=None) -> Path:
    """The HDF5 cache of the built-in sample, generating the sample and the cache when needed.

    Both are reused when complete; a cache older than the sample is rebuilt. A quarter of
    the patients (2 of 8) is held out as the test split.

    Args:
        root: folder of the sample (default `data/sample` under the current directory).
        patients, seed, matrix, slices: passed to `write_sample_dataset`.
        progress: show progress bars.

    Returns:
        Path of `root/cache.h5`.
    """
    from srgan_tf.data.slice_cache.prepare import build_cache

    root = Path(root)
    write_sample_dataset(root, patients, seed, progress, matrix=matrix, slices=slices)
    cache = root / "cache.h5"
    if not _cache_is_current(cache, root / MARKER):
        build_cache(root / "dicom", cache, test_fraction=TEST_FRACTION, seed=seed,
                    progress=progress)
    return cache
