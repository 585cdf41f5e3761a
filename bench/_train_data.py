"""Synthetic long-tailed Chinese Q&A for bench/train_throughput.py, through the real ``medtune data prepare``.

Records are seeded and long-tailed (log-normal lengths: questions 20-300 characters, answers 100-1500, in
the three-part form), assembled from clauses of the shipped sample data. Not a benchmark itself.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from _common import sample_pairs

SECTIONS = ("一、病情分析", "二、原因分析", "三、治疗建议")


# The clause pools come from the sample's first 328 records, the sample as it was when the benchmark's
# figures were first taken. Every record drawn depends on the pools, so a sample that grows (62 records were
# appended in issue 13) would silently change the workload, and with it the peak memory of the padded
# baseline arm (14.07 GB when the pools were the 328 records, 11.55 GB once they were all 390).
POOL_RECORDS = 328


def _pools() -> tuple[list[str], list[str]]:
    """Question clauses and answer sentences of the shipped sample, section titles removed."""
    q_pool: list[str] = []
    a_pool: list[str] = []
    for question, answer in sample_pairs()[:POOL_RECORDS]:
        q_pool += [c for c in re.split(r"[，,。？?！!\s]+", question) if len(c) >= 4]
        for text_line in answer.splitlines():
            if any(text_line.startswith(t) for t in SECTIONS):
                continue
            a_pool += [s.strip() for s in re.split(r"[。；;]", text_line) if len(s.strip()) >= 6]
    return q_pool, a_pool


def _fill(rng, pool: list[str], length: int, sep: str) -> str:
    parts: list[str] = []
    size = 0
    while size < length:
        part = pool[int(rng.integers(len(pool)))]
        parts.append(part)
        size += len(part) + len(sep)
    return sep.join(parts)[:length]


def synth_records(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` question/answer records with log-normal, clipped lengths (a long right tail)."""
    import numpy as np

    q_pool, a_pool = _pools()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        q_len = int(np.clip(rng.lognormal(math.log(60), 0.8), 20, 300))
        a_len = int(np.clip(rng.lognormal(math.log(300), 0.75), 100, 1500))
        question = _fill(rng, q_pool, q_len - 1, "，") + "？"
        body = max(1, (a_len - sum(len(t) + 2 for t in SECTIONS)) // 3)
        answer = "\n\n".join(f"{title}\n{_fill(rng, a_pool, body - 1, '。')}。" for title in SECTIONS)
        out.append({"id": f"syn-{i:05d}", "question": question, "answer": answer})
    return out


def _tokens(tokenizer, cfg, rec) -> int | None:
    from medtune.data.template import encode_record

    enc = encode_record(tokenizer, rec, cfg.system_prompt, cfg.train.cutoff_len, "drop")
    return None if enc is None else len(enc.input_ids)


def prepare_data(args: argparse.Namespace, work: Path, base_overrides: list[str]) -> dict[str, Any]:
    """Synthesise, run ``medtune data prepare``, then keep the first N train / K val samples that fit."""
    from medtune.config import load_config
    from medtune.data.prepare import prepare
    from medtune.data.schema import QARecord
    from medtune.io import read_jsonl, write_jsonl
    from medtune.model.loader import load_tokenizer, resolve_model_source

    # Enough records that the 90/10 split leaves K validation and N training samples after the few that
    # exceed max-len are set aside.
    n = max(math.ceil(1.3 * args.samples / 0.9), math.ceil(1.5 * args.val_samples / 0.1)) + 8
    raw = work / "synthetic_qa.jsonl"
    write_jsonl(raw, synth_records(n, args.seed))
    cfg = load_config(None, base_overrides)
    prepare(cfg)
    tokenizer = load_tokenizer(resolve_model_source(cfg.model).path)
    info: dict[str, Any] = {"generated": n}
    for split, want in (("train", args.samples), ("val", args.val_samples)):
        path = cfg.data_dir / f"{split}.jsonl"
        rows = read_jsonl(path)
        kept, lengths, overlong = [], [], 0
        for row in rows:
            length = _tokens(tokenizer, cfg, QARecord.from_dict(row))
            if length is None:
                overlong += 1
                continue
            kept.append(row)
            lengths.append(length)
            if len(kept) == want:
                break
        if len(kept) < want:
            raise SystemExit(
                f"{path}: only {len(kept)} {split} samples within {args.max_len} tokens, {want} needed"
            )
        write_jsonl(path, kept)
        lengths.sort()
        info[split] = {
            "samples": len(kept),
            "set_aside_overlong": overlong,
            "tokens": sum(lengths),
            "min": lengths[0],
            "median": lengths[len(lengths) // 2],
            "p90": lengths[int(0.9 * (len(lengths) - 1))],
            "max": lengths[-1],
        }
    return info
