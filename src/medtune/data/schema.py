"""The record every reader produces and every later stage consumes."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


class DataError(ValueError):
    """Bad input data; the message starts with ``file:line:`` and says what to fix.

    ``where`` is that ``file:line`` on its own and ``raw`` a prefix of the offending input, so a
    quarantine entry can show what was skipped.
    """

    def __init__(self, message: str, where: str | None = None, raw: str | None = None) -> None:
        super().__init__(message)
        self.where = where
        self.raw = raw


@dataclass(slots=True)  # a million records in memory at once during `data prepare`: no per-record __dict__
class QARecord:
    id: str
    """Stable id: from the source when it has one, else derived from file and line."""
    question: str
    answer: str
    department: str | None = None
    source: str = ""
    """Provenance, ``file:line`` (or ``file:row``), kept through every stage."""
    history: list[dict[str, str]] = field(default_factory=list)
    """Earlier turns of a multi-turn conversation (role/content), before ``question``."""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies recursively and dominated writing a million rows.
        d: dict[str, Any] = {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "department": self.department,
            "source": self.source,
        }
        if self.history:
            d["history"] = [dict(turn) for turn in self.history]
        if self.meta:
            d["meta"] = copy.deepcopy(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QARecord:
        return cls(
            id=str(d["id"]),
            question=d["question"],
            answer=d["answer"],
            department=d.get("department"),
            source=d.get("source", ""),
            history=list(d.get("history") or []),
            meta=dict(d.get("meta") or {}),
        )
