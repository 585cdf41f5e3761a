"""Benchmark restructuring against the local fault-injecting teacher: throughput, no loss, no duplicates.

    .venv/bin/python bench/restructure.py                         # the issue's setting: 10,000 records,
                                                                  # 50 ms latency, 5% transient faults, 64 at once
    .venv/bin/python bench/restructure.py --records 2000 --concurrency 16

The teacher is the test double ``python -m tests.fakes.fake_openai``, started from the repository root in
its own process: every answer takes ``--latency`` seconds, and ``--fault-rate`` of the requests fail
transiently (429 with Retry-After, 503, malformed JSON), chosen at random with a fixed seed. Records are the shipped sample's raw answers cycled,
each with its own id and question. The run is the real thing: ``run_restructure`` with the official openai
client, the quality gate and the fsynced journal.

Two baselines. The issue's ideal is ``records x latency / concurrency`` (every slot always busy, faults
free). On a small machine the client itself is the limit first: the openai client spends milliseconds of
CPU per request, so ``records x (1 + fault rate) / client requests-per-second`` is printed too, with that
rate measured here by the bare openai client at the same concurrency against a zero-latency server. The
ratio to the larger of the two shows this project's own overhead (scheduling, gate, journal, retries).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from medtune.config import load_config
from medtune.data.restructure.runner import output_dir, run_restructure

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "medqa_raw.jsonl"
KEY = "bench-key"
TARGET_RATIO = 1.3


def start_server(latency: float, fault_rate: float, faults: str, seed: int) -> tuple[subprocess.Popen, str]:
    # The fake teacher is a test double under tests/, importable from the repository root (the cwd below).
    cmd = [sys.executable, "-m", "tests.fakes.fake_openai", "--latency", str(latency)]
    cmd += ["--fault-rate", str(fault_rate), "--fault-kinds", faults, "--seed", str(seed), "--api-key", KEY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if not line.startswith("FAKE_OPENAI_URL="):
        proc.kill()
        raise SystemExit(f"fake server did not start: {line!r}")
    return proc, line.split("=", 1)[1]


def client_rate(base_url: str, concurrency: int, n: int) -> float:
    """Requests per second the bare openai client sustains here (no latency, no faults, no gate)."""
    import openai

    rows = [json.loads(x) for x in SAMPLE.read_text(encoding="utf-8").splitlines()[:50]]

    async def go() -> float:
        client = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            row = rows[i % len(rows)]
            content = f"<question>\n{row['instruction']}\n</question>\n<answer>\n{row['output']}\n</answer>"
            async with slots:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": content}]
                )

        await asyncio.gather(*(one(i) for i in range(concurrency)))  # warm the connections
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        rate = n / (time.perf_counter() - t0)
        await client.close()
        return rate

    return asyncio.run(go())


def write_input(path: Path, n: int) -> dict[str, str]:
    rows = [json.loads(x) for x in SAMPLE.read_text(encoding="utf-8").splitlines() if x.strip()]
    questions = {}
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            row = dict(rows[i % len(rows)])
            row["id"] = f"bench-{i:05d}"
            row["instruction"] = f"{row['instruction']}（编号{i}）"
            questions[row["instruction"]] = row["id"]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return questions


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--faults", default="429,503,malformed", help="transient fault kinds to inject")
    parser.add_argument("--calibration", type=int, default=2000, help="requests for the client-rate baseline")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    calib, calib_url = start_server(0.0, 0.0, "429", args.seed)
    try:
        rps = client_rate(calib_url, args.concurrency, args.calibration)
    finally:
        calib.terminate()
        calib.wait(10)

    server, url = start_server(args.latency, args.fault_rate, args.faults, args.seed)
    os.environ["MEDTUNE_TEACHER_API_KEY"] = KEY
    try:
        with tempfile.TemporaryDirectory(prefix="medtune-bench-") as tmp:
            questions = write_input(Path(tmp) / "in.jsonl", args.records)
            cfg = load_config(
                None,
                [
                    f"output_root={tmp}",
                    f"restructure.input_file={Path(tmp) / 'in.jsonl'}",
                    f"restructure.base_url={url}",
                    "restructure.model=fake-teacher",
                    f"restructure.concurrency={args.concurrency}",
                    "restructure.timeout_s=10",
                    "restructure.max_retries=8",
                    "restructure.backoff_initial_s=0.05",
                    "restructure.backoff_max_s=1.0",
                    "restructure.price_input_per_mtok=0.27",
                    "restructure.price_output_per_mtok=1.10",
                ],
            )
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            s = run_restructure(cfg)
            wall = time.perf_counter() - t0
            out = output_dir(cfg)
            ok_ids = [
                json.loads(x)["id"] for x in (out / "restructured.jsonl").read_text("utf-8").splitlines()
            ]
            rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text("utf-8").splitlines()]
            log = httpx.get(url.rsplit("/v1", 1)[0] + "/_fake/log", timeout=30).json()["requests"]
    finally:
        server.terminate()
        server.wait(10)

    ids = ok_ids + [r["id"] for r in rejects]
    duplicates = len(ids) - len(set(ids))
    missing = len(set(questions.values()) - set(ids))
    unexplained = sum(1 for r in rejects if not r.get("reason"))
    faults = Counter(r["fault"] for r in log if r["fault"])
    per_record = Counter(questions.get(r["question"]) for r in log)
    ideal = args.records * args.latency / args.concurrency
    floor = args.records * (1 + args.fault_rate) / rps
    baseline = max(ideal, floor)

    print(f"restructure benchmark: {args.records:,} records, {args.latency * 1000:.0f} ms latency, ")
    print(f"  {args.fault_rate:.0%} transient faults ({args.faults}), concurrency {args.concurrency}")
    print(f"  machine: {os.cpu_count()} CPUs, load average {load_before:.2f} at start")
    print()
    rows = [
        ("completed (passed the gate)", f"{s.ok:,}"),
        ("rejected, with a reason", f"{s.rejected:,}"),
        ("failed (to retry next run)", f"{s.failed:,}"),
        ("missing from the outputs", f"{missing:,}"),
        ("duplicated in the outputs", f"{duplicates:,}"),
        ("rejects without a reason", f"{unexplained:,}"),
        ("requests sent", f"{len(log):,}"),
        ("injected faults", ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"),
        ("retries by kind", ", ".join(f"{k} {v}" for k, v in sorted(s.retries.items())) or "none"),
        ("records requested more than once", f"{sum(1 for n in per_record.values() if n > 1):,}"),
        ("journal fsyncs (group commit)", f"{s.journal_fsyncs:,}"),
        ("tokens in / out, cost", f"{s.prompt_tokens:,} / {s.completion_tokens:,}, {s.cost:.4f} USD"),
        ("bare openai client rate here", f"{rps:,.0f} req/s at concurrency {args.concurrency}"),
        ("wall time", f"{wall:.2f} s"),
        ("ideal: records x latency / concurrency", f"{ideal:.2f} s"),
        ("client floor: requests / client rate", f"{floor:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print()
    ratio = wall / ideal
    print(
        f"ratio to the ideal: {ratio:.2f}x (target {TARGET_RATIO}x: {'met' if ratio <= TARGET_RATIO else 'NOT met'}); "
        f"ratio to max(ideal, client floor): {wall / baseline:.2f}x"
    )
    if floor > ideal * TARGET_RATIO:
        print(
            f"  note: here the bare openai client alone needs {floor:.1f} s for these requests, "
            f"{floor / ideal:.1f}x the ideal; the target needs about "
            f"{args.records * (1 + args.fault_rate) / (ideal * TARGET_RATIO):,.0f} req/s of client throughput"
        )
    correct = missing == 0 and duplicates == 0 and unexplained == 0 and s.failed == 0
    print(
        f"correctness: {'PASS' if correct else 'FAIL'} (every record completed or rejected with a reason, once)"
    )
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
