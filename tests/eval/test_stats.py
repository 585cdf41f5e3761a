"""Intervals and paired tests, checked against values computed independently."""

import pytest

from medtune.eval.stats import Paired, mcnemar_exact, mean_ci, rate, wilson


def test_wilson_matches_published_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553-0.3662 (Wilson score interval without correction).
    lo, hi = wilson(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)


def test_wilson_stays_inside_zero_and_one_at_the_extremes():
    assert wilson(0, 10)[0] == 0.0 and wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson(10, 10)[1] == 1.0 and wilson(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_rate_carries_value_n_and_interval():
    r = rate(3, 4)
    assert r["value"] == 0.75 and r["n"] == 4 and r["ci95"][0] < 0.75 < r["ci95"][1]
    assert rate(0, 0)["value"] is None


def test_mcnemar_exact_p_values():
    assert mcnemar_exact(0, 0) == 1.0
    # b=1, c=9: 2 * P(X <= 1 | n=10, p=.5) = 2 * 11/1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0


def test_paired_counts_gains_and_losses_on_the_same_items():
    base = [True, True, False, False, True]
    tuned = [True, False, True, True, True]
    p = Paired.of(base, tuned)
    assert (p.both, p.only_a, p.only_b, p.neither) == (2, 1, 2, 0)
    d = p.as_dict()
    assert d["gained"] == 2 and d["lost"] == 1 and d["delta"] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        Paired.of([True], [True, False])


def test_mean_ci_clips_bounded_scores_and_not_lengths():
    assert mean_ci([0.0, 0.0, 0.01])["ci95"][0] == 0.0
    assert mean_ci([10.0, 200.0, 30.0], bounds=None)["ci95"][0] < 0
    assert mean_ci([])["value"] is None
