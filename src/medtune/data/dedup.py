"""Duplicate detection: exact keys on normalised text, and MinHash LSH over character n-grams.

The signatures use one-permutation hashing (Li, Owen and Zhang, 2012) with densification by rotation
(Shrivastava and Li, 2014): every n-gram is hashed once, the hash picks one of ``num_perm`` bins and the
minimum per bin is kept. A bin of two texts agrees with probability equal to their Jaccard similarity,
as with ``num_perm`` independent permutations, but the cost is one hash per n-gram instead of
``num_perm``. Everything runs on numpy arrays over batches of texts, which is what lets a million
records through in seconds on two cores.

Candidates share a bucket in at least one LSH band; each candidate pair is then verified by the share of
equal signature entries, and pairs close to the threshold by the exact n-gram Jaccard similarity, so a
reported duplicate is a real one.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

logger = logging.getLogger(__name__)

_U64 = np.uint64
_MAX32 = np.uint32(0xFFFFFFFF)
# Ignored when comparing texts: whitespace and punctuation (ASCII, general, CJK and full-width forms).
_SKIP_CLASS = (
    r"\s!-/:-@\[-`{-~\u00a0-\u00bf\u2000-\u206f\u2190-\u21ff\u2500-\u257f\u3000-\u303f"
    r"\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\ufe30-\ufe4f"
)
_SKIP_RE = re.compile(f"[{_SKIP_CLASS}]+")


def dedup_text(text: str) -> str:
    """The form texts are compared in: no whitespace or punctuation, lower case."""
    return _SKIP_RE.sub("", text).lower()


def exact_key(*texts: str) -> bytes:
    """8-byte key of the texts up to whitespace and letter case (punctuation width is already unified by
    the cleaning rules); a collision needs ~4e9 distinct records to become likely. Texts that differ in
    punctuation only are caught by the near-duplicate rule, which ignores punctuation."""
    joined = "\x00".join("".join(t.split()).lower() for t in texts)
    return hashlib.blake2b(joined.encode("utf-8"), digest_size=8).digest()


@lru_cache(maxsize=1)
def _skip_table() -> np.ndarray:
    """Per code point (all of Unicode, 1.1 MB): True where dedup_text() drops the character."""
    table = np.zeros(0x110000, dtype=bool)
    for cp in range(0x10000):
        if not 0xD800 <= cp < 0xE000 and _SKIP_RE.fullmatch(chr(cp)):
            table[cp] = True
    return table


def shingles(text: str, n: int) -> set[str]:
    s = dedup_text(text)
    if len(s) <= n:
        return {s} if s else set()
    return {s[i : i + n] for i in range(len(s) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place: spreads every input bit over the whole word."""
    h ^= h >> _U64(30)
    h *= _U64(0xBF58476D1CE4E5B9)
    h ^= h >> _U64(27)
    h *= _U64(0x94D049BB133111EB)
    h ^= h >> _U64(31)
    return h


_GRAM_MUL = _U64(0x9E3779B97F4A7C15)
_DENSE_STEP = np.uint32(0x9E3779B1)
_DONOR_ATTEMPTS = 16  # a 30-n-gram text (23% of 128 bins filled) finds a donor for 98.5% of its empty bins


def _area(y: np.ndarray, x: np.ndarray) -> float:
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum())


def optimal_bands(threshold: float, num_perm: int, recall_at_threshold: float = 0.985) -> tuple[int, int]:
    """(bands, rows), bands * rows <= num_perm: a pair exactly at the threshold becomes a candidate with at
    least ``recall_at_threshold`` probability (pairs above it even more surely), and among such settings the
    one with the fewest false candidates below the threshold. False candidates only cost a vectorised
    verification; a missed pair is a duplicate left in the data."""
    xs = np.linspace(0.0, threshold, 200)
    best, best_fp, best_p = (1, num_perm), float("inf"), -1.0
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p_t = 1 - (1 - threshold**r) ** b
            fp = _area(1 - (1 - xs**r) ** b, xs)
            meets, best_meets = p_t >= recall_at_threshold, best_p >= recall_at_threshold
            # Prefer settings that reach the recall; among them the fewest false candidates; if none
            # reaches it (few permutations), the highest recall.
            better = (meets and (not best_meets or fp < best_fp)) or (not best_meets and p_t > best_p)
            if better:
                best, best_fp, best_p = (b, r), fp, p_t
    return best


class MinHasher:
    """Signatures of shape (n, num_perm), uint32; a row of all 0xFFFFFFFF marks a text with no n-grams."""

    def __init__(self, num_perm: int = 128, ngram: int = 3, seed: int = 1, batch_size: int = 8192) -> None:
        self.num_perm = num_perm
        self.ngram = ngram
        self.seed = _U64(int.from_bytes(hashlib.sha256(f"minhash:{seed}".encode()).digest()[:8], "little"))
        self.batch_size = batch_size
        rng = np.random.default_rng(int(self.seed) % (1 << 32))
        self._donors = rng.integers(0, num_perm, size=(_DONOR_ATTEMPTS, num_perm)).astype(np.int16)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            out[start : start + len(batch)] = self._batch(batch)
        return out

    def _codepoints(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        cp = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        owner = np.repeat(np.arange(len(texts), dtype=np.int32), lens)
        keep = ~_skip_table()[cp]
        cp, owner = cp[keep], owner[keep]
        upper = (cp >= 65) & (cp <= 90)
        cp = np.where(upper, cp + 32, cp)
        return cp.astype(np.uint64), owner

    def _batch(self, texts: Sequence[str]) -> np.ndarray:
        n, k, g = len(texts), self.num_perm, self.ngram
        cp, owner = self._codepoints(texts)
        sig = np.full(n * k, _MAX32, dtype=np.uint32)
        counts = np.bincount(owner, minlength=n)
        if len(cp) >= g:
            m = len(cp) - g + 1
            valid = owner[:m] == owner[g - 1 :]  # the n-gram lies inside one text
            h = cp[:m].copy()
            for j in range(1, g):
                h *= _GRAM_MUL
                h += cp[j : j + m]
            h = h[valid]
            gram_owner = owner[:m][valid]
            self._add(sig, gram_owner, h)
        # Texts shorter than the n-gram size still get one shingle: the whole (normalised) text.
        short = np.flatnonzero((counts > 0) & (counts < g))
        if len(short):
            ends = np.cumsum(counts)
            values = []
            for t in short:
                v = 0
                for c in cp[ends[t] - counts[t] : ends[t]].tolist():
                    v = (v * int(_GRAM_MUL) + c) & 0xFFFFFFFFFFFFFFFF  # the n-gram hash, in Python ints
                values.append(v)
            self._add(sig, short.astype(np.int32), np.array(values, dtype=np.uint64))
        return self._densify(sig.reshape(n, k))

    def _add(self, sig: np.ndarray, owner: np.ndarray, h: np.ndarray) -> None:
        h ^= self.seed
        _mix64(h)
        k = _U64(self.num_perm)
        bins = (((h >> _U64(32)) * k) >> _U64(32)).astype(np.int32)  # uniform in [0, k) without a modulo
        owner = owner * np.int32(self.num_perm)  # batch_size * num_perm stays far below 2**31
        owner += bins
        np.minimum.at(sig, owner, (h & _U64(0xFFFFFFFF)).astype(np.uint32))

    def _densify(self, sig: np.ndarray) -> np.ndarray:
        """Fill the empty bins of each text so that two texts still agree on a bin with probability equal to
        their Jaccard similarity.

        Optimal densification (Shrivastava, 2017): empty bin j takes the value of bin donor(j, t) for the
        first attempt t that hits a non-empty bin; donors are fixed random draws shared by all texts. Unlike
        copying the next non-empty bin (rotation), neighbouring empty bins get independent donors, so
        agreements and disagreements are not clustered and LSH bands behave as with independent
        permutations. Bins still empty after the attempts (very short texts) fall back to rotation."""
        n, k = sig.shape
        empty = sig == _MAX32
        rows = np.flatnonzero(empty.any(axis=1) & ~empty.all(axis=1))  # texts with no n-gram stay empty
        if not len(rows):
            return sig
        part, hole = sig[rows], empty[rows]
        # Bins-major layout: each attempt gathers whole rows, several times faster than gathering columns.
        filled_t = np.ascontiguousarray(~hole.T)
        need_t = ~filled_t
        donor_t = np.tile(np.arange(k, dtype=np.int16)[:, None], (1, len(rows)))
        for d in self._donors:  # attempt t: bin j asks bin d[j]
            ok = filled_t[d]
            ok &= need_t
            np.copyto(donor_t, d[:, None], where=ok)
            need_t ^= ok
            if not need_t.any():
                break
        donor, need = donor_t.T, need_t.T
        out = np.take_along_axis(part, donor, axis=1)
        left = np.flatnonzero(need.any(axis=1))
        if len(left):  # rotation for what is left: next filled bin to the right, offset by the distance
            cols = np.arange(k, dtype=np.int32)
            idx = np.where(hole[left], np.int32(4 * k), cols[None, :])
            nxt = np.minimum.accumulate(np.concatenate([idx, idx + k], axis=1)[:, ::-1], axis=1)[:, ::-1]
            nxt = nxt[:, :k]
            rotated = np.take_along_axis(part[left], nxt % k, axis=1)
            rotated += (nxt - cols[None, :]).astype(np.uint32) * _DENSE_STEP
            sub = out[left]
            sub[need[left]] = rotated[need[left]]
            out[left] = sub
        sig[rows] = out
        return sig

    def text_shingles(self, text: str) -> set[str]:
        return shingles(text, self.ngram)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one bucket key per band of ``rows`` signature entries.

    Band j takes bins j, j + bands, j + 2 * bands ...: after densification neighbouring bins of a short
    text often hold copies of one value, so a band of adjacent bins would depend on one or two n-grams and
    pile unrelated texts into the same bucket (thousands per bucket on 50-character questions)."""
    n = sig.shape[0]
    view = sig[:, : bands * rows].reshape(n, rows, bands)
    keys = np.zeros((n, bands), dtype=np.uint64)
    for j in range(rows):
        keys *= _GRAM_MUL
        keys += view[:, j, :]
    keys += np.arange(bands, dtype=np.uint64)[None, :]  # the same values in two bands are different buckets
    return _mix64(keys)


def candidate_pairs(keys: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(m, 2) int64 pairs (i, j), i < j, that share a bucket in some band. A bucket contributes each member
    paired with its first member and with the member before it: linear in the bucket's size (a bucket of
    thousands of templated texts must not produce millions of pairs), and with union-find afterwards a
    verified chain still joins the whole cluster when the first member is only a chance collision."""
    n, bands = keys.shape
    members = np.arange(n, dtype=np.int64) if valid is None else np.flatnonzero(valid)
    chunks = []
    for b in range(bands):
        col = keys[members, b]
        order = np.argsort(col, kind="stable")
        sk = col[order]
        new = np.empty(len(sk), dtype=bool)
        new[:1] = True
        new[1:] = sk[1:] != sk[:-1]
        dup = np.flatnonzero(~new)
        if not len(dup):
            continue
        first_pos = np.maximum.accumulate(np.where(new, np.arange(len(sk)), 0))[dup]
        j = members[order[dup]]
        for i in (members[order[first_pos]], members[order[dup - 1]]):
            chunks.append(np.minimum(i, j) * n + np.maximum(i, j))
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    flat = np.unique(np.concatenate(chunks))
    return np.stack([flat // n, flat % n], axis=1)


def cross_pairs(query_keys: np.ndarray, index_keys: np.ndarray, max_per_bucket: int = 64) -> np.ndarray:
    """(m, 2) pairs (query row, index row) sharing a bucket in some band. A query meets at most the first
    ``max_per_bucket`` index rows of a bucket: a bucket of thousands of templated questions would otherwise
    make the pairs grow with the square of the data, and its members are alike anyway."""
    chunks = []
    n_index = max(len(index_keys), 1)
    for b in range(query_keys.shape[1]):
        order = np.argsort(index_keys[:, b], kind="stable")
        sk = index_keys[order, b]
        q = query_keys[:, b]
        lo = np.searchsorted(sk, q, side="left")
        counts = np.searchsorted(sk, q, side="right") - lo
        hit = np.flatnonzero(counts)
        if not len(hit):
            continue
        counts = np.minimum(counts[hit], max_per_bucket)
        total = int(counts.sum())
        # All (query, bucket member) pairs at once: row k of the bucket is lo + (k - start of the run).
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        pos = np.repeat(lo[hit], counts) + (np.arange(total) - starts)
        chunks.append(np.repeat(hit, counts) * n_index + order[pos])
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    flat = np.unique(np.concatenate(chunks))
    return np.stack([flat // n_index, flat % n_index], axis=1)


def estimate_similarity(
    sig_a: np.ndarray, sig_b: np.ndarray, pairs: np.ndarray, chunk: int = 65536
) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float32)
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        out[s : s + chunk] = (sig_a[p[:, 0]] == sig_b[p[:, 1]]).mean(axis=1)
    return out


def verify_pairs(
    pairs: np.ndarray,
    estimates: np.ndarray,
    threshold: float,
    exact: Callable[[int, int], float],
    margin: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep pairs whose similarity reaches ``threshold``: clear cases by the signature estimate, pairs within
    ``margin`` of the threshold by the exact Jaccard similarity. Returns (pairs, similarities, n_exact)."""
    sims = estimates.astype(np.float64)
    unsure = np.flatnonzero((estimates >= threshold - margin) & (estimates < threshold + margin))
    for idx in unsure:
        sims[idx] = exact(int(pairs[idx, 0]), int(pairs[idx, 1]))
    keep = sims >= threshold
    return pairs[keep], sims[keep], len(unsure)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Representative (smallest index) of each element's connected component under ``pairs``."""
    parent = np.arange(n, dtype=np.int64)
    if len(pairs) == 0:
        return parent
    p = parent.tolist()

    def find(x: int) -> int:
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            if ra < rb:
                p[rb] = ra
            else:
                p[ra] = rb
    touched = np.unique(pairs)
    parent[touched] = [find(x) for x in touched.tolist()]
    return parent


@dataclass
class NearDupResult:
    rep: np.ndarray
    """Per text: index of the text kept for its cluster (itself when it is kept)."""
    partner: np.ndarray
    """Per dropped text: the text it was matched with (-1 for kept texts)."""
    similarity: np.ndarray
    """Per dropped text: the similarity of that match."""
    stats: dict[str, float | int] = field(default_factory=dict)

    @property
    def dropped(self) -> np.ndarray:
        return np.flatnonzero(self.rep != np.arange(len(self.rep)))


@dataclass
class LSHIndex:
    """Signatures and band keys of one text collection, for self-matching or queries."""

    sig: np.ndarray
    keys: np.ndarray
    valid: np.ndarray
    """False for texts without any n-gram (empty after normalisation): they match nothing."""


class NearDupFinder:
    def __init__(self, threshold: float, num_perm: int = 128, ngram: int = 3, seed: int = 1) -> None:
        self.threshold = threshold
        self.hasher = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed)
        self.bands, self.rows = optimal_bands(threshold, num_perm)

    def index(self, texts: Sequence[str] | None = None, sig: np.ndarray | None = None) -> LSHIndex:
        """Index of ``texts``, or of signatures already computed with the same num_perm/ngram/seed."""
        if sig is None:
            if texts is None:
                raise ValueError("index() needs texts or signatures")
            sig = self.hasher.signatures(texts)
        valid = ~(sig == _MAX32).all(axis=1)
        return LSHIndex(sig, band_keys(sig, self.bands, self.rows), valid)

    def find(self, texts: Sequence[str], index: LSHIndex | None = None) -> NearDupResult:
        """Clusters of near-duplicate texts; in each the earliest text is kept."""
        idx = index or self.index(texts)
        pairs = candidate_pairs(idx.keys, idx.valid)
        est = estimate_similarity(idx.sig, idx.sig, pairs)

        def exact(a: int, b: int) -> float:
            # Not cached: the n-gram sets of a few hundred thousand texts would take gigabytes.
            return jaccard(self.hasher.text_shingles(texts[a]), self.hasher.text_shingles(texts[b]))

        good, sims, n_exact = verify_pairs(pairs, est, self.threshold, exact)
        n = len(texts)
        rep = components(n, good)
        partner = np.full(n, -1, dtype=np.int64)
        similarity = np.zeros(n, dtype=np.float32)
        # For a dropped text, report the earliest text it was directly matched with.
        order = np.lexsort((good[:, 0], good[:, 1])) if len(good) else np.empty(0, dtype=np.int64)
        for k in order[::-1]:
            a, b = int(good[k, 0]), int(good[k, 1])
            partner[b], similarity[b] = a, sims[k]
        partner[rep == np.arange(n)] = -1
        stats = {
            "bands": self.bands,
            "rows": self.rows,
            "candidate_pairs": int(len(pairs)),
            "verified_exactly": int(n_exact),
            "duplicate_pairs": int(len(good)),
        }
        return NearDupResult(rep, partner, similarity, stats)

    def query(
        self,
        q: LSHIndex,
        texts: Sequence[str],
        index: LSHIndex,
        index_texts: Sequence[str],
        q_rows: np.ndarray | None = None,
        index_rows: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each query text, its best match in ``index`` at or above the threshold: (query rows, index
        rows, similarities), only for the texts that have one. ``q_rows`` / ``index_rows`` restrict a side to
        some of its rows (e.g. validation against training within one index) without copying signatures."""
        qr = np.flatnonzero(q.valid) if q_rows is None else q_rows[q.valid[q_rows]]
        ir = np.flatnonzero(index.valid) if index_rows is None else index_rows[index.valid[index_rows]]
        pairs = cross_pairs(q.keys[qr], index.keys[ir])
        if len(pairs):
            pairs = np.stack([qr[pairs[:, 0]], ir[pairs[:, 1]]], axis=1)
        est = estimate_similarity(q.sig, index.sig, pairs)

        def exact(a: int, b: int) -> float:
            return jaccard(self.hasher.text_shingles(texts[a]), self.hasher.text_shingles(index_texts[b]))

        good, sims, _ = verify_pairs(pairs, est, self.threshold, exact)
        if not len(good):
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
        order = np.lexsort((-sims, good[:, 0]))  # per query row, the most similar match first
        good, sims = good[order], sims[order]
        first = np.ones(len(good), dtype=bool)
        first[1:] = good[1:, 0] != good[:-1, 0]
        return good[first, 0], good[first, 1], sims[first]
