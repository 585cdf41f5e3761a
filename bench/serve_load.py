"""Load on the OpenAI-compatible API: many streaming clients at once, batched vs one at a time vs a peer.

Each arm starts a server on loopback with the demo model, then ``--clients`` threads send ``--requests``
chat requests through the official ``openai`` client (streaming, greedy, ``--max-tokens`` each), with a
share ``--bad-share`` of malformed or oversize requests sent raw (expected: 4xx, never 5xx). Arms:

* ``batched``: ``medtune serve --api`` with ``serve.max_concurrent=--clients`` (continuous batching);
* ``single``: the same server with ``serve.max_concurrent=1`` (one request at a time, the rest queue);
* ``peer``: ``transformers serve --continuous-batching`` on the same model folder on CPU (offline), when
  it starts within ``--peer-start-s``; good requests only (its errors are not ours to check).

Every server answers one short request before the clock starts (warm-up, not counted).

Printed: a table per arm (ok / 4xx / 5xx / incomplete, p50 and p95 time to first token, tokens/s per
client and in total) and the total-throughput ratios. Targets at 8 clients: batched >= 3x single, p95
TTFT < 5 s. ``--clients 32 --requests 300`` is the full run; the defaults fit a 2-core machine.

    PYTHONPATH=src python bench/serve_load.py [--clients 8 --requests 32 --max-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import cpu_summary, free_port, loadavg, percentile, sample_pairs, skip, table, wait_http

ROOT = Path(__file__).resolve().parents[1]


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
    every = round(1 / args.bad_share) if with_bad and args.bad_share > 0 else 0
    for i in range(args.requests):
        if every and i % every == every - 1:
            jobs.put(("bad", bad[(i // every) % len(bad)]))
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


def medtune_arm(name: str, batch: int, args, tmp: Path) -> Arm:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MEDTUNE_API_KEYS": "", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-c", "import sys; from medtune.cli import main; sys.exit(main())",
        "serve", args.config, "--api", f"serve.api_port={port}", f"serve.max_concurrent={batch}",
        f"serve.max_queue={max(args.requests, 1)}", "serve.rate_limit_per_minute=null", "serve.safety=false",
        "serve.temperature=0", f"serve.max_output_tokens={max(args.max_tokens, 768)}",
    ]  # fmt: skip
    server = Server(cmd, tmp / f"{name}.log", env)
    arm = Arm(name)
    try:
        url = f"http://127.0.0.1:{port}"
        if not wait_http(f"{url}/health", args.start_s, server.alive):
            arm.note = f"server did not start: {server.tail(5)}"
            return arm
        import openai

        models = [m.id for m in openai.OpenAI(base_url=f"{url}/v1", api_key="none").models.list().data]
        # The base model when an adapter is loaded: the peer serves the base weights.
        model = "medtune:base" if "medtune:base" in models else "medtune"
        # One request first, not counted, as the peer's probe: first-call set-up is not load behaviour.
        run_good(_client(url), model, "头疼怎么办", 4)
        drive(arm, url, model, args, with_bad=True)
        arm.note = f"model {model}, batch {batch}"
    finally:
        server.stop()
    return arm


def peer_arm(args, tmp: Path) -> Arm:
    arm = Arm("peer")
    exe = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
    if not Path(exe).exists():
        arm.note = "skipped: no `transformers` command"
        return arm
    from medtune.config import load_config
    from medtune.model.loader import resolve_model_source

    cfg = load_config(args.config, [])
    folder = resolve_model_source(cfg.model).path
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [
        exe, "serve", str(folder), "--continuous-batching", "--device", "cpu", "--dtype", str(cfg.model.dtype),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    server = Server(cmd, tmp / "peer.log", env)
    try:
        url = f"http://127.0.0.1:{port}"
        if not wait_http(f"{url}/health", args.peer_start_s, server.alive):
            arm.note = f"skipped: it did not start in {args.peer_start_s} s: {server.tail(3)}"
            return arm
        probe = run_good(_client(url), str(folder), "头疼怎么办", 4)
        if probe.status != 200:
            arm.note = f"skipped: a probe request failed ({probe.status}: {probe.error})"
            return arm
        drive(arm, url, str(folder), args, with_bad=False)
        arm.note = "transformers serve --continuous-batching, base model"
    finally:
        server.stop()
    return arm


def _client(url: str):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)


def identity_check(args) -> None:
    """Greedy answers alone vs in one batch on the demo model; where they part, the top-2 logit margin there.

    A batch changes the shapes of the matrix products (more rows, left padding in attention), so float
    sums are taken in another order; a difference can only start where two candidate tokens were nearly
    tied, which the margin at the first differing position shows.
    """
    import threading as th

    import torch

    from medtune.config import load_config
    from medtune.serve.batching import BatchRequest
    from medtune.serve.engine import ChatEngine, GenerationSettings, StreamControl

    engine = ChatEngine.from_config(load_config(args.config, ["serve.safety=false"]), adapter=None)
    engine.max_batch = args.identity
    settings = GenerationSettings(max_new_tokens=args.max_tokens, temperature=0.0)
    questions = [q for q, _ in sample_pairs()][: args.identity]

    def tokens(question: str) -> list[int]:
        ids = engine.tokenizer(engine.prompt_text(question), add_special_tokens=False)["input_ids"]
        req = engine.scheduler.submit(BatchRequest(list(ids), settings, "default", StreamControl()))
        req.done.wait()
        return req.generated

    alone = [tokens(q) for q in questions]
    together: dict[int, list[int]] = {}
    threads = [
        th.Thread(target=lambda i=i: together.update({i: tokens(questions[i])}))
        for i in range(len(questions))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same = sum(alone[i] == together[i] for i in range(len(questions)))
    print(f"identity: {same}/{len(questions)} greedy answers identical alone and batched (peak batch "
          f"{engine.scheduler.peak_batch}, {args.max_tokens} tokens)")  # fmt: skip
    for i, q in enumerate(questions):
        a, b = alone[i], together[i]
        if a == b:
            continue
        k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        ids = engine.tokenizer(engine.prompt_text(q), add_special_tokens=False)["input_ids"] + a[:k]
        with torch.inference_mode():
            logits = engine.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        top = logits.topk(2)
        print(f"  question {i}: first difference at token {k}; top-2 logit margin there (alone) "
              f"{float(top.values[0] - top.values[1]):.4f}")  # fmt: skip


def summarize(arm: Arm) -> list[str]:
    good = [r for r in arm.results if r.kind == "good"]
    ok = [r for r in good if r.status == 200 and r.complete]
    bad = [r for r in arm.results if r.kind != "good"]
    ttft = [r.ttft for r in ok if r.ttft is not None]
    tokens = sum(r.tokens for r in ok)
    per_client = [r.tokens / r.seconds for r in ok if r.seconds > 0]
    statuses = [r.status for r in arm.results]
    return [
        arm.name,
        f"{len(ok)}/{len(good)}",
        f"{sum(400 <= s < 500 for s in statuses if s != 200)}/{len(bad)}",
        str(sum(s >= 500 for s in statuses)),
        f"{percentile(ttft, 50):.2f}",
        f"{percentile(ttft, 95):.2f}",
        f"{percentile(per_client, 50):.2f}",
        f"{tokens / arm.wall:.2f}" if arm.wall else "-",
        f"{arm.wall:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo" / "lora_sft.yaml"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--bad-share", type=float, default=0.125, help="share of malformed/oversize requests")
    parser.add_argument("--arms", default="batched,single,peer", help="comma-separated: batched,single,peer")
    parser.add_argument("--start-s", type=float, default=300, help="wait this long for a server to start")
    parser.add_argument("--peer-start-s", type=float, default=300)
    parser.add_argument(
        "--arm-limit-s",
        type=float,
        default=900,
        help="no new request after this long in one arm (rates stay valid)",
    )
    parser.add_argument(
        "--identity", type=int, default=0, metavar="N",
        help="also compare N greedy answers served alone and batched in-process (share identical, first differences)",
    )  # fmt: skip
    args = parser.parse_args()

    try:
        # Imported here, once: a first import racing in several client threads fails (partially
        # initialised module).
        import httpx  # noqa: F401
        import openai  # noqa: F401

        from medtune.config import load_config
        from medtune.model.loader import resolve_model_source

        resolve_model_source(load_config(args.config, []).model)
    except Exception as exc:
        skip(f"the demo model or the openai client is not available here ({type(exc).__name__}: {exc})")

    print(f"{cpu_summary()}; load average before: {loadavg()}")
    print(
        f"{args.clients} clients, {args.requests} requests ({args.bad_share:.0%} malformed), "
        f"{args.max_tokens} tokens each, greedy, streaming"
    )
    arms: list[Arm] = []
    with tempfile.TemporaryDirectory(prefix="medtune-load-") as tmp:
        for name in args.arms.split(","):
            t0 = time.perf_counter()
            if name == "batched":
                arm = medtune_arm("batched", args.clients, args, Path(tmp))
            elif name == "single":
                arm = medtune_arm("single", 1, args, Path(tmp))
            elif name == "peer":
                arm = peer_arm(args, Path(tmp))
            else:
                raise SystemExit(f"unknown arm {name!r}")
            print(f"[{name}] {arm.note} ({time.perf_counter() - t0:.0f} s with start-up)", flush=True)
            for r in arm.results:
                if r.status >= 500 or (r.kind == "good" and not r.complete):
                    print(f"  {r.kind}: {r.status} {r.error}")
            arms.append(arm)
    if args.identity:
        identity_check(args)
    header = ["arm", "ok", "4xx", "5xx", "ttft p50 s", "ttft p95 s", "tok/s/client", "tok/s total", "wall s"]
    ran = [a for a in arms if a.results]
    print(table([summarize(a) for a in ran], header))
    total = {
        a.name: sum(r.tokens for r in a.results if r.kind == "good" and r.complete) / a.wall for a in ran
    }
    for name in ("single", "peer"):
        if "batched" in total and name in total and total[name]:
            print(f"total tokens/s, batched / {name}: {total['batched'] / total[name]:.2f}x")
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
