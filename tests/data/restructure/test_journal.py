"""The journal: durable before acknowledged, grouped fsyncs, and a torn tail from kill -9 repaired."""

from __future__ import annotations

import asyncio
import json

import pytest

from medtune.data.restructure.journal import Journal, JournalError


def test_every_append_is_on_disk_when_it_returns(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")

    async def go():
        await journal.open()
        await journal.append({"key": "a", "status": "ok"})
        on_disk = (tmp_path / "j.jsonl").read_text()
        await journal.close()
        return on_disk

    assert json.loads(asyncio.run(go())) == {"key": "a", "status": "ok"}


def test_concurrent_appends_share_fsyncs_and_none_is_lost(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")

    async def go():
        await journal.open()
        await asyncio.gather(*(journal.append({"key": str(i), "status": "ok"}) for i in range(300)))
        await journal.close()

    asyncio.run(go())
    entries = journal.load()
    assert sorted(int(e["key"]) for e in entries) == list(range(300))
    assert 1 <= journal.fsyncs < 300


def test_a_torn_last_line_is_cut_off_and_appending_continues_cleanly(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"key": "a", "status": "ok"}\n{"key": "b", "sta', encoding="utf-8")
    journal = Journal(path)
    assert [e["key"] for e in journal.load()] == ["a"]
    assert path.read_text(encoding="utf-8") == '{"key": "a", "status": "ok"}\n'

    async def go():
        await journal.open()
        await journal.append({"key": "b", "status": "ok"})
        await journal.close()

    asyncio.run(go())
    assert [e["key"] for e in Journal(path).load()] == ["a", "b"]


def test_damage_in_the_middle_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text(
        '{"key": "a", "status": "ok"}\nnot json\n{"key": "c", "status": "ok"}\n', encoding="utf-8"
    )
    with pytest.raises(JournalError, match=r"j\.jsonl:2"):
        Journal(path).load()


def test_a_missing_journal_is_empty(tmp_path):
    assert Journal(tmp_path / "none.jsonl").load() == []
