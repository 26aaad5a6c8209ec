"""Throughput of `srgan-tf prepare`: synthetic uncompressed DICOM tree -> HDF5 slice cache.

Run: python benchmarks/bench_prepare.py [--patients 4 --slices 26 --size 320 --repeats 3]
Prints JSON {"prepare_slices_per_s": ..., "slices": ..., "seconds": ...} for the fastest of
`--repeats` builds of the same tree (other processes on a shared machine only slow runs down),
plus every run's throughput and the process CPU time per slice.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install
from srgan_tf.data.slice_cache.prepare import build_cache
from srgan_tf.io.dicom_write import write_dicom_series
from srgan_tf.io.volume import Volume


def write_tree(root: Path, patients: int, slices: int, size: int, seed: int = 0) -> None:
    """TCIA-like tree root/<patient>/study/t2/*.dcm of random, rescaled uint16 slices."""
    rng = np.random.default_rng(seed)
    for index in range(patients):
        patient = f"BENCH-{index:04d}"
        array = rng.uniform(0.0, 1000.0, (slices, size, size)).astype(np.float32)
        volume = Volume(array, spacing=(3.0, 0.5, 0.5), patient_id=patient,
                        source_tags={"PatientID": patient})
        write_dicom_series(volume, root / patient / "study" / "t2", derived=False,
                           series_description="t2_tse_tra")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--slices", type=int, default=26)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dicom"
        write_tree(root, args.patients, args.slices, args.size)
        for _ in range(args.repeats):
            cpu = time.process_time()
            summary = build_cache(root, Path(tmp) / "cache.h5", progress=False)
            runs.append((summary, time.process_time() - cpu))
    best, cpu = max(runs, key=lambda run: run[0].slices_per_second)
    print(json.dumps({"prepare_slices_per_s": round(best.slices_per_second, 1),
                      "slices": best.slices, "seconds": round(best.seconds, 3),
                      "runs_slices_per_s": [round(run.slices_per_second, 1) for run, _ in runs],
                      "cpu_ms_per_slice": round(1000 * cpu / best.slices, 2)}))


if __name__ == "__main__":
    main()
