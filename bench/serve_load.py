"""Load on the OpenAI-compatible API: many streaming clients at once, batched vs one at a time vs a peer.

Each arm starts a server on loopback with the demo model, then ``--clients`` threads send ``--requests``
chat requests through the official ``openai`` client (streaming, greedy, ``--max-tokens`` each), with a
share ``--bad-share`` of malformed or oversize requests sent raw (expected: 4xx, never 5xx). Arms:

* ``batched``: ``medtune serve --api`` with ``serve.max_concurrent=--clients`` (continuous batching);
* ``single``: the same server with ``serve.max_concurrent=1`` (one request at a time, the rest queue);
* ``peer``: ``transformers serve --continuous-batching`` on the same model folder on CPU (offline), when
  it starts within ``--peer-start-s``; good requests only (its errors are not ours to check).

Our server warms itself up before its /health says ready; every server (the peer too) also answers one
short request before the clock starts (not counted).

``--override KEY=VALUE`` (repeatable) goes to the servers' config, e.g. the tiny test model's folder.

Printed: a table per arm (ok / 4xx / 5xx / incomplete, p50 and p95 time to first token, tokens/s per
client and in total) and the total-throughput ratios. Targets at 8 clients: batched >= 3x single, p95
TTFT < 5 s. The full run is ``--clients 32 --requests 300 --bad-share 0.1``; the defaults fit a 2-core
machine. The exit status is 1 when one of our arms answers a request with a 5xx, refuses a bad one with
anything but a 4xx or leaves a good one incomplete.

    PYTHONPATH=src python bench/serve_load.py [--clients 8 --requests 32 --max-tokens 48]
    PYTHONPATH=src python bench/serve_load.py --clients 32 --requests 300 --bad-share 0.1 --arms batched,single
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_summary, free_port, loadavg, percentile, sample_pairs, skip, table, wait_http
from _serve_load_io import Arm, Server, drive, openai_client, run_good

ROOT = Path(__file__).resolve().parents[1]


def medtune_arm(name: str, batch: int, args, tmp: Path) -> Arm:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MEDTUNE_API_KEYS": "", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-c", "import sys; from medtune.cli import main; sys.exit(main())",
        "serve", args.config, "--api", f"serve.api_port={port}", f"serve.max_concurrent={batch}",
        f"serve.max_queue={max(args.requests, 1)}", "serve.rate_limit_per_minute=null", "serve.safety=false",
        "serve.temperature=0", f"serve.max_output_tokens={max(args.max_tokens, 768)}", *args.override,
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
        run_good(openai_client(url), model, "头疼怎么办", 4)
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

    cfg = load_config(args.config, args.override)
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
        probe = run_good(openai_client(url), str(folder), "头疼怎么办", 4)
        if probe.status != 200:
            arm.note = f"skipped: a probe request failed ({probe.status}: {probe.error})"
            return arm
        drive(arm, url, str(folder), args, with_bad=False)
        arm.note = "transformers serve --continuous-batching, base model"
    finally:
        server.stop()
    return arm


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

    engine = ChatEngine.from_config(
        load_config(args.config, [*args.override, "serve.safety=false"]), adapter=None
    )
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
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="a config override for the servers (repeatable), e.g. model.name_or_path=FOLDER",
    )  # fmt: skip
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

        resolve_model_source(load_config(args.config, args.override).model)
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
                if r.status >= 500 or not r.complete:
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
    failed = [f"{a.name}: {problem}" for a in arms if a.name != "peer" for problem in problems(a)]
    print(
        "checks: "
        + ("; ".join(failed) if failed else "no 5xx, every bad request a 4xx, every answer complete")
    )
    if failed:
        raise SystemExit(1)


def problems(arm: Arm) -> list[str]:
    """What breaks the load targets in one of our arms: a 5xx, a bad request not refused with a 4xx, a good
    one not answered in full (the peer's answers are not ours to check)."""
    if not arm.results:
        return [arm.note or "no request was answered"]
    found = []
    if errors := sum(r.status >= 500 for r in arm.results):
        found.append(f"{errors} server error(s)")
    if wrong := sum(not 400 <= r.status < 500 for r in arm.results if r.kind != "good"):
        found.append(f"{wrong} bad request(s) not refused with a 4xx")
    if cut := sum(not (r.status == 200 and r.complete) for r in arm.results if r.kind == "good"):
        found.append(f"{cut} good request(s) not answered in full")
    return found


if __name__ == "__main__":
    main()
