"""The quality gate every rewrite passes before it may reach training, teacher or offline alike.

A rewrite passes when it ended normally (not cut at max_tokens, not filtered), parses as the three-part form
(all sections, in order, non-empty, balanced, nothing before the first heading), scores at least
``min_score``, and invents no drug, measure or diagnosis (under the ``reject`` policy; under ``mark`` those
are kept as flags in the output). The reasons are short and concrete: they are fed back to the teacher on a
retry and written to the rejects file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medtune.data.restructure.faithfulness import KINDS, unsupported
from medtune.data.structure import canonical_text, parse_answer


@dataclass
class Verdict:
    ok: bool
    reasons: list[str] = field(default_factory=list)
    """Why it failed (empty when ok)."""
    flags: list[str] = field(default_factory=list)
    """Unsupported entities, ``kind: text`` (kept in meta.flags when the policy is ``mark``)."""
    score: float = 0.0
    answer: str | None = None
    """The rewrite with canonical headings (None when it does not parse as three parts)."""


class Gate:
    def __init__(
        self,
        min_score: float = 0.85,
        faithfulness: str = "reject",
        checks: tuple[str, ...] | list[str] = KINDS,
    ) -> None:
        self.min_score = min_score
        self.faithfulness = faithfulness
        self.checks = tuple(checks)

    @classmethod
    def from_config(cls, rc: Any) -> Gate:
        return cls(rc.min_score, rc.faithfulness, rc.faithfulness_checks)

    def check(self, question: str, source: str, rewrite: str, finish_reason: str | None = "stop") -> Verdict:
        reasons: list[str] = []
        if finish_reason == "length":
            reasons.append("cut off: the answer hit max_tokens before it ended")
        elif finish_reason == "content_filter":
            reasons.append("the teacher's content filter stopped the answer")
        parsed = parse_answer(rewrite)
        reasons += parsed.problems
        if parsed.preamble:
            reasons.append(f"text before the first section: {parsed.preamble[:40]!r}")
        if parsed.score < self.min_score:
            reasons.append(f"structure score {parsed.score:.2f} is below {self.min_score:.2f}")
        flags = [str(f) for f in unsupported(question, source, rewrite, self.checks)]
        if flags and self.faithfulness == "reject":
            reasons.append("not in the question or source answer: " + ", ".join(flags))
        answer = canonical_text(parsed) if parsed.compliant else None
        return Verdict(ok=not reasons, reasons=reasons, flags=flags, score=parsed.score, answer=answer)
