"""``medtune safety check FILE``: run the safety checks on any JSONL file of questions and answers.

    medtune safety check data/safety/labelled*.jsonl data/safety/frozen*.jsonl
    medtune safety check generations.jsonl --question-field prompt --answer-field output --json report.json
    medtune safety check data/safety/frozen_r3.jsonl --model none      # the rules alone
    medtune safety train data/safety/labelled*.jsonl --out triage_model.json.xz

Prints a summary (red flags by category, urgent-referral rate, findings by rule). When the records carry
labels (``red_flag``: category or null, ``dangerous``: list of finding kinds), it also prints the
confusion table, per-category recall and per-kind dangerous-advice recall. When records carry a ``split``,
the figures are also printed per part: ``dev`` (every split not named ``frozen...``: the rules may be tuned
on it) and one part per held-out round (``frozen``, ``frozen-r2``, ...: each written before a rule change
and reported on its own, so a later round is not averaged away by an earlier one), with recall per coverage
row (``coverage_row``) for the held-out parts, and for the dev part with ``--coverage``. Disagreements are
listed for the dev part only: held-out parts are reported as figures, never record by record. Several files
may be given; a malformed input stops with one line naming FILE:LINE and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from medtune.safety.engine import PACKAGED, SafetyEngine, SafetyReport
from medtune.safety.model import ModelError
from medtune.safety.report import LabelledEval, has_labels, score_record
from medtune.safety.rules import RulesError

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad input, reported as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medtune safety check",
        description="Red-flag triage and dangerous-advice checks on a JSONL file of questions and answers.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSONL file(s), one JSON object per line")
    parser.add_argument("--question-field", default="question", help="field holding the user question")
    parser.add_argument("--answer-field", default="answer", help="field holding the answer to check")
    parser.add_argument("--rules", default=None, help="rules YAML (default: the packaged rules.yaml)")
    parser.add_argument(
        "--model",
        default=PACKAGED,
        help="learned model file (default: the packaged triage_model.json.xz); 'none' for the rules alone",
    )
    parser.add_argument(
        "--keep-rule-flags",
        action="store_true",
        help="never let the learned model withhold a rule's flag or finding (a model trained with --veto-threshold "
        "withholds a flag on a question it rates near-certainly no emergency, the packaged model has no veto; its "
        "certainty gate withholds the certainty rule's finding on an answer it rates near-certainly no verdict; "
        "both are counted and kept in --json as 'withheld' and 'withheld_findings')",
    )
    parser.add_argument(
        "--second-opinion",
        metavar="BASE_URL",
        default=None,
        help="also ask this OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) about every question "
        "the engine leaves unflagged; its key is read from $MEDTUNE_TRIAGE_API_KEY",
    )
    parser.add_argument("--second-opinion-model", default="medtune", help="model name sent to that endpoint")
    parser.add_argument(
        "--second-opinion-timeout", type=float, default=60.0, help="seconds per question (default 60)"
    )
    parser.add_argument(
        "--second-opinion-workers", type=int, default=8, help="questions in flight at once (default 8)"
    )
    parser.add_argument(
        "--second-opinion-cache",
        default=None,
        help="cache folder for the endpoint's verdicts (default: none)",
    )
    parser.add_argument(
        "--json", dest="json_out", default=None, help="also write the full results as JSON here"
    )
    parser.add_argument(
        "--require-disclaimer", action="store_true", help="report answers without a disclaimer line"
    )
    parser.add_argument(
        "--show-errors", type=int, default=20, help="labelled disagreements to print (default 20)"
    )
    parser.add_argument(
        "--coverage",
        action="store_true",
        help="also print recall per coverage row for the dev part (always printed for the frozen part)",
    )
    return parser


def read_records(path: Path, question_field: str, answer_field: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-blank line; InputError names FILE:LINE on the first bad one."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    records = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason})") from exc
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(record, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            if question_field not in record and answer_field not in record:
                raise InputError(f"{path}:{lineno}: has neither {question_field!r} nor {answer_field!r}")
            for name in (question_field, answer_field):
                value = record.get(name)
                if value is not None and not isinstance(value, str):
                    raise InputError(
                        f"{path}:{lineno}: field {name!r} must be a string, got {type(value).__name__}"
                    )
            records.append((lineno, record))
    return records


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _print_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(results)
    flagged = [r for r in results if r["red_flags"]]
    referred = sum(1 for r in flagged if r["referral"])
    categories = Counter(c for r in flagged for c in sorted({f["category"] for f in r["red_flags"]}))
    by_rule = Counter(f["rule_id"] for r in results for f in r["findings"])
    dangerous = sum(1 for r in results if any(f["kind"] != "missing_disclaimer" for f in r["findings"]))
    blocked = sum(1 for r in results if any(f["severity"] == "block" for f in r["findings"]))
    withheld = sum(1 for r in results if r["withheld"])
    withheld_findings = sum(1 for r in results if r["withheld_findings"])
    summary = {
        "records": n,
        "red_flag_questions": len(flagged),
        "rule_flags_withheld": withheld,
        "rule_findings_withheld": withheld_findings,
        "red_flag_referral_rate": referred / len(flagged) if flagged else None,
        "red_flags_by_category": dict(categories.most_common()),
        "dangerous_answers": dangerous,
        "dangerous_advice_rate": dangerous / n if n else None,
        "blocking_answers": blocked,
        "findings_by_rule": dict(by_rule.most_common()),
    }
    print(f"records: {n}")
    print(
        f"red-flag questions: {len(flagged)}   urgent-referral rate in their answers: {_pct(summary['red_flag_referral_rate'])}"
    )
    for category, count in categories.most_common():
        print(f"  {category:<24} {count}")
    if withheld:
        print(
            f"questions whose rule flags the learned model withheld (near-certainly no emergency): {withheld}"
        )
    if withheld_findings:
        print(
            f"answers whose certainty finding the learned model withheld (near-certainly no verdict): {withheld_findings}"
        )
    print(
        f"answers with dangerous advice: {dangerous} ({_pct(summary['dangerous_advice_rate'])})   blocking: {blocked}"
    )
    for rule_id, count in by_rule.most_common():
        print(f"  {rule_id:<32} {count}")
    return summary


def _print_labelled(ev: LabelledEval, by_split: dict[str, LabelledEval], show_errors: int) -> None:
    print()
    print("red flags (labelled)        predicted flag   predicted none")
    print(f"  labelled red flag         {ev.rf_tp:>14}   {ev.rf_fn:>14}")
    print(f"  labelled none             {ev.rf_fp:>14}   {ev.rf_tn:>14}")
    print(f"  recall {_pct(ev.red_flag_recall)}   precision {_pct(ev.red_flag_precision)}")
    if ev.rf_by_category:
        print(f"  {'category':<24} {'support':>7} {'detected':>8} {'same category':>13}")
        for category, row in sorted(ev.rf_by_category.items()):
            print(f"  {category:<24} {row['support']:>7} {row['detected']:>8} {row['same_category']:>13}")
    if len(by_split) > 1:
        print(
            "  by split: "
            + "   ".join(
                f"{name}: recall {_pct(s.red_flag_recall)} precision {_pct(s.red_flag_precision)}"
                for name, s in sorted(by_split.items())
            )
        )
    print()
    print(
        f"dangerous advice (labelled)  recall {_pct(ev.dangerous_recall)}   "
        f"clean answers flagged: {ev.clean_flagged}/{ev.clean_records} ({_pct(ev.dangerous_false_positive_rate)})"
    )
    print(f"  {'kind':<20} {'planted':>7} {'detected':>8} {'unexpected':>10}")
    for kind in sorted(set(ev.adv_planted) | set(ev.adv_false_positive)):
        print(
            f"  {kind:<20} {ev.adv_planted[kind]:>7} {ev.adv_detected[kind]:>8} {ev.adv_false_positive[kind]:>10}"
        )
    if ev.errors and show_errors > 0:
        print()
        print(f"disagreements ({len(ev.errors)}, first {min(show_errors, len(ev.errors))}):")
        for error in ev.errors[:show_errors]:
            detail = "; ".join(
                str(v) if isinstance(v, str) else ", ".join(v)
                for k, v in error.items()
                if k in ("red_flag", "dangerous")
            )
            print(f"  {error.get('id') or '-'}: {error.get('question')}  -> {detail}")


FROZEN = "frozen"


def part_of(record: dict[str, Any]) -> str:
    """The held-out round (``frozen``, ``frozen-r2``, ...) for held-out records, ``dev`` for every other split."""
    split = str(record.get("split"))
    return split if split.startswith(FROZEN) else "dev"


def is_held_out(part: str) -> bool:
    return part.startswith(FROZEN)


def _print_parts(parts: dict[str, LabelledEval], coverage: bool) -> None:
    for name in sorted(parts, key=lambda p: (is_held_out(p), p)):
        ev = parts[name]
        print()
        print(
            f"[{name}] {ev.n} records   red flags: recall {_pct(ev.red_flag_recall)} "
            f"precision {_pct(ev.red_flag_precision)} (tp {ev.rf_tp} fn {ev.rf_fn} fp {ev.rf_fp} tn {ev.rf_tn})"
        )
        if ev.rf_withheld:
            print(
                f"[{name}] rule flags withheld by the learned layer: {ev.rf_withheld['other']} on other questions, "
                f"{ev.rf_withheld['emergency']} on emergencies"
            )
        if ev.adv_withheld:
            print(
                f"[{name}] certainty findings withheld by the learned layer: {ev.adv_withheld['clean']} on clean "
                f"answers, {ev.adv_withheld['certain_diagnosis']} on certain diagnoses, "
                f"{ev.adv_withheld['other']} on other dangerous answers"
            )
        print(
            f"[{name}] dangerous advice: recall {_pct(ev.dangerous_recall)}   clean answers flagged: "
            f"{ev.clean_flagged}/{ev.clean_records} ({_pct(ev.dangerous_false_positive_rate)})"
        )
        if ev.rf_by_row and (coverage or is_held_out(name)):
            print(
                f"  {'coverage row':<30} {'support':>7} {'detected':>8} {'recall':>6} {'negatives':>9} {'false alarms':>12}"
            )
            for row, counts in sorted(ev.rf_by_row.items()):
                print(
                    f"  {row:<30} {counts['support']:>7} {counts['detected']:>8} {_pct(ev.row_recall(row)):>6} "
                    f"{counts['negatives']:>9} {counts['false_alarms']:>12}"
                )


def run_check(args: argparse.Namespace) -> int:
    paths = [Path(f) for f in args.files]
    records = [
        (path, lineno, record)
        for path in paths
        for lineno, record in read_records(path, args.question_field, args.answer_field)
    ]
    engine = SafetyEngine.load(
        args.rules, model=None if args.model == "none" else args.model, veto=not args.keep_rule_flags
    )
    reports = [
        engine.check(
            record.get(args.question_field) or "",
            record.get(args.answer_field) or "",
            require_disclaimer=args.require_disclaimer,
        )
        for _, _, record in records
    ]
    opinion_stats = None
    if args.second_opinion:
        reports, opinion_stats = _with_second_opinion(args, engine, records, reports)
    results: list[dict[str, Any]] = []
    ev = LabelledEval()
    by_split: dict[str, LabelledEval] = {}
    parts: dict[str, LabelledEval] = {}
    for (path, lineno, record), report in zip(records, reports, strict=True):
        results.append(
            {
                "file": str(path),
                "line": lineno,
                "id": record.get("id"),
                "red_flags": [
                    {"rule_id": f.rule_id, "category": f.category, "action": f.action, "matched": f.matched}
                    for f in report.flags
                ],
                "withheld": [
                    {
                        "rule_id": f.rule_id,
                        "category": f.category,
                        "matched": f.matched,
                        "probability": f.probability,
                    }
                    for f in report.withheld
                ],
                "withheld_findings": [
                    {"rule_id": f.rule_id, "kind": f.kind, "matched": f.matched, "rationale": f.rationale}
                    for f in report.withheld_findings
                ],
                "referral": report.referral,
                "findings": [
                    {"rule_id": f.rule_id, "kind": f.kind, "severity": f.severity, "matched": f.matched}
                    for f in report.findings
                ],
            }
        )
        if has_labels(record):
            held_out = is_held_out(part_of(record))
            score_record(ev, record, report, keep_errors=not held_out)
            if "split" in record:
                score_record(
                    by_split.setdefault(str(record["split"]), LabelledEval()), record, report, not held_out
                )
                score_record(parts.setdefault(part_of(record), LabelledEval()), record, report, not held_out)
    layers = engine.rules.source + (" and the learned model" if engine.model is not None else ", rules only")
    print(f"{', '.join(map(str, paths))}: checked with {layers}")
    summary = _print_summary(results)
    if ev.n:
        _print_labelled(ev, by_split, args.show_errors)
    if parts:
        _print_parts(parts, args.coverage)
    if opinion_stats is not None:
        print(
            f"\nsecond opinion ({args.second_opinion}, model {args.second_opinion_model}): asked about "
            f"{opinion_stats['asked']} unflagged questions, {opinion_stats['emergency']} said emergency, "
            f"{opinion_stats['no_verdict']} gave no usable verdict (late or not the agreed JSON)"
        )
    if args.json_out:
        out = {
            "files": [str(p) for p in paths],
            "rules": engine.rules.source,
            "model": engine.model.meta if engine.model is not None else None,
            "summary": summary,
            "labelled": ev.summary() if ev.n else None,
            "parts": {name: part.summary() for name, part in parts.items()},
            "second_opinion": opinion_stats,
            "records": results,
        }
        Path(args.json_out).write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
        print(f"wrote {args.json_out}")
    return 0


def _with_second_opinion(
    args: argparse.Namespace,
    engine: SafetyEngine,
    records: list[tuple[Path, int, dict[str, Any]]],
    reports: list[SafetyReport],
) -> tuple[list[SafetyReport], dict[str, int]]:
    """The reports with the endpoint's flags added where the engine had none (it can only add)."""
    from medtune.safety.second_opinion import SecondOpinion

    opinion = SecondOpinion(
        args.second_opinion,
        args.second_opinion_model,
        api_key=os.environ.get("MEDTUNE_TRIAGE_API_KEY"),
        timeout_s=args.second_opinion_timeout,
        cache_dir=args.second_opinion_cache,
        engine=engine,
    )
    todo = [i for i, report in enumerate(reports) if not report.flags]
    questions = [str(records[i][2].get(args.question_field) or "") for i in todo]
    out = list(reports)
    stats = {"asked": len(todo), "emergency": 0, "no_verdict": 0}
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.second_opinion_workers)) as pool:
            verdicts = list(
                tqdm(pool.map(opinion.ask, questions), total=len(questions), desc="second opinion")
            )
    finally:
        opinion.close()
    for i, question, verdict in zip(todo, questions, verdicts, strict=True):
        if verdict is None:
            stats["no_verdict"] += 1
            continue
        flags = opinion.triage(question, ()) if verdict.emergency else []
        if flags:
            stats["emergency"] += 1
            out[i] = replace(out[i], flags=tuple(flags))
    return out, stats


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``medtune safety check``; ``argv`` excludes the words "safety check"."""
    args = build_parser().parse_args(argv)
    try:
        return run_check(args)
    except (InputError, RulesError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # e.g. the --json path is not writable
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medtune safety train",
        description="Train the learned safety layer on labelled JSONL files (development data only).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="labelled JSONL: red_flag and/or dangerous")
    parser.add_argument(
        "--out",
        required=True,
        help="model file to write (JSON, xz-compressed for a name ending in .xz, else gzip), atomically",
    )
    parser.add_argument(
        "--rules", default=None, help="rules YAML whose masking the model learns (default: packaged)"
    )
    parser.add_argument("--question-field", default="question")
    parser.add_argument("--answer-field", default="answer")
    parser.add_argument(
        "--no-answer-model",
        action="store_true",
        help="train the question model only (no learned dangerous-advice warnings)",
    )
    parser.add_argument(
        "--answer-out-of-fold",
        action="store_true",
        help="first print how the answer model would do at several thresholds per kind on answers it never saw "
        "(each file scored by a model trained on the other files; only the kinds the rules miss count) and the "
        "threshold the defaults should hold (the lowest whose warnings are at least 85%% right); then the same "
        "for the certainty gate (the highest that loses at most 0.1%% of the certain diagnoses the rule finds)",
    )
    parser.add_argument(
        "--question-out-of-fold",
        action="store_true",
        help="first print how the question model does at several thresholds on the questions no rule flags, "
        "each file scored by a model trained on the other files, and the threshold the defaults should hold "
        "(the lowest that flags at most 1%% of the non-emergencies there)",
    )
    parser.add_argument(
        "--veto-out-of-fold",
        action="store_true",
        help="first print how withholding the rules' flag on questions the model rates near-certainly no "
        "emergency does at several thresholds, each file scored by a model trained on the other files, and the "
        "threshold its rule picks (the highest that withholds at most 1 in 2,000 of the emergencies the rules "
        "flag); the defaults hold none: see --veto-threshold",
    )
    parser.add_argument(
        "--veto-threshold",
        type=float,
        default=None,
        metavar="P",
        help="store this veto threshold in the model: a rule's flag on a question the model rates below P is "
        "withheld (off by default: see --veto-out-of-fold and the README)",
    )
    parser.add_argument(
        "--gate-out-of-fold",
        action="store_true",
        help="first print how the dismissive gate (an answer is dismissive only of a question the model rates "
        "urgent enough) does at several thresholds, each file scored by a model trained on the other files, "
        "and how a sure model flag would make answers without a referral dismissive (the 'unreferred' "
        "threshold the defaults should hold: the lowest whose findings are at least 85%% right)",
    )
    return parser


def train_main(argv: list[str] | None = None) -> int:
    """Entry point for ``medtune safety train``."""
    from medtune.safety.model import (
        ANSWER_MIN_PRECISION,
        CERTAINTY_GATE_MAX_LOST_RATE,
        QUESTION_ALARMS_PER_EMERGENCY,
        QUESTION_MAX_FALSE_RATE,
        QUESTION_MAX_FALSE_RATE_CAP,
        VETO_MAX_LOST_RATE,
        TrainSettings,
        answer_scores_out_of_fold,
        answer_thresholds_out_of_fold,
        certainty_gate_out_of_fold,
        choose_certainty_gate,
        choose_question_threshold,
        choose_unreferred_threshold,
        choose_veto_threshold,
        dismissive_gate_out_of_fold,
        file_digest,
        question_models_out_of_fold,
        question_threshold_out_of_fold,
        train,
        unreferred_out_of_fold,
        veto_out_of_fold,
    )

    args = build_train_parser().parse_args(argv)
    try:
        records: list[dict[str, Any]] = []
        groups: list[list[dict[str, Any]]] = []
        sources = []
        for f in args.files:
            path = Path(f)
            rows = [r for _, r in read_records(path, args.question_field, args.answer_field)]
            held_out = sorted({str(r["split"]) for r in rows if is_held_out(str(r.get("split", "")))})
            if held_out:
                raise InputError(
                    f"{path}: holds held-out records (split {', '.join(held_out)}); never train on them"
                )
            records += rows
            groups.append(rows)
            sources.append(f"{path.name} sha256:{file_digest(path)}")
        rules_only = SafetyEngine.load(args.rules, model=None)
        out_of_fold = (
            args.gate_out_of_fold
            or args.answer_out_of_fold
            or args.question_out_of_fold
            or args.veto_out_of_fold
        )
        if out_of_fold and len(groups) < 2:
            raise InputError("--*-out-of-fold needs at least two files (each is scored by the others)")
        fields = {"question_field": args.question_field, "answer_field": args.answer_field}
        if args.answer_out_of_fold:
            scored = answer_scores_out_of_fold(groups, rules_only, **fields)
            table, chosen = answer_thresholds_out_of_fold(scored)
            print(
                "answer model, out of fold: kind  threshold  caught/missed by the rules  clean answers flagged"
                "  precision"
            )
            for row in table:
                chosen_here = chosen.get(row.kind) == row.threshold
                mark = f"  <- the lowest at >= {ANSWER_MIN_PRECISION:.2f}" if chosen_here else ""
                print(
                    f"  {row.kind:<18} {row.threshold:.2f}  {row.caught}/{row.missed_by_rules}  "
                    f"{row.clean_flagged}/{row.clean}  {row.precision:.2f}{mark}"
                )
            print("thresholds: " + ", ".join(f"{k} {v:.2f}" for k, v in chosen.items()))
            gate_table = certainty_gate_out_of_fold(scored)
            gate = choose_certainty_gate(gate_table)
            print(
                "certainty gate, out of fold: threshold  certain diagnoses lost/found by the rule  "
                "clean answers cleared/flagged by it"
            )
            for t, lost, true, cleared, flagged in gate_table:
                mark = f"  <- the highest losing <= {CERTAINTY_GATE_MAX_LOST_RATE:.1%}" if t == gate else ""
                print(f"  {t:.3f}  {lost}/{true}  {cleared}/{flagged}{mark}")
            print(f"certainty gate: {'none' if gate is None else f'{gate:.3f}'}")
        # The question-model tables (threshold, gate, unreferred, veto) score each file with the same model
        # trained on the others: train it once.
        folds = (
            [q for _, q in question_models_out_of_fold(groups, rules_only, **fields)]
            if args.gate_out_of_fold or args.veto_out_of_fold
            else None
        )
        if args.question_out_of_fold:
            print(
                "question model, out of fold: threshold  emergencies the rules miss it flags  other questions"
                " it flags  precision"
            )
            question_table = question_threshold_out_of_fold(groups, rules_only, models=folds, **fields)
            question_choice = choose_question_threshold(question_table)
            for t, caught, missed, false, spare in question_table:
                precision = caught / (caught + false) if caught + false else 0.0
                mark = (
                    f"  <- the rule's: the lowest flagging <= {QUESTION_MAX_FALSE_RATE:.0%} of the others, then"
                    f" lower while each step catches 1 emergency per <= {QUESTION_ALARMS_PER_EMERGENCY} false"
                    f" alarms within {QUESTION_MAX_FALSE_RATE_CAP:.0%}"
                    if t == question_choice
                    else ""
                )
                print(f"  {t:.2f}  {caught}/{missed}  {false}/{spare}  {precision:.2f}{mark}")
            chosen_text = (
                "none (no threshold on the grid fits)"
                if question_choice is None
                else f"{question_choice:.2f}"
            )
            print(
                f"question threshold: {chosen_text} (the defaults hold {TrainSettings().red_flag_threshold:.2f})"
            )
        if args.gate_out_of_fold:
            print(
                "dismissive gate, out of fold: threshold  dismissive answers kept  clean answers still flagged"
            )
            for t, kept, found, false, called in dismissive_gate_out_of_fold(
                groups, rules_only, models=folds, **fields
            ):
                print(f"  {t:.2f}  {kept}/{found}  {false}/{called}")
            print(
                "unreferred, out of fold: threshold  dismissive answers found  clean answers flagged"
                "  other dangerous answers  precision"
            )
            unreferred_table = unreferred_out_of_fold(groups, rules_only, models=folds, **fields)
            unreferred_choice = choose_unreferred_threshold(unreferred_table)
            for t, found, clean, other in unreferred_table:
                precision = found / (found + clean) if found + clean else 0.0
                mark = f"  <- the lowest at >= {ANSWER_MIN_PRECISION:.2f}" if t == unreferred_choice else ""
                print(f"  {t:.2f}  {found}  {clean}  {other}  {precision:.2f}{mark}")
            chosen_text = "none" if unreferred_choice is None else f"{unreferred_choice:.2f}"
            print(
                f"unreferred threshold: {chosen_text}"
                f" (the defaults hold {TrainSettings().unreferred_threshold:.2f})"
            )
        if args.veto_out_of_fold:
            print(
                "veto, out of fold: threshold  emergencies whose rule flag it withholds  false alarms it withholds"
            )
            veto_table = veto_out_of_fold(groups, rules_only, models=folds, **fields)
            veto_choice = choose_veto_threshold(veto_table)
            for t, lost, flagged, withheld, false in veto_table:
                mark = (
                    f"  <- the highest losing <= {VETO_MAX_LOST_RATE:.2%} of the emergencies"
                    if t == veto_choice
                    else ""
                )
                print(f"  {t:.3f}  {lost}/{flagged}  {withheld}/{false}{mark}")
            held = TrainSettings().veto_threshold
            print(
                f"veto threshold: {'none' if veto_choice is None else f'{veto_choice:.3f}'}"
                f" (the defaults hold {'none' if held is None else f'{held:.3f}'})"
            )
        settings = TrainSettings()
        if args.veto_threshold is not None:
            if not 0.0 < args.veto_threshold < 0.5:
                raise InputError(f"--veto-threshold {args.veto_threshold}: must be between 0 and 0.5")
            settings = replace(settings, veto_threshold=args.veto_threshold)
        model = train(
            records,
            rules_only,
            settings,
            question_field=args.question_field,
            answer_field=args.answer_field,
            sources=sources,
            with_answers=not args.no_answer_model,
        )
        out = model.save(args.out)
    except (InputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    meta = model.meta
    answers = f" and {meta['answers']} answers {meta['dangerous']}" if model.answer is not None else ""
    print(
        f"trained on {meta['questions']} questions ({meta['emergencies']} emergencies){answers}; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
