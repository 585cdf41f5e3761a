"""``medtune data prepare``: read the raw file, clean, drop duplicates, split 90/10, write statistics.

Outputs (atomically) under ``<run_dir>/data/``: ``train.jsonl``, ``val.jsonl``, ``stats.json`` and, when
``on_error: skip``, ``quarantine.jsonl`` with the reason for each unreadable record.
"""

from __future__ import annotations

import hashlib
import logging
import re
import statistics
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtune.config import Config
from medtune.data.readers import iter_records
from medtune.data.schema import DataError, QARecord
from medtune.io import write_json, write_jsonl

logger = logging.getLogger(__name__)

BOILERPLATE = (
    "感谢您的咨询", "感谢你的咨询", "希望我的回答对您有帮助", "希望我的回答对你有帮助", "希望对您有帮助",
    "希望对你有所帮助", "祝您身体健康", "祝你身体健康", "祝您早日康复", "祝你早日康复", "以上是我的建议",
)  # fmt: skip
_BOILERPLATE_RE = re.compile("[，,]?(?:" + "|".join(map(re.escape, BOILERPLATE)) + ")[。！!，,~～]*")
_WS_RE = re.compile(r"[ \t\u3000]+")
_MANY_NL_RE = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """Unicode NFC, unify spaces, trim; keeps Chinese full-width punctuation as it is."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _WS_RE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _MANY_NL_RE.sub("\n\n", text).strip()


def strip_boilerplate(text: str) -> str:
    return _BOILERPLATE_RE.sub("", text).strip()


def split_key(record_id: str, seed: int) -> str:
    """Order used for the split: stable across machines and Python versions (unlike hash())."""
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


@dataclass
class PrepareResult:
    train: list[QARecord]
    val: list[QARecord]
    stats: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None


def _length_stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": min(values),
        "mean": round(statistics.fmean(values), 1),
        "median": statistics.median(values),
        "max": max(values),
    }


def prepare(cfg: Config) -> PrepareResult:
    dcfg = cfg.data
    counts: Counter[str] = Counter()
    dropped_examples: dict[str, list[str]] = {}
    quarantine: list[dict[str, str]] = []
    kept: list[QARecord] = []
    seen: set[str] = set()

    def drop(rule: str, rec: QARecord) -> None:
        counts[f"dropped_{rule}"] += 1
        dropped_examples.setdefault(rule, [])
        if len(dropped_examples[rule]) < 5:
            dropped_examples[rule].append(rec.source)

    for item in iter_records(dcfg.raw_file, dcfg.format):
        if isinstance(item, DataError):
            if dcfg.on_error == "fail":
                raise item
            counts["quarantined"] += 1
            quarantine.append({"error": str(item)})
            continue
        counts["read"] += 1
        rec = item
        rec.question = normalize_text(rec.question)
        rec.answer = normalize_text(strip_boilerplate(normalize_text(rec.answer)))
        if len(rec.question) < dcfg.min_question_chars:
            drop("question_too_short", rec)
            continue
        if len(rec.answer) < dcfg.min_answer_chars:
            drop("answer_too_short", rec)
            continue
        key = hashlib.sha1(f"{rec.question}\x00{rec.answer}".encode()).hexdigest()
        if key in seen:
            drop("exact_duplicate", rec)
            continue
        seen.add(key)
        kept.append(rec)
    if not kept:
        raise DataError(f"{dcfg.raw_file}: no usable records after cleaning ({dict(counts)})")
    if dcfg.max_records is not None and len(kept) > dcfg.max_records:
        kept = sorted(kept, key=lambda r: split_key(r.id, dcfg.seed))[: dcfg.max_records]

    ordered = sorted(kept, key=lambda r: split_key(r.id, dcfg.seed))
    n_val = max(1, round(len(ordered) * dcfg.val_ratio))
    val, train = ordered[:n_val], ordered[n_val:]
    # Keep the files in source order: easier to read, and the split itself stays hash-based.
    val.sort(key=lambda r: r.source)
    train.sort(key=lambda r: r.source)

    stats: dict[str, Any] = {
        "raw_file": str(dcfg.raw_file),
        "seed": dcfg.seed,
        "val_ratio": dcfg.val_ratio,
        "counts": dict(counts) | {"kept": len(kept), "train": len(train), "val": len(val)},
        "dropped_examples": dropped_examples,
        "question_chars": _length_stats([len(r.question) for r in kept]),
        "answer_chars": _length_stats([len(r.answer) for r in kept]),
        "departments": dict(Counter(r.department or "unknown" for r in kept).most_common()),
    }
    out = cfg.data_dir
    write_jsonl(out / "train.jsonl", (r.to_dict() for r in train))
    write_jsonl(out / "val.jsonl", (r.to_dict() for r in val))
    if quarantine:
        write_jsonl(out / "quarantine.jsonl", quarantine)
    write_json(out / "stats.json", stats)
    logger.info("prepared %d train / %d val records into %s", len(train), len(val), out)
    return PrepareResult(train, val, stats, out)


def load_split(cfg: Config, split: str) -> list[QARecord]:
    from medtune.io import read_jsonl

    path = cfg.data_dir / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `medtune data prepare` with this config first")
    return [QARecord.from_dict(d) for d in read_jsonl(path)]
