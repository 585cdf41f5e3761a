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
from typing import Any

from medtune.eval.stats import rate

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
