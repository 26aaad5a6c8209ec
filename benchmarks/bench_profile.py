"""Slice-profile estimate on real MR made to look like single-subject thick-slice scans.

    python benchmarks/bench_profile.py --template mni152.nii.gz            # the whole table
    python benchmarks/bench_profile.py --template mni152.nii.gz --case 3 5  # some rows
    python benchmarks/bench_profile.py --template mni152.nii.gz --timing    # seconds, 26x384x384
    python benchmarks/bench_profile.py --template mni152.nii.gz --sweep     # 192 cases, by group

Each case takes a 1 mm isotropic volume (e.g. nilearn's MNI152 2009a T1 template), perturbs it
as one subject's scan would differ from the template (Rician noise at an SNR, a smooth
multiplicative bias field, extra Gaussian blur across the thick axis: a coarser native in-plane
resolution), then thickens it along one array axis with a known profile (box or Gaussian),
thickness and slice spacing (non-integer factors, gaps). The perturbation and thickening are
this file's own code, independent of the package's degradation. Printed per case: the truth,
the spectral estimate (and the in-plane direction whose model gave it), the header-informed
choices (a NIfTI's spacing as the prior, with the decision taken; a DICOM-like SliceThickness
given as the prior) and the error of each in the profile's standard deviation, the one width a
spectrum pins down whatever the shape; last, the worst and median |error| per column.

`--sweep` runs a grid instead of the table, so that no conclusion rests on 18 hand-picked cases:
every profile of SWEEP_PROFILES (the realmr kit's box and Gaussian at 4 mm, gaps, Gaussians whose
FWHM is their spacing) along each array axis, under each of SWEEP_PERTURBATIONS, with two noise
seeds the table does not use; then the same summary per profile and per thick axis.
numpy/scipy/nibabel only besides the estimator.
"""
import argparse
import math
import sys
import time

import numpy as np
from scipy import ndimage, special

# (thick axis, shape, thickness mm, spacing mm, SNR, bias, extra in-plane FWHM mm, seed)
CASES = [
    (2, "box", 4.0, 4.0, 0, 0.0, 0.0, 0),
    (2, "box", 4.0, 4.0, 20, 0.2, 1.2, 1),
    (2, "gaussian", 4.0, 4.0, 20, 0.2, 1.2, 2),
    (0, "box", 4.0, 4.0, 15, 0.2, 1.0, 3),
    (1, "box", 4.0, 4.0, 30, 0.1, 1.3, 4),
    (2, "box", 2.0, 2.0, 20, 0.2, 1.2, 5),
    (0, "gaussian", 2.5, 2.5, 40, 0.1, 1.0, 6),
    (1, "box", 3.3, 3.3, 20, 0.2, 1.1, 7),
    (2, "box", 6.0, 6.0, 20, 0.2, 1.2, 8),
    (0, "box", 8.0, 8.0, 10, 0.3, 1.3, 9),
    (2, "gaussian", 5.5, 5.5, 40, 0.1, 1.0, 10),
    (1, "gaussian", 7.2, 7.2, 10, 0.3, 1.3, 11),
    (2, "box", 10.0, 10.0, 20, 0.2, 1.2, 12),
    (2, "box", 4.0, 8.0, 20, 0.2, 1.2, 13),       # gap: thickness / spacing 0.5
    (0, "box", 5.0, 6.5, 20, 0.2, 1.1, 14),       # 0.77
    (1, "gaussian", 3.0, 4.0, 30, 0.1, 1.0, 15),  # 0.75
    (2, "box", 3.0, 6.0, 10, 0.3, 1.3, 16),       # 0.5, low SNR
    (0, "box", 6.5, 7.0, 15, 0.2, 1.2, 17),       # 0.93
]
# the sweep: (shape, thickness mm, spacing mm) x thick axis x (SNR, extra in-plane FWHM mm) x seed,
# bias 0.2 throughout
SWEEP_PROFILES = [("box", 4.0, 4.0), ("gaussian", 4.0, 4.0), ("box", 3.0, 4.0), ("gaussian", 3.0, 4.0),
                  ("box", 5.0, 5.0), ("gaussian", 5.0, 5.0), ("box", 2.5, 2.5), ("gaussian", 6.0, 6.0)]
SWEEP_PERTURBATIONS = [(10, 1.3), (20, 1.0), (40, 1.2), (25, 0.0)]
SWEEP_SEEDS = (11, 12)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def sweep_cases():
    """The sweep's rows, in the CASES layout."""
    return [(axis, shape, thickness, spacing, snr, 0.2, blur, seed)
            for shape, thickness, spacing in SWEEP_PROFILES for axis in range(3)
            for snr, blur in SWEEP_PERTURBATIONS for seed in SWEEP_SEEDS]


def sigma_mm(shape, width):
    return width / math.sqrt(12.0) if shape == "box" else width / FWHM_PER_SIGMA


def perturb(volume, thick_axis, snr, bias, inplane_fwhm, seed):
    """Blur across the thick axis, a smooth bias field, Rician noise (as the realmr kit's
    perturb.py, with the blur on the two axes other than `thick_axis`)."""
    rng = np.random.default_rng(seed)
    out = volume.astype(np.float64)
    if inplane_fwhm > 0:
        sigma = [0.0 if a == thick_axis else inplane_fwhm / FWHM_PER_SIGMA for a in range(3)]
        out = ndimage.gaussian_filter(out, sigma, mode="nearest")
    if bias > 0:
        grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in out.shape], indexing="ij", sparse=True)
        terms = list(grids) + [grids[i] * grids[j] for i in range(3) for j in range(i, 3)]
        field = sum(rng.uniform(-1, 1) * t for t in terms)
        out = out * (1.0 + bias * field / max(np.abs(field).max(), 1e-12))
    if snr > 0:
        sigma = float(out[out > 0.1 * np.percentile(out, 99.5)].mean()) / snr
        out = np.hypot(out + rng.normal(0, sigma, out.shape), rng.normal(0, sigma, out.shape))
    return out.astype(np.float32)


def thicken(volume, axis, shape, thickness, spacing):
    """Thick slices of `thickness` mm every `spacing` mm along `axis` of a 1 mm volume: slice k
    centred at k * spacing + (spacing - 1) / 2, weights = the profile integrated over each voxel."""
    size = volume.shape[axis]
    count = int(size // spacing)
    centres = np.arange(count) * spacing + (spacing - 1) / 2.0
    edges = np.arange(size + 1) - 0.5
    distance = edges[None, :] - centres[:, None]
    if shape == "box":
        cumulative = np.clip(distance + thickness / 2.0, 0.0, thickness)
    else:
        cumulative = special.erf(distance / (thickness / FWHM_PER_SIGMA * math.sqrt(2.0)))
    weights = np.diff(cumulative, axis=1)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.moveaxis(np.tensordot(weights, np.moveaxis(volume, axis, 0), axes=(1, 0)), 0, axis)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--template", required=True, help="a 1 mm isotropic NIfTI (MNI152 T1)")
    parser.add_argument("--case", type=int, nargs="*", help="row numbers to run (default: all)")
    parser.add_argument("--timing", action="store_true",
                        help="only time the estimate on a clinical-size volume: 26 slices of 7 mm, "
                             "384x384 in-plane (the template perturbed, thickened, resampled)")
    parser.add_argument("--sweep", action="store_true",
                        help="run the sweep grid (SWEEP_PROFILES x axes x SWEEP_PERTURBATIONS x seeds) "
                             "instead of the table, summarised per profile and per axis")
    parser.add_argument("--options", default="{}",
                        help='estimate_slice_profile keywords as JSON, e.g. \'{"noise_floor": true}\'')
    args = parser.parse_args(argv)
    import json

    options = json.loads(args.options)
    import nibabel

    from srgan_tf.data.degradation.profile_choice import choose_slice_profile
    from srgan_tf.data.degradation.profile_estimate import estimate_slice_profile

    template = np.asarray(nibabel.load(args.template).dataobj, np.float32)
    if args.timing:
        return _timing(template, estimate_slice_profile)
    print("| # | thick axis | truth | spacing | SNR | bias | extra in-plane FWHM | spectrum | in-plane lines | +- "
          "| error | NIfTI (spacing prior) | decision | error | DICOM (SliceThickness prior) | error | s |")
    print("|---" * 17 + "|")
    errors, groups = {}, {}
    for number, (axis, shape, thickness, spacing, snr, bias, blur, seed) in enumerate(
            sweep_cases() if args.sweep else CASES):
        if args.case and number not in args.case:
            continue
        truth = sigma_mm(shape, thickness)
        thick = thicken(perturb(template, axis, snr, bias, blur, seed), axis, shape, thickness, spacing)
        first = np.moveaxis(thick, axis, 0)
        start = time.perf_counter()
        estimate = estimate_slice_profile(first, (spacing, 1.0, 1.0), **options)
        seconds = time.perf_counter() - start
        nifti = choose_slice_profile(first, (spacing, 1.0, 1.0), estimate=estimate)
        dicom = choose_slice_profile(first, (spacing, 1.0, 1.0), estimate=estimate,
                                     header_thickness=thickness)
        cells = []
        for name, profile in (("spectrum", estimate.profile), ("nifti", nifti.profile),
                              ("dicom", dicom.profile)):
            error = 100 * (profile.sigma_mm / truth - 1)
            errors.setdefault(name, []).append(abs(error))
            for group in (f"{shape} {thickness:g} mm / {spacing:g} mm", f"thick axis {axis}"):
                groups.setdefault(group, {}).setdefault(name, []).append(abs(error))
            cells.append(f"{profile.shape} {profile.fwhm_mm:.2f} mm" +
                         (f" | {getattr(estimate, 'inplane_direction', '-')} | {nifti.spectrum_uncertainty:.0%}"
                          if name == "spectrum" else "") +
                         (f" | {nifti.decision}" if name == "nifti" else "") +
                         f" | {error:+.1f} %")
        print(f"| {number} | {axis} | {shape} {thickness:g} mm | {spacing:g} mm | {snr or '-'} | "
              f"{bias or '-'} | {blur or '-'} | " + " | ".join(cells) + f" | {seconds:.1f} |", flush=True)
    print("worst |error| in standard deviation: " + ", ".join(f"{k} {max(v):.1f} %" for k, v in errors.items()))
    print("median |error| in standard deviation: " + ", ".join(f"{k} {np.median(v):.1f} %"
                                                             for k, v in errors.items()))
    print("cases within +-10 %: " + ", ".join(f"{k} {sum(e <= 10.0 for e in v)}/{len(v)}"
                                            for k, v in errors.items()))
    if args.sweep:
        print("\n| group | cases | spectrum: worst / median / within +-10 % | NIfTI | DICOM |\n|---|---|---|---|---|")
        for group, columns in sorted(groups.items(), key=lambda item: item[0].startswith("thick axis")):
            print(f"| {group} | {len(columns['spectrum'])} | " + " | ".join(
                f"{max(v):.1f} % / {np.median(v):.1f} % / {sum(e <= 10.0 for e in v)}" for v in columns.values()) + " |")


def _timing(template, estimate_slice_profile, repeats=3):
    thick = thicken(perturb(template, 2, 20, 0.2, 1.2, 1), 2, "box", 7.0, 7.0)[:, :, :26]
    rows, cols = thick.shape[:2]
    volume = np.ascontiguousarray(np.moveaxis(ndimage.zoom(thick, (384 / rows, 384 / cols, 1), order=1), 2, 0))
    spacing = (7.0, rows / 384, cols / 384)  # the template's 1 mm pixels over 384
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        estimate = estimate_slice_profile(volume, spacing)
        seconds.append(time.perf_counter() - start)
    print(f"estimate on {volume.shape} (slice, row, col) at {spacing[0]:g} x {spacing[1]:.3f} x {spacing[2]:.3f} "
          f"mm: {estimate.profile.describe()}; seconds per run {', '.join(f'{s:.2f}' for s in seconds)} "
          f"(median {np.median(seconds):.2f})")


if __name__ == "__main__":
    sys.exit(main())
