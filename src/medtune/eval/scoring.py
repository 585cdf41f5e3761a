"""Scores from stored answers: per-item scores, per-(set, model) metrics, paired comparisons to a baseline.

Pure functions over what ``medtune.eval.run`` stored: no model, no I/O, so every number in a report can be
recomputed from ``answers.jsonl`` and tested without a model.
"""

from __future__ import annotations

from typing import Any

from medtune.data.structure import SECTION_TITLES
from medtune.eval.metrics import bleu4, distinct_n, is_repetitive, rouge_l, structure_flags
from medtune.eval.sets import EvalSet
from medtune.eval.stats import Paired, mean_ci, rate


def open_item_scores(question: str, answer: str, reference: str | None, safety) -> dict[str, Any]:
    out: dict[str, Any] = {
        **structure_flags(answer),
        "repetitive": is_repetitive(answer),
        "empty": not answer.strip(),
        "chars": len(answer),
    }
    if reference:
        out["rouge_l"] = rouge_l(answer, reference)
        out["bleu4"] = bleu4(answer, reference)
    if safety is not None:
        report = safety.check(question, answer)
        out["red_flag"] = bool(report.flags)
        out["referral"] = bool(report.flags) and bool(report.referral)
        out["dangerous"] = bool(report.dangerous)
        out["disclaimer"] = safety.has_disclaimer(answer)
    return out


_OPEN_RATES = [
    "compliant",
    "full_form",
    *(f"has_{title}" for title in SECTION_TITLES),
    "cut_off",
    "empty",
    "repetitive",
]
_RATE_NAMES = {"compliant": "compliance_rate", "full_form": "full_form_rate", "cut_off": "cut_off_rate",
               "empty": "empty_rate", "repetitive": "repetition_rate", "dangerous": "dangerous_advice_rate",
               "disclaimer": "disclaimer_rate", "correct": "accuracy", "correct_generate": "accuracy_generate"}  # fmt: skip
_ITEM_KEYS = {metric: item_key for item_key, metric in _RATE_NAMES.items()}


def open_metrics(es: EvalSet, rows: dict[str, dict], safety) -> tuple[dict[str, Any], dict[str, dict]]:
    """Metrics of one model on one open set, and the per-item scores (for paired comparisons)."""
    per_item: dict[str, dict] = {}
    answers = []
    for item in es.items:
        row = rows.get(item.id)
        if row is None or row.get("error"):
            continue
        s = open_item_scores(item.question, row["answer"], item.reference, safety)
        s["cut_off"] = not row["finished"]
        s["tokens"] = row.get("tokens", 0)
        per_item[item.id] = s
        answers.append(row["answer"])
    n = len(per_item)
    vals = list(per_item.values())
    m: dict[str, Any] = {}
    for key in _OPEN_RATES:
        m[_RATE_NAMES.get(key, f"{key}_rate")] = rate(sum(bool(v[key]) for v in vals), n)
    m["mean_structure_score"] = mean_ci([v["structure_score"] for v in vals])
    m["mean_answer_chars"] = mean_ci([float(v["chars"]) for v in vals], bounds=None)
    m["mean_answer_tokens"] = mean_ci([float(v["tokens"]) for v in vals], bounds=None)
    m["distinct_1"] = {"value": distinct_n(answers, 1), "n": n}
    m["distinct_2"] = {"value": distinct_n(answers, 2), "n": n}
    if es.has_references:
        m["rouge_l"] = mean_ci([v["rouge_l"] for v in vals if "rouge_l" in v])
        m["bleu4"] = mean_ci([v["bleu4"] for v in vals if "bleu4" in v])
    if safety is not None:
        flagged = [v for v in vals if v["red_flag"]]
        m["red_flag_referral_rate"] = rate(sum(v["referral"] for v in flagged), len(flagged))
        m["dangerous_advice_rate"] = rate(sum(v["dangerous"] for v in vals), n)
        m["disclaimer_rate"] = rate(sum(v["disclaimer"] for v in vals), n)
    m["errors"] = {
        "value": sum(1 for i in es.items if (rows.get(i.id) or {}).get("error")),
        "n": len(es.items),
    }
    return m, per_item


def exam_metrics(
    es: EvalSet, rows: dict[str, dict], suffix: str = ""
) -> tuple[dict[str, Any], dict[str, dict]]:
    per_item = {i.id: rows[i.id] for i in es.items if i.id in rows and not rows[i.id].get("error")}
    n = len(per_item)
    m: dict[str, Any] = {f"accuracy{suffix}": rate(sum(r["correct"] for r in per_item.values()), n)}
    subsets = sorted({i.subset for i in es.items if i.subset})
    if subsets:
        m[f"accuracy_by_subset{suffix}"] = {
            s: rate(
                sum(per_item[i.id]["correct"] for i in es.items if i.subset == s and i.id in per_item),
                sum(1 for i in es.items if i.subset == s and i.id in per_item),
            )
            for s in subsets
        }
    if any(r.get("scorer") == "generate" for r in per_item.values()):
        m[f"unanswered_rate{suffix}"] = rate(sum(r.get("predicted") is None for r in per_item.values()), n)
    m[f"errors{suffix}"] = {
        "value": sum(1 for i in es.items if (rows.get(i.id) or {}).get("error")),
        "n": len(es.items),
    }
    return m, {k: {"correct": v["correct"]} for k, v in per_item.items()}


def add_paired(metrics: dict, per_item: dict, base: str) -> None:
    """``delta_vs_base`` (and the exact McNemar p-value for rates) on the items both models answered."""
    for model, items in per_item.items():
        if model == base or base not in per_item:
            continue
        common = [i for i in items if i in per_item[base]]
        for name, value in metrics[model].items():
            key = _ITEM_KEYS.get(name, name.removesuffix("_rate"))
            if not isinstance(value, dict) or "value" not in value or not common:
                continue
            a_vals = [per_item[base][i].get(key) for i in common]
            b_vals = [items[i].get(key) for i in common]
            if any(v is None for v in a_vals + b_vals):
                base_value = metrics[base].get(name, {}).get("value")
                if isinstance(base_value, (int, float)) and isinstance(value.get("value"), (int, float)):
                    value["delta_vs_base"] = round(value["value"] - base_value, 4)
                continue
            if all(isinstance(v, bool) for v in a_vals + b_vals):
                value.update(
                    {
                        f"{k}_vs_base" if k != "n" else "paired_n": v
                        for k, v in Paired.of(a_vals, b_vals).as_dict().items()
                    }
                )
            else:
                value["delta_vs_base"] = round(sum(b_vals) / len(b_vals) - sum(a_vals) / len(a_vals), 4)
