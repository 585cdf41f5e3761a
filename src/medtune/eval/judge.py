"""Pairwise LLM judge: which of two answers to the same question is better.

Judges prefer whichever answer they read first (or second) far more often than chance, so every pair is
asked twice, once in each order. A model wins an item only when both orders name it; an order-dependent
verdict is a tie. The reply must be one JSON object (``{"winner": "A"|"B"|"tie", "reason": ...}``); a
reply that is not is counted as ``invalid`` and shown, never guessed.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtune.config import EvalModelConfig
from medtune.eval.models import EndpointModel
from medtune.eval.stats import rate
from medtune.eval.store import stable_hash

if TYPE_CHECKING:
    from medtune.eval.run import Evaluator

_JSON = re.compile(r"\{.*\}", re.DOTALL)


def load_prompt(path: str | None) -> str:
    if path:
        return Path(path).read_text(encoding="utf-8")
    return resources.files("medtune.eval").joinpath("judge_prompt.md").read_text(encoding="utf-8")


def render(prompt: str, question: str, reference: str | None, answer_a: str, answer_b: str) -> str:
    # str.format would trip over the JSON braces in the prompt; replace the four fields only.
    values = {
        "question": question,
        "reference": reference or "（无）",
        "answer_a": answer_a,
        "answer_b": answer_b,
    }
    return re.sub(r"\{(question|reference|answer_a|answer_b)\}", lambda m: values[m.group(1)], prompt)


def parse_verdict(text: str) -> tuple[str | None, str]:
    """("A" | "B" | "tie" | None, reason) from a judge reply."""
    m = _JSON.search(text or "")
    if not m:
        return None, (text or "")[:120]
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None, m.group(0)[:120]
    winner = str(obj.get("winner", "")).strip().upper()
    winner = {"TIE": "tie", "平局": "tie"}.get(winner, winner)
    if winner not in ("A", "B", "tie"):
        return None, str(obj)[:120]
    return winner, str(obj.get("reason", ""))[:300]


def combine(first: str | None, second: str | None) -> str:
    """Outcome for the challenger, shown as answer A first and as answer B second."""
    if first is None or second is None:
        return "invalid"
    a = {"A": "win", "B": "loss", "tie": "tie"}[first]
    b = {"B": "win", "A": "loss", "tie": "tie"}[second]
    return a if a == b else "tie"


def summarise(outcomes: list[str]) -> dict[str, Any]:
    valid = [o for o in outcomes if o != "invalid"]
    n = len(valid)
    return {
        "win": rate(sum(o == "win" for o in valid), n),
        "tie": rate(sum(o == "tie" for o in valid), n),
        "loss": rate(sum(o == "loss" for o in valid), n),
        "invalid": len(outcomes) - n,
        "n": n,
    }


def run_judge(cfg, ev: Evaluator, eval_sets, answers) -> dict[str, Any]:
    """Both orders of every pair on every open set; verdicts are cached like answers."""
    jc = cfg.eval.judge
    prompt = load_prompt(jc.prompt_file)
    spec = EvalModelConfig(
        name=f"judge-{jc.model}", endpoint=jc.base_url, endpoint_model=jc.model, api_key_env=jc.api_key_env
    )
    out: dict[str, Any] = {}
    for es in (s for s in eval_sets if s.kind == "open"):
        for pair in jc.pairs:
            challenger, baseline = pair.split(":")
            got_a, got_b = answers[es.name].get(challenger, {}), answers[es.name].get(baseline, {})
            jobs, verdicts = [], {}
            cached = ev.store.load(es.name, spec.name)
            for item in es.items:
                a, b = (got_a.get(item.id) or {}).get("answer"), (got_b.get(item.id) or {}).get("answer")
                if a is None or b is None:
                    continue
                for order, (x, y) in (("ab", (a, b)), ("ba", (b, a))):
                    key = stable_hash(
                        ["judge", jc.base_url, jc.model, prompt, item.question, item.reference, x, y]
                    )
                    verdicts[(item.id, order)] = key
                    if key not in cached or cached[key].get("error"):
                        text = render(prompt, item.question, item.reference, x, y)
                        jobs.append(((key, item), [{"role": "user", "content": text}]))
            if jobs:
                # Verdicts must not depend on sampling: the judge always decodes greedily.
                remote = EndpointModel(
                    spec,
                    timeout_s=jc.timeout_s,
                    max_retries=jc.max_retries,
                    concurrency=jc.concurrency,
                    temperature=0.0,
                )
                rows: list[dict] = []

                def done(tag, completion, rows=rows):
                    key, item = tag
                    if isinstance(completion, Exception):
                        rows.append({"key": key, "item": item.id, "error": str(completion)[:300]})
                    else:
                        winner, reason = parse_verdict(completion.text)
                        rows.append({"key": key, "item": item.id, "winner": winner, "reason": reason})

                usage = remote.run(jobs, jc.max_tokens, done)
                ev.store.put_many(es.name, spec.name, rows)
                total = ev.usage.setdefault(spec.name, {"prompt_tokens": 0, "completion_tokens": 0})
                for k, v in usage.items():
                    total[k] += v
            cached = ev.store.load(es.name, spec.name)
            outcomes, examples = [], []
            for item in es.items:
                first, second = (cached.get(verdicts.get((item.id, o), "")) for o in ("ab", "ba"))
                if not first or not second:
                    continue
                outcome = combine(first.get("winner"), second.get("winner"))
                outcomes.append(outcome)
                examples.append(
                    {
                        "id": item.id,
                        "outcome": outcome,
                        "reasons": [first.get("reason"), second.get("reason")],
                    }
                )
            summary = summarise(outcomes)
            summary["examples"] = examples[:50]
            u = ev.usage.get(spec.name, {})
            summary["cost"] = round(
                u.get("prompt_tokens", 0) / 1e6 * jc.price_input_per_mtok
                + u.get("completion_tokens", 0) / 1e6 * jc.price_output_per_mtok,
                4,
            )
            out.setdefault(es.name, {})[pair] = summary
    return out
