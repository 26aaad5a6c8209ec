"""`srgan-tf self-supervised` on thick slices with a gap as wide as a slice, against interpolation.

    python benchmarks/bench_gaps.py --template mni152.nii.gz --out gaps/            # 6 and 13 mm spacing
    python benchmarks/bench_gaps.py --template mni152.nii.gz --out gaps/ --case 13  # one spacing
    python benchmarks/bench_gaps.py --template mni152.nii.gz --out gaps/ --clean    # the unperturbed template

How a real series with gaps can be checked: a contiguous thick series (box slices of thickness
t, spacing t) loses every other slice, so the kept series has spacing 2t and gaps of t between
its slices; the command super-resolves the kept series and is scored on the removed slices.

Each case (a spacing S_in = 2t, thickness t = S_in / 2) takes a 1 mm isotropic volume (e.g.
nilearn's MNI152 2009a T1 template), perturbs it as one subject's scan (`perturb` of
bench_profile.py: Rician noise at SNR 20, a bias field of 0.2, an extra in-plane blur of
1.2 mm FWHM; `--clean` skips this), thickens it along array axis 2 (the template's axial axis)
with `thicken` of bench_profile.py (box, contiguous: slice k centred at 1 mm index
k t + (t - 1) / 2), keeps the even slices as the input and the odd ones as the truth. The
input is written as NIfTI (voxel 1 x 1 x 2t mm, origin at the first kept slice's centre) and
run through `srgan-tf self-supervised --retrain --target-spacing 2t/8` of this checkout (a
child process, PYTHONPATH = this repository), twice: "defaults" (a NIfTI: only the spacing
known, the command may read a gap from the spectrum) and "--slice-thickness" (t given, as a
DICOM's SliceThickness would). 2t/8 is the x8 model's own grid, and its sample boundaries fall
on the removed slices' edges.

Scoring, on the removed slices with a kept neighbour on both sides: the SR output is averaged
over each removed slice's extent with the box profile (weights = overlap of each output
sample's interval with the slice's extent; output positions from the output NIfTI's affine).
The same averaging applied to the 1 mm volume at 1 mm spacing must reproduce the removed thick
slices (checked every run, the run stops otherwise); a scan of the averaging window shifted by
-2..2 output samples checks the alignment of the output (its best PSNR should be at 0).
Baselines: "linear" = mean of the two neighbouring kept slices; "cubic" = cubic B-spline along
the slice axis through the kept slices (scipy map_coordinates, order 3, mode nearest), at the
removed slice's centre. PSNR over all scored voxels with data range = max - min of the truth
(the removed slices scored); masked PSNR within truth > 10 % of its 99.5th percentile. No
method is clipped here (the command clips its output to the input's range itself).

Prints a markdown table (PSNR, masked PSNR, gain over linear, seconds per run), the slice
profile each run chose, and writes OUT/results.json (rows of earlier runs into the same OUT are
kept unless the same case is run again). numpy/scipy/nibabel besides the command and
the project's PSNR (`evaluation.metrics.psnr`).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPOSITORY), str(Path(__file__).resolve().parent)]
from bench_profile import perturb, thicken  # noqa: E402  (benchmarks/bench_profile.py)
from srgan_tf.evaluation.metrics import psnr  # noqa: E402  (the project's PSNR, this checkout's)

THICK_AXIS = 2  # the MNI152 template's axial axis
SNR, BIAS, INPLANE_FWHM, SEED = 20, 0.2, 1.2, 1
MODEL_FACTOR = 8  # target spacing = kept spacing / 8: the x8 model's own grid
DEFAULT_CASES = (6.0, 13.0)  # kept spacings (mm); slices of half that
VARIANTS = (("defaults", []), ("--slice-thickness", ["--slice-thickness"]))
TARGETS_DB = {6.0: 1.5, 13.0: 1.0}  # the project's targets: gain over linear at these spacings
SHIFTS = (-2, -1, 0, 1, 2)  # alignment scan, in output samples


class BenchError(Exception):
    """Bad input: one line, exit status 2."""


def box_weights(positions, step, low, high):
    """Weights of samples at `positions` (each standing for [p - step/2, p + step/2]) that
    average over [low, high]: the overlap of each interval with it, normalised; BenchError when
    the samples do not cover it."""
    positions = np.asarray(positions, np.float64)
    overlap = np.clip(np.minimum(positions + step / 2, high) - np.maximum(positions - step / 2, low), 0, None)
    if not math.isclose(overlap.sum(), high - low, rel_tol=1e-6, abs_tol=1e-9):
        raise BenchError(f"the output samples ({positions[0]:.4g}..{positions[-1]:.4g} mm every {step:.4g} mm) "
                         f"do not cover the slice extent {low:.4g}..{high:.4g} mm")
    return overlap / overlap.sum()


def slab_average(volume, positions, step, extents, axis=THICK_AXIS):
    """`volume` averaged along `axis` over each (low, high) of `extents`: box profile on the
    volume's own samples (their positions in mm along `axis`, spacing `step`)."""
    weights = np.stack([box_weights(positions, step, low, high) for low, high in extents])
    moved = np.moveaxis(np.asarray(volume, np.float64), axis, 0)
    return np.moveaxis(np.tensordot(weights, moved, axes=(1, 0)), 0, axis)


def cubic_midpoints(kept, axis=THICK_AXIS):
    """Cubic B-spline along `axis` through the kept slices, at index j + 0.5 for each gap j."""
    from scipy import ndimage

    moved = np.moveaxis(np.asarray(kept, np.float64), axis, 0)
    count, rest = moved.shape[0], moved.shape[1:]
    flat = moved.reshape(count, -1)
    rows, cols = np.meshgrid(np.arange(count - 1) + 0.5, np.arange(flat.shape[1]), indexing="ij")
    out = ndimage.map_coordinates(flat, [rows, cols], order=3, mode="nearest")
    return np.moveaxis(out.reshape((count - 1,) + rest), 0, axis)


def load_template(path):
    import nibabel

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--template {path}: no such file")
    try:
        image = nibabel.load(str(path))
        volume = np.asarray(image.dataobj, np.float32)
    except Exception as error:  # nibabel raises many kinds on unreadable files
        raise BenchError(f"--template {path}: not a readable NIfTI ({type(error).__name__}: {error})") from None
    if volume.ndim != 3:
        raise BenchError(f"--template {path}: expected a 3-D volume, found shape {volume.shape}")
    zooms = np.asarray(image.header.get_zooms()[:3], np.float64)
    if not np.allclose(zooms, 1.0, atol=0.01):
        raise BenchError(f"--template {path}: expected 1 mm isotropic voxels, found {tuple(zooms)} mm")
    if not np.isfinite(volume).all() or volume.max() <= volume.min():
        raise BenchError(f"--template {path}: non-finite or constant intensities")
    return volume


def check_cases(spacings, depth):
    for spacing in spacings:
        if not (math.isfinite(spacing) and spacing > 0):
            raise BenchError(f"--case {spacing:g}: a kept slice spacing in mm must be > 0")
        if spacing / MODEL_FACTOR < 0.5:
            raise BenchError(f"--case {spacing:g}: the output spacing {spacing / MODEL_FACTOR:g} mm would be "
                             "finer than half the 1 mm pixel (the command refuses it); use >= 4 mm")
        if int(depth // (spacing / 2)) < 5:
            raise BenchError(f"--case {spacing:g}: {depth} mm along axis {THICK_AXIS} hold fewer than 5 slices "
                             f"of {spacing / 2:g} mm")


def make_case(volume, spacing):
    """(thickness, thick series, kept, removed, extents of the removed slices in mm, centre of
    the first kept slice in mm), mm = 1 mm voxel index along the thick axis."""
    t = spacing / 2
    thick = thicken(volume, THICK_AXIS, "box", t, t)
    kept = np.take(thick, np.arange(0, thick.shape[THICK_AXIS], 2), axis=THICK_AXIS)
    kept_count = kept.shape[THICK_AXIS]
    # removed slice 2j + 1 lies between kept j and j + 1: scored when j + 1 was kept
    removed_index = np.arange(1, 2 * kept_count - 1, 2)
    removed = np.take(thick, removed_index, axis=THICK_AXIS)
    centres = removed_index * t + (t - 1) / 2
    extents = [(c - t / 2, c + t / 2) for c in centres]
    return t, thick, kept, removed, extents, (t - 1) / 2


def write_input(kept, spacing, first_centre, path):
    import nibabel

    affine = np.diag([1.0, 1.0, spacing, 1.0])
    affine[THICK_AXIS, 3] = first_centre
    image = nibabel.Nifti1Image(np.ascontiguousarray(kept, np.float32), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units(xyz="mm")
    nibabel.save(image, str(path))
    return affine


def read_output(path, input_affine, in_plane_shape):
    """(SR array, slice positions in mm, slice step in mm) from the output NIfTI, checked to be
    on the input's in-plane grid with the thick axis unchanged."""
    import nibabel

    image = nibabel.load(str(path))
    affine = np.asarray(image.affine, np.float64)
    array = np.asarray(image.get_fdata(dtype=np.float32))
    others = [a for a in range(3) if a != THICK_AXIS]
    same_plane = (np.allclose(affine[:3, others], input_affine[:3, others], atol=1e-4)
                  and np.allclose(affine[others, 3], input_affine[others, 3], atol=1e-4)
                  and np.allclose(affine[others, THICK_AXIS], 0, atol=1e-6)
                  and tuple(array.shape[a] for a in others) == tuple(in_plane_shape))
    if not same_plane:
        raise BenchError(f"{path}: output grid is not the input's in-plane grid (affine {affine.round(4).tolist()}, "
                         f"shape {array.shape})")
    step = float(affine[THICK_AXIS, THICK_AXIS])
    positions = affine[THICK_AXIS, 3] + step * np.arange(array.shape[THICK_AXIS])
    return array, positions, step


def run_command(input_path, output_path, work_dir, target, extra, log_path):
    command = [sys.executable, "-m", "srgan_tf.cli", "self-supervised", "--input", str(input_path),
               "--output", str(output_path), "--work-dir", str(work_dir), "--retrain",
               "--target-spacing", f"{target:.10g}", *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPOSITORY)}
    start = time.perf_counter()
    with open(log_path, "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, text=True,
                                   env=env, cwd=REPOSITORY)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        tail = Path(log_path).read_text().strip().splitlines()[-3:]
        return None, seconds, f"exit {completed.returncode}: " + " / ".join(tail)
    return json.loads((Path(work_dir) / "summary.json").read_text()), seconds, None


def scores(truth, estimate, data_range, mask, linear=None):
    row = {"psnr": psnr(truth, estimate, data_range), "psnr_mask": psnr(truth, estimate, data_range, mask=mask)}
    if linear is not None:
        row["gain"] = row["psnr"] - linear["psnr"]
        row["gain_mask"] = row["psnr_mask"] - linear["psnr_mask"]
    return row


def run_case(volume, spacing, data, out):
    name = f"{data}_{spacing:g}mm"
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    t, thick, kept, removed, extents, first_centre = make_case(volume, spacing)
    # the scorer's averaging on the 1 mm volume itself must give the removed thick slices
    check = slab_average(volume, np.arange(volume.shape[THICK_AXIS], dtype=np.float64), 1.0, extents)
    check_error = float(np.abs(check - removed).max())
    scale = float(removed.max() - removed.min())
    if check_error > 1e-5 * scale:
        raise BenchError(f"{name}: the box averaging does not reproduce the removed slices "
                         f"(max |difference| {check_error:.3g} of range {scale:.3g})")
    input_path = folder / "thick.nii.gz"
    input_affine = write_input(kept, spacing, first_centre, input_path)
    data_range = float(removed.max() - removed.min())
    mask = removed > 0.1 * np.percentile(removed, 99.5)
    linear = (np.take(kept, np.arange(len(extents)), axis=THICK_AXIS)
              + np.take(kept, np.arange(1, len(extents) + 1), axis=THICK_AXIS)) / 2
    base = {"data": data, "spacing_mm": spacing, "thickness_mm": t, "kept_slices": int(kept.shape[THICK_AXIS]),
            "scored_slices": len(extents), "data_range": data_range, "data_range_of": "truth max - min",
            "mask_fraction": float(mask.mean()), "averaging_check_max_abs_error": check_error}
    linear_scores = scores(removed, linear, data_range, mask)
    rows = [{**base, "method": "linear", **linear_scores, "gain": 0.0, "gain_mask": 0.0},
            {**base, "method": "cubic", **scores(removed, cubic_midpoints(kept), data_range, mask, linear_scores)}]
    target = spacing / MODEL_FACTOR
    for variant, flags in VARIANTS:
        extra = [flags[0], f"{t:g}"] if flags else []
        label = f"srgan-tf {variant}"
        print(f"[{name}] {label}: running (target spacing {target:g} mm)...", flush=True)
        summary, seconds, error = run_command(input_path, folder / f"sr_{variant.strip('-')}.nii.gz",
                                              folder / f"work_{variant.strip('-')}", target, extra,
                                              folder / f"run_{variant.strip('-')}.log")
        row = {**base, "method": label, "seconds": round(seconds, 1)}
        if error:
            print(f"[{name}] {label}: FAILED {error}", flush=True)
            rows.append({**row, "error": error})
            continue
        sr, positions, step = read_output(summary["output"], input_affine, kept.shape[:THICK_AXIS])
        averaged = slab_average(sr, positions, step, extents)
        row.update(scores(removed, averaged, data_range, mask, linear_scores))
        alignment = {}
        for shift in SHIFTS:
            try:
                moved = slab_average(sr, positions, step, [(lo + shift * step, hi + shift * step)
                                                           for lo, hi in extents])
                alignment[shift] = round(psnr(removed, moved, data_range), 3)
            except BenchError:
                alignment[shift] = None
        kept_extents = [(c - t / 2, c + t / 2) for c in first_centre + spacing * np.arange(kept.shape[THICK_AXIS])]
        kept_back = slab_average(sr, positions, step, kept_extents)
        choice = summary.get("slice_profile_choice") or {}
        row.update({
            "output_spacing_mm": step, "output_first_mm": float(positions[0]), "output_slices": int(positions.size),
            "alignment_psnr_by_shift": {str(k): v for k, v in alignment.items()},
            "kept_slices_psnr": psnr(kept, kept_back, float(kept.max() - kept.min())),
            "slice_profile": summary["slice_profile"], "slice_profile_reason": summary["slice_profile_reason"],
            "slice_profile_decision": choice.get("decision"),
            "spectrum_profile": (choice.get("spectrum") or {}).get("profile"),
            "thickness_source": summary["acquisition"].get("thickness_source"),
            "command_seconds": summary["seconds"]})
        print(f"[{name}] {label}: {row['psnr']:.2f} dB ({row['gain']:+.2f} over linear), profile "
              f"{row['slice_profile']['shape']} {row['slice_profile']['fwhm_mm']:.2f} mm, {seconds:.0f} s", flush=True)
        rows.append(row)
    return rows


def print_tables(rows):
    print("\n| case | spacing | method | PSNR (dB) | masked PSNR (dB) | gain over linear (dB) | masked gain (dB) | s |")
    print("|---" * 8 + "|")
    for row in rows:
        case = f"{row['thickness_mm']:g} mm slices, {row['data']}"
        if "error" in row:
            print(f"| {case} | {row['spacing_mm']:g} mm | {row['method']} | failed: {row['error']} | | | | "
                  f"{row['seconds']:.0f} |")
            continue
        print(f"| {case} | {row['spacing_mm']:g} mm | {row['method']} | {row['psnr']:.2f} | {row['psnr_mask']:.2f} | "
              f"{row['gain']:+.2f} | {row['gain_mask']:+.2f} | "
              + (f"{row['seconds']:.0f}" if "seconds" in row else "-") + " |")
    runs = [row for row in rows if "slice_profile" in row]
    if runs:
        print("\n| case | spacing | run | profile chosen | decision | spectrum | best window shift | kept-slice PSNR |")
        print("|---" * 8 + "|")
        for row in runs:
            shifts = {int(k): v for k, v in row["alignment_psnr_by_shift"].items() if v is not None}
            spectrum = row["spectrum_profile"]
            print(f"| {row['thickness_mm']:g} mm slices, {row['data']} | {row['spacing_mm']:g} mm | {row['method']} | "
                  f"{row['slice_profile']['shape']} {row['slice_profile']['fwhm_mm']:.2f} mm | "
                  f"{row['slice_profile_decision']} | "
                  + (f"{spectrum['shape']} {spectrum['fwhm_mm']:.2f} mm" if spectrum else "-")
                  + f" | {max(shifts, key=shifts.get):+d} | {row['kept_slices_psnr']:.2f} |")
    for row in runs:
        goal = TARGETS_DB.get(row["spacing_mm"])
        if goal is not None:
            print(f"target +{goal:g} dB at {row['spacing_mm']:g} mm ({row['data']}, {row['method']}): "
                  f"{row['gain']:+.2f} dB, {'met' if row['gain'] >= goal else 'not met'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--template", required=True, help="a 1 mm isotropic NIfTI (MNI152 T1)")
    parser.add_argument("--out", required=True, help="folder for inputs, outputs, logs and results.json")
    parser.add_argument("--case", type=float, nargs="+", default=list(DEFAULT_CASES),
                        help="kept slice spacings in mm (slices of half that; default: 6 13)")
    parser.add_argument("--clean", action="store_true", help="the unperturbed template instead of the perturbed one")
    args = parser.parse_args(argv)
    try:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise BenchError(f"--out {out}: exists and is not a folder")
        template = load_template(args.template)
        check_cases(args.case, template.shape[THICK_AXIS])
        out.mkdir(parents=True, exist_ok=True)
        data = "clean" if args.clean else "perturbed"
        volume = template if args.clean else perturb(template, THICK_AXIS, SNR, BIAS, INPLANE_FWHM, SEED)
        rows = []
        for spacing in args.case:
            rows.extend(run_case(volume, float(spacing), data, out))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_tables(rows)
    results = out / "results.json"
    earlier = json.loads(results.read_text()).get("rows", []) if results.is_file() else []
    done = {(row["data"], row["spacing_mm"]) for row in rows}
    kept = [row for row in earlier if (row["data"], row["spacing_mm"]) not in done]
    results.write_text(json.dumps({
        "perturbation": {"snr": SNR, "bias": BIAS, "inplane_fwhm_mm": INPLANE_FWHM, "seed": SEED},
        "thick_axis": THICK_AXIS, "template": str(Path(args.template).resolve()), "rows": kept + rows},
        indent=1, default=float))
    print(f"\nresults: {results}")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
