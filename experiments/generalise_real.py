"""Generalisation on real MR: train Exp. 2 on some volumes, score through-plane SR on OTHERS.

    python experiments/generalise_real.py --train a.nii.gz b.nii.gz c.nii.gz --test d.nii.gz
    python experiments/generalise_real.py --split mni152_t1_1mm.nii.gz   # one volume only

1. cache: every training volume as `srgan-tf prepare` writes it (its own slices); with
   `--planes all`, an isotropic volume also contributes its coronal and sagittal planes, the
   orientation of the images that through-plane inference sees (height = slice axis);
2. training: `experiments/exp2_aniso.py`'s run (`run_experiment`, no Exp. 2 evaluation) with
   the chosen preset (default quick) and `--content-loss mse`;
3. test: each test volume (isotropic, e.g. 1 mm) cut into x`factor` thick slices (`--profile`,
   default box = mean of `factor` slices; several may be given), brought back with cubic along the slices, the
   pretrained generator (`export_pretrain`) and the final one (`export`) through
   `super_resolve_volume` (the `srgan-tf infer` path), all in [-1, 1] units of the truth;
4. table per test volume: PSNR and HFEN (3-D LoG, sigma 1.5) over the whole field of view,
   SSIM averaged over every coronal and sagittal plane (`factor` px border), background =
   mean |error| outside the dilated head mask in % of the intensity range, and the stripe
   measure: RMS over the slice positions (index mod `factor`, or mod 2) of the mean
   background error at that position, in % (air is flat, so any such pattern is artefact).
   A figure per test volume shows the middle sagittal plane in a 0-20 % window.

`--split VOLUME` is for when only one real volume exists: train on its anterior 55 %
(rows), test on the posterior rest. Same subject, so this is a weak check; say so.
"""
import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from srgan_tf import config as config_lib
from srgan_tf.arguments import add_experiment_arguments, config_from_args
from srgan_tf.data.acquisition import is_isotropic
from srgan_tf.data.degradation.slice_profile import NAMED_SHAPES
from srgan_tf.experiment import run_experiment
from srgan_tf.io.paths_guard import refuse_overwriting_inputs
from srgan_tf.run_directory import RunDirectory

COLUMNS = ("psnr", "ssim", "hfen", "background_pct", "stripe_pct", "stripe2_pct")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", default=[], help="training volumes (NIfTI / DICOM)")
    parser.add_argument("--test", nargs="+", default=[], help="isotropic test volumes")
    parser.add_argument("--split", help="one volume: anterior part trains, posterior part tests")
    parser.add_argument("--planes", choices=("acquired", "all"), default="all",
                        help="all: isotropic training volumes also give coronal, sagittal planes")
    parser.add_argument("--profile", choices=NAMED_SHAPES, nargs="+", default=["box"],
                        help="slice profile(s) of the simulated thick test slices")
    parser.add_argument("--work", default=None, help="folder for the cache and run (default: temp)")
    parser.add_argument("--score-only", action="store_true",
                        help="score the run already in --work (no cache, no training)")
    add_experiment_arguments(parser, "exp2")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.split and not (args.train and args.test):
        parser.error("give --train and --test volumes, or --split VOLUME")
    return args


def _planes(volume, planes: str):
    """(suffix, Volume) of the acquired slices and, for isotropic data, the two other planes."""
    yield "acq", volume
    if planes != "all" or not is_isotropic(volume.spacing):
        return
    for suffix, order in (("cor", (1, 0, 2)), ("sag", (2, 0, 1))):
        spacing = tuple(volume.spacing[k] for k in order)
        direction = np.asarray(volume.direction)[list(order)]
        yield suffix, volume.with_array(np.ascontiguousarray(volume.array.transpose(order)),
                                        spacing=spacing, direction=direction)


def split_volume(path):
    """(train, test) halves of one volume along its rows: anterior 55 % / posterior rest."""
    from srgan_tf.io.reader import read_volume

    volume = read_volume(path)
    cut = int(volume.shape[1] * 0.55)
    origin = np.asarray(volume.origin) + cut * volume.spacing[1] * np.asarray(volume.direction[1])
    train = volume.with_array(np.ascontiguousarray(volume.array[:, :cut]))
    test = volume.with_array(np.ascontiguousarray(volume.array[:, cut:]), origin=tuple(origin))
    return [train], [test]


def build_training_cache(volumes, planes: str, folder: Path) -> Path:
    """The volumes (and their other planes) as NIfTI files, then `prepare`'s cache."""
    from srgan_tf.data.slice_cache.prepare import build_cache
    from srgan_tf.io.nifti import write_nifti

    folder.mkdir(parents=True, exist_ok=True)
    for index, volume in enumerate(volumes):
        for suffix, view in _planes(volume, planes):
            write_nifti(view, folder / f"train{index}_{suffix}.nii.gz")
    cache = folder.parent / "train.h5"
    print(build_cache(folder, cache, series_filter=None, test_fraction=0.0, progress=False).text())
    return cache


def training_config(args, cache: Path, volumes, run_dir: Path) -> config_lib.ExperimentConfig:
    """Exp. 2 config: the preset (default quick), mse content loss, HR size that fits the data."""
    args.cache = str(cache)
    args.preset = args.preset or "quick"
    if getattr(args, "loss.content_loss") is None:
        setattr(args, "loss.content_loss", "mse")
    config = config_from_args(args, "exp2")
    smallest = min(min(view.shape[1:]) for volume in volumes for _, view in _planes(volume, args.planes))
    step = 2 * config.data.scale
    sizes = {}
    if config.data.hr_size > smallest:  # never upsample real slices to reach hr_size
        sizes["hr_size"] = smallest // step * step
        if config.data.patch_size and config.data.patch_size > sizes["hr_size"]:
            sizes["patch_size"] = sizes["hr_size"]
    return config.updated(data=sizes, output_dir=str(run_dir))


def stripe_pct(error: np.ndarray, where: np.ndarray, period: int) -> float:
    """RMS over slice positions (index mod period) of the mean error at that position over the
    voxels `where` (the background: air, whose truth is flat), in % of the range (2)."""
    phase = np.arange(error.shape[0]) % period
    profile = np.array([error[phase == k][where[phase == k]].mean() for k in range(period)])
    return float(np.sqrt(np.mean((profile - profile.mean()) ** 2)) * 50.0)


def score(case, method: str, planes: dict) -> dict:
    """Whole-field-of-view scores of one reconstruction against the truth (see module doc)."""
    from srgan_tf.evaluation import metrics as metrics_lib

    truth, output = case.hr, np.clip(case.outputs[method], -1.0, 1.0)
    error = output - truth
    through = planes[method]["through_plane"]
    background = ~metrics_lib.foreground_mask(truth, dilation=3)
    return {"psnr": metrics_lib.psnr(truth, output),
            "ssim": float(np.mean([p["ssim"] for p in through])),
            "hfen": metrics_lib.hfen_volume(metrics_lib.laplacian_of_gaussian(truth),
                                            metrics_lib.laplacian_of_gaussian(output)),
            "background_pct": float(np.abs(error[background]).mean() * 50.0),
            "stripe_pct": stripe_pct(error, background, case.factor),
            "stripe2_pct": stripe_pct(error, background, 2)}


def save_background_figure(case, methods, path: Path) -> None:
    """Middle sagittal plane of each method in a 0-20 % window (top) and its error in a
    +-2 % window (bottom): stripes in air show here."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    column = case.hr.shape[2] // 2
    panels = [("truth", case.hr)] + [(method, case.outputs[method]) for method in methods]
    figure, axes = pyplot.subplots(2, len(panels), figsize=(3 * len(panels), 6.6))
    for top, bottom, (name, volume) in zip(axes[0], axes[1], panels):
        top.imshow(volume[::-1, :, column], cmap="gray", vmin=-1.0, vmax=-0.6, aspect="auto",
                   interpolation="nearest")  # [-1, -0.6] is 0-20 % of the range
        bottom.imshow((volume - case.hr)[::-1, :, column], cmap="RdBu", vmin=-0.04, vmax=0.04,
                      aspect="auto", interpolation="nearest")
        top.set_title(name)
        top.axis("off")
        bottom.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def evaluate(test_volumes, exports: dict, factor: int, profiles, work: Path) -> dict:
    from srgan_tf.evaluation.throughplane import score_case
    from srgan_tf.evaluation.throughplane_volumes import as_model, reconstruct

    models = {name: as_model(path) for name, path in exports.items()}
    results = {}
    for (index, volume), profile in itertools.product(enumerate(test_volumes), profiles):
        case = reconstruct(volume, models, factor, profile)
        methods = [method for method in case.outputs if method in ("bicubic", *models)]
        case.outputs = {method: case.outputs[method] for method in methods}
        planes = score_case(case, border=factor, min_foreground=0.0, max_planes=48)
        name = f"test{index}-{profile}"
        results[name] = {method: score(case, method, planes) for method in methods}
        save_background_figure(case, methods, work / f"{name}_window0-20.png")
    return results


def table(results: dict) -> str:
    lines = ["| volume | method | PSNR dB | SSIM | HFEN | background % | stripe % (period s) "
             "| stripe % (period 2) |", "|---|---|---|---|---|---|---|---|"]
    for volume, methods in results.items():
        for method, values in methods.items():
            lines.append(f"| {volume} | {method} | {values['psnr']:.2f} | {values['ssim']:.4f} | "
                         f"{values['hfen']:.3f} | {values['background_pct']:.3f} | "
                         f"{values['stripe_pct']:.3f} | {values['stripe2_pct']:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    from srgan_tf.io.reader import read_volume

    args = parse_args(argv)
    refuse_overwriting_inputs([*args.train, *args.test, args.split], {"--work": args.work})
    if args.split:
        train_volumes, test_volumes = split_volume(args.split)
    else:
        train_volumes = [read_volume(path) for path in args.train]
        test_volumes = [read_volume(path) for path in args.test]
    work = Path(args.work or tempfile.mkdtemp(prefix="generalise-"))
    run_dir = work / "run"
    if args.score_only:
        config = config_lib.ExperimentConfig.load(RunDirectory(run_dir).config)
    else:
        cache = build_training_cache(train_volumes, args.planes, work / "train")
        config = training_config(args, cache, train_volumes, run_dir)
        run_experiment(config, resume=args.resume, evaluate=False)
    exports = {"sr_pretrain": RunDirectory(run_dir).export_pretrain, "sr": RunDirectory(run_dir).export}
    exports = {name: path for name, path in exports.items() if path.exists()}
    results = evaluate(test_volumes, exports, config.data.scale, args.profile, work)
    text = table(results)
    (work / "generalisation.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nTrained on {len(train_volumes)} volume(s), tested on {len(test_volumes)} other(s); "
          f"x{config.data.scale} {'/'.join(args.profile)} thick slices; degradation "
          f"{getattr(config.data, 'degradation', 'bicubic')}. Work folder: {work}\n{text}")


if __name__ == "__main__":
    sys.exit(main())
