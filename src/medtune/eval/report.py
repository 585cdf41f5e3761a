"""The evaluation report: ``report.md``, a self-contained ``report.html`` (charts inlined, opens offline)
and one chart per set.

One summary table holds every model x set x metric with its 95% interval and, for every model but the
baseline, the paired difference to it (with McNemar's exact p-value for rates). Then per set: a chart,
exam accuracy per subset, the items that could not be scored, the judge's verdicts, and the open answers
side by side with their parsed sections, the worst regressions against the baseline first.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from medtune.data.structure import SECTION_TITLES, parse_answer
from medtune.io import write_text

# (metric, label, percent?) in the order a reader wants them; others are listed after these.
_ORDER = [
    ("accuracy", "Exam accuracy", True),
    ("accuracy_generate", "Exam accuracy (generation scorer)", True),
    ("unanswered_rate_generate", "No answer readable (generation scorer)", True),
    ("unanswered_rate", "No answer readable (generation)", True),
    ("compliance_rate", "Three-part structure compliance", True),
    ("full_form_rate", "Full form (three parts + six sub-labels)", True),
    ("mean_structure_score", "Mean structure score (0-1)", False),
    *((f"has_{title}_rate", f"Section {title} present", True) for title in SECTION_TITLES),
    ("cut_off_rate", "Answers cut off at max_new_tokens", True),
    ("empty_rate", "Empty answers", True),
    ("repetition_rate", "Answers that loop (a span repeated 3x)", True),
    ("perplexity", "Perplexity of reference answers", False),
    ("val_loss", "Loss on reference answers (per token)", False),
    ("rouge_l", "ROUGE-L (chars) vs reference", False),
    ("bleu4", "BLEU-4 (chars) vs reference", False),
    ("distinct_1", "Distinct-1", False),
    ("distinct_2", "Distinct-2", False),
    ("red_flag_referral_rate", "Red-flag questions referred to urgent care", True),
    ("dangerous_advice_rate", "Answers with dangerous advice", True),
    ("disclaimer_rate", "Answers with a disclaimer", True),
    ("mean_answer_chars", "Mean answer length (chars)", False),
    ("mean_answer_tokens", "Mean answer length (tokens)", False),
    ("errors", "Items that failed (endpoint errors)", False),
    ("errors_generate", "Items that failed (generation scorer)", False),
]
_SHORT = {"compliance_rate": "three-part", "full_form_rate": "full form", "cut_off_rate": "cut off",
          "red_flag_referral_rate": "red-flag referral", "dangerous_advice_rate": "dangerous advice"}  # fmt: skip
_LABELS = {k: (label, pct) for k, label, pct in _ORDER}


def _num(v: Any, pct: bool) -> str:
    if not isinstance(v, (int, float)):
        return "n/a"
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"


def cell(m: dict[str, Any] | None, pct: bool) -> str:
    """``72.0% [62.5, 79.9] n=100`` plus the paired difference to the baseline when there is one."""
    if not isinstance(m, dict) or "value" not in m:
        return "n/a"
    text = _num(m["value"], pct)
    ci = m.get("ci95")
    if ci and None not in ci and m.get("value") is not None:
        lo, hi = (100 * ci[0], 100 * ci[1]) if pct else ci
        text += f" [{lo:.1f}, {hi:.1f}]" if pct else f" [{lo:.3f}, {hi:.3f}]"
    if m.get("n") is not None:
        text += f" n={m['n']}"
    if "delta_vs_base" in m:
        d = m["delta_vs_base"]
        text += f"; Δ {'+' if d >= 0 else ''}{_num(d, pct) if pct else f'{d:.3f}'}"
        if "mcnemar_p_vs_base" in m:
            text += f" (p={m['mcnemar_p_vs_base']:.3g})"
    return text


def _metric_keys(set_metrics: dict[str, dict]) -> list[str]:
    present = {k for m in set_metrics.values() for k, v in m.items() if isinstance(v, dict) and "value" in v}
    return [k for k, _, _ in _ORDER if k in present] + sorted(present - set(_LABELS))


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    models = list(results["models"])
    rows = []
    for set_name, set_metrics in results["sets"].items():
        for key in _metric_keys(set_metrics):
            label, pct = _LABELS.get(key, (key, False))
            rows.append([set_name, label] + [cell(set_metrics.get(m, {}).get(key), pct) for m in models])
    return rows


def plot_set(set_name: str, info: dict[str, Any], set_metrics: dict[str, dict], path: Path) -> Path | None:
    """Grouped bars with 95% intervals: accuracy per subset (exams) or the form and safety rates (open)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(set_metrics)
    if info["kind"] == "exam":
        first = next(iter(set_metrics.values()))
        groups = [("all", "accuracy")] + [(s, s) for s in first.get("accuracy_by_subset", {})]

        def get(m, g):
            return m.get("accuracy") if g[1] == "accuracy" else m.get("accuracy_by_subset", {}).get(g[1])

        title = f"{set_name}: exam accuracy ({info['items']} items)"
    else:
        keys = [
            "compliance_rate",
            "full_form_rate",
            "cut_off_rate",
            "red_flag_referral_rate",
            "dangerous_advice_rate",
        ]
        groups = [
            (_LABELS[k][0].split(" (")[0][:22], k) for k in keys if any(k in m for m in set_metrics.values())
        ]

        def get(m, g):
            return m.get(g[1])

        title = f"{set_name}: answer form and safety ({info['items']} questions)"
    if not groups or not models:
        return None
    width = 0.8 / len(models)
    colors = ["#9aa5b1", "#2f7ed8", "#e8833a", "#3ebd93", "#8662c7", "#d64545"]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups) + 2), 3.8))
    for j, model in enumerate(models):
        xs, ys, err = [], [], [[], []]
        for x, g in enumerate(groups):
            m = get(set_metrics[model], g)
            if not isinstance(m, dict) or m.get("value") is None:
                continue
            lo, hi = m.get("ci95") or (m["value"], m["value"])
            xs.append(x - 0.4 + width * (j + 0.5))
            ys.append(m["value"])
            err[0].append(max(0.0, m["value"] - lo))
            err[1].append(max(0.0, hi - m["value"]))
        ax.bar(xs, ys, width=width, yerr=err, capsize=3, label=model, color=colors[j % len(colors)])
    ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name)
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def worst_first(rows: list[dict[str, Any]], models: list[str], baseline: str) -> list[dict[str, Any]]:
    """Open answers ordered by how much the other models fell below the baseline (structure, then overlap)."""

    def drop(row):
        base = row.get(f"{baseline}_scores") or {}
        worst = 0.0
        for m in models:
            s = row.get(f"{m}_scores") or {}
            if m == baseline or not s or not base:
                continue
            d = (s.get("structure_score", 0) - base.get("structure_score", 0)) + (
                s.get("rouge_l", 0) - base.get("rouge_l", 0)
            )
            worst = min(worst, d)
        return worst

    return sorted(rows, key=drop)


def _sections_html(text: str | None) -> str:
    if not text:
        return "<p class='bad'>(no answer)</p>"
    parsed = parse_answer(text)
    badge = (
        '<span class="ok">three-part ✓</span>'
        if parsed.compliant
        else f'<span class="bad">not three-part: {html.escape("; ".join(parsed.problems[:2]))}</span>'
    )
    if parsed.sections:
        body = "".join(
            f"<h5>{html.escape(title)}</h5><div class='ans'>{html.escape(content)}</div>"
            for title, content in parsed.sections.items()
        )
    else:
        body = f"<div class='ans'>{html.escape(text)}</div>"
    return badge + body


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _table_md(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def _subset_rows(set_metrics: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    models = list(set_metrics)
    subsets: list[str] = []
    for m in set_metrics.values():
        subsets += [s for s in m.get("accuracy_by_subset", {}) if s not in subsets]
    rows = [
        [s] + [cell(set_metrics[m].get("accuracy_by_subset", {}).get(s), True) for m in models]
        for s in subsets
    ]
    return ["subset", *models], rows


def _judge_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for set_name, pairs in results.get("judge", {}).items():
        for pair, s in pairs.items():
            rows.append(
                [
                    set_name,
                    pair.replace(":", " vs "),
                    cell(s["win"], True),
                    cell(s["tie"], True),
                    cell(s["loss"], True),
                    str(s["invalid"]),
                ]
            )
    return rows


def write_reports(
    out_dir: Path, results: dict[str, Any], rows: list[dict[str, Any]], max_cards: int = 40
) -> None:
    models = list(results["models"])
    baseline = results["baseline"]
    header = ["set", "metric", *models]
    summary = summary_rows(results)
    charts = {}
    for set_name, info in results["set_info"].items():
        chart = plot_set(set_name, info, results["sets"][set_name], out_dir / f"chart_{set_name}.png")
        if chart:
            charts[set_name] = chart

    md = [
        "# medtune evaluation",
        "",
        f"Models: {', '.join(models)} (baseline for Δ and paired p-values: {baseline}). Every rate: value [95% Wilson "
        "interval] n; Δ is the paired difference to the baseline on the same items, p McNemar's exact test.",
        "",
        *_table_md(header, summary),
        "",
    ]
    parts = [f"<h2>Summary</h2><p>Models: {html.escape(', '.join(models))}; Δ and p against <b>{html.escape(baseline)}</b> "
             "on the same items (McNemar's exact test for rates). Intervals are 95% Wilson intervals.</p>",
             _table_html(header, summary)]  # fmt: skip
    judge = _judge_rows(results)
    if judge:
        jh = ["set", "pair", "win", "tie", "loss", "invalid"]
        md += ["## Judge (both orders; an order-dependent verdict is a tie)", "", *_table_md(jh, judge), ""]
        parts.append(
            "<h2>Judge (both orders; an order-dependent verdict is a tie)</h2>" + _table_html(jh, judge)
        )
    for set_name, info in results["set_info"].items():
        set_metrics = results["sets"][set_name]
        md += [f"## Set `{set_name}` ({info['kind']}, {info['items']} items, {info['path']})", ""]
        parts.append(
            f"<h2 id='set-{html.escape(set_name)}'>Set {html.escape(set_name)} ({info['kind']}, {info['items']} items)</h2>"
        )
        if set_name in charts:
            data = base64.b64encode(charts[set_name].read_bytes()).decode()
            parts.append(f"<img alt='chart {html.escape(set_name)}' src='data:image/png;base64,{data}'/>")
            md += [f"![{set_name}]({charts[set_name].name})", ""]
        if info["kind"] == "exam":
            sh, sr = _subset_rows(set_metrics)
            if sr:
                md += ["Accuracy per subset:", "", *_table_md(sh, sr), ""]
                parts.append("<h3>Accuracy per subset</h3>" + _table_html(sh, sr))
        if info["problems"]:
            probs = [[p["where"], p["reason"]] for p in info["problem_examples"]]
            md += [
                f"{info['problems']} items could not be scored:",
                "",
                *_table_md(["where", "reason"], probs),
                "",
            ]
            parts.append(
                f"<h3>{info['problems']} items could not be scored</h3>"
                + _table_html(["where", "reason"], probs)
            )
        if info["kind"] == "open":
            set_rows = worst_first([r for r in rows if r["set"] == set_name], models, baseline)[:max_cards]
            md += [f"### Answers side by side (worst regressions against {baseline} first)", ""]
            cards = []
            for r in set_rows:
                md += [f"#### {r['id']}", "", f"**Question:** {r['question']}", ""]
                cols = []
                for m in models:
                    s = r.get(f"{m}_scores") or {}
                    md += [
                        f"**{m}** (three-part: {'yes' if s.get('compliant') else 'no'})",
                        "",
                        r.get(m) or "_(no answer)_",
                        "",
                    ]
                    cols.append(f"<div><h4>{html.escape(m)}</h4>{_sections_html(r.get(m))}</div>")
                ref = (
                    f"<details><summary>reference</summary><div class='ans'>{html.escape(r['reference'])}</div></details>"
                    if r.get("reference")
                    else ""
                )
                cards.append(
                    f"<section class='card'><h3>{html.escape(str(r['id']))}</h3><p class='q'>{html.escape(r['question'])}</p>"
                    f"{ref}<div class='grid' style='grid-template-columns:repeat({len(models)},1fr)'>{''.join(cols)}</div></section>"
                )
            parts.append(
                f"<h3>Answers side by side (worst regressions against {html.escape(baseline)} first)</h3>"
                + "".join(cards)
            )
    page = f"""<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>medtune evaluation</title>
<style>
body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#1f2933}}
table{{border-collapse:collapse;margin:.5em 0}} td,th{{border:1px solid #cbd2d9;padding:4px 8px;font-size:13px}}
.grid{{display:grid;gap:1em}} .ans{{white-space:pre-wrap;background:#f5f7fa;padding:.5em}}
.ok{{color:#147d64}} .bad{{color:#ab091e}} .q{{font-weight:600}} h5{{margin:.4em 0 .1em;color:#2f7ed8}}
section.card{{border-top:1px solid #e4e7eb;margin-top:1em}}
</style></head><body>
<h1>medtune evaluation</h1>
<p>Health information only, not medical advice. Answers are the raw model output (no safety layer).</p>
{"".join(parts)}
</body></html>
"""
    write_text(out_dir / "report.md", "\n".join(md))
    write_text(out_dir / "report.html", page)
