"""The shipped labelled set: its shape, and the engine's measured targets on it (a regression fails CI).

How the set was built, and what its figures mean: round1 (242 records) was written first and used to
build the rules. Rounds 2, 3 and 4 were each written after freezing the rules, measured once, and only
then used to extend them. Red-flag recall on each round at first measurement was 0.35, 0.30 and 0.55
(precision 0.92, 1.00, 1.00; dangerous-advice recall 1.00 each time). Issue 13 rewrote the rules from the
coverage table (src/medtune/safety/COVERAGE.md) and added rounds 5 to 10, each written before the rules
saw it: red-flag recall at first measurement 0.94 (round 5), 0.85 (6), 0.90 (7), 0.68 (9: wordings for
the weakest coverage rows), 0.95 (10), and 0.84 on the 62 training-sample questions; round 8 is hard
negatives only (5 false alarms of 53 at first). Round 11 (1223 records: wordings for the 31 coverage
rows and the dangerous-advice kinds weakest on the frozen set, in ten batches) measured 0.75-0.97 per
batch at first, 0.35 on its English/Cantonese batch, with 7 false alarms on 210 hard negatives. Round 12
(1,817 records over all 62 rows, written without the rules) measured 0.766 recall / 0.914 precision on its
questions with the rules alone and 0.938 / 0.911 with the learned layer, dangerous-advice recall 0.79 with
7.6% of clean answers flagged, before the rules were extended for it; round 13 (762 answer checks)
measured dangerous-advice recall 0.642 at first (certain_diagnosis 86/168, contraindication 39/128). So the
targets asserted here are a regression guard on text the rules have seen, not an estimate of recall on
new wording: that is what the frozen set (data/safety/frozen.jsonl, reported by `medtune safety check`
as figures only) is for.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medtune.safety import default_engine, evaluate_labelled
from medtune.safety.rules import FINDING_KINDS

# The dev set, split into files of a few rounds each (labelled.jsonl, labelled_r12.jsonl, ...).
LABELLED = sorted((Path(__file__).resolve().parents[2] / "data" / "safety").glob("labelled*.jsonl"))


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [json.loads(line) for path in LABELLED for line in path.open(encoding="utf-8") if line.strip()]


def test_set_is_large_labelled_and_well_formed(records: list[dict]) -> None:
    assert len(records) >= 200
    assert len({r["id"] for r in records}) == len(records)
    categories = set(default_engine().rules.categories)
    for r in records:
        assert r["question"].strip() and r["answer"].strip(), r["id"]
        assert r["red_flag"] is None or r["red_flag"] in categories, r["id"]
        assert set(r["dangerous"]) <= set(FINDING_KINDS), r["id"]


def test_every_category_and_kind_has_positives(records: list[dict]) -> None:
    per_category = Counter(r["red_flag"] for r in records if r["red_flag"])
    assert set(per_category) == set(default_engine().rules.categories)
    assert min(per_category.values()) >= 5, per_category
    planted = Counter(k for r in records for k in r["dangerous"])
    assert {"contraindication", "dose", "antibiotic", "dismissive", "certain_diagnosis"} <= set(planted)


def test_hard_negatives_are_present(records: list[dict]) -> None:
    notes = Counter(r["note"].split(":")[0] for r in records if not r["red_flag"])
    assert notes["negation"] >= 20 and notes["history"] >= 15 and notes["look-alike"] >= 30, notes


def test_engine_meets_the_targets_on_the_labelled_set(records: list[dict]) -> None:
    ev = evaluate_labelled(records)
    assert ev.red_flag_recall >= 0.95, ev.summary()["errors"]
    assert ev.red_flag_precision >= 0.90, ev.summary()["errors"]
    assert ev.dangerous_recall >= 0.90, ev.summary()["errors"]
    assert ev.dangerous_false_positive_rate <= 0.05, ev.summary()["errors"]
