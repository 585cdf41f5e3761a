"""One restructuring run: read records, skip what the journal already has, rewrite the rest concurrently
through the quality gate, journal every outcome, then write the outputs from the journal.

Outputs (under ``restructure.output_dir``, default ``<run_dir>/restructure/``):

- ``restructured.jsonl``: records that passed the gate, in input order, readable by ``medtune data prepare``
  (qa form; messages form for multi-turn records), with ``meta.prompt_hash``, ``meta.teacher``,
  ``meta.flags``, ``meta.score``;
- ``rejects.jsonl``: every record that did not pass, with the reasons and the last rewrite (never the raw
  answer in its place); ``status`` is ``rejected`` (final), ``failed`` (the request failed; the next run
  asks again) or ``unreadable`` (bad input line);
- ``journal.jsonl``: the append-only journal (see journal.py); ``summary.json``: counts, tokens and cost.

The outputs are rebuilt from the journal at the end of every run, so however often a run was killed and
restarted, each input record appears at most once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medtune.config import Config
from medtune.data.readers import iter_records
from medtune.data.restructure.client import Completion, FatalTeacherError, RequestFailed, TeacherClient
from medtune.data.restructure.gate import Gate
from medtune.data.restructure.journal import Journal
from medtune.data.restructure.offline import RULES_VERSION, restructure_answer, rules_hash
from medtune.data.restructure.prompt import PromptTemplate
from medtune.data.schema import DataError, QARecord
from medtune.io import atomic_open, write_json

logger = logging.getLogger(__name__)

FINAL = ("ok", "rejected")


class RestructureError(ValueError):
    """A problem the user can fix (missing key, missing file, bad input); one line, no traceback."""


@dataclass
class RestructureSummary:
    mode: str
    teacher: str
    prompt_hash: str
    out_dir: str
    input_records: int = 0
    unreadable: int = 0
    duplicates: int = 0
    """Input records identical to an earlier one (same id and content): rewritten once, written once."""
    already_done: int = 0
    """Records finished by earlier runs (found in the journal)."""
    processed: int = 0
    """Records finished or failed in this run."""
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    ok_total: int = 0
    rejected_total: int = 0
    failed_total: int = 0
    requests: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    gate_retries: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    """Unsupported entities by kind among the outputs (kept under the ``mark`` policy)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cost_total: float = 0.0
    """Cost of every record in the journal, earlier runs included."""
    currency: str = "USD"
    usage_missing: int = 0
    rate_limit_wait_s: float = 0.0
    journal_fsyncs: int = 0
    wall_s: float = 0.0
    nothing_to_do: bool = False
    outputs_written: bool = False

    @property
    def pass_rate(self) -> float:
        done = self.ok_total + self.rejected_total
        return self.ok_total / done if done else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"pass_rate": round(self.pass_rate, 4)}


def record_key(record: QARecord, version: str) -> str:
    """Journal key: the input record's content and id, the prompt version and the teacher."""
    blob = json.dumps(
        [record.id, record.question, record.answer, record.history, record.department],
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(f"{version}\n{blob}".encode()).hexdigest()[:32]


def output_dir(cfg: Config) -> Path:
    return Path(cfg.restructure.output_dir) if cfg.restructure.output_dir else cfg.run_dir / "restructure"


def _cost(rc: Any, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * rc.price_input_per_mtok + completion_tokens * rc.price_output_per_mtok) / 1e6


def read_input(cfg: Config) -> tuple[list[QARecord], list[DataError]]:
    rc = cfg.restructure
    records: list[QARecord] = []
    errors: list[DataError] = []
    try:
        for item in iter_records(rc.input_file, rc.input_format):
            if isinstance(item, DataError):
                if rc.on_error == "fail":
                    raise RestructureError(
                        f"{item} (restructure.on_error=skip lists such records in rejects)"
                    )
                errors.append(item)
                continue
            records.append(item)
            if rc.max_records and len(records) >= rc.max_records:
                break
    except DataError as exc:
        raise RestructureError(str(exc).replace("data.raw_file", "restructure.input_file")) from None
    return records, errors


class _Run:
    """State of one run: the records, the journal index, the counters and the progress bar."""

    def __init__(self, cfg: Config, progress: bool, api_key: str | None) -> None:
        self.cfg = cfg
        self.rc = cfg.restructure
        self.progress = progress
        self.api_key = api_key
        self.gate = Gate.from_config(self.rc)
        self.out = output_dir(cfg)
        if self.rc.mode == "offline":
            self.template = None
            self.teacher = RULES_VERSION
            self.prompt_hash = rules_hash()
        else:
            try:
                self.template = PromptTemplate.load(self.rc.prompt_file)
            except ValueError as exc:
                raise RestructureError(str(exc)) from None
            self.teacher = f"{self.rc.model}@{self.rc.base_url}"
            self.prompt_hash = self.template.hash
        self.version = f"{self.teacher}|{self.prompt_hash}"
        self.summary = RestructureSummary(
            self.rc.mode, self.teacher, self.prompt_hash, str(self.out), currency=self.rc.currency
        )
        self.journal = Journal(self.out / "journal.jsonl")
        self.entries: dict[str, dict[str, Any]] = {}
        self.client: TeacherClient | None = None
        self.bar: Any = None

    # -- one record ------------------------------------------------------------------------------
    def _context(self, rec: QARecord) -> str:
        return "\n".join([*(t.get("content", "") for t in rec.history), rec.question])

    async def _process(self, key: str, rec: QARecord) -> None:
        entry: dict[str, Any] = {
            "key": key,
            "id": rec.id,
            "prompt_hash": self.prompt_hash,
            "teacher": self.teacher,
        }
        usage = [0, 0]
        attempts = 0
        reasons: list[str] = []
        last_text: str | None = None
        if self.template is None:
            attempts = 1
            last_text = restructure_answer(rec.question, rec.answer)
            if last_text is None:
                reasons = [
                    "offline: the answer has too few cause, analysis or advice sentences for three parts"
                ]
                verdict = None
            else:
                verdict = self.gate.check(self._context(rec), rec.answer, last_text)
        else:
            assert self.client is not None
            messages = self.template.messages(rec)
            verdict = None
            for attempt in range(self.rc.gate_retries + 1):
                attempts += 1
                try:
                    completion: Completion = await self.client.complete(messages)
                except RequestFailed as exc:
                    entry |= {
                        "status": "failed",
                        "reasons": [str(exc)],
                        "attempts": attempts,
                        "ts": time.time(),
                    }
                    entry |= {"prompt_tokens": usage[0] + exc.prompt_tokens}
                    entry |= {"completion_tokens": usage[1] + exc.completion_tokens}
                    await self._record(entry)
                    return
                usage[0] += completion.prompt_tokens
                usage[1] += completion.completion_tokens
                last_text = completion.text
                verdict = self.gate.check(
                    self._context(rec), rec.answer, completion.text, completion.finish_reason
                )
                if verdict.ok:
                    break
                if attempt < self.rc.gate_retries:
                    self.summary.gate_retries += 1
                    messages = [
                        *messages,
                        {"role": "assistant", "content": completion.text},
                        self.template.retry_message(verdict.reasons),
                    ]
        if verdict is not None and verdict.ok:
            entry |= {
                "status": "ok",
                "answer": verdict.answer,
                "flags": verdict.flags,
                "score": verdict.score,
            }
        else:
            reasons = verdict.reasons if verdict is not None else reasons
            entry |= {"status": "rejected", "reasons": reasons, "rewrite": last_text}
            entry |= {"flags": verdict.flags if verdict is not None else []}
        entry |= {
            "attempts": attempts,
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "ts": time.time(),
        }
        await self._record(entry)

    async def _record(self, entry: dict[str, Any]) -> None:
        await self.journal.append(entry)  # durable before it counts
        self.entries[entry["key"]] = entry
        s = self.summary
        s.processed += 1
        if entry["status"] == "ok":
            s.ok += 1
        elif entry["status"] == "rejected":
            s.rejected += 1
        else:
            s.failed += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.client is not None:
                st = self.client.stats
                cost = _cost(self.rc, st.prompt_tokens, st.completion_tokens)
                self.bar.set_postfix_str(
                    f"ok {s.ok} rej {s.rejected} fail {s.failed} | tok {st.prompt_tokens:,}/{st.completion_tokens:,}"
                    f" | {cost:.4f} {self.rc.currency}",
                    refresh=False,
                )

    # -- the run ---------------------------------------------------------------------------------
    async def run(self, todo: list[tuple[str, QARecord]]) -> None:
        await self.journal.open()
        if self.template is not None:
            assert self.api_key is not None
            self.client = TeacherClient.from_config(self.rc, self.api_key)
        if self.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(todo), unit="rec", desc="restructure", dynamic_ncols=True)
        queue = iter(todo)

        async def worker() -> None:
            for key, rec in queue:
                await self._process(key, rec)

        # Twice the request concurrency in records: a record sleeping in backoff holds no request slot, so
        # others keep the connection busy meanwhile.
        n = min(len(todo), 2 * self.rc.concurrency if self.template is not None else 64) or 1
        tasks = [asyncio.create_task(worker()) for _ in range(n)]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                task.result()  # re-raise the first failure (FatalTeacherError ...)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.journal.close()
            if self.bar is not None:
                self.bar.close()
            if self.client is not None:
                st = self.client.stats
                s = self.summary
                s.requests = st.requests
                s.retries = dict(st.retries)
                s.prompt_tokens, s.completion_tokens = st.prompt_tokens, st.completion_tokens
                s.usage_missing = st.usage_missing
                s.cost = _cost(self.rc, st.prompt_tokens, st.completion_tokens)
                s.rate_limit_wait_s = round(self.client.limiter.waited_s, 3)
                await self.client.aclose()
            self.summary.journal_fsyncs = self.journal.fsyncs


def _output_row(rec: QARecord, entry: dict[str, Any]) -> dict[str, Any]:
    meta = {k: entry.get(k) for k in ("prompt_hash", "teacher", "flags", "score")}
    meta["restructured_from"] = rec.source
    row: dict[str, Any] = {"id": rec.id}
    if rec.history:
        turns = [*rec.history, {"role": "user", "content": rec.question}]
        row["messages"] = [*turns, {"role": "assistant", "content": entry["answer"]}]
    else:
        row |= {"question": rec.question, "answer": entry["answer"]}
    row |= {"department": rec.department, "source": rec.source}
    row |= {k: v for k, v in rec.meta.items() if k == "condition"}
    return row | {"meta": meta}


def _reject_row(rec: QARecord, entry: dict[str, Any]) -> dict[str, Any]:
    row = {"id": rec.id, "status": entry["status"], "reason": "; ".join(entry.get("reasons") or [])}
    row |= {"reasons": entry.get("reasons") or [], "source": rec.source, "question": rec.question}
    row |= {
        "rewrite": entry.get("rewrite"),
        "attempts": entry.get("attempts"),
        "flags": entry.get("flags") or [],
    }
    return row | {"prompt_hash": entry.get("prompt_hash"), "teacher": entry.get("teacher")}


def _write_if_changed(path: Path, rows: list[dict[str, Any]]) -> bool:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    with atomic_open(path) as f:
        f.write(text)
    return True


def run_restructure(cfg: Config, *, progress: bool = False) -> RestructureSummary:
    """Run (or resume) the restructuring described by ``cfg.restructure``; see the module docstring."""
    t0 = time.perf_counter()
    rc = cfg.restructure
    records, unreadable = read_input(cfg)
    if not records and not unreadable:
        raise RestructureError(f"{rc.input_file}: no records to restructure")
    run = _Run(cfg, progress, api_key=None)
    s = run.summary
    s.input_records, s.unreadable = len(records), len(unreadable)
    keyed: dict[str, QARecord] = {}
    for rec in records:
        key = record_key(rec, run.version)
        if key in keyed:
            s.duplicates += 1
            continue
        keyed[key] = rec
    for entry in run.journal.load():
        previous = run.entries.get(entry["key"])
        if previous is None or previous["status"] not in FINAL:
            run.entries[entry["key"]] = entry
    todo = [(k, r) for k, r in keyed.items() if run.entries.get(k, {}).get("status") not in FINAL]
    s.already_done = len(keyed) - len(todo)
    if todo and rc.mode == "teacher":
        run.api_key = os.environ.get(rc.api_key_env)
        if not run.api_key:
            raise RestructureError(
                f"environment variable {rc.api_key_env} is not set: export the teacher's API key in it "
                "(any value for a local server without keys), or set restructure.api_key_env to another name"
            )
    if todo:
        logger.info(
            "restructuring %d records (%d already done) with %s", len(todo), s.already_done, run.teacher
        )
        asyncio.run(run.run(todo))
    else:
        s.nothing_to_do = True

    ok_rows, reject_rows = [], []
    flags: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for key, rec in keyed.items():
        entry = run.entries.get(key)
        if entry is None:
            continue
        if entry["status"] == "ok":
            s.ok_total += 1
            ok_rows.append(_output_row(rec, entry))
            flags.update(f.split(":", 1)[0] for f in entry.get("flags") or [])
        else:
            s.rejected_total += entry["status"] == "rejected"
            s.failed_total += entry["status"] == "failed"
            reject_rows.append(_reject_row(rec, entry))
            reasons.update(r.split(":", 1)[0][:60] for r in entry.get("reasons") or [])
        s.cost_total += _cost(rc, entry.get("prompt_tokens", 0), entry.get("completion_tokens", 0))
    for err in unreadable:
        reject_rows.append({"id": None, "status": "unreadable", "reason": str(err), "reasons": [str(err)]})
    s.flags, s.reject_reasons = dict(flags), dict(reasons.most_common())
    out = run.out
    written = _write_if_changed(out / "restructured.jsonl", ok_rows)
    written = _write_if_changed(out / "rejects.jsonl", reject_rows) or written
    s.outputs_written = written
    s.wall_s = round(time.perf_counter() - t0, 3)
    if not s.nothing_to_do or written or not (out / "summary.json").exists():
        write_json(out / "summary.json", s.to_dict())
    return s


__all__ = ["FatalTeacherError", "RestructureError", "RestructureSummary", "output_dir", "run_restructure"]
