"""Evaluation sets: open questions and multiple-choice exams, read from any file ``data prepare`` reads.

Exam files come in many shapes; the common ones are accepted as they are, without conversion:

- ``{"question", "options": {"A": ...} or [...], "answer": "D" | "ACE" | ["A", "C"]}`` (MedQA, CMExam, CMB);
- CMMLU's CSV: ``Question,A,B,C,D,Answer``;
- CNMLEQA / MedMCQA style: ``opa`` .. ``ope`` with ``answer: "opb"`` (or ``cop`` 1-based);
- options embedded in the question text: ``"(A) x\\n(B) y"`` or ``"A. x\\nB. y"``.

A file that cannot be parsed stops with one line naming file and line (``EvalSetError``). An item that
parses but cannot be scored (missing field, options missing, empty or unknown answer letter) is kept
aside with its reason and counted in the report, so a bad row is visible and never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtune.config import EvalSetConfig
from medtune.data.readers import ReadOptions, iter_rows
from medtune.data.schema import DataError
from medtune.eval.extract import LETTERS

_QUESTION_KEYS = ("question", "Question", "ask", "query", "prompt", "instruction")
_REFERENCE_KEYS = ("answer", "response", "output", "reply", "reference")
_ANSWER_KEYS = ("answer", "Answer", "label", "answer_idx", "correct", "cop")
_OP_KEYS = tuple(f"op{c}" for c in "abcdefgh")
# "(A) x" / "A. x" / "A、x" / "A：x" at the start of a line
_EMBEDDED = re.compile(r"^\s*[\(（]?([A-H])[\)）\.．、:：]\s*(.+?)\s*$", re.MULTILINE)


class EvalSetError(ValueError):
    """A set file that cannot be read; the message is one line naming file and line."""


@dataclass(frozen=True)
class OpenItem:
    id: str
    question: str
    reference: str | None
    where: str
    subset: str | None = None


@dataclass(frozen=True)
class ExamItem:
    id: str
    question: str
    options: dict[str, str]
    answer: frozenset[str]
    where: str
    subset: str | None = None

    @property
    def multi(self) -> bool:
        return len(self.answer) > 1


@dataclass(frozen=True)
class Problem:
    where: str
    reason: str


@dataclass
class EvalSet:
    name: str
    kind: str
    path: str
    items: list[Any] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dev: list[ExamItem] = field(default_factory=list)
    shots: int = 0
    has_references: bool = False


def _rows(path: str | Path, encoding: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    try:
        # fmt "raw": the columns are read by the set's own mapping below, not as a training record layout.
        for row in iter_rows(path, ReadOptions(fmt="raw", encoding=encoding)):
            if isinstance(row, DataError):
                raise EvalSetError(str(row).splitlines()[0])
            if not isinstance(row.obj, dict):
                raise EvalSetError(
                    f"{row.where}: expected an object with named fields, got {type(row.obj).__name__}"
                )
            yield row.where, row.default_id, row.obj
    except DataError as exc:
        raise EvalSetError(str(exc).splitlines()[0]) from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def _joined(obj: dict[str, Any], keys: list[str] | tuple[str, ...], first_only: bool) -> str | None:
    parts = []
    for key in keys:
        if key in obj:
            value = _text(obj[key])
            if value:
                parts.append(value)
                if first_only:
                    break
    return "\n".join(parts) if parts else None


def _item_id(obj: dict[str, Any], default: str) -> str:
    value = obj.get("id", obj.get("qid"))
    return str(value) if value not in (None, "") else default


def _subset(obj: dict[str, Any], field_name: str | None) -> str | None:
    if not field_name:
        return None
    return _text(obj.get(field_name)) or None


def _options(obj: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """The item's options and, when they were embedded in it, the question without them."""
    raw = obj.get("options", obj.get("choices"))
    if isinstance(raw, dict):
        return {str(k).strip().upper(): _text(v) for k, v in raw.items()}, None
    if isinstance(raw, list):
        return {LETTERS[i]: _text(v) for i, v in enumerate(raw[: len(LETTERS)])}, None
    if isinstance(raw, str) and raw.strip():
        found = dict(_EMBEDDED.findall(raw))
        if found:
            return found, None
    for keys in ([c for c in LETTERS if c in obj], [k for k in _OP_KEYS if k in obj]):
        if len(keys) >= 2:
            return {LETTERS[i]: _text(obj[k]) for i, k in enumerate(keys)}, None
    question = _text(obj.get("question", obj.get("Question")))
    found = _EMBEDDED.findall(question)
    if len(found) >= 2:
        stem = _EMBEDDED.sub("", question).strip()
        return dict(found), stem
    return {}, None


def _answer(value: Any, options: dict[str, str]) -> frozenset[str] | str:
    """The correct letters, or a reason why they cannot be read."""
    if isinstance(value, list):
        value = "".join(str(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        # MedMCQA's ``cop`` counts from 1.
        return (
            frozenset(LETTERS[value - 1])
            if 1 <= value <= len(options)
            else f"answer index {value} out of range"
        )
    text = _text(value)
    if not text:
        return "empty answer"
    m = re.fullmatch(r"op([a-h])", text.lower())
    if m:
        text = m.group(1).upper()
    if text in options.values():  # the option's text instead of its letter
        return frozenset(k for k, v in options.items() if v == text)
    letters = re.sub(r"[\s,，、/;；和]", "", text.upper())
    if not letters or not all(c in LETTERS for c in letters):
        return f"answer {text[:20]!r} is not an option letter"
    unknown = sorted(set(letters) - set(options))
    if unknown:
        return f"answer letter {''.join(unknown)} has no option (options {''.join(sorted(options))})"
    return frozenset(letters)


def exam_item(obj: dict[str, Any], where: str, default_id: str, spec: EvalSetConfig) -> ExamItem | Problem:
    options, stem = _options(obj)
    question = (
        stem
        if stem is not None
        else _joined(obj, spec.question_fields or _QUESTION_KEYS, not spec.question_fields)
    )
    if not question:
        return Problem(where, "missing question")
    options = {k: v for k, v in options.items() if v}
    if len(options) < 2:
        return Problem(where, "options missing (need at least two)")
    keys = (spec.answer_field,) if spec.answer_field else _ANSWER_KEYS
    value = next((obj[k] for k in keys if k in obj), None)
    if value is None:
        return Problem(where, f"missing answer field ({'/'.join(keys)})")
    answer = _answer(value, options)
    if isinstance(answer, str):
        return Problem(where, answer)
    return ExamItem(
        _item_id(obj, default_id),
        question,
        dict(sorted(options.items())),
        answer,
        where,
        _subset(obj, spec.subset_field),
    )


def open_item(obj: dict[str, Any], where: str, default_id: str, spec: EvalSetConfig) -> OpenItem | Problem:
    if "instruction" in obj and not spec.question_fields:
        question = _joined(obj, ("instruction", "input"), False)
    else:
        question = _joined(obj, spec.question_fields or _QUESTION_KEYS, not spec.question_fields)
    if not question:
        return Problem(where, "missing question")
    reference = _joined(obj, spec.reference_fields or _REFERENCE_KEYS, not spec.reference_fields)
    return OpenItem(_item_id(obj, default_id), question, reference, where, _subset(obj, spec.subset_field))


def load_set(spec: EvalSetConfig, limit: int | None = None, default_shots: int = 0) -> EvalSet:
    """Read one configured set; ``limit`` (``--limit``) and ``spec.limit`` keep the first valid items."""
    if not Path(spec.path).exists():
        raise EvalSetError(f"{spec.path}: evaluation set {spec.name!r} not found")
    make = exam_item if spec.kind == "exam" else open_item
    out = EvalSet(spec.name, spec.kind, spec.path)
    caps = [c for c in (limit, spec.limit) if c]
    cap = min(caps) if caps else None
    seen: set[str] = set()
    for where, default_id, obj in _rows(spec.path, spec.encoding):
        result = make(obj, where, default_id, spec)
        if isinstance(result, Problem):
            out.problems.append(result)
            continue
        if result.id in seen:  # ids key the resumable cache: a repeat would overwrite its twin's answer
            result = type(result)(**{**result.__dict__, "id": f"{result.id}@{where}"})
        seen.add(result.id)
        if cap is None or len(out.items) < cap:
            out.items.append(result)
    out.has_references = spec.kind == "open" and any(i.reference for i in out.items)
    if spec.kind == "exam":
        out.shots = spec.shots if spec.shots is not None else default_shots
        if out.shots:
            if not spec.dev_path:
                raise EvalSetError(
                    f"eval.sets.{spec.name}: {out.shots}-shot needs dev_path (solved examples)"
                )
            dev_spec = EvalSetConfig(
                name=f"{spec.name}_dev", kind="exam", path=spec.dev_path, encoding=spec.encoding
            )
            dev = [
                r
                for r in (exam_item(o, w, d, dev_spec) for w, d, o in _rows(spec.dev_path, spec.encoding))
                if isinstance(r, ExamItem)
            ]
            if len(dev) < out.shots:
                raise EvalSetError(f"{spec.dev_path}: {len(dev)} usable examples for {out.shots}-shot")
            out.dev = dev[: out.shots]
    return out
