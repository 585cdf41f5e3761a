"""``medtune data prepare``: read every source, clean, drop duplicates, split 90/10, and explain it all.

Stages: read (streaming, per record: quarantine or stop on bad input) -> cleaning rules (medtune.data.clean,
then any ``extra_rules``) -> exact dedup -> near-duplicate dedup (MinHash LSH) -> evaluation-set
contamination -> ``max_records`` -> split with near-duplicate questions kept on one side -> leakage audit.

Outputs under ``<run_dir>/data/``: ``train.jsonl``, ``val.jsonl``, ``stats.json``, ``data_report.json``,
``data_report.md``, ``lengths.png``, ``dropped.jsonl`` and, with ``on_error: skip``, ``quarantine.jsonl``.
They are staged under temporary names and renamed into place together once everything succeeded, so a
failed run leaves the previous outputs (or none) and never a mix.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from medtune.config import Config, DataConfig
from medtune.data.clean import (
    Drop,
    Rule,
    RulePipeline,
    RuleStats,
    build_rules,
    normalize_text,
    normalize_unicode,
    strip_boilerplate,
)
from medtune.data.dedup import NearDupFinder, exact_key
from medtune.data.readers import ReadOptions, expand_sources, iter_records, iter_rows, source_kind
from medtune.data.report import DropLog, length_summary, plot_lengths, render_summary, rule_table
from medtune.data.schema import DataError, QARecord
from medtune.data.split import grouped_split, split_key

__all__ = ["PrepareResult", "load_split", "normalize_text", "prepare", "split_key", "strip_boilerplate"]

logger = logging.getLogger(__name__)
_LARGEST_CLUSTERS = 50


@dataclass
class PrepareResult:
    train: list[QARecord]
    val: list[QARecord]
    stats: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None


class _Texts(Sequence[str]):
    """Question (+ answer) texts of records, built on access so a million joined strings never coexist."""

    def __init__(self, records: Sequence[QARecord], with_answer: bool) -> None:
        self.records = records
        self.with_answer = with_answer

    def __len__(self) -> int:
        return len(self.records)

    def _one(self, rec: QARecord) -> str:
        return f"{rec.question}\n{rec.answer}" if self.with_answer else rec.question

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self._one(r) for r in self.records[i]]
        return self._one(self.records[i])


class _StagedOutputs:
    """Files written beside their targets under temporary names and renamed into place together."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.staged: list[tuple[str, Path]] = []

    def _tmp(self, name: str) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.out_dir, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        self.staged.append((name, Path(tmp)))
        return Path(tmp)

    def write_text(self, name: str, text: str) -> None:
        self._tmp(name).write_text(text, encoding="utf-8")

    def write_bytes(self, name: str, data: bytes) -> None:
        self._tmp(name).write_bytes(data)

    def write_jsonl(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        import json

        with open(self._tmp(name), "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def write_json(self, name: str, obj: Any) -> None:
        import json

        self.write_text(name, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")

    def commit(self, remove: Iterable[str] = ()) -> None:
        for name, tmp in self.staged:
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.out_dir / name)
        for name in remove:  # outputs of an earlier run that this run does not produce
            (self.out_dir / name).unlink(missing_ok=True)
        self.staged.clear()

    def abort(self) -> None:
        for _, tmp in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged.clear()


def _eval_question(obj: Any, where: str) -> str:
    if isinstance(obj, dict):
        for key in ("question", "instruction", "ask", "query", "prompt"):
            if isinstance(obj.get(key), str):
                extra = obj.get("input") if key == "instruction" else None
                return f"{obj[key]}\n{extra}" if isinstance(extra, str) and extra else obj[key]
        turns = obj.get("messages") or obj.get("conversations")
        if isinstance(turns, list):
            users = [
                t.get("content", t.get("value"))
                for t in turns
                if isinstance(t, dict) and str(t.get("role", t.get("from"))).lower() in ("user", "human")
            ]
            if users and isinstance(users[-1], str):
                return users[-1]
    raise DataError(
        f"{where}: no question in this evaluation record (question/instruction/messages)", where=where
    )


def _read_eval_sets(dcfg: DataConfig) -> tuple[list[str], list[str]]:
    questions, wheres = [], []
    for path in expand_sources(dcfg.eval_sets):
        for row in iter_rows(path, ReadOptions(encoding=dcfg.encoding)):
            try:
                if isinstance(row, DataError):
                    raise row
                q = normalize_text(normalize_unicode(_eval_question(row.obj, row.where)))
            except DataError:
                if dcfg.on_error == "fail":
                    raise
                logger.warning("evaluation set: skipping an unreadable record", exc_info=True)
                continue
            questions.append(q)
            wheres.append(row.where)
    return questions, wheres


def prepare(cfg: Config, extra_rules: Sequence[Rule] = ()) -> PrepareResult:
    """Run the whole data stage for ``cfg``; ``extra_rules`` run after the built-in cleaning rules and
    before deduplication (each is counted and reported like a built-in rule)."""
    dcfg = cfg.data
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    sources = expand_sources([dcfg.raw_file, *dcfg.extra_files])
    opts = ReadOptions.from_config(dcfg)
    pipeline = RulePipeline(build_rules(dcfg), dcfg.report_examples)
    for rule in extra_rules:
        pipeline.add(rule)
    drops = DropLog(dcfg.report_examples)
    counts: Counter[str] = Counter()
    quarantine: list[dict[str, Any]] = []
    src_stats = [
        {"path": str(p), "kind": source_kind(p), "read": 0, "quarantined": 0, "dropped": 0, "kept": 0}
        for p in sources
    ]
    records: list[QARecord] = []
    rec_src: list[int] = []
    exact_seen: dict[bytes, int] = {}
    exact_stats = RuleStats()
    ids_seen: set[str] = set()

    def drop(rec: QARecord, src: int, rule: str, why: Drop) -> None:
        drops.add(rec, rule, why)
        src_stats[src]["dropped"] += 1

    for src, path in enumerate(sources):
        try:
            for item in iter_records(path, options=opts):
                if isinstance(item, DataError):
                    if dcfg.on_error == "fail":
                        raise item
                    quarantine.append(
                        {"source": item.where or str(path), "error": str(item), "raw": item.raw}
                    )
                    src_stats[src]["quarantined"] += 1
                    continue
                rec = item
                src_stats[src]["read"] += 1
                if rec.id in ids_seen:  # ids must stay unique: the split and every report refer to them
                    rec.id = f"{rec.id}@{rec.source}"
                    counts["renamed_duplicate_ids"] += 1
                ids_seen.add(rec.id)
                verdict = pipeline(rec)
                if verdict is not None:
                    drop(rec, src, *verdict)
                    continue
                if dcfg.dedup_exact:
                    exact_stats.seen += 1
                    key = (
                        exact_key(rec.question, rec.answer)
                        if dcfg.dedup_on == "question_answer"
                        else exact_key(rec.question)
                    )
                    first = exact_seen.setdefault(key, len(records))
                    if first != len(records):
                        kept = records[first]
                        why = Drop(f"same normalised text as {kept.id} ({kept.source})", kept=kept.id)
                        exact_stats.dropped += 1
                        drop(rec, src, "exact_duplicate", why)
                        continue
                records.append(rec)
                rec_src.append(src)
        except DataError as exc:
            if dcfg.on_error == "fail" or exc.where is None:
                raise
            # A problem with the whole file (empty, missing columns, unknown encoding, broken JSON array).
            quarantine.append({"source": exc.where, "error": str(exc), "raw": exc.raw})
            src_stats[src]["quarantined"] += 1
    del exact_seen, ids_seen
    counts["read"] = sum(s["read"] for s in src_stats)
    if quarantine:
        counts["quarantined"] = len(quarantine)
    timings["read_clean_exact"] = time.perf_counter() - t0
    logger.info("read %d records, %d after cleaning and exact dedup", counts["read"], len(records))

    # Near-duplicates over the cleaned records.
    near_report: dict[str, Any] = {"enabled": dcfg.dedup_near}
    near_stats = RuleStats(seen=len(records) if dcfg.dedup_near else 0)
    if dcfg.dedup_near and len(records) > 1:
        t = time.perf_counter()
        finder = NearDupFinder(dcfg.near_dup_threshold, dcfg.minhash_num_perm, dcfg.minhash_ngram, dcfg.seed)
        res = finder.find(_Texts(records, dcfg.dedup_on == "question_answer"))
        dropped_rows = res.dropped
        for i in dropped_rows.tolist():
            rec, kept = records[i], records[int(res.rep[i])]
            partner = records[int(res.partner[i])]
            detail = f"{res.similarity[i]:.2f} similar to {partner.id} ({partner.source})"
            drop(rec, rec_src[i], "near_duplicate", Drop(detail, kept=kept.id))
        near_stats.dropped = len(dropped_rows)
        sizes = Counter(res.rep[dropped_rows].tolist())
        near_report |= res.stats | {
            "threshold": dcfg.near_dup_threshold,
            "ngram": dcfg.minhash_ngram,
            "num_perm": dcfg.minhash_num_perm,
            "compared": "question + answer" if dcfg.dedup_on == "question_answer" else "question",
            "clusters": len(sizes),
            "dropped": len(dropped_rows),
            "cluster_sizes": dict(sorted(Counter(n + 1 for n in sizes.values()).items())),
            "largest_clusters": [
                {
                    "kept": records[r].id,
                    "source": records[r].source,
                    "size": n + 1,
                    "question": records[r].question[:80],
                    "dropped": [records[i].id for i in np.flatnonzero(res.rep == r)[1:11].tolist()],
                }
                for r, n in sizes.most_common(_LARGEST_CLUSTERS)
            ],
        }
        keep = res.rep == np.arange(len(records))
        records = [r for r, k in zip(records, keep) if k]
        rec_src = [s for s, k in zip(rec_src, keep) if k]
        timings["near_dedup"] = time.perf_counter() - t
        del res

    # Question signatures serve the contamination check and the leakage-free split.
    t = time.perf_counter()
    questions = [r.question for r in records]
    q_finder = NearDupFinder(
        dcfg.leakage_threshold or dcfg.contamination_threshold,
        dcfg.minhash_num_perm,
        dcfg.minhash_ngram,
        dcfg.seed,
    )
    q_sig = (
        q_finder.hasher.signatures(questions)
        if records and (dcfg.eval_sets or dcfg.leakage_threshold)
        else None
    )

    contamination: dict[str, Any] = {"eval_sets": list(dcfg.eval_sets)}
    cont_stats = RuleStats(seen=len(records) if dcfg.eval_sets else 0)
    if dcfg.eval_sets and q_sig is not None:
        eval_questions, eval_wheres = _read_eval_sets(dcfg)
        c_finder = NearDupFinder(
            dcfg.contamination_threshold, dcfg.minhash_num_perm, dcfg.minhash_ngram, dcfg.seed
        )
        rows, hits, sims = c_finder.query(
            c_finder.index(sig=q_sig), questions, c_finder.index(eval_questions), eval_questions
        )
        for i, j, s in zip(rows.tolist(), hits.tolist(), sims.tolist()):
            detail = (
                f"question {s:.2f} similar to evaluation question {eval_wheres[j]}: {eval_questions[j][:40]}"
            )
            drop(records[i], rec_src[i], "eval_contamination", Drop(detail))
        cont_stats.dropped = len(rows)
        contamination |= {
            "questions": len(eval_questions),
            "threshold": dcfg.contamination_threshold,
            "dropped": len(rows),
        }
        keep = np.ones(len(records), dtype=bool)
        keep[rows] = False
        records = [r for r, k in zip(records, keep) if k]
        rec_src = [s for s, k in zip(rec_src, keep) if k]
        questions = [q for q, k in zip(questions, keep) if k]
        q_sig = q_sig[keep]

    max_stats = RuleStats(seen=len(records) if dcfg.max_records is not None else 0)
    if dcfg.max_records is not None and len(records) > dcfg.max_records:
        order = sorted(range(len(records)), key=lambda i: split_key(records[i].id, dcfg.seed))
        keep = np.zeros(len(records), dtype=bool)
        keep[order[: dcfg.max_records]] = True
        for i in np.flatnonzero(~keep).tolist():
            drop(records[i], rec_src[i], "max_records", Drop(f"beyond data.max_records={dcfg.max_records}"))
        max_stats.dropped = int((~keep).sum())
        records = [r for r, k in zip(records, keep) if k]
        rec_src = [s for s, k in zip(rec_src, keep) if k]
        questions = [q for q, k in zip(questions, keep) if k]
        q_sig = q_sig[keep] if q_sig is not None else None
    if not records:
        raise DataError(
            f"{dcfg.raw_file}: no usable records after cleaning ({dict(counts) | dict(drops.counts)})"
        )

    # The split: near-duplicate questions form groups that stay on one side.
    split_report: dict[str, Any] = {
        "seed": dcfg.seed,
        "val_ratio": dcfg.val_ratio,
        "leakage_threshold": dcfg.leakage_threshold,
    }
    ids = [r.id for r in records]
    if dcfg.leakage_threshold is not None and q_sig is not None and len(records) > 1:
        q_index = q_finder.index(sig=q_sig)
        groups = q_finder.find(questions, q_index)
        is_val = grouped_split(ids, groups.rep, dcfg.seed, dcfg.val_ratio)
        sizes = np.bincount(groups.rep, minlength=len(records))
        split_report |= {
            "question_groups": int((sizes > 1).sum()),
            "records_in_groups": int(sizes[sizes > 1].sum()),
        }
        # Independent audit: every validation question against the training questions.
        val_rows, train_rows = np.flatnonzero(is_val), np.flatnonzero(~is_val)
        rows, hits, sims = q_finder.query(
            q_index.subset(val_rows),
            [questions[i] for i in val_rows.tolist()],
            q_index.subset(train_rows),
            [questions[i] for i in train_rows.tolist()],
        )
        moved = []
        for r, h, s in zip(rows.tolist(), hits.tolist(), sims.tolist()):
            v, tr = int(val_rows[r]), int(train_rows[h])
            is_val[v] = False
            moved.append({"id": ids[v], "matched_train": ids[tr], "similarity": round(s, 3)})
        split_report |= {"audit_matches": len(moved), "moved_to_train": moved[:100]}
    else:
        is_val = grouped_split(ids, np.arange(len(records)), dcfg.seed, dcfg.val_ratio)
    del q_sig
    timings["contamination_split"] = time.perf_counter() - t

    val = [r for r, v in zip(records, is_val) if v]
    train = [r for r, v in zip(records, is_val) if not v]
    # Keep the files in source order: easier to read, and the split itself stays hash-based.
    val.sort(key=lambda r: r.source)
    train.sort(key=lambda r: r.source)
    for s in rec_src:
        src_stats[s]["kept"] += 1

    q_chars = [len(r.question) for r in records]
    a_chars = [len(r.answer) for r in records]
    dropped_counts = {f"dropped_{rule}": n for rule, n in drops.counts.items()}
    counts_out = dict(counts) | dropped_counts | {"kept": len(records), "train": len(train), "val": len(val)}
    departments = dict(Counter(r.department or "unknown" for r in records).most_common())
    rules = rule_table(pipeline.stats)
    extra_tables = {
        "exact_duplicate": exact_stats,
        "near_duplicate": near_stats,
        "eval_contamination": cont_stats,
        "max_records": max_stats,
    }
    rules += rule_table({k: v for k, v in extra_tables.items() if v.seen or v.dropped})
    pii_counts = dict(pipeline.stats["pii"].counts) if "pii" in pipeline.stats else {}
    pii_counts.pop("changed", None)
    timings["total"] = time.perf_counter() - t0
    report = {
        "sources": src_stats,
        "counts": counts_out,
        "rules": rules,
        "pii": pii_counts,
        "near_duplicates": near_report,
        "contamination": contamination,
        "split": split_report,
        "dropped_examples": drops.examples,
        "question_chars": length_summary(q_chars),
        "answer_chars": length_summary(a_chars),
        "departments": departments,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "config": asdict(dcfg),
    }
    stats: dict[str, Any] = {
        "raw_file": str(dcfg.raw_file),
        "sources": [s["path"] for s in src_stats],
        "seed": dcfg.seed,
        "val_ratio": dcfg.val_ratio,
        "counts": counts_out,
        "dropped_examples": {rule: [e["source"] for e in ex] for rule, ex in drops.examples.items()},
        "question_chars": {k: v for k, v in report["question_chars"].items() if k != "histogram"},
        "answer_chars": {k: v for k, v in report["answer_chars"].items() if k != "histogram"},
        "departments": departments,
        "report": "data_report.json",
    }

    out = cfg.data_dir
    staged = _StagedOutputs(out)
    try:
        staged.write_jsonl("train.jsonl", (r.to_dict() for r in train))
        staged.write_jsonl("val.jsonl", (r.to_dict() for r in val))
        staged.write_jsonl("dropped.jsonl", drops.jsonl_rows())
        if dcfg.on_error == "skip":
            staged.write_jsonl("quarantine.jsonl", quarantine)
        staged.write_bytes("lengths.png", plot_lengths(q_chars, a_chars))
        staged.write_json("data_report.json", report)
        staged.write_text("data_report.md", render_summary(report))
        staged.write_json("stats.json", stats)
        staged.commit(remove=() if dcfg.on_error == "skip" else ("quarantine.jsonl",))
    except BaseException:
        staged.abort()
        raise
    logger.info(
        "prepared %d train / %d val records into %s in %.1f s", len(train), len(val), out, timings["total"]
    )
    return PrepareResult(train, val, stats, out)


def load_split(cfg: Config, split: str) -> list[QARecord]:
    from medtune.io import read_jsonl

    path = cfg.data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `medtune data prepare` with this config first")
    return [QARecord.from_dict(d) for d in read_jsonl(path)]
