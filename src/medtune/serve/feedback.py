"""Thumbs up/down and comments on web UI answers, stored through SQLAlchemy, exported as preference data.

A row holds the question, the answer as the model wrote it, the model, the generation settings, the
rating, an optional comment and the time. Question, answer and comment pass the data stage's personal-data
scrubber before they are written: a patient's phone number typed into the chat never reaches the database.
SQLite is the default (``<run_dir>/feedback.db``); ``serve.feedback_url`` takes any SQLAlchemy URL, so
PostgreSQL works with the same code.

``export_preferences`` writes what training reads:

* ``preferences.jsonl`` (the ``--out`` file): ``{"prompt", "chosen", "rejected"}`` for every question that
  has both a liked and a disliked answer; TRL's DPOTrainer takes the rows as they are, and
  ``medtune data prepare`` reads them as question/answer records on the chosen answer;
* ``<out>.unpaired.jsonl``: every other rated answer as ``{"prompt", "completion", "label"}``, TRL's
  unpaired preference format (KTOTrainer), so a single rating is not lost.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medtune.config import Config

logger = logging.getLogger(__name__)


def feedback_url(cfg: Config) -> str:
    """The configured database URL, or SQLite in the run folder."""
    if cfg.serve.feedback_url:
        return cfg.serve.feedback_url
    return f"sqlite:///{(cfg.run_dir / 'feedback.db').resolve()}"


@dataclass
class Feedback:
    question: str
    answer: str
    rating: int
    """+1 thumbs up, -1 thumbs down."""
    model: str
    settings: dict[str, Any]
    comment: str = ""
    created_at: datetime | None = None
    id: int | None = None


class FeedbackStore:
    def __init__(self, url: str):
        import sqlalchemy as sa

        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = sa.create_engine(url)
        meta = sa.MetaData()
        self.table = sa.Table(
            "feedback",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("question", sa.Text, nullable=False),
            sa.Column("answer", sa.Text, nullable=False),
            sa.Column("rating", sa.SmallInteger, nullable=False),
            sa.Column("comment", sa.Text, nullable=False, default=""),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("settings", sa.Text, nullable=False),  # JSON: portable across databases as text
        )
        meta.create_all(self.engine)
        from medtune.data.pii import PiiScrubber

        self._scrubber = PiiScrubber()
        self._lock = threading.Lock()  # the scrubber's counters are not shared across threads

    def add(self, item: Feedback) -> int:
        """Store one rating (scrubbed); returns its id."""
        with self._lock:
            question, answer, comment = (
                self._scrubber.scrub(t) for t in (item.question, item.answer, item.comment)
            )
        with self.engine.begin() as conn:
            result = conn.execute(
                self.table.insert().values(
                    created_at=item.created_at or datetime.now(UTC),
                    question=question,
                    answer=answer,
                    rating=1 if item.rating > 0 else -1,
                    comment=comment,
                    model=item.model,
                    settings=json.dumps(item.settings, ensure_ascii=False, sort_keys=True),
                )
            )
            return int(result.inserted_primary_key[0])

    def comment(self, row_id: int, comment: str) -> None:
        """Attach (or replace) the comment of a stored rating."""
        with self._lock:
            comment = self._scrubber.scrub(comment)
        with self.engine.begin() as conn:
            conn.execute(self.table.update().where(self.table.c.id == row_id).values(comment=comment))

    def all(self) -> list[Feedback]:
        with self.engine.connect() as conn:
            rows = conn.execute(self.table.select().order_by(self.table.c.id)).mappings().all()
        return [
            Feedback(
                r["question"],
                r["answer"],
                r["rating"],
                r["model"],
                json.loads(r["settings"]),
                r["comment"],
                r["created_at"],
                r["id"],
            )  # fmt: skip
            for r in rows
        ]


def export_preferences(store: FeedbackStore, out: Path) -> dict[str, int]:
    """Write the pairs to ``out`` and the other rated answers beside it; returns the counts."""
    by_question: dict[str, dict[int, list[str]]] = defaultdict(lambda: {1: [], -1: []})
    for item in store.all():
        answers = by_question[item.question.strip()][item.rating]
        if item.answer not in answers:  # the same answer rated twice counts once
            answers.append(item.answer)
    pairs, unpaired = [], []
    for question, rated in by_question.items():
        good, bad = rated[1], rated[-1]
        # Each liked answer pairs with a disliked one; extra answers of the larger side stay unpaired.
        for chosen, rejected in zip(good, bad):
            pairs.append({"prompt": question, "chosen": chosen, "rejected": rejected})
        n = min(len(good), len(bad))
        unpaired += [{"prompt": question, "completion": a, "label": True} for a in good[n:]]
        unpaired += [{"prompt": question, "completion": a, "label": False} for a in bad[n:]]
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, rows in ((out, pairs), (unpaired_path(out), unpaired)):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    logger.info("exported %d pairs to %s and %d single ratings beside it", len(pairs), out, len(unpaired))
    return {"pairs": len(pairs), "unpaired": len(unpaired)}


def unpaired_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".unpaired.jsonl")
