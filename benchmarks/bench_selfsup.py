"""Time and peak memory of `srgan-tf self-supervised`, phase by phase, on two volume sizes.

    python benchmarks/bench_selfsup.py                       # both built-in cases
    python benchmarks/bench_selfsup.py --case brain          # 181x217x45, 1 mm in-plane, 4 mm slices (x4)
    python benchmarks/bench_selfsup.py --case prostate       # 384x384x26, 0.5 mm in-plane, 3.6 mm slices (x7.2)
    python benchmarks/bench_selfsup.py --input thick.nii.gz  # any volume of yours
    python benchmarks/bench_selfsup.py --versus 17db7c5      # each case also with that commit's code

`--versus REF` extracts the package of git commit REF (`git archive`) into a temporary folder
and runs the same case with it right after this version (one after the other, never at once),
then prints both totals and their ratio: a side-by-side comparison on the same input, the same
machine and (as far as the load allows) the same load.

The built-in cases are synthetic volumes of the stated sizes (smooth multi-scale texture in an
ellipsoid on a zero background, Rician-like noise): the time depends on the sizes, not on the
anatomy. Each case runs the real command in its own process (so peak RSS is that run's alone)
with the defaults; prints one JSON line per case: phase seconds, total, peak RSS in MiB.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {
    "brain": {"shape": (45, 217, 181), "spacing": (4.0, 1.0, 1.0)},
    "prostate": {"shape": (26, 384, 384), "spacing": (3.6, 0.5, 0.5)},
}


def synthetic_volume(shape, spacing, seed=0):
    """Smooth texture at several scales inside an ellipsoid, zero outside, noise floor."""
    import numpy as np
    from scipy import ndimage

    from srgan_tf.io.volume import Volume

    rng = np.random.default_rng(seed)
    sigmas_mm = (1.0, 3.0, 8.0)
    texture = sum(ndimage.gaussian_filter(rng.normal(size=shape), [s / d for d in spacing]) * s
                  for s in sigmas_mm)
    texture = texture / texture.std()
    grid = np.meshgrid(*[(np.arange(n) - n / 2) * d for n, d in zip(shape, spacing)], indexing="ij")
    radius = [0.45 * n * d for n, d in zip(shape, spacing)]
    inside = sum((g / r) ** 2 for g, r in zip(grid, radius)) < 1
    array = np.where(inside, 600 + 150 * texture, 0.0)
    noise = rng.normal(scale=15, size=(2,) + shape)
    array = np.sqrt((array + noise[0]) ** 2 + noise[1] ** 2)  # Rician magnitude
    return Volume(array.astype(np.float32), spacing=spacing, patient_id="BENCH")


def run_case(name: str, input_path: Path, work: Path, extra, code=None) -> dict:
    """The command in a child process; its phase times and peak RSS from its summary.
    `code`: a folder holding another version's `srgan_tf` package to run instead of this one."""
    output = work / f"{name}_sr.nii.gz"
    command = [sys.executable, "-m", "srgan_tf.cli", "self-supervised", "--input", str(input_path),
               "--output", str(output), "--work-dir", str(work / f"{name}_work"), *extra]
    # `python -m` puts its working folder first on sys.path: the package run is the one there.
    code = Path(code) if code else Path(__file__).resolve().parents[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=code)
    if completed.returncode != 0:
        return {"case": name, "error": completed.stderr.strip().splitlines()[-3:]}
    summary = json.loads((work / f"{name}_work" / "summary.json").read_text())
    return {"case": name, "input_shape": summary["input_shape"],
            "input_spacing_mm": summary["input_spacing_mm"],
            "output_shape": summary["output_shape"],
            "slice_profile": summary["slice_profile"]["shape"],
            "slice_profile_fwhm_mm": round(summary["slice_profile"]["fwhm_mm"], 3),
            "seconds": summary["seconds"], "peak_rss_mib": summary["peak_rss_mb"]}


def checkout(ref: str, folder: Path) -> Path:
    """The `srgan_tf` package of git commit `ref` of this repository, extracted under `folder`."""
    repository = Path(__file__).resolve().parents[1]
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repository), "archive", ref, "srgan_tf"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def measure(name: str, input_path: Path, work: Path, extra, versus=None, versus_code=None):
    """One JSON line for this version, and with `versus` one for that commit and their ratio."""
    row = run_case(name, input_path, work, extra)
    print(json.dumps(row), flush=True)
    if versus:
        old = run_case(f"{name}_versus", input_path, work, extra, code=versus_code)
        old["version"] = versus
        print(json.dumps(old), flush=True)
        if "seconds" in row and "seconds" in old:
            print(json.dumps({"case": name, "total_s": row["seconds"]["total"],
                              f"total_s_at_{versus}": old["seconds"]["total"],
                              "ratio": round(row["seconds"]["total"] / old["seconds"]["total"], 3),
                              "load_average": os.getloadavg()[0]}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append",
                        help="built-in case(s) (default: both)")
    parser.add_argument("--input", help="a thick-slice volume of yours instead of the built-in cases")
    parser.add_argument("--keep", help="keep outputs in this folder (default: a temporary one)")
    parser.add_argument("--versus", metavar="GIT_REF",
                        help="also run each case with the code of this commit (e.g. 17db7c5, "
                             "the version with 600 constant-rate steps) and print the ratio")
    args, extra = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(args.keep or temporary).resolve()
        work.mkdir(parents=True, exist_ok=True)
        versus_code = checkout(args.versus, Path(temporary) / "versus") if args.versus else None
        if args.input:
            measure("input", Path(args.input).resolve(), work, extra, args.versus, versus_code)
            return 0
        from srgan_tf.io.nifti import write_nifti

        for name in args.case or ["brain", "prostate"]:
            path = work / f"{name}_thick.nii.gz"
            write_nifti(synthetic_volume(**CASES[name]), path)
            measure(name, path, work, extra, args.versus, versus_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
