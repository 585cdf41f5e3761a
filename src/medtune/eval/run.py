"""``medtune eval``: base vs tuned on the same held-out questions, side by side.

Both answers come from one ChatEngine (the adapter is switched off for the base), with greedy decoding so
the comparison is deterministic. Writes ``report.md``, ``report.html``, ``metrics.json``,
``answers.jsonl`` and ``compliance.png`` under ``<run_dir>/eval/``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from medtune.config import Config
from medtune.data.prepare import load_split
from medtune.eval.metrics import bleu4, mean, rouge_l, structure_metrics
from medtune.eval.report import plot_comparison, write_html, write_markdown
from medtune.io import write_json, write_jsonl
from medtune.serve.engine import Answer, ChatEngine, GenerationSettings

logger = logging.getLogger(__name__)


def score_model(questions: list[str], generated: list[Answer], references: list[str]) -> dict[str, Any]:
    answers = [g.text for g in generated]
    out: dict[str, Any] = structure_metrics(answers)
    out["cut_off_rate"] = mean([0.0 if g.finished else 1.0 for g in generated])
    out["mean_answer_tokens"] = mean([g.num_tokens for g in generated])
    out["rouge_l"] = mean([rouge_l(a, r) for a, r in zip(answers, references)])
    out["bleu4"] = mean([bleu4(a, r) for a, r in zip(answers, references)])
    out["mean_answer_chars"] = mean([len(a) for a in answers])
    try:
        from medtune.safety import safety_metrics
    except ImportError:  # the safety layer is optional at this stage of the pipeline
        return out
    out["safety"] = safety_metrics(list(zip(questions, answers)))
    return out


def run_eval(cfg: Config, engine=None) -> dict[str, Any]:
    records = load_split(cfg, "val")
    if cfg.eval.num_questions:
        records = records[: cfg.eval.num_questions]
    engine = engine or ChatEngine.from_config(cfg, adapter="auto")
    if not engine.has_adapter:
        raise FileNotFoundError(f"{cfg.adapter_dir}: no trained adapter; run `medtune train` first")
    settings = GenerationSettings(
        max_new_tokens=cfg.eval.max_new_tokens,
        temperature=cfg.eval.temperature,
        repetition_penalty=cfg.eval.repetition_penalty,
    )
    questions = [r.question for r in records]
    references = [r.answer for r in records]

    results: dict[str, Any] = {
        "num_questions": len(records),
        "model": engine.name,
        "max_new_tokens": settings.max_new_tokens,
        "models": {},
    }
    logger.info("answering %d held-out questions with the base and the tuned model", len(questions))
    generated = dict(
        zip(
            ("base", "tuned"),
            engine.generate_compare(questions, settings, cfg.eval.batch_size, progress=True),
        )
    )
    answers = {label: [g.text for g in gens] for label, gens in generated.items()}
    for label, use_adapter in (("base", False), ("tuned", True)):
        scores = score_model(questions, generated[label], references)
        # Small batches of length-sorted samples: little padding, and hundreds of rows per matmul anyway.
        val_loss = engine.loss(records, use_adapter, cfg.train.cutoff_len, batch_size=4)
        scores["val_loss"] = val_loss
        scores["perplexity"] = math.exp(min(val_loss, 50))
        results["models"][label] = scores

    base, tuned = results["models"]["base"], results["models"]["tuned"]
    results["delta"] = {
        k: tuned[k] - base[k]
        for k in (
            "compliance_rate",
            "full_form_rate",
            "mean_structure_score",
            "rouge_l",
            "bleu4",
            "perplexity",
        )
    }

    out_dir = cfg.run_dir / "eval"
    rows = [
        {
            "id": r.id,
            "question": r.question,
            "reference": r.answer,
            "base": answers["base"][i],
            "tuned": answers["tuned"][i],
        }
        for i, r in enumerate(records)
    ]
    write_jsonl(out_dir / "answers.jsonl", rows)
    write_json(out_dir / "metrics.json", results)
    chart = plot_comparison(results, out_dir / "compliance.png")
    write_markdown(out_dir / "report.md", results, rows)
    write_html(out_dir / "report.html", results, rows, chart)
    results["report_dir"] = str(Path(out_dir))
    return results
