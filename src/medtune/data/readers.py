"""Readers: turn a user's raw file into ``QARecord``s, with file:line provenance and clear errors.

Formats: alpaca (``instruction``/``input``/``output``), messages/ShareGPT (``messages`` or
``conversations`` with ``role``/``from`` keys), and plain ``question``/``answer``. JSONL is read line by
line; a JSON array is read whole.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medtune.data.schema import DataError, QARecord

logger = logging.getLogger(__name__)

_ROLE_MAP = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "system": "system",
}
_QUESTION_KEYS = ("question", "ask", "query", "prompt")
_ANSWER_KEYS = ("answer", "response", "reply")


def detect_format(obj: dict[str, Any]) -> str:
    if "messages" in obj or "conversations" in obj:
        return "messages"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    if any(k in obj for k in _QUESTION_KEYS) and any(k in obj for k in _ANSWER_KEYS):
        return "qa"
    raise DataError(
        "cannot tell the record format from its keys "
        f"{sorted(obj)}; expected alpaca (instruction/output), messages/conversations, or question/answer"
    )


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        raise DataError(f"{where}: field {key!r} is missing")
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def record_from_obj(obj: Any, fmt: str, where: str, default_id: str) -> QARecord:
    """Convert one parsed JSON object into a QARecord; ``where`` is ``file:line`` for errors."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if fmt == "auto":
        try:
            fmt = detect_format(obj)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
    rid = str(obj.get("id", default_id))
    dept = obj.get("department")
    meta = {k: obj[k] for k in ("condition",) if k in obj}
    if fmt == "alpaca":
        instruction = _text(obj, "instruction", where)
        extra = obj.get("input") or ""
        question = f"{instruction}\n{extra}".strip() if extra else instruction
        return QARecord(rid, question, _text(obj, "output", where), dept, where, meta=meta)
    if fmt == "qa":
        qkey = next((k for k in _QUESTION_KEYS if k in obj), "question")
        akey = next((k for k in _ANSWER_KEYS if k in obj), "answer")
        return QARecord(rid, _text(obj, qkey, where), _text(obj, akey, where), dept, where, meta=meta)
    if fmt == "messages":
        turns = obj.get("messages", obj.get("conversations"))
        if not isinstance(turns, list) or not turns:
            raise DataError(f"{where}: field 'messages' must be a non-empty list")
        msgs = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise DataError(f"{where}: messages[{i}] must be an object")
            role = _ROLE_MAP.get(str(turn.get("role", turn.get("from", ""))).lower())
            content = turn.get("content", turn.get("value"))
            if role is None or not isinstance(content, str):
                raise DataError(f"{where}: messages[{i}] needs role/from and content/value strings")
            msgs.append({"role": role, "content": content})
        msgs = [
            m for m in msgs if m["role"] != "system"
        ]  # our own system prompt is the single source of truth
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant" or msgs[-2]["role"] != "user":
            raise DataError(
                f"{where}: a conversation must end with a user turn followed by an assistant turn"
            )
        return QARecord(
            rid, msgs[-2]["content"], msgs[-1]["content"], dept, where, history=msgs[:-2], meta=meta
        )
    raise DataError(f"{where}: unknown format {fmt!r}")


def iter_records(path: str | Path, fmt: str = "auto") -> Iterator[QARecord | DataError]:
    """Yield a record per entry, or a DataError (naming file:line) for an entry that cannot be read.

    The caller decides whether an error stops the run (on_error=fail) or is quarantined (skip).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: data file not found; check data.raw_file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: data file is empty")
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise DataError(
                f"{p}: not UTF-8 text; convert it or use a CSV reader with encoding detection"
            ) from None
        if isinstance(data, dict):
            data = data.get("data", data.get("records"))
        if not isinstance(data, list):
            raise DataError(f"{p}: a .json file must hold a list of records (or JSONL with one per line)")
        for i, obj in enumerate(data):
            try:
                yield record_from_obj(obj, fmt, f"{p}:[{i}]", f"{p.stem}-{i}")
            except DataError as exc:
                yield exc
        return
    if suffix not in (".jsonl", ".ndjson"):
        raise DataError(f"{p}: unsupported file type {suffix!r}; use .json or .jsonl")
    with open(p, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{p}:{lineno}"
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield DataError(f"{where}: not UTF-8 text")
                continue
            except json.JSONDecodeError as exc:
                yield DataError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})")
                continue
            try:
                yield record_from_obj(obj, fmt, where, f"{p.stem}-{lineno}")
            except DataError as exc:
                yield exc
