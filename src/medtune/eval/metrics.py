"""Pure metric functions: no model, no I/O, easy to test."""

from __future__ import annotations

import math
from collections import Counter

from medtune.data.structure import SECTION_TITLES, parse_answer


def structure_flags(answer: str) -> dict[str, float | bool]:
    """One answer's form: ``compliant`` (three sections, once each, in order, non-empty), ``full_form``
    (that plus all six sub-labels 症状评估 … 治疗与生活建议, the complete form medtune trains for), the
    0-1 ``structure_score`` and ``has_<section>`` per section."""
    parsed = parse_answer(answer)
    out: dict[str, float | bool] = {
        "compliant": parsed.compliant,
        "full_form": parsed.compliant and all(parsed.subsections.values()),
        "structure_score": parsed.score,
    }
    for title in SECTION_TITLES:
        out[f"has_{title}"] = title in parsed.sections
    return out


def structure_metrics(answers: list[str]) -> dict[str, float]:
    """The rates of ``structure_flags`` over a list of answers."""
    flags = [structure_flags(a) for a in answers]
    n = max(len(flags), 1)
    out = {
        "compliance_rate": sum(f["compliant"] for f in flags) / n,
        "full_form_rate": sum(f["full_form"] for f in flags) / n,
        "mean_structure_score": sum(f["structure_score"] for f in flags) / n,
    }
    for title in SECTION_TITLES:
        out[f"has_{title}"] = sum(f[f"has_{title}"] for f in flags) / n
    return out


def _char_ngrams(text: str, n: int) -> Counter[str]:
    chars = [c for c in text if not c.isspace()]
    return Counter("".join(chars[i : i + n]) for i in range(len(chars) - n + 1))


def _lcs(a: str, b: str) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if ca == cb else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """Character-level ROUGE-L F1 (Chinese has no spaces, so characters are the natural unit)."""
    c = "".join(candidate.split())
    r = "".join(reference.split())
    lcs = _lcs(c, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)


def bleu4(candidate: str, reference: str) -> float:
    """Character-level BLEU-4 with brevity penalty and add-one smoothing for higher orders."""
    c = "".join(candidate.split())
    r = "".join(reference.split())
    if not c or not r:
        return 0.0
    log_p = 0.0
    for n in range(1, 5):
        cand, ref = _char_ngrams(c, n), _char_ngrams(r, n)
        overlap = sum(min(v, ref[k]) for k, v in cand.items())
        total = max(sum(cand.values()), 0)
        if n == 1 and overlap == 0:
            return 0.0
        log_p += math.log((overlap + (n > 1)) / (total + (n > 1))) if total + (n > 1) > 0 else float("-inf")
    bp = 1.0 if len(c) > len(r) else math.exp(1 - len(r) / len(c))
    return bp * math.exp(log_p / 4)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def distinct_n(answers: list[str], n: int) -> float:
    """Distinct-n over all answers: unique character n-grams / all character n-grams (Li et al., 2016).

    Low values mean the model says the same things to everyone (templated or looping answers)."""
    grams: Counter[str] = Counter()
    for a in answers:
        grams.update(_char_ngrams(a, n))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def is_repetitive(answer: str, span: int = 8, times: int = 3) -> bool:
    """True when some ``span``-character stretch occurs ``times`` or more: the loop a small model falls into."""
    counts = _char_ngrams(answer, span)
    return bool(counts) and max(counts.values()) >= times
