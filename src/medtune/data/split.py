"""The train/validation split: deterministic, hash-based, and free of near-duplicate leakage.

Records whose questions are near-duplicates form one group, and a group goes to one side as a whole, in
the order of ``split_key`` of its first record. A record without near-duplicate questions is its own group,
so on clean data this is exactly the per-record hash split. After the split an independent audit queries
every validation question against the training questions and moves any match it finds to training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def split_key(record_id: str, seed: int) -> str:
    """Order used for the split: stable across machines and Python versions (unlike hash())."""
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def grouped_split(ids: Sequence[str], group: np.ndarray, seed: int, val_ratio: float) -> np.ndarray:
    """is_val per record. ``group[i]`` is the index of the first record of i's group (``i`` when alone).

    Groups are taken in ``split_key`` order of their first record; a group joins validation only if it
    fits entirely, so validation gets exactly ``round(n * val_ratio)`` records unless groups are huge.
    """
    n = len(ids)
    n_val = max(1, round(n * val_ratio)) if n > 1 else 0
    reps, sizes = np.unique(group, return_counts=True)
    order = sorted(range(len(reps)), key=lambda k: split_key(ids[reps[k]], seed))
    val_rep = np.zeros(n, dtype=bool)
    taken = 0
    for k in order:
        if taken >= n_val:
            break
        if taken + sizes[k] <= n_val:
            val_rep[reps[k]] = True
            taken += int(sizes[k])
    return val_rep[group]
