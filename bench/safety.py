"""Benchmark the safety checks: 10,000 question-answer pairs, against a naive per-phrase baseline.

    .venv/bin/python bench/safety.py                 # default: 10,000 pairs, baseline on 2,000 (scaled)
    .venv/bin/python bench/safety.py --baseline-n 10000

Pairs are built by cycling the dev set ``data/safety/labelled*.jsonl``. Two workloads: the labelled answers as they
are (short, ~50 characters: the issue's target) and "long" answers made by joining seven labelled answers
(~350 characters, the length of a real three-part model answer). Each check is the full ``engine.check``:
question triage (the learned layer included, for questions no rule flags) plus every answer rule plus the
disclaimer check.

The baseline applies the same phrases with one precompiled regex per phrase, searched over every text in
a Python loop, then resolves overlaps the same way (leftmost, longest, look-alikes first) and runs the
same rule logic; the table reports how often its verdicts agree with the engine's. Times are the best of
``--repeat`` runs; the load average is printed because this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

from medtune.safety import SafetyEngine, SafetyReport, evaluate_labelled
from medtune.safety.engine import _ANSWER_ONLY, _END
from medtune.safety.model import SafetyModel
from medtune.safety.rules import LOOKALIKE, RuleSet

ROOT = Path(__file__).resolve().parents[1]
# The dev set, one file per group of rounds (each under 2 MiB), read in name order.
LABELLED = sorted((ROOT / "data" / "safety").glob("labelled*.jsonl"))
TARGET_SECONDS = 2.0


class NaiveEngine(SafetyEngine):
    """Same rules and rule logic; phrases found by one ``finditer`` per phrase instead of the trie scan."""

    def __init__(self, rules: RuleSet, model: SafetyModel | None = None) -> None:
        super().__init__(rules, model)
        compiled = [
            (re.compile(re.escape(p.pattern) if p.literal else p.pattern), p.concept, p.literal)
            for p in rules.phrases
        ]
        # Like the engine: questions without the answer-only cues (certainty), answers without symptoms.
        self._patterns_question = [t for t in compiled if t[1] not in _ANSWER_ONLY]
        self._patterns_answer = [t for t in compiled if t[1] not in rules.symptom_concepts]
        # The meanings a question word carries, nested ones included ("前胸后背" is also the chest and the
        # back): read once from the engine's table, so the baseline times only the finding of phrases.
        self._meanings: dict[str, tuple[str, ...]] = {}
        for phrase in rules.phrases:
            if phrase.literal and phrase.concept not in _ANSWER_ONLY:
                node = self._first_question[phrase.pattern[0]][0]
                for ch in phrase.pattern[1:]:
                    node = node[ch]
                self._meanings[phrase.pattern] = node[_END]

    def tokens(self, text: str, answer: bool = False) -> list[tuple[int, int, str]]:
        by_start: dict[int, list[tuple[int, str, bool]]] = {}
        for pattern, concept, literal in self._patterns_answer if answer else self._patterns_question:
            for m in pattern.finditer(text):
                by_start.setdefault(m.start(), []).append((m.end(), concept, literal))
        # Same precedence as the engine: leftmost; a look-alike wins; else the longest literal (every concept
        # listing it) unless a regex match is longer, in which case every regex match there counts.
        out: list[tuple[int, int, str]] = []
        cursor = 0
        for start in sorted(by_start):
            if start < cursor:
                continue
            here = by_start[start]
            lits = [(e, c) for e, c, lit in here if lit]
            if not answer:
                lits = [(e, m) for e, _ in lits for m in self._meanings[text[start:e]]]
            lit_end = max((e for e, _ in lits), default=0)
            best = list(dict.fromkeys(c for e, c in lits if e == lit_end))
            if LOOKALIKE in best:
                out.append((start, lit_end, LOOKALIKE))
                cursor = lit_end
                continue
            regs = [(e, c) for e, c, lit in here if not lit and e >= lit_end]
            if not (start and text[start].isdigit() and text[start - 1].isdigit()) and regs:
                longest = max(e for e, _ in regs)
                if longest > lit_end:
                    out.extend((start, e, c) for e, c in regs)
                    cursor = longest
                    inner_end = start + 1
                    for s2 in sorted(by_start):
                        if inner_end <= s2 < longest:
                            for e2, c2, lit2 in by_start[s2]:
                                if (
                                    lit2
                                    and c2 in self.rules.inner_concepts
                                    and s2 >= inner_end
                                    and e2 <= longest
                                ):
                                    out.append((s2, e2, c2))
                                    inner_end = e2
                    continue
                best += [c for e, c in regs if e == lit_end and c not in best]
            out.extend((start, lit_end, c) for c in best)
            cursor = lit_end
        out.sort(key=lambda t: t[0])
        return out


def reference_loop_seconds(n: int = 10_000_000) -> float:
    """A pure-Python loop of ``n`` additions, best of three: how fast this machine runs Python at all.

    The checks are Python, so their time moves with the machine (the 2-core machines this project is measured on have
    differed by 4x); printed beside the table, it says whether a change of figure is the code's or the machine's.
    """
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(n):
            total += i
        best = min(best, time.perf_counter() - start)
    return best


def verdict(report: SafetyReport) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (tuple(f.rule_id for f in report.flags), tuple(f.rule_id for f in report.findings))


def time_checks(engine: SafetyEngine, pairs: list[tuple[str, str]], repeat: int) -> tuple[float, list]:
    best = float("inf")
    verdicts: list = []
    for _ in range(repeat):
        start = time.perf_counter()
        reports = [engine.check(q, a, require_disclaimer=True) for q, a in pairs]
        best = min(best, time.perf_counter() - start)
        verdicts = [verdict(r) for r in reports]
    return best, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="pairs per workload")
    parser.add_argument(
        "--baseline-n", type=int, default=2_000, help="pairs the naive baseline runs (scaled to --n)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement; the best is kept")
    args = parser.parse_args()

    records = [json.loads(line) for path in LABELLED for line in path.open(encoding="utf-8") if line.strip()]
    questions = [r["question"] for r in records]
    answers = [r["answer"] for r in records]
    long_answers = ["".join(answers[(i + k) % len(answers)] for k in range(7)) for i in range(len(answers))]
    workloads = {
        "labelled answers": [(questions[i % len(records)], answers[i % len(records)]) for i in range(args.n)],
        "long answers (7 joined)": [
            (questions[i % len(records)], long_answers[i % len(records)]) for i in range(args.n)
        ],
    }

    engine = SafetyEngine.load()
    naive = NaiveEngine(engine.rules, engine.model)
    load1, _, _ = os.getloadavg()
    print(
        f"safety bench: {len(records)} labelled records cycled to {args.n:,} pairs; "
        f"{len(engine.rules.phrases)} phrases, {len(engine.rules.red_flags)} red-flag + "
        f"{len(engine.rules.advice)} advice rules; load average {load1:.2f} on {os.cpu_count()} CPUs; "
        f"reference loop (10^7 Python additions) {reference_loop_seconds():.2f} s"
    )
    print()
    header = (
        f"{'workload':<24} {'pairs':>6} {'chars q/a':>10} {'medtune s':>10} {'µs/pair':>8} "
        f"{'naive s':>9} {'ratio':>6} {'agree':>6}"
    )
    print(header)
    print("-" * len(header))
    results = {}
    for name, pairs in workloads.items():
        seconds, verdicts = time_checks(engine, pairs, args.repeat)
        base_pairs = pairs[: args.baseline_n]
        base_seconds, base_verdicts = time_checks(naive, base_pairs, 1)
        scaled = base_seconds * len(pairs) / len(base_pairs)
        agree = sum(a == b for a, b in zip(verdicts[: len(base_pairs)], base_verdicts, strict=True)) / len(
            base_pairs
        )
        chars = (
            f"{statistics.mean(len(q) for q, _ in pairs):.0f}/{statistics.mean(len(a) for _, a in pairs):.0f}"
        )
        marker = "*" if len(base_pairs) < len(pairs) else ""
        print(
            f"{name:<24} {len(pairs):>6} {chars:>10} {seconds:>10.3f} {seconds / len(pairs) * 1e6:>8.1f} "
            f"{scaled:>8.2f}{marker:<1} {scaled / seconds:>5.1f}x {agree:>6.1%}"
        )
        results[name] = seconds
    if args.baseline_n < args.n:
        print(f"* naive baseline timed on {args.baseline_n:,} pairs and scaled to {args.n:,}")
    print()
    target = results["labelled answers"] * 10_000 / args.n
    print(
        f"target: 10,000 labelled pairs in < {TARGET_SECONDS:.0f} s -> {target:.2f} s "
        f"({'PASS' if target < TARGET_SECONDS else 'FAIL'}); "
        f"long answers: {results['long answers (7 joined)'] * 10_000 / args.n:.2f} s per 10,000"
    )

    ev = evaluate_labelled(records, engine)
    print()
    print(
        f"labelled set ({ev.n} records): red-flag recall {ev.red_flag_recall:.3f}, "
        f"precision {ev.red_flag_precision:.3f} (tp {ev.rf_tp}, fp {ev.rf_fp}, fn {ev.rf_fn}, tn {ev.rf_tn}); "
        f"dangerous-advice recall {ev.dangerous_recall:.3f}, "
        f"clean answers flagged {ev.clean_flagged}/{ev.clean_records}"
    )
    print(
        "  note: the rules were tuned on every round of this set, so this figure says how well they fit it; "
        "each round's figures at first measurement, before the rules saw it, are in data/safety/README.md, "
        "and the held-out rounds are measured with: medtune safety check data/safety/frozen*.jsonl"
    )


if __name__ == "__main__":
    main()
