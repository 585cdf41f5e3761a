"""The append-only journal that makes a restructuring run safe to kill and restart.

One JSON line per finished record, keyed by a hash of the input record, the prompt version and the teacher.
A record counts as done only once its line is on disk (written, flushed and fsynced); a restarted run reads
the journal and requests only the keys it lacks. ``kill -9`` can at worst leave a torn last line, which the
next open cuts off (that record was not acknowledged, so it is simply requested again).

Writes use group commit: entries finished while one fsync is in progress are written and fsynced together by
the next one. Every entry is still durable before it is acknowledged, but a run of thousands of short
requests is not throttled to one fsync (several milliseconds) per record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class JournalError(RuntimeError):
    """The journal file is damaged somewhere other than a torn last line."""


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._queue: asyncio.Queue[tuple[dict[str, Any] | None, asyncio.Future[None] | None]] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._file: Any = None
        self.fsyncs = 0
        """Number of fsync calls so far (one per batch)."""

    def load(self) -> list[dict[str, Any]]:
        """All entries on disk, oldest first; a torn last line is removed from the file first."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            logger.warning("%s: dropping a torn last line left by an interrupted run", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            data = data[:cut]
        entries = []
        for lineno, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise JournalError(
                    f"{self.path}:{lineno}: journal line is not valid JSON ({exc}); "
                    "the file was edited or damaged: move it away to start over"
                ) from None
            if not isinstance(entry, dict) or "key" not in entry or "status" not in entry:
                raise JournalError(f"{self.path}:{lineno}: journal entry lacks 'key' or 'status'")
            entries.append(entry)
        return entries

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())

    async def append(self, entry: dict[str, Any]) -> None:
        """Return once ``entry`` is on disk."""
        assert self._queue is not None, "open() the journal first"
        assert self._writer is not None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((entry, done))
        # If the writer died (disk full), its error surfaces here instead of this call waiting forever.
        await asyncio.wait([done, self._writer], return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            self._writer.result()
            raise JournalError(f"{self.path}: the journal writer stopped")
        done.result()

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._queue is None or self._writer is None:
            return
        await self._queue.put((None, None))
        try:
            await self._writer
        finally:
            self._file.close()
            self._queue = self._writer = None

    def _write_batch(self, payload: bytes) -> None:
        self._file.write(payload)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.fsyncs += 1

    async def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            lines = [json.dumps(e, ensure_ascii=False) + "\n" for e, _ in batch if e is not None]
            try:
                if lines:
                    # fsync blocks for milliseconds: off the event loop, so requests keep flowing meanwhile.
                    await asyncio.to_thread(self._write_batch, "".join(lines).encode("utf-8"))
            except OSError as exc:
                for _, fut in batch:
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)
                raise
            for _, fut in batch:
                if fut is not None and not fut.done():
                    fut.set_result(None)
            if any(e is None for e, _ in batch):
                return
