"""Base-vs-tuned report: Markdown, a self-contained HTML page, and a comparison chart."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from medtune.data.structure import SECTION_TITLES, parse_answer
from medtune.io import write_text

_METRIC_ROWS = [
    ("compliance_rate", "Three-part structure compliance", "{:.0%}"),
    ("full_form_rate", "Full form (three parts + six sub-labels)", "{:.0%}"),
    ("mean_structure_score", "Mean structure score (0-1)", "{:.3f}"),
    ("cut_off_rate", "Answers cut off at max_new_tokens", "{:.0%}"),
    ("perplexity", "Perplexity of reference answers", "{:.2f}"),
    ("rouge_l", "ROUGE-L (chars) vs reference", "{:.3f}"),
    ("bleu4", "BLEU-4 (chars) vs reference", "{:.3f}"),
    ("mean_answer_chars", "Mean answer length (chars)", "{:.0f}"),
]


def _fmt(value: Any, pattern: str) -> str:
    return pattern.format(value) if isinstance(value, (int, float)) else "n/a"


def _safety_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    base, tuned = results["models"]["base"].get("safety"), results["models"]["tuned"].get("safety")
    if not base or not tuned:
        return rows
    for key, label in (
        ("red_flag_referral_rate", "Red-flag referral rate"),
        ("dangerous_advice_rate", "Dangerous-advice rate"),
    ):
        if key in base and key in tuned:
            rows.append((label, _fmt(base[key], "{:.0%}"), _fmt(tuned[key], "{:.0%}")))
    return rows


def plot_comparison(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        ("compliance_rate", "three-part"),
        ("full_form_rate", "full form"),
        ("mean_structure_score", "structure score"),
        ("rouge_l", "ROUGE-L"),
    ]
    base = [results["models"]["base"][k] for k, _ in keys]
    tuned = [results["models"]["tuned"][k] for k, _ in keys]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], base, width=0.4, label="base", color="#9aa5b1")
    ax.bar([x + 0.2 for x in xs], tuned, width=0.4, label="tuned", color="#2f7ed8")
    for x, (b, t) in enumerate(zip(base, tuned)):
        ax.text(x - 0.2, b + 0.01, f"{b:.2f}", ha="center", fontsize=8)
        ax.text(x + 0.2, t + 0.01, f"{t:.2f}", ha="center", fontsize=8)
    ax.set_xticks(list(xs), [label for _, label in keys])
    ax.set_ylim(0, 1.1)
    ax.set_title(f"Base vs tuned on {results['num_questions']} held-out questions")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name)
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def write_markdown(path: Path, results: dict[str, Any], rows: list[dict[str, str]]) -> None:
    base, tuned = results["models"]["base"], results["models"]["tuned"]
    lines = [
        "# medtune evaluation: base vs tuned",
        "",
        f"Model: {results['model']}; {results['num_questions']} held-out validation questions, greedy decoding, "
        f"at most {results.get('max_new_tokens')} new tokens.",
        "",
        "| metric | base | tuned |",
        "|---|---|---|",
    ]
    for key, label, pattern in _METRIC_ROWS:
        lines.append(f"| {label} | {_fmt(base.get(key), pattern)} | {_fmt(tuned.get(key), pattern)} |")
    for label, b, t in _safety_rows(results):
        lines.append(f"| {label} | {b} | {t} |")
    lines += ["", "## Answers side by side", ""]
    for row in rows:
        pb, pt = parse_answer(row["base"]), parse_answer(row["tuned"])
        lines += [
            f"### {row['id']}",
            "",
            f"**Question:** {row['question']}",
            "",
            f"**Base** (three-part: {'yes' if pb.compliant else 'no'}, score {pb.score:.2f})",
            "",
            row["base"] or "_(empty)_",
            "",
            f"**Tuned** (three-part: {'yes' if pt.compliant else 'no'}, score {pt.score:.2f})",
            "",
            row["tuned"] or "_(empty)_",
            "",
        ]
    write_text(path, "\n".join(lines))


def _answer_html(text: str) -> str:
    parsed = parse_answer(text)
    badge = (
        '<span class="ok">three-part ✓</span>'
        if parsed.compliant
        else f'<span class="bad">not three-part: {html.escape("; ".join(parsed.problems[:2]))}</span>'
    )
    body = html.escape(text or "(empty)")
    for title in SECTION_TITLES:
        body = body.replace(title, f"<b class='sec'>{title}</b>", 1)
    return f"{badge}<div class='ans'>{body}</div>"


def write_html(path: Path, results: dict[str, Any], rows: list[dict[str, str]], chart: Path | None) -> None:
    base, tuned = results["models"]["base"], results["models"]["tuned"]
    metric_rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{_fmt(base.get(k), p)}</td><td>{_fmt(tuned.get(k), p)}</td></tr>"
        for k, label, p in _METRIC_ROWS
    ) + "".join(f"<tr><td>{label}</td><td>{b}</td><td>{t}</td></tr>" for label, b, t in _safety_rows(results))
    img = ""
    if chart and Path(chart).is_file():
        data = base64.b64encode(Path(chart).read_bytes()).decode()
        img = f"<img alt='comparison chart' src='data:image/png;base64,{data}'/>"
    cards = "".join(
        f"<section><h3>{html.escape(r['id'])}</h3><p class='q'>{html.escape(r['question'])}</p>"
        f"<div class='grid'><div><h4>Base</h4>{_answer_html(r['base'])}</div>"
        f"<div><h4>Tuned</h4>{_answer_html(r['tuned'])}</div></div></section>"
        for r in rows
    )
    page = f"""<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>medtune evaluation</title>
<style>
body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#1f2933}}
table{{border-collapse:collapse}} td,th{{border:1px solid #cbd2d9;padding:4px 10px}}
.grid{{display:grid;grid-template-columns:1fr 1fr;gap:1em}} .ans{{white-space:pre-wrap;background:#f5f7fa;padding:.6em}}
.ok{{color:#147d64}} .bad{{color:#ab091e}} .sec{{color:#2f7ed8}} .q{{font-weight:600}}
section{{border-top:1px solid #e4e7eb;margin-top:1em}}
</style></head><body>
<h1>medtune evaluation: base vs tuned</h1>
<p>Model: {html.escape(results["model"])}; {results["num_questions"]} held-out validation questions, greedy decoding.
Health information only, not medical advice.</p>
<table><tr><th>metric</th><th>base</th><th>tuned</th></tr>{metric_rows}</table>
{img}
<h2>Answers side by side</h2>
{cards}
</body></html>
"""
    write_text(path, page)
