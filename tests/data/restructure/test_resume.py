"""A worker process killed with SIGKILL mid-run, then started again: nothing lost, nothing duplicated, and
no record that had completed is requested a second time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medtune.data.restructure.journal import Journal
from tests.data.restructure.conftest import sample_rows

N = 60
CONCURRENCY = 4


def _worker(args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "medtune.data.restructure.cli", "--no-progress", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_run_resumes_without_losing_repeating_or_paying_twice(
    fake_server, raw_file, teacher_overrides, tmp_path
):
    server = fake_server(latency_s=0.1)
    args = teacher_overrides(server, raw_file(N), f"restructure.concurrency={CONCURRENCY}")
    journal = tmp_path / "runs" / "t" / "restructure" / "journal.jsonl"

    first = _worker(args)
    deadline = time.time() + 60
    while time.time() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 12:
            break
        if first.poll() is not None:
            pytest.fail(f"worker ended before it could be killed: {first.communicate()}")
        time.sleep(0.005)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    killed_at = time.time()
    assert first.returncode == -signal.SIGKILL

    completed = {e["id"] for e in Journal(journal).load() if e["status"] in ("ok", "rejected")}
    requested_before_kill = len(server.log)
    assert 12 <= len(completed) < N, "the kill must land mid-run"

    second = _worker(args)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert f"{len(completed)} were done by earlier runs" in out

    by_question = {row["instruction"]: row["id"] for row in sample_rows(N)}
    after_kill = [by_question[r["question"]] for r in server.log[requested_before_kill:]]
    assert not set(after_kill) & completed, "a record completed before the kill was requested again"
    assert len(after_kill) == N - len(completed)
    # Only records in flight at the kill (sent, not yet journaled) are paid for twice: at most one per worker.
    per_record = {}
    for r in server.log:
        per_record[by_question[r["question"]]] = per_record.get(by_question[r["question"]], 0) + 1
    paid_twice = [rid for rid, n in per_record.items() if n > 1]
    assert len(paid_twice) <= 2 * CONCURRENCY
    assert all(server.log[i]["t"] <= killed_at for i in range(requested_before_kill))

    restructure_dir = journal.parent
    ok = [
        json.loads(x)["id"] for x in (restructure_dir / "restructured.jsonl").read_text("utf-8").splitlines()
    ]
    rejected = [
        json.loads(x)["id"] for x in (restructure_dir / "rejects.jsonl").read_text("utf-8").splitlines()
    ]
    assert len(ok) + len(rejected) == N
    assert sorted(ok + rejected) == sorted(by_question.values()), "every record exactly once"

    third = _worker(args)
    out, _ = third.communicate(timeout=120)
    assert third.returncode == 0 and out.startswith("nothing to do")
    assert len(server.log) == requested_before_kill + len(after_kill)
    assert Path(restructure_dir / "summary.json").exists()
