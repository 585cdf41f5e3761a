"""Per-item results on disk, so a killed evaluation picks up where it stopped.

Every answer and score is appended to ``<run_dir>/eval/cache/<set>/<model>.jsonl`` as soon as its batch
is done (flushed and fsynced), keyed by a hash of everything that determines it: the item's prompt, the
generation settings, the scorer and the model's identity (an adapter's file hash, an endpoint's URL and
model name). A second run reads those files first and only computes what is missing, so a finished
evaluation does nothing but rewrite the report; changing the prompt, a setting or the adapter makes the
affected items stale and they are computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(
        json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str).encode()
    ).hexdigest()[:20]


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class ResultStore:
    """One append-only JSONL file per (set, model); the last line per key wins."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def _path(self, set_name: str, model: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
        return self.root / set_name / f"{safe}.jsonl"

    def load(self, set_name: str, model: str) -> dict[str, dict[str, Any]]:
        key = (set_name, model)
        if key not in self._cache:
            rows: dict[str, dict[str, Any]] = {}
            path = self._path(set_name, model)
            if path.is_file():
                with path.open(encoding="utf-8") as fh:
                    for lineno, line in enumerate(fh, 1):
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError:
                            # A line cut by a kill mid-write: the item is simply computed again.
                            logger.warning("%s:%d: unreadable cache line skipped", path, lineno)
                            continue
                        rows[row["key"]] = row
            self._cache[key] = rows
        return self._cache[key]

    def get(self, set_name: str, model: str, key: str) -> dict[str, Any] | None:
        return self.load(set_name, model).get(key)

    def put_many(self, set_name: str, model: str, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` (each with a ``key``) durably."""
        if not rows:
            return
        path = self._path(set_name, model)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        cached = self.load(set_name, model)
        for row in rows:
            cached[row["key"]] = row
