"""What ``medtune data prepare`` did, for people: ``data_report.json``, ``data_report.md``, ``lengths.png``
and ``dropped.jsonl`` (one line per dropped record: id, source, rule, detail, the record it duplicates).

"Why did record X disappear?" is answered by ``explain_record(cfg, X)`` from those files.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medtune.data.clean import Drop, RuleStats, drop_example
from medtune.data.schema import QARecord

LENGTH_BINS = (0, 20, 50, 100, 200, 300, 500, 800, 1200, 2000, 4000)


class DropLog:
    """Every dropped record (compactly, as tuples) plus per-rule counts and the first examples."""

    def __init__(self, examples: int = 5) -> None:
        self.rows: list[tuple[str, str, str, str, str | None]] = []
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[dict[str, Any]]] = {}
        self.n_examples = examples

    def add(self, rec: QARecord, rule: str, drop: Drop) -> None:
        self.rows.append((rec.id, rec.source, rule, drop.detail, drop.kept))
        self.counts[rule] += 1
        shown = self.examples.setdefault(rule, [])
        if len(shown) < self.n_examples:
            shown.append(drop_example(rec, rule, drop))

    def jsonl_rows(self) -> Iterator[dict[str, Any]]:
        for rid, source, rule, detail, kept in self.rows:
            row = {"id": rid, "source": source, "rule": rule, "detail": detail}
            if kept is not None:
                row["kept"] = kept
            yield row


def length_summary(values: Sequence[int]) -> dict[str, Any]:
    if not len(values):
        return {}
    arr = np.asarray(values)
    edges = [*LENGTH_BINS, max(int(arr.max()) + 1, LENGTH_BINS[-1] + 1)]
    hist, _ = np.histogram(arr, bins=edges)
    return {
        "min": int(arr.min()),
        "mean": round(float(arr.mean()), 1),
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "max": int(arr.max()),
        "histogram": {f"{lo}-{hi - 1}": int(c) for lo, hi, c in zip(edges[:-1], edges[1:], hist)},
    }


def rule_table(stats: dict[str, RuleStats]) -> list[dict[str, Any]]:
    rows = []
    for name, st in stats.items():
        row: dict[str, Any] = {
            "rule": name,
            "in": st.seen,
            "out": st.seen - st.dropped,
            "dropped": st.dropped,
        }
        if st.counts:
            row["counts"] = dict(st.counts)
        rows.append(row)
    return rows


def plot_lengths(question_chars: Sequence[int], answer_chars: Sequence[int]) -> bytes:
    """PNG with the question and answer length histograms of the kept records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, values, title in ((axes[0], question_chars, "question"), (axes[1], answer_chars, "answer")):
        arr = np.asarray(values) if len(values) else np.zeros(1)
        top = max(float(np.percentile(arr, 99.5)), 1.0)
        ax.hist(np.clip(arr, 0, top), bins=50, color="#4C72B0")
        ax.set_title(f"{title} length (characters), n={len(values)}")
        ax.set_xlabel("characters (clipped at the 99.5th percentile)")
        ax.set_ylabel("records")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def render_summary(report: dict[str, Any]) -> str:
    """The readable companion of data_report.json."""
    c = report["counts"]
    lines = [
        "# Data preparation report",
        "",
        f"Read {c['read']} records from {len(report['sources'])} source(s); kept {c['kept']}: "
        f"**{c['train']} train / {c['val']} validation**. Quarantined (unreadable): {c.get('quarantined', 0)}.",
        "",
        "Why a record disappeared: look up its id or file:line in `dropped.jsonl` (or `quarantine.jsonl` if "
        "it could not be read); `medtune.data.report.explain_record(cfg, key)` does it for you.",
        "",
        "## Rules, in pipeline order",
        "",
        "| rule | in | out | dropped | also |",
        "|---|---:|---:|---:|---|",
    ]
    for row in report["rules"]:
        also = ", ".join(f"{k}={v}" for k, v in row.get("counts", {}).items())
        lines.append(f"| {row['rule']} | {row['in']} | {row['out']} | {row['dropped']} | {also} |")
    if report.get("pii"):
        lines += ["", "## Personal data replaced", ""]
        lines += [f"- {kind}: {n}" for kind, n in report["pii"].items()]
    near = report.get("near_duplicates") or {}
    if near.get("enabled"):
        lines += [
            "",
            "## Near-duplicates",
            "",
            f"MinHash LSH, threshold {near['threshold']}, {near['bands']} bands x {near['rows']} rows: "
            f"{near['candidate_pairs']} candidate pairs, {near['duplicate_pairs']} confirmed, "
            f"{near['clusters']} clusters, {near['dropped']} records dropped.",
        ]
        for cl in near.get("largest_clusters", [])[:5]:
            lines.append(
                f"- kept `{cl['kept']}` ({cl['source']}), dropped {cl['size'] - 1}: {cl['question']}"
            )
    split = report["split"]
    lines += [
        "",
        "## Split",
        "",
        f"Seed {split['seed']}, validation ratio {split['val_ratio']}. Near-duplicate question groups kept on "
        f"one side: {split.get('question_groups', 0)} groups holding {split.get('records_in_groups', 0)} "
        f"records. Leakage audit: {split.get('audit_matches', 0)} validation questions matched a training "
        "question and were moved to training.",
    ]
    cont = report.get("contamination") or {}
    if cont.get("eval_sets"):
        lines += [
            "",
            "## Evaluation-set contamination",
            "",
            f"{cont['questions']} evaluation questions from {', '.join(cont['eval_sets'])}; "
            f"{cont['dropped']} records dropped (threshold {cont['threshold']}).",
        ]
    lines += ["", "## Examples of dropped records", ""]
    for rule, examples in report["dropped_examples"].items():
        lines.append(f"### {rule}")
        lines += [f"- `{e['id']}` {e['source']}: {e['detail']}" for e in examples]
        lines.append("")
    lines += ["## Lengths (characters, kept records)", "", "![lengths](lengths.png)", ""]
    for part in ("question_chars", "answer_chars"):
        s = report[part]
        if s:
            lines.append(
                f"- {part}: min {s['min']}, median {s['median']}, mean {s['mean']}, p95 {s['p95']}, max {s['max']}"
            )
    lines += ["", "## Departments (kept)", ""]
    lines += [f"- {d}: {n}" for d, n in list(report["departments"].items())[:30]]
    lines += [
        "",
        "## Sources",
        "",
        "| source | read | quarantined | dropped | kept |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in report["sources"]:
        lines.append(f"| {s['path']} | {s['read']} | {s['quarantined']} | {s['dropped']} | {s['kept']} |")
    return "\n".join(lines) + "\n"


def _scan_jsonl(path: Path, key: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if key not in line:
                continue
            row = json.loads(line)
            if key in (row.get("id"), row.get("source")):
                return row
    return None


def explain_record(cfg: Any, key: str) -> str:
    """One sentence on what happened to the record with id (or source ``file:line``) ``key``."""
    out = cfg.data_dir
    for split in ("train", "val"):
        row = _scan_jsonl(out / f"{split}.jsonl", key)
        if row:
            return f"{row['id']} ({row['source']}) is in {split}.jsonl"
    row = _scan_jsonl(out / "dropped.jsonl", key)
    if row:
        kept = f"; the record kept instead is {row['kept']}" if row.get("kept") else ""
        return f"{row['id']} ({row['source']}) was dropped by rule '{row['rule']}': {row['detail']}{kept}"
    row = _scan_jsonl(out / "quarantine.jsonl", key)
    if row:
        return f"{row['source']} could not be read: {row['error']}"
    if (out / "dropped.jsonl").is_file():
        return f"{key}: no record with this id or source in {out} (was it in the configured sources?)"
    return f"{out}: no prepared data; run `medtune data prepare` with this config first"
