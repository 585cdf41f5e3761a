"""Fixtures for the restructuring tests: a real fault-injecting OpenAI-compatible server on loopback, small
input files cut from the shipped sample, and configs pointing at both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtune.config import load_config
from tests.fakes.fake_openai import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[3]
SAMPLE_RAW = ROOT / "data" / "sample" / "medqa_raw.jsonl"
SECRET = "sk-test-SECRET-7f3a9c1e5b2d"
"""The API key of every test server: distinctive, so tests can prove it never leaks into any output."""


def sample_rows(n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in SAMPLE_RAW.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:n] if n else rows


@pytest.fixture
def fake_server():
    """``fake_server(**kwargs)`` starts a FakeOpenAIServer expecting SECRET; all are stopped afterwards."""
    servers: list[FakeOpenAIServer] = []

    def make(**kwargs) -> FakeOpenAIServer:
        kwargs.setdefault("api_key", SECRET)
        server = FakeOpenAIServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def raw_file(tmp_path):
    """``raw_file(n)`` writes the first n sample records (alpaca form) and returns the path."""

    def make(n: int = 12, rows: list[dict] | None = None) -> Path:
        path = tmp_path / f"raw-{n}.jsonl"
        data = rows if rows is not None else sample_rows(n)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
        return path

    return make


@pytest.fixture
def teacher_overrides(tmp_path, monkeypatch):
    """``teacher_overrides(server, input_file, *more)``: dotted overrides for a fast teacher run."""
    monkeypatch.setenv("MEDTUNE_TEACHER_API_KEY", SECRET)

    def make(server: FakeOpenAIServer, input_file: Path, *more: str) -> list[str]:
        return [
            f"output_root={tmp_path / 'runs'}",
            "run_name=t",
            f"restructure.base_url={server.base_url}",
            "restructure.model=fake-teacher",
            f"restructure.input_file={input_file}",
            "restructure.concurrency=4",
            "restructure.timeout_s=5",
            "restructure.backoff_initial_s=0.01",
            "restructure.backoff_max_s=0.05",
            *more,
        ]

    return make


@pytest.fixture
def teacher_config(teacher_overrides):
    def make(server: FakeOpenAIServer, input_file: Path, *more: str):
        return load_config(None, teacher_overrides(server, input_file, *more))

    return make
