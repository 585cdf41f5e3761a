"""Benchmark of ``medtune data prepare``: synthetic records through read -> clean -> dedup -> split -> write.

    .venv/bin/python bench/data_pipeline.py                                  # 100k, 300k, 1M; baseline at 100k
    .venv/bin/python bench/data_pipeline.py --sizes 20000 --baseline-n 20000 # a quick look

The generator plants exact duplicates (same text up to spacing, punctuation width and Q&A-site formulas),
near-duplicates (1-5 % of characters substituted, inserted or deleted) and personal data (phones, ID
numbers, emails, QQ/WeChat ids, URLs, names with honorifics) and keeps the truth. Each run happens in its
own process, so its peak memory (ru_maxrss) is its own. Printed per run: records/s, peak memory,
near-duplicate precision/recall against the planted truth, and the recall of planted personal data.

The baseline does the same steps the plain way: per-record Python loops, ``datasketch.MinHash`` with its
defaults (128 permutations, sha1 hashes, ``update_batch`` per record) and ``MinHashLSH`` insert + query,
a set for exact duplicates and a per-record hash split without leakage grouping.

The generator and its planted truth are in ``bench/_pipeline_data.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _pipeline_data import generate

from medtune.config import DataConfig

# ---------------------------------------------------------------------------------------------
# The two pipelines, each run in a child process


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_medtune(raw: str, out_root: str, conn, *extra: str) -> None:
    from medtune.config import load_config
    from medtune.data.prepare import prepare

    cfg = load_config(None, [f"data.raw_file={raw}", f"output_root={out_root}", "run_name=bench", *extra])
    t = time.perf_counter()
    result = prepare(cfg)
    seconds = time.perf_counter() - t
    report = json.loads((cfg.data_dir / "data_report.json").read_text(encoding="utf-8"))
    conn.send({"seconds": seconds, "peak_mb": _peak_mb(), "stages": report["timings_s"],
               "kept": result.stats["counts"]["kept"], "out": str(cfg.data_dir)})  # fmt: skip


def run_medtune_serial(raw: str, out_root: str, conn) -> None:
    """medtune with the cleaning rules in this one process (``data.workers=1``): what the workers buy."""
    run_medtune(raw, out_root, conn, "data.workers=1")


def run_baseline(raw: str, out_root: str, conn) -> None:
    """The same steps, done the plain way."""
    from datasketch import MinHash, MinHashLSH

    from medtune.config import load_config
    from medtune.data.clean import RulePipeline, build_rules
    from medtune.data.dedup import dedup_text, shingles
    from medtune.data.readers import iter_records
    from medtune.io import write_jsonl

    cfg = load_config(None, [f"data.raw_file={raw}", f"output_root={out_root}", "run_name=baseline"])
    t0 = time.perf_counter()
    stages = {}
    pipeline = RulePipeline(build_rules(cfg.data))
    seen: dict[str, str] = {}
    records, dropped = [], []
    for rec in iter_records(raw):
        verdict = pipeline(rec)
        if verdict is not None:
            dropped.append({"id": rec.id, "rule": verdict[0]})
            continue
        key = dedup_text(rec.question) + "\x00" + dedup_text(rec.answer)
        if key in seen:
            dropped.append({"id": rec.id, "rule": "exact_duplicate", "kept": seen[key]})
            continue
        seen[key] = rec.id
        records.append(rec)
    stages["read_clean_exact"] = time.perf_counter() - t0
    t = time.perf_counter()
    lsh = MinHashLSH(threshold=cfg.data.near_dup_threshold, num_perm=128)
    kept = []
    for rec in records:
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf-8") for s in shingles(f"{rec.question}\n{rec.answer}", 3)])
        hits = lsh.query(m)
        if hits:
            dropped.append({"id": rec.id, "rule": "near_duplicate", "kept": min(hits)})
            continue
        lsh.insert(rec.id, m)
        kept.append(rec)
    stages["near_dedup"] = time.perf_counter() - t
    t = time.perf_counter()
    ordered = sorted(kept, key=lambda r: hashlib.sha256(f"{cfg.data.seed}:{r.id}".encode()).hexdigest())
    n_val = max(1, round(len(ordered) * cfg.data.val_ratio))
    out = cfg.data_dir
    write_jsonl(out / "val.jsonl", (r.to_dict() for r in ordered[:n_val]))
    write_jsonl(out / "train.jsonl", (r.to_dict() for r in ordered[n_val:]))
    write_jsonl(out / "dropped.jsonl", dropped)
    stages["split_write"] = time.perf_counter() - t
    conn.send({"seconds": time.perf_counter() - t0, "peak_mb": _peak_mb(), "stages": stages,
               "kept": len(kept), "out": str(out)})  # fmt: skip


def _in_child(target, raw: Path, out_root: Path) -> dict:
    ctx = mp.get_context("spawn")  # a fresh interpreter: its peak memory is the pipeline's alone
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(str(raw), str(out_root), child))
    proc.start()
    result = parent.recv()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{target.__name__} failed with exit code {proc.exitcode}")
    return result


# ---------------------------------------------------------------------------------------------
# Scoring against the planted truth


def score(out_dir: Path, truth: dict, threshold: float) -> dict:
    """Dedup precision and recall against the planted clusters, and the recall of planted personal data.

    A cluster is an original with its exact copies and those near copies whose n-gram Jaccard similarity
    to it reaches the threshold (a near-duplicate by definition; weaker copies are counted apart). A
    perfect run keeps one record per cluster: recall = 1 - (extra records kept) / (copies planted).
    Precision: a record dropped as a duplicate must point (``kept``) to a member of its own cluster.
    """
    cluster, sim = truth["cluster"], truth["similarity"]
    dropped: dict[str, dict] = {}
    with open(out_dir / "dropped.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            dropped[row["id"]] = row
    kept_ids: set[str] = set()
    outputs: dict[str, str] = {}
    for split in ("train", "val"):
        with open(out_dir / f"{split}.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                kept_ids.add(row["id"])
                if row["id"] in truth["pii"]:
                    outputs[row["id"]] = row["question"] + "\n" + row["answer"]

    def counted(rid: str) -> bool:  # dropped for another reason (too short ...): not a dedup decision
        return not (rid in dropped and not dropped[rid]["rule"].endswith("duplicate"))

    weak = {rid for rid, s in sim.items() if s < threshold}
    members: dict[int, list[str]] = {}
    for rid, c in cluster.items():
        if rid not in weak and counted(rid):
            members.setdefault(c, []).append(rid)
    expected = sum(len(m) - 1 for m in members.values())
    extra = sum(max(0, sum(r in kept_ids for r in m) - 1) for m in members.values())
    result = {"dedup_recall": 1 - extra / max(expected, 1), "copies_planted": expected}
    for rule, name in (("near_duplicate", "near"), ("exact_duplicate", "exact")):
        drops = [row for row in dropped.values() if row["rule"] == rule]
        hits = sum(cluster.get(row.get("kept")) == cluster[row["id"]] for row in drops)
        result |= {f"{name}_precision": hits / max(len(drops), 1), f"{name}_dropped": len(drops)}
    result["weak_copies"] = len(weak)
    result["weak_caught"] = sum(dropped.get(r, {}).get("rule", "").endswith("duplicate") for r in weak)
    planted = [(rid, k, v) for rid, items in truth["pii"].items() if rid in outputs for k, v in items]
    missed = Counter(k for rid, k, v in planted if v in outputs[rid])
    return result | {
        "pii_recall": 1 - sum(missed.values()) / max(len(planted), 1),
        "pii_planted": len(planted),
        "pii_missed": dict(missed),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,300000,1000000", help="comma-separated record counts")
    ap.add_argument(
        "--baseline-n", type=int, default=100_000, help="size at which the baseline also runs (0: never)"
    )
    ap.add_argument(
        "--serial-n",
        type=int,
        default=0,
        help="size at which medtune also runs with data.workers=1 (0: never)",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", default=None, help="where data and outputs go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medtune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        threshold = DataConfig().near_dup_threshold
        for n in sizes:
            raw = work / f"synthetic_{n}.jsonl"
            t = time.perf_counter()
            truth = generate(raw, n, args.seed)
            print(f"generated {n} records in {time.perf_counter() - t:.0f} s ({raw.stat().st_size / 1e6:.0f} MB)",
                  flush=True)  # fmt: skip
            runs = [("medtune", run_medtune)]
            if n == args.serial_n:
                runs.append(("serial", run_medtune_serial))
            if n == args.baseline_n:
                runs.append(("baseline", run_baseline))
            for name, target in runs:
                res = _in_child(target, raw, work / f"out_{name}_{n}")
                res |= score(Path(res["out"]), truth, threshold)
                rows.append((n, name, res))
                stages = ", ".join(f"{k} {v:.1f}s" for k, v in res["stages"].items())
                print(f"  {name:8s} {n:>8d}: {res['seconds']:7.1f} s  {n / res['seconds']:8.0f} rec/s  "
                      f"peak {res['peak_mb']:6.0f} MB  [{stages}]", flush=True)  # fmt: skip
                if not args.keep:
                    shutil.rmtree(work / f"out_{name}_{n}", ignore_errors=True)
            if not args.keep:
                raw.unlink()
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'records':>9} {'pipeline':9} {'seconds':>8} {'rec/s':>8} {'peak MB':>8} {'near P':>7} {'exact P':>7} "
          f"{'dedup R':>7} {'PII R':>7}")  # fmt: skip
    for n, name, r in rows:
        print(f"{n:>9} {name:9} {r['seconds']:>8.1f} {n / r['seconds']:>8.0f} {r['peak_mb']:>8.0f} "
              f"{r['near_precision']:>7.3f} {r['exact_precision']:>7.3f} {r['dedup_recall']:>7.3f} "
              f"{r['pii_recall']:>7.4f}")  # fmt: skip
    print(f"\nnear P / exact P: share of records dropped by that rule whose kept record is in their planted cluster;"
          f"\ndedup R: 1 - extra records kept / copies planted (exact copies + near copies with Jaccard >= {threshold});"
          "\nPII R: planted personal data gone from the kept records.")  # fmt: skip
    for n, name, r in rows:
        print(f"{name} {n}: {r['weak_copies']} near copies below the threshold, {r['weak_caught']} of them dropped;"
              f" personal data left: {r['pii_missed'] or 'none'}")  # fmt: skip
    ours = [(n, r) for n, name, r in rows if name == "medtune"]
    if len(ours) > 1:
        (n0, r0), (n1, r1) = ours[0], ours[-1]
        print(f"time grows {r1['seconds'] / r0['seconds']:.1f}x for {n1 / n0:.0f}x the records")
    base = {n: r for n, name, r in rows if name == "baseline"}
    for n, r in ours:
        if n in base:
            print(f"at {n} records: {base[n]['seconds'] / r['seconds']:.1f}x faster than the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
