"""serve_load's clients and server processes: the requests a load run sends, how each went, and a server
subprocess to send them to. Not a benchmark itself (``make bench`` leaves out files starting with ``_``)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import sample_pairs


@dataclass
class Result:
    kind: str
    """good, or the malformed kind sent."""
    status: int = 0
    ttft: float | None = None
    seconds: float = 0.0
    tokens: int = 0
    complete: bool = False
    error: str = ""


@dataclass
class Arm:
    name: str
    results: list[Result] = field(default_factory=list)
    wall: float = 0.0
    note: str = ""


def bad_requests() -> list[tuple[str, bytes | str, int]]:
    """(kind, raw body, expected status) of requests a hardened API must refuse without a 5xx."""
    msg = [{"role": "user", "content": "头疼"}]
    return [
        ("oversize", json.dumps({"model": "medtune", "messages": [{"role": "user", "content": "痛" * 200_000}]}), 413),
        ("bad-json", "{not json", 400),
        ("no-model", json.dumps({"model": "nope", "messages": msg}), 404),
        ("huge-max_tokens", json.dumps({"model": "medtune", "messages": msg, "max_tokens": 10**7}), 400),
        ("no-messages", json.dumps({"model": "medtune", "messages": []}), 400),
    ]  # fmt: skip


def run_good(client, model: str, question: str, max_tokens: int) -> Result:
    import openai

    res = Result("good")
    start = time.perf_counter()
    try:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = 0
        for chunk in stream:
            if chunk.usage is not None:
                res.tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces += 1
                    if res.ttft is None:
                        res.ttft = time.perf_counter() - start
                if choice.finish_reason in ("stop", "length"):
                    res.complete = True
        res.tokens = res.tokens or pieces  # a server without usage in streams: one piece ~ one token
        res.status = 200
    except openai.APIStatusError as exc:
        res.status, res.error = exc.status_code, str(exc)[:200]
    except Exception as exc:  # a dropped connection is a failure of the server under load
        res.status, res.error = 599, f"{type(exc).__name__}: {exc}"[:200]
    res.seconds = time.perf_counter() - start
    return res


def run_bad(url: str, kind: str, body, expected: int) -> Result:
    import httpx

    res = Result(kind)
    try:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json", "authorization": "Bearer none"},
            timeout=60,
        )
        res.status = r.status_code
        res.complete = r.status_code == expected
    except Exception as exc:
        res.status, res.error = 599, f"{type(exc).__name__}: {exc}"[:200]
    return res


def drive(arm: Arm, url: str, model: str, args, with_bad: bool) -> None:
    import openai

    questions = [q for q, _ in sample_pairs()]
    bad = bad_requests()
    jobs: queue.Queue = queue.Queue()
    share = args.bad_share if with_bad else 0.0
    sent_bad = 0
    for i in range(args.requests):
        # Request i is bad when it brings the bad count up to share * (i + 1): exactly round-down(share *
        # requests) bad ones, spread evenly (10% of 300 is 30, every tenth), the kinds in turn.
        if int(share * (i + 1)) > sent_bad:
            jobs.put(("bad", bad[sent_bad % len(bad)]))
            sent_bad += 1
        else:
            jobs.put(("good", questions[i % len(questions)]))
    lock = threading.Lock()

    deadline = time.perf_counter() + args.arm_limit_s

    def worker() -> None:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=900)
        while time.perf_counter() < deadline:  # past it, no new request (a cap for a slow arm)
            try:
                kind, job = jobs.get_nowait()
            except queue.Empty:
                return
            res = run_good(client, model, job, args.max_tokens) if kind == "good" else run_bad(url, *job)
            with lock:
                arm.results.append(res)

    threads = [threading.Thread(target=worker) for _ in range(args.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    arm.wall = time.perf_counter() - start


class Server:
    """A server subprocess in its own process group, its output in a log file."""

    def __init__(self, cmd: list[str], log: Path, env: dict[str, str]):
        self.log = log
        self._file = log.open("w")
        self.proc = subprocess.Popen(
            cmd, stdout=self._file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._file.close()

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def openai_client(url: str):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
