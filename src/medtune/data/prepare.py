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

import collections
import itertools
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
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
    merge_stats,
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


# The pipeline a forked cleaning worker runs: set in the parent right before the fork, so rule closures
# (the safety engine, compiled patterns) reach the workers without being pickled.
_WORKER_PIPELINE: RulePipeline | None = None


def _clean_chunk(chunk: list[tuple[int, QARecord]]) -> tuple[list, dict[str, RuleStats]]:
    pipeline = _WORKER_PIPELINE
    assert pipeline is not None
    pipeline.stats = {name: RuleStats() for name in pipeline.stats}  # this chunk's stats only
    return [(src, rec, pipeline(rec)) for src, rec in chunk], pipeline.stats


class _CleaningPool:
    """Runs the rule pipeline over records in worker processes, results in read order.

    The rules (normalisation, personal data, the safety screen) are ~70% of reading a large dump and each
    record is independent, so a machine's cores share them; reading, ids and exact dedup stay in this
    process because they depend on order. Chunks come back in order and their stats merge in order, so
    counts, examples and outputs are those of a serial run. Falls back to this process for ``workers=1``
    and where processes cannot be forked.
    """

    CHUNK = 2000

    def __init__(self, pipeline: RulePipeline, workers: int | None) -> None:
        import multiprocessing as mp

        self.pipeline = pipeline
        n = workers or os.cpu_count() or 1
        self.workers = n
        self.pool = None
        if n > 1 and "fork" in mp.get_all_start_methods():
            global _WORKER_PIPELINE
            _WORKER_PIPELINE = pipeline
            self.pool = mp.get_context("fork").Pool(n)

    def __enter__(self) -> _CleaningPool:
        return self

    def __exit__(self, *exc: object) -> None:
        global _WORKER_PIPELINE
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
        _WORKER_PIPELINE = None

    def run(self, items: Iterator[tuple[int, QARecord]]) -> Iterator[tuple[int, QARecord, Any]]:
        if self.pool is None:
            for src, rec in items:
                yield src, rec, self.pipeline(rec)
            return
        # Read in this thread with a bounded window of chunks in flight: Pool.imap would read the whole
        # input ahead in its feeder thread (a million records in the queue at once).
        window: collections.deque = collections.deque()
        depth = 2 * self.workers
        chunks = iter(lambda: list(itertools.islice(items, self.CHUNK)), [])
        for chunk in itertools.chain(chunks, [None]):
            if chunk is not None:
                window.append(self.pool.apply_async(_clean_chunk, (chunk,)))
                if len(window) < depth:
                    continue
            while window and (chunk is None or len(window) >= depth):
                results, stats = window.popleft().get()
                merge_stats(self.pipeline.stats, stats, self.pipeline.n_examples)
                yield from results


class _Run:
    """The state of one ``prepare`` run: the surviving records (in read order) and everything said about
    the others. Each stage is a method; ``prepare`` calls them top to bottom."""

    def __init__(self, dcfg: DataConfig, extra_rules: Sequence[Rule]) -> None:
        self.dcfg = dcfg
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.sources = expand_sources([dcfg.raw_file, *dcfg.extra_files])
        self.pipeline = RulePipeline(build_rules(dcfg), dcfg.report_examples)
        for rule in extra_rules:  # the place for further screens (e.g. safety), before deduplication
            self.pipeline.add(rule)
        self.drops = DropLog(dcfg.report_examples)
        self.counts: Counter[str] = Counter()
        self.quarantine: list[dict[str, Any]] = []
        self.src_stats = [
            {"path": str(p), "kind": source_kind(p), "read": 0, "quarantined": 0, "dropped": 0, "kept": 0}
            for p in self.sources
        ]
        # Dedup stages after the rule pipeline, as rows of the same in/out table.
        self.stage_stats = {
            name: RuleStats()
            for name in ("exact_duplicate", "near_duplicate", "eval_contamination", "max_records")
        }
        self.records: list[QARecord] = []
        self._exact_seen: dict[bytes, int] = {}
        self.rec_src: list[int] = []  # source index of each record
        self.questions: list[str] = []
        self.q_sig: np.ndarray | None = None  # MinHash signatures of the questions, once computed
        self.report: dict[str, Any] = {}

    def _drop(self, i_or_rec: int | QARecord, src: int, rule: str, why: Drop) -> None:
        rec = self.records[i_or_rec] if isinstance(i_or_rec, int) else i_or_rec
        self.drops.add(rec, rule, why)
        self.src_stats[src]["dropped"] += 1

    def _keep(self, keep: np.ndarray) -> None:
        """Keep the records where ``keep`` is True (and their parallel data)."""
        self.records = [r for r, k in zip(self.records, keep) if k]
        self.rec_src = [s for s, k in zip(self.rec_src, keep) if k]
        if self.questions:
            self.questions = [q for q, k in zip(self.questions, keep) if k]
        if self.q_sig is not None:
            self.q_sig = self.q_sig[keep]

    def read_and_clean(self) -> None:
        """Stream every source through the rule pipeline and exact dedup."""
        with _CleaningPool(self.pipeline, self.dcfg.workers) as pool:
            for src, rec, verdict in pool.run(self._read_all()):
                if verdict is not None:
                    self._drop(rec, src, *verdict)
                    continue
                if self._exact_duplicate(rec, src):
                    continue
                self.records.append(rec)
                self.rec_src.append(src)
        self.counts["read"] = sum(s["read"] for s in self.src_stats)
        if self.quarantine:
            self.counts["quarantined"] = len(self.quarantine)
        self._tick("read_clean_exact")
        logger.info(
            "read %d records, %d after cleaning and exact dedup", self.counts["read"], len(self.records)
        )

    def _read_all(self) -> Iterator[tuple[int, QARecord]]:
        """(source index, record) for every readable record; bad ones quarantined or raised per on_error."""
        dcfg, opts = self.dcfg, ReadOptions.from_config(self.dcfg)
        ids_seen: set[str] = set()
        for src, path in enumerate(self.sources):
            try:
                for item in iter_records(path, options=opts):
                    if isinstance(item, DataError):
                        if dcfg.on_error == "fail":
                            raise item
                        self.quarantine.append(
                            {"source": item.where or str(path), "error": str(item), "raw": item.raw}
                        )
                        self.src_stats[src]["quarantined"] += 1
                        continue
                    rec = item
                    self.src_stats[src]["read"] += 1
                    if rec.id in ids_seen:  # ids must stay unique: the split and every report refer to them
                        rec.id = f"{rec.id}@{rec.source}"
                        self.counts["renamed_duplicate_ids"] += 1
                    ids_seen.add(rec.id)
                    yield src, rec
            except DataError as exc:
                if dcfg.on_error == "fail" or exc.where is None:
                    raise
                # A problem with the whole file (empty, missing columns, unknown encoding, broken JSON array).
                self.quarantine.append({"source": exc.where, "error": str(exc), "raw": exc.raw})
                self.src_stats[src]["quarantined"] += 1

    def _exact_duplicate(self, rec: QARecord, src: int) -> bool:
        dcfg = self.dcfg
        if not dcfg.dedup_exact:
            return False
        exact = self.stage_stats["exact_duplicate"]
        exact.seen += 1
        texts = (rec.question, rec.answer) if dcfg.dedup_on == "question_answer" else (rec.question,)
        first = self._exact_seen.setdefault(exact_key(*texts), len(self.records))
        if first == len(self.records):
            return False
        kept = self.records[first]
        exact.dropped += 1
        self._drop(
            rec,
            src,
            "exact_duplicate",
            Drop(f"same normalised text as {kept.id} ({kept.source})", kept=kept.id),
        )
        return True

    def drop_near_duplicates(self) -> None:
        dcfg, records = self.dcfg, self.records
        near: dict[str, Any] = {"enabled": dcfg.dedup_near}
        self.report["near_duplicates"] = near
        if not dcfg.dedup_near:
            return
        self.stage_stats["near_duplicate"].seen = len(records)
        if len(records) < 2:
            return
        finder = NearDupFinder(dcfg.near_dup_threshold, dcfg.minhash_num_perm, dcfg.minhash_ngram, dcfg.seed)
        res = finder.find(_Texts(records, dcfg.dedup_on == "question_answer"))
        dropped = res.dropped
        for i in dropped.tolist():
            partner, kept = records[int(res.partner[i])], records[int(res.rep[i])]
            detail = f"{res.similarity[i]:.2f} similar to {partner.id} ({partner.source})"
            self._drop(i, self.rec_src[i], "near_duplicate", Drop(detail, kept=kept.id))
        self.stage_stats["near_duplicate"].dropped = len(dropped)
        sizes = Counter(res.rep[dropped].tolist())  # representative -> records dropped for it
        near |= res.stats | {
            "threshold": dcfg.near_dup_threshold,
            "ngram": dcfg.minhash_ngram,
            "num_perm": dcfg.minhash_num_perm,
            "compared": "question + answer" if dcfg.dedup_on == "question_answer" else "question",
            "clusters": len(sizes),
            "dropped": len(dropped),
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
        self._keep(res.rep == np.arange(len(records)))
        self._tick("near_dedup")

    def question_signatures(self) -> NearDupFinder:
        """Signatures of the questions, shared by the contamination check and the leakage-free split."""
        dcfg = self.dcfg
        finder = NearDupFinder(
            dcfg.leakage_threshold or dcfg.contamination_threshold,
            dcfg.minhash_num_perm,
            dcfg.minhash_ngram,
            dcfg.seed,
        )
        self.questions = [r.question for r in self.records]
        if self.records and (dcfg.eval_sets or dcfg.leakage_threshold is not None):
            self.q_sig = finder.hasher.signatures(self.questions)
        return finder

    def drop_contaminated(self) -> None:
        dcfg = self.dcfg
        self.report["contamination"] = {"eval_sets": list(dcfg.eval_sets)}
        if not dcfg.eval_sets or self.q_sig is None:
            return
        eval_questions, eval_wheres = _read_eval_sets(dcfg)
        finder = NearDupFinder(
            dcfg.contamination_threshold, dcfg.minhash_num_perm, dcfg.minhash_ngram, dcfg.seed
        )
        rows, hits, sims = finder.query(
            finder.index(sig=self.q_sig), self.questions, finder.index(eval_questions), eval_questions
        )
        for i, j, sim in zip(rows.tolist(), hits.tolist(), sims.tolist()):
            detail = f"question {sim:.2f} similar to evaluation question {eval_wheres[j]}: {eval_questions[j][:40]}"
            self._drop(i, self.rec_src[i], "eval_contamination", Drop(detail))
        stats = self.stage_stats["eval_contamination"]
        stats.seen, stats.dropped = len(self.records), len(rows)
        self.report["contamination"] |= {
            "questions": len(eval_questions),
            "threshold": dcfg.contamination_threshold,
            "dropped": len(rows),
        }
        keep = np.ones(len(self.records), dtype=bool)
        keep[rows] = False
        self._keep(keep)

    def apply_max_records(self) -> None:
        limit = self.dcfg.max_records
        if limit is None:
            return
        stats = self.stage_stats["max_records"]
        stats.seen = len(self.records)
        if len(self.records) <= limit:
            return
        order = sorted(range(len(self.records)), key=lambda i: split_key(self.records[i].id, self.dcfg.seed))
        keep = np.zeros(len(self.records), dtype=bool)
        keep[order[:limit]] = True
        for i in np.flatnonzero(~keep).tolist():
            self._drop(i, self.rec_src[i], "max_records", Drop(f"beyond data.max_records={limit}"))
        stats.dropped = int((~keep).sum())
        self._keep(keep)

    def split(self, finder: NearDupFinder) -> tuple[list[QARecord], list[QARecord]]:
        """Near-duplicate questions form groups that stay on one side; then an independent audit moves any
        validation record whose question still matches a training question."""
        dcfg, records = self.dcfg, self.records
        report: dict[str, Any] = {
            "seed": dcfg.seed,
            "val_ratio": dcfg.val_ratio,
            "leakage_threshold": dcfg.leakage_threshold,
        }
        self.report["split"] = report
        ids = [r.id for r in records]
        if dcfg.leakage_threshold is None or self.q_sig is None or len(records) < 2:
            is_val = grouped_split(ids, np.arange(len(records)), dcfg.seed, dcfg.val_ratio)
        else:
            index = finder.index(sig=self.q_sig)
            groups = finder.find(self.questions, index)
            is_val = grouped_split(ids, groups.rep, dcfg.seed, dcfg.val_ratio)
            sizes = np.bincount(groups.rep, minlength=len(records))
            report |= {
                "question_groups": int((sizes > 1).sum()),
                "records_in_groups": int(sizes[sizes > 1].sum()),
            }
            val_rows, train_rows = np.flatnonzero(is_val), np.flatnonzero(~is_val)
            rows, hits, sims = finder.query(
                index, self.questions, index, self.questions, q_rows=val_rows, index_rows=train_rows
            )
            moved = []
            for v, t, sim in zip(rows.tolist(), hits.tolist(), sims.tolist()):
                is_val[v] = False
                moved.append({"id": ids[v], "matched_train": ids[t], "similarity": round(sim, 3)})
            report |= {"audit_matches": len(moved), "moved_to_train": moved[:100]}
        self.q_sig = None
        val = [r for r, v in zip(records, is_val) if v]
        train = [r for r, v in zip(records, is_val) if not v]
        # Keep the files in source order: easier to read, and the split itself stays hash-based.
        val.sort(key=lambda r: r.source)
        train.sort(key=lambda r: r.source)
        self._tick("contamination_split")
        return train, val

    def _tick(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = now - self.t0 - sum(self.timings.values())

    def build_report(
        self, train: list[QARecord], val: list[QARecord]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(data_report.json, stats.json)."""
        dcfg, records = self.dcfg, self.records
        for s in self.rec_src:
            self.src_stats[s]["kept"] += 1
        dropped_counts = {f"dropped_{rule}": n for rule, n in self.drops.counts.items()}
        counts = (
            dict(self.counts) | dropped_counts | {"kept": len(records), "train": len(train), "val": len(val)}
        )
        departments = dict(Counter(r.department or "unknown" for r in records).most_common())
        rules = rule_table(self.pipeline.stats)
        rules += rule_table({k: v for k, v in self.stage_stats.items() if v.seen or v.dropped})
        pii = dict(self.pipeline.stats["pii"].counts) if "pii" in self.pipeline.stats else {}
        pii.pop("changed", None)
        self.timings["total"] = time.perf_counter() - self.t0
        report = {
            "sources": self.src_stats,
            "counts": counts,
            "rules": rules,
            "pii": pii,
            **self.report,
            "dropped_examples": self.drops.examples,
            "question_chars": length_summary([len(r.question) for r in records]),
            "answer_chars": length_summary([len(r.answer) for r in records]),
            "departments": departments,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "config": asdict(dcfg),
        }
        stats = {
            "raw_file": str(dcfg.raw_file),
            "sources": [s["path"] for s in self.src_stats],
            "seed": dcfg.seed,
            "val_ratio": dcfg.val_ratio,
            "counts": counts,
            "dropped_examples": {rule: [e["source"] for e in ex] for rule, ex in self.drops.examples.items()},
            "question_chars": {k: v for k, v in report["question_chars"].items() if k != "histogram"},
            "answer_chars": {k: v for k, v in report["answer_chars"].items() if k != "histogram"},
            "departments": departments,
            "report": "data_report.json",
        }
        return report, stats


def safety_screen_rule(exclude: bool) -> Rule:
    """The safety layer as a cleaning rule: flagged answers are counted per kind, blocking ones optionally dropped."""
    from medtune.safety import default_engine

    engine = default_engine()

    def screen(rec: QARecord, counts: Counter) -> str | None:
        findings = engine.check_answer(rec.answer, rec.question)
        for kind in {f.kind for f in findings}:
            counts[f"flagged_{kind}"] += 1
        blocking = [f for f in findings if f.severity == "block"]
        if blocking:
            counts["flagged_blocking"] += 1
            if exclude:
                return "; ".join(f"{f.rule_id}: {f.matched}" for f in blocking)
        return None

    return Rule("safety_screen", screen, "safety rules on training answers (medtune.safety)")


def prepare(cfg: Config, extra_rules: Sequence[Rule] = ()) -> PrepareResult:
    """Run the whole data stage for ``cfg``; ``extra_rules`` run after the built-in cleaning rules and
    before deduplication (each is counted and reported like a built-in rule)."""
    dcfg = cfg.data
    if dcfg.safety_screen != "off" and all(r.name != "safety_screen" for r in extra_rules):
        extra_rules = [*extra_rules, safety_screen_rule(exclude=dcfg.safety_screen == "exclude")]
    run = _Run(dcfg, extra_rules)
    run.read_and_clean()
    run.drop_near_duplicates()
    finder = run.question_signatures()
    run.drop_contaminated()
    run.apply_max_records()
    if not run.records:
        counts = dict(run.counts) | dict(run.drops.counts)
        raise DataError(
            f"{dcfg.raw_file}: no usable records after cleaning ({counts}); see the rules in the config"
        )
    train, val = run.split(finder)
    report, stats = run.build_report(train, val)

    out = cfg.data_dir
    staged = _StagedOutputs(out)
    try:
        staged.write_jsonl("train.jsonl", (r.to_dict() for r in train))
        staged.write_jsonl("val.jsonl", (r.to_dict() for r in val))
        staged.write_jsonl("dropped.jsonl", run.drops.jsonl_rows())
        if dcfg.on_error == "skip":
            staged.write_jsonl("quarantine.jsonl", run.quarantine)
        staged.write_bytes(
            "lengths.png",
            plot_lengths([len(r.question) for r in run.records], [len(r.answer) for r in run.records]),
        )
        staged.write_json("data_report.json", report)
        staged.write_text("data_report.md", render_summary(report))
        staged.write_json("stats.json", stats)
        staged.commit(remove=() if dcfg.on_error == "skip" else ("quarantine.jsonl",))
    except BaseException:
        staged.abort()
        raise
    logger.info(
        "prepared %d train / %d val records into %s in %.1f s",
        len(train),
        len(val),
        out,
        time.perf_counter() - run.t0,
    )
    return PrepareResult(train, val, stats, out)


def load_split(cfg: Config, split: str) -> list[QARecord]:
    from medtune.io import read_jsonl

    path = cfg.data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `medtune data prepare` with this config first")
    return [QARecord.from_dict(d) for d in read_jsonl(path)]
