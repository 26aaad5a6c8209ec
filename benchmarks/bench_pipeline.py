"""Throughput of `make_dataset` (Exp. 2: aniso x4, batch 16, 224x224), in memory and streamed.

Run: python benchmarks/bench_pipeline.py [--cache cache.h5] [--batches 50] [--patch 96]
Without --cache, the built-in sample cache (or, with --synthetic or without
`srgan_tf.data.synthetic.sample`, random integer-valued 26x320x320 volumes) is built in a temp folder.
Prints JSON: delivered slices/s per mode after a warm-up, and the dataset build time.
"""
import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from srgan_tf.config import DataConfig
from srgan_tf.data.pipelines.pipeline import list_candidates, make_dataset


def synthetic_cache(root: Path, patients: int = 8, slices: int = 26, size: int = 320,
                    seed: int = 0) -> Path:
    """Random DICOM-like (integer, smooth + noise) volumes -> NIfTI -> HDF5 cache."""
    from srgan_tf.data.slice_cache.prepare import build_cache
    from srgan_tf.io.nifti import write_nifti
    from srgan_tf.io.volume import Volume

    rng = np.random.default_rng(seed)
    grid = np.linspace(-1, 1, size)
    disc = (grid[None, :] ** 2 + grid[:, None] ** 2) < 0.8  # body outline: air outside
    for index in range(patients):
        array = rng.normal(600.0, 150.0, (slices, size, size)) * disc[None]
        volume = Volume(np.rint(np.clip(array, 0, 4095)).astype(np.float32),
                        spacing=(3.0, 0.5, 0.5), patient_id=f"BENCH-{index:04d}",
                        series_description="t2_tse_tra")
        write_nifti(volume, root / "nifti" / f"BENCH-{index:04d}.nii.gz")
    build_cache(root / "nifti", root / "cache.h5", test_fraction=0.1, progress=False)
    return root / "cache.h5"


def default_cache(root: Path, synthetic: bool):
    """(cache path, kind): the built-in sample when available, else synthetic volumes."""
    try:
        from srgan_tf.data.synthetic.sample import ensure_sample_cache
    except ImportError:
        synthetic = True
    if synthetic:
        return synthetic_cache(root), "synthetic 8 x 26 x 320 x 320"
    return Path(ensure_sample_cache(root, progress=False)), "built-in sample"


def measure(cache: Path, config: DataConfig, batches: int, warmup: int = 5) -> dict:
    start = time.perf_counter()
    dataset = make_dataset(cache, config, split="train", training=True, seed=0)
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    built = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        lr, hr = next(iterator)
    seconds = time.perf_counter() - start
    return {"slices_per_s": round(batches * config.batch_size / seconds, 1),
            "batches": batches, "seconds": round(seconds, 3), "build_and_warmup_s": round(built, 3),
            "lr": "x".join(map(str, lr.shape)), "hr": "x".join(map(str, hr.shape))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="HDF5 slice cache (default: sample or synthetic)")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--synthetic", action="store_true",
                        help="without --cache: random volumes instead of the built-in sample")
    parser.add_argument("--patch", type=int, default=96,
                        help="also measure HR patches of this size (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache, kind = ((Path(args.cache), args.cache) if args.cache
                       else default_cache(Path(tmp), args.synthetic))
        config = DataConfig(mode="aniso", scale=4, hr_size=224, batch_size=16, flips=True)
        runs = {"memory_224": config,
                "streaming_224": dataclasses.replace(config, memory_budget_mb=0)}
        if args.patch:
            runs[f"memory_patch{args.patch}"] = dataclasses.replace(config, patch_size=args.patch)
        results = {name: measure(cache, run, args.batches) for name, run in runs.items()}
        results["train_candidate_slices"] = list_candidates(cache, "train").count
        results["cache"] = kind
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
