"""Oracle gap of `srgan-tf self-supervised`: its defaults against the true slice profile.

    python benchmarks/bench_oracle.py --template mni152.nii.gz --out oracle/                # every case
    python benchmarks/bench_oracle.py --template mni152.nii.gz --out oracle/ --case 6 17    # some rows
    python benchmarks/bench_oracle.py --template mni152.nii.gz --out oracle/ --runs truth  # some runs
    python benchmarks/bench_oracle.py --template mni152.nii.gz --out oracle/ --sweep --case 32 138

Each case of bench_profile.py (its perturbation and thickening, imported) becomes a 1 mm truth
and a thick-slice NIfTI on the truth's grid (slice k at truth index k * spacing + (spacing - 1)
/ 2 along the thick axis, written in the affine), cached in OUT/case_N/. The thick volume keeps
the most slices whose slab is a whole number of mm, so the 1 mm output lands on truth voxels
(only 7.2 mm loses slices: 30 of 32). Then the command runs, each run with its own work dir and
--retrain, as:
- truth: --slice-profile SHAPE --slice-thickness THICKNESS (the profile it was made with);
- defaults: nothing added (--slice-profile auto, the NIfTI's spacing as the only header);
- thickness: --slice-thickness THICKNESS at auto (what a DICOM SliceThickness gives).
Before a run, the profile it will use is planned as the command plans it; a run is cached in
OUT/case_N/runs/<shape>_<width to 0.01 mm>/ and reused by any run kind that plans the same
profile (after a run, its summary.json must report that profile). Scores follow
srgan_tf/evaluation/volume_score.py (the slab between the thick slice centres; the cubic
baseline scored once per case). Printed: one row per case, the gaps to the truth run in dB (PSNR
over the region, in brackets within the head mask), then the worst and median |gap| and how many
are within 0.1 dB; everything is also added to OUT/results.json (kept across invocations).
`--sweep`: the numbers are rows of bench_profile.py's sweep grid (`--sweep` there), cached in
OUT/sweep_N/ and kept in results.json as "sweep_N".
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_profile import CASES, perturb, sweep_cases, thicken  # noqa: E402

KINDS = ("truth", "defaults", "thickness")
METRICS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "hfen": "{:.4f}", "psnr_mask": "{:.2f}"}  # printed, with format


def flags(kind, shape, thickness):
    """The command-line flags of a run kind."""
    return {"truth": ["--slice-profile", shape, "--slice-thickness", f"{thickness:g}"],
            "defaults": [], "thickness": ["--slice-thickness", f"{thickness:g}"]}[kind]


def profile_key(profile):
    return f"{profile.shape}_{profile.fwhm_mm:.2f}"


def build_case(folder, template, case):
    """(truth path, thick path) of `case` (a row of bench_profile's CASES), made once: the
    perturbed 1 mm volume and its thickened version, each NIfTI with its affine on the
    template's grid."""
    import nibabel

    truth_path, thick_path = folder / "truth.nii.gz", folder / "thick.nii.gz"
    if truth_path.is_file() and thick_path.is_file():
        return truth_path, thick_path
    axis, shape, thickness, spacing, snr, bias, blur, seed = case
    truth = perturb(template.get_fdata(dtype=np.float32), axis, snr, bias, blur, seed)
    thick = thicken(truth, axis, shape, thickness, spacing)
    count = max(n for n in range(1, thick.shape[axis] + 1) if abs(n * spacing - round(n * spacing)) < 1e-6)
    thick = np.take(thick, np.arange(count), axis=axis)
    to_truth = np.eye(4)  # thick index -> truth index
    to_truth[axis, axis], to_truth[axis, 3] = spacing, (spacing - 1) / 2.0
    folder.mkdir(parents=True, exist_ok=True)
    for path, array, affine in ((truth_path, truth, template.affine),
                                (thick_path, thick, template.affine @ to_truth)):
        partial = path.with_name("partial_" + path.name)
        nibabel.save(nibabel.Nifti1Image(array.astype(np.float32), affine), partial)
        os.replace(partial, path)
    return truth_path, thick_path


def planned_profile(thick_path, kind, shape, thickness):
    """The slice profile the command will use for this run kind, planned by its own code."""
    from srgan_tf.inference.infer import read_input_volume
    from srgan_tf.self_supervised_run.plan import SelfSupervisedOptions, plan_volume

    options = SelfSupervisedOptions(slice_profile=shape if kind == "truth" else "auto",
                                    slice_thickness=None if kind == "defaults" else thickness)
    volume = read_input_volume(str(thick_path), "self-supervised")
    with contextlib.redirect_stdout(io.StringIO()):
        return plan_volume(volume, options, str(thick_path)).profile


def run_kind(folder, truth_path, thick_path, kind, shape, thickness):
    """{"key", "profile", "scores", "seconds", "cached"} of one run kind (cached by profile)."""
    from srgan_tf.data.degradation.slice_profile import SliceProfile
    from srgan_tf.evaluation.volume_score import score_files

    profile = planned_profile(thick_path, kind, shape, thickness)
    if kind == "truth" and profile_key(profile) != profile_key(SliceProfile(shape, thickness)):
        raise SystemExit(f"case {folder.name}: --slice-profile {shape} plans {profile.describe()}, "
                         f"not {shape} {thickness:g} mm")
    run = folder / "runs" / profile_key(profile)
    if (run / "scores.json").is_file():
        return {**json.loads((run / "scores.json").read_text()), "cached": True}
    run.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "srgan_tf.cli", "self-supervised", "--input", str(thick_path),
               "--output", str(run / "sr.nii.gz"), "--work-dir", str(run / "work"), "--retrain",
               *flags(kind, shape, thickness)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(run / "log.txt", "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    seconds = time.perf_counter() - start
    if code:
        raise SystemExit(f"case {folder.name} {kind}: the command failed (exit {code}); see {run / 'log.txt'}")
    used = SliceProfile.from_dict(json.loads((run / "work" / "summary.json").read_text())["slice_profile"])
    if profile_key(used) != run.name:
        raise SystemExit(f"case {folder.name} {kind}: planned {run.name} but the command used "
                         f"{profile_key(used)} ({run / 'work' / 'summary.json'})")
    output, resampled = resampled_to_truth(run / "sr.nii.gz", truth_path)
    scores = score_files(truth_path, output, thick_path)["methods"]["input"]
    result = {"key": run.name, "profile": used.describe(), "flags": flags(kind, shape, thickness),
              "scores": scores, "seconds": round(seconds, 1), "resampled_to_truth": resampled}
    (run / "scores.json").write_text(json.dumps(result, indent=2) + "\n")
    return {**result, "cached": False}


def resampled_to_truth(sr_path, truth_path):
    """(path, resampled): the SR output itself when the scorer takes it as it is (on the truth's
    1 mm grid up to a whole-voxel shift: `volume_score.on_truth_grid`), else its trilinear
    resampling onto that grid (nibabel.processing; beyond x8 the command's default output
    spacing is the slice spacing / 8, e.g. 1.25 mm for 10 mm slices; the truth and the
    defaults runs of a case are resampled alike, so their difference stays fair)."""
    import nibabel
    import nibabel.processing

    from srgan_tf.evaluation.volume_score import on_truth_grid
    from srgan_tf.io.errors import InputError
    from srgan_tf.io.reader import read_volume

    try:
        on_truth_grid(read_volume(truth_path), read_volume(sr_path))
        return sr_path, False
    except InputError:
        pass
    sr, truth = nibabel.load(str(sr_path)), nibabel.load(str(truth_path))
    path = sr_path.with_name("sr_on_truth_grid.nii.gz")
    nibabel.save(nibabel.processing.resample_from_to(sr, truth, order=1, mode="nearest"), str(path))
    return path, True


def cubic_scores(folder, truth_path, thick_path):
    from srgan_tf.evaluation.volume_score import score_volumes
    from srgan_tf.io.reader import read_volume

    path = folder / "cubic.json"
    if not path.is_file():
        scores = score_volumes(read_volume(str(truth_path)), {}, read_volume(str(thick_path)))
        path.write_text(json.dumps(scores["methods"]["cubic"], indent=2) + "\n")
    return json.loads(path.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--template", required=True, help="a 1 mm isotropic NIfTI (MNI152 T1)")
    parser.add_argument("--out", required=True, help="folder for the cases, runs and results.json")
    parser.add_argument("--case", type=int, nargs="*", help="row numbers of bench_profile.py (default: all)")
    parser.add_argument("--runs", nargs="+", choices=KINDS, default=list(KINDS), help="run kinds (default: all)")
    parser.add_argument("--sweep", action="store_true",
                        help="the case numbers are rows of bench_profile.py's sweep grid, not of its table")
    args = parser.parse_args(argv)
    import nibabel

    cases, prefix = (sweep_cases(), "sweep_") if args.sweep else (CASES, "case_")

    def name(number):  # the key of a case in results.json
        return f"sweep_{number}" if args.sweep else str(number)

    numbers = args.case or range(len(cases))
    bad = [n for n in numbers if not 0 <= n < len(cases)]
    if bad:
        print(f"bench_oracle.py: error: no case {bad[0]} (cases 0 to {len(cases) - 1})", file=sys.stderr)
        return 2
    try:
        template = nibabel.load(args.template)
        if len(template.shape) != 3 or not np.allclose(template.header.get_zooms(), 1.0, atol=1e-3):
            raise ValueError(f"expected a 3-D 1 mm isotropic volume, got shape {template.shape}, "
                             f"voxels {template.header.get_zooms()} mm")
    except Exception as error:  # unreadable or not what the cases need: one line, exit 2
        print(f"bench_oracle.py: error: --template {args.template}: {error}", file=sys.stderr)
        return 2
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"bench_oracle.py: error: --out {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    kinds = [k for k in KINDS if k in args.runs]
    gaps = [k for k in kinds if k != "truth"] if "truth" in kinds else []
    header = ["#", "truth", "cubic PSNR (mask)"]
    for kind in kinds:
        header += [f"{kind} profile", "PSNR", "SSIM", "HFEN", "PSNR mask", "s"]
    header += [f"{kind} - truth dB (mask)" for kind in gaps]
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|", flush=True)
    results_path = Path(args.out, "results.json")  # cases and run kinds add to earlier invocations
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for number in numbers:
        axis, shape, thickness, spacing = cases[number][:4]
        folder = Path(args.out) / f"{prefix}{number}"
        truth_path, thick_path = build_case(folder, template, cases[number])
        cubic = cubic_scores(folder, truth_path, thick_path)
        runs = {kind: run_kind(folder, truth_path, thick_path, kind, shape, thickness) for kind in kinds}
        differences = {kind: {m: runs[kind]["scores"][m] - runs["truth"]["scores"][m]
                              for m in ("psnr", "psnr_mask")} for kind in gaps}
        entry = results.setdefault(name(number), {"runs": {}, "minus_truth_db": {}})
        entry.update(case=dict(zip(("thick_axis", "shape", "thickness_mm", "spacing_mm", "snr", "bias",
                                    "inplane_fwhm_mm", "seed"), cases[number])), cubic=cubic)
        entry["runs"].update(runs)
        entry["minus_truth_db"].update(differences)
        cells = [str(number), f"{shape} {thickness:g} / {spacing:g} mm, axis {axis}",
                 f"{cubic['psnr']:.2f} ({cubic['psnr_mask']:.2f})"]
        for kind in kinds:
            run = runs[kind]
            cells += [run["key"].replace("_", " ") + " mm",
                      *(form.format(run["scores"][m]) for m, form in METRICS.items()),
                      f"{run['seconds']:.0f}" + ("*" if run["cached"] else "")]
        cells += [f"{differences[k]['psnr']:+.2f} ({differences[k]['psnr_mask']:+.2f})" for k in gaps]
        print("| " + " | ".join(cells) + " |", flush=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    print("s: seconds of the run (* reused from an earlier run with the same profile)")
    for kind in gaps:
        values = np.abs([results[name(n)]["minus_truth_db"][kind]["psnr"] for n in numbers])
        print(f"{kind} - truth: worst |gap| {values.max():.2f} dB, median {np.median(values):.2f} dB, "
              f"within 0.1 dB {int((values <= 0.1).sum())}/{len(values)}")


if __name__ == "__main__":
    sys.exit(main())
