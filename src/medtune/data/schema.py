"""The record every reader produces and every later stage consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class DataError(ValueError):
    """Bad input data; the message starts with ``file:line:`` and says what to fix."""


@dataclass
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
        d = asdict(self)
        if not d["history"]:
            d.pop("history")
        if not d["meta"]:
            d.pop("meta")
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
