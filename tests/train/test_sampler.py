"""The length-bucketed training order: a permutation, deterministic per (seed, epoch), little padding."""

from __future__ import annotations

import numpy as np
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from medtune.train.sampler import LengthBucketSampler, padding_fraction


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in np.clip(rng.lognormal(np.log(300), 0.75, n), 60, 1024)]


def test_every_sample_exactly_once_and_deterministic():
    lengths = _lengths(203)
    s = LengthBucketSampler(lengths, batch_size=4, seed=7, bucket_batches=8)
    first = list(s)
    assert sorted(first) == list(range(203))
    assert list(LengthBucketSampler(lengths, batch_size=4, seed=7, bucket_batches=8)) == first
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(203)) and second != first
    assert list(LengthBucketSampler(lengths, batch_size=4, seed=8, bucket_batches=8)) != first


def test_order_ignores_the_global_rng():
    lengths = _lengths(50)
    torch.manual_seed(1)
    a = list(LengthBucketSampler(lengths, 4))
    torch.manual_seed(2)
    assert list(LengthBucketSampler(lengths, 4)) == a


def test_batches_are_sorted_groups_longest_first_short_batch_last():
    lengths = _lengths(30)
    batches = LengthBucketSampler(lengths, batch_size=4).batches()
    assert [len(b) for b in batches] == [4] * 7 + [2]
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    # One bucket holds all 30 samples: the batches are consecutive slices of the length order.
    ranks = {i: r for r, i in enumerate(sorted(range(30), key=lambda i: -lengths[i]))}
    for b in batches:
        rs = sorted(ranks[i] for i in b)
        assert rs == list(range(rs[0], rs[0] + len(b)))


def test_consecutive_stream_slices_are_the_batches():
    # The DataLoader cuts the index stream every batch_size indices: those slices must be the batches.
    lengths = _lengths(37)
    s = LengthBucketSampler(lengths, batch_size=4)
    stream = list(s)
    assert [stream[i : i + 4] for i in range(0, 37, 4)] == s.batches()


def test_less_padding_than_transformers_length_grouping():
    lengths = _lengths(32)
    ours = padding_fraction(LengthBucketSampler(lengths, 4).batches(), lengths)
    g = torch.Generator().manual_seed(0)
    theirs_stream = list(LengthGroupedSampler(4, lengths=lengths, generator=g))
    theirs = padding_fraction([theirs_stream[i : i + 4] for i in range(0, 32, 4)], lengths)
    assert ours < 0.2
    assert ours < theirs / 2
