"""Intervals and paired tests: every rate in a report carries its count and a 95% interval.

Small evaluation sets are the norm here (a demo answers 12 questions, a shipped exam sample 100), so a
rate without an interval invites reading noise as progress. Wilson's interval stays inside [0, 1] and is
honest at small n and near 0 or 1, where the normal approximation is not. Base and tuned answer the same
items, so their difference is tested on the pairs (McNemar), which is far more sensitive than comparing
two independent intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Z95 = 1.959963984540054


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there is nothing to measure."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return (lo, hi)


def rate(successes: float, n: int) -> dict[str, Any]:
    """A rate as every report writes it: value, n and ci95 side by side."""
    lo, hi = wilson(successes, n)
    return {"value": successes / n if n else None, "n": n, "ci95": [round(lo, 4), round(hi, 4)]}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs.

    ``b``: items only the first model got right, ``c``: only the second. Under the null hypothesis each
    discordant pair is a fair coin, so the p-value is a two-sided binomial test of min(b, c) in b + c.
    """
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Paired:
    """Two models on the same items: who got which right."""

    n: int
    both: int
    only_a: int
    only_b: int
    neither: int

    @classmethod
    def of(cls, a: list[bool], b: list[bool]) -> Paired:
        if len(a) != len(b):
            raise ValueError(f"paired comparison needs the same items: {len(a)} vs {len(b)}")
        both = sum(x and y for x, y in zip(a, b))
        only_a = sum(x and not y for x, y in zip(a, b))
        only_b = sum(y and not x for x, y in zip(a, b))
        return cls(len(a), both, only_a, only_b, len(a) - both - only_a - only_b)

    @property
    def delta(self) -> float:
        """Rate of b minus rate of a."""
        return (self.only_b - self.only_a) / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "delta": round(self.delta, 4),
            "gained": self.only_b,
            "lost": self.only_a,
            "mcnemar_p": round(mcnemar_exact(self.only_a, self.only_b), 6),
        }


def mean_ci(
    values: list[float], z: float = Z95, bounds: tuple[float, float] | None = (0.0, 1.0)
) -> dict[str, Any]:
    """Mean with a normal-approximation interval, clipped to ``bounds`` (scores such as ROUGE-L live in
    [0, 1]; pass None for unbounded quantities such as lengths)."""
    n = len(values)
    if n == 0:
        return {"value": None, "n": 0, "ci95": [None, None]}
    m = sum(values) / n
    if n == 1:
        return {"value": m, "n": 1, "ci95": [m, m]}
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    lo, hi = m - half, m + half
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return {"value": m, "n": n, "ci95": [round(lo, 4), round(hi, 4)]}
