"""MinHash LSH: estimates match exact Jaccard, planted near-duplicates are found, distinct texts are not."""

import random

import numpy as np
import pytest

from medtune.data.dedup import (
    MinHasher,
    NearDupFinder,
    candidate_pairs,
    components,
    exact_key,
    jaccard,
    optimal_bands,
    shingles,
)

CHARS = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]


def _text(rng, n):
    return "".join(rng.choice(CHARS) for _ in range(n))


def _edit(rng, text, rate):
    out = []
    for ch in text:
        r = rng.random()
        if r < rate / 2:
            out.append(rng.choice(CHARS))
        elif r < rate:
            continue
        else:
            out.append(ch)
    return "".join(out)


def test_exact_key_ignores_whitespace_and_case_only():
    assert exact_key("头疼 三天", "多喝水\n") == exact_key("头疼三天", "多喝水")
    assert exact_key("CT正常", "好") == exact_key("ct正常", "好")
    assert exact_key("头疼", "多喝水") != exact_key("头疼多", "喝水")  # the field boundary counts


def test_signature_agreement_estimates_jaccard():
    rng = random.Random(0)
    hasher = MinHasher(num_perm=128, ngram=3, seed=5)
    errors = []
    for _ in range(150):
        a = _text(rng, rng.randint(30, 300))
        b = _edit(rng, a, rng.uniform(0, 0.3))
        sig = hasher.signatures([a, b])
        errors.append((sig[0] == sig[1]).mean() - jaccard(shingles(a, 3), shingles(b, 3)))
    assert abs(np.mean(errors)) < 0.02  # unbiased
    assert np.mean(np.abs(errors)) < 0.06


def test_signatures_are_deterministic_per_seed_and_ignore_punctuation():
    texts = ["头疼三天了，怎么办？", "发烧 38 度"]
    a = MinHasher(seed=1).signatures(texts)
    assert (a == MinHasher(seed=1).signatures(texts)).all()
    assert (a != MinHasher(seed=2).signatures(texts)).any()
    assert (MinHasher(seed=1).signatures(["头疼三天了怎么办"])[0] == a[0]).all()


def test_planted_near_duplicates_are_found_and_distinct_texts_are_not():
    rng = random.Random(1)
    originals = [_text(rng, rng.randint(60, 250)) for _ in range(300)]
    copies = [(i, _edit(rng, originals[i], 0.02)) for i in rng.sample(range(300), 60)]
    texts = originals + [c for _, c in copies]
    result = NearDupFinder(threshold=0.8, num_perm=128, seed=3).find(texts)
    dropped = set(result.dropped.tolist())
    truly_similar = [
        k for k, (i, c) in enumerate(copies) if jaccard(shingles(c, 3), shingles(originals[i], 3)) >= 0.8
    ]
    found = [k for k in truly_similar if 300 + k in dropped and result.rep[300 + k] == copies[k][0]]
    assert len(found) >= 0.95 * len(truly_similar)
    assert dropped <= {300 + k for k in range(len(copies))}  # no original dropped: no false positive
    k = found[0]
    assert result.partner[300 + k] == copies[k][0] and result.similarity[300 + k] >= 0.8
    assert result.stats["duplicate_pairs"] >= len(found)


def test_empty_texts_never_match_each_other():
    result = NearDupFinder(threshold=0.8).find(["", "。。。", "", "头疼三天了怎么办呢"])
    assert result.dropped.size == 0


def test_short_texts_are_compared_whole():
    result = NearDupFinder(threshold=0.9).find(["头疼", "头疼！", "胃疼"])
    assert result.dropped.tolist() == [1] and result.rep[1] == 0


def test_components_join_chains_to_the_earliest_member():
    rep = components(6, np.array([[4, 5], [1, 4], [2, 3]]))
    assert rep.tolist() == [0, 1, 2, 2, 1, 1]


def test_candidate_pairs_are_linear_in_bucket_size():
    keys = np.zeros((1000, 2), dtype=np.uint64)  # one huge bucket per band
    pairs = candidate_pairs(keys)
    assert len(pairs) < 2 * 1000 and (pairs[:, 0] < pairs[:, 1]).all()


def test_query_finds_the_best_match_per_text():
    finder = NearDupFinder(threshold=0.7, seed=1)
    rng = random.Random(2)
    index_texts = [_text(rng, 80) for _ in range(50)]
    queries = [_edit(rng, index_texts[7], 0.03), _text(rng, 80)]
    rows, hits, sims = finder.query(finder.index(queries), queries, finder.index(index_texts), index_texts)
    assert rows.tolist() == [0] and hits.tolist() == [7] and sims[0] >= 0.7


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_band_settings_reach_the_recall_target(threshold):
    b, r = optimal_bands(threshold, 128)
    assert b * r <= 128
    assert 1 - (1 - threshold**r) ** b >= 0.985
