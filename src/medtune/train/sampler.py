"""Length-bucketed training order: batches of similar length, so little of each step is spent on padding.

transformers' ``LengthGroupedSampler`` sorts within mega-batches of ``min(n // (4 x batch), 50) x batch``
samples. On the few hundred samples of a medical SFT set that is 8-70 samples per mega-batch, and
its trick of swapping the longest sample to the front drops it into a batch of short ones: a quarter to
a half of a step's tokens can be padding. Here the mega-batches are large (``bucket_batches`` batches),
the sorted batches are shuffled across the whole epoch (so the loss curve is not ordered by length), and
the batch that holds the longest sample goes first (an out-of-memory error shows up in the first step,
not after an hour). The order depends only on ``seed`` and the epoch, never on the global RNG: a resumed
run replays exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketSampler(Sampler[int]):
    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int = 42, bucket_batches: int = 64
    ) -> None:
        if batch_size < 1 or bucket_batches < 1:
            raise ValueError("batch_size and bucket_batches must be at least 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.bucket = batch_size * bucket_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in training order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        batches: list[list[int]] = []
        for start in range(0, len(order), self.bucket):
            bucket = sorted(order[start : start + self.bucket], key=lambda i: -self.lengths[i])
            batches += [bucket[i : i + self.batch_size] for i in range(0, len(bucket), self.batch_size)]
        # A short final batch would fall into the middle once shuffled; the DataLoader then splits the
        # index stream at different places and batches mix lengths again. Keep it last.
        tail = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        if batches:
            longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
            batches.insert(0, batches.pop(longest))
        batches += tail
        return batches

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of the tokens of right-padded batches that are padding."""
    computed = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / computed if computed else 0.0
