"""Patient-level train/test split: every series of a patient lands on the same side."""
from typing import Dict, Iterable, List

import numpy as np


def split_patients(patient_ids: Iterable[str], test_fraction: float = 0.1,
                   seed: int = 0) -> Dict[str, List[str]]:
    """Deterministic split of patients into train and test.

    The result depends only on the set of ids and the seed (not on their order). With two
    or more patients and `test_fraction > 0`, at least one patient is held out and at least
    one is kept for training; `test_fraction == 0` holds out nobody.

    Args:
        patient_ids: patient ids (duplicates are ignored).
        test_fraction: share of patients held out, in [0, 1).
        seed: seed of the shuffle.

    Returns:
        {"train": sorted ids, "test": sorted ids}.

    Example:
        >>> split_patients(["A", "B", "C", "D"], test_fraction=0.25, seed=0)["test"]
        ['C']
    """
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1). Received: {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: {seed!r}")
    patients = sorted(set(str(p) for p in patient_ids))
    count = len(patients)
    test_count = 0
    if count >= 2 and test_fraction > 0:
        test_count = min(max(1, int(test_fraction * count + 0.5)), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    test = {patients[i] for i in order[:test_count]}
    return {"train": [p for p in patients if p not in test], "test": sorted(test)}
