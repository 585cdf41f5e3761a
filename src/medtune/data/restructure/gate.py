"""The quality gate every rewrite passes before it may reach training, teacher or offline alike.

A rewrite passes when it ended normally (not cut at max_tokens, not filtered), parses as the three-part form
(all sections, in order, non-empty, balanced, nothing before the first heading), scores at least
``min_score``, invents no drug, measure or diagnosis (under the ``reject`` policy; under ``mark`` those
are kept as flags in the output), and copies no section (see ``copy_ratio``). The reasons are short and
concrete: they are fed back to the teacher on a retry and written to the rejects file.

A copied section is one that repeats the question, or one that holds the source answer pasted whole. Both
are measured as the share of a text copied word for word from another: runs of at least ``COPY_RUN``
characters found in both. Copying source *sentences* is not a fault: a rewrite may regroup the source's own
sentences into the three sections (the offline restructurer does exactly that), so on the source side it is
the share of the source answer that lands in one section that counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from medtune.data.restructure.faithfulness import KINDS, unsupported
from medtune.data.structure import SUBLABELS, canonical_text, parse_answer

COPY_RUN = 8
"""Shortest shared run that counts as copied, in characters (whitespace and punctuation aside). Shorter runs
are everyday medical wording any rewrite shares with its source; a long name kept as it was (慢性非萎缩性胃炎
is 8) does count, but it is a small share of a section."""
_NOT_CONTENT = re.compile(r"[\W_]+")
_SUBLABEL = re.compile("|".join(SUBLABELS))


def _content(text: str) -> str:
    """Letters, digits and CJK only, without the sub-labels: the form is not content that can be copied."""
    return _NOT_CONTENT.sub("", _SUBLABEL.sub("", text))


def copy_ratio(text: str, reference: str, run: int = COPY_RUN) -> float:
    """Share of ``text`` (0..1) lying in runs of at least ``run`` characters that also occur in ``reference``.

    1.0 when ``text`` is a verbatim copy (however it is punctuated or spaced), 0.0 when the two share no run
    that long. Character runs rather than words: Chinese has no spaces. The coverage of ``text`` by shared
    runs, rather than one longest common substring, also catches a copy cut into pieces.
    """
    text, reference = _content(text), _content(reference)
    if len(text) < run or len(reference) < run:
        return 0.0
    grams = {reference[i : i + run] for i in range(len(reference) - run + 1)}
    covered = end = 0
    for i in range(len(text) - run + 1):
        if text[i : i + run] in grams:
            covered += i + run - max(i, end)
            end = i + run
    return covered / len(text)


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
        max_copy_ratio: float = 0.85,
    ) -> None:
        self.min_score = min_score
        self.faithfulness = faithfulness
        self.checks = tuple(checks)
        self.max_copy_ratio = max_copy_ratio

    @classmethod
    def from_config(cls, rc: Any) -> Gate:
        return cls(rc.min_score, rc.faithfulness, rc.faithfulness_checks, rc.max_copy_ratio)

    def copied_sections(self, question: str, source: str, sections: dict[str, str]) -> list[str]:
        """A ``copied section`` reason for every section that repeats the question or holds the source whole."""
        reasons = []
        limit = f"at most {self.max_copy_ratio:.0%}"
        for title, body in sections.items():
            from_question = copy_ratio(body, question)
            if from_question > self.max_copy_ratio:
                reasons.append(
                    f"copied section: {title} repeats the question ({from_question:.0%} of it word for word, "
                    f"{limit}); analyse the question instead of restating it"
                )
            of_source = copy_ratio(source, body)
            if of_source > self.max_copy_ratio:
                reasons.append(
                    f"copied section: {title} holds the source answer pasted whole ({of_source:.0%} of the "
                    f"source word for word, {limit}); spread its content over the three sections"
                )
        return reasons

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
        reasons += self.copied_sections(question, source, parsed.sections)
        flags = [str(f) for f in unsupported(question, source, rewrite, self.checks)]
        if flags and self.faithfulness == "reject":
            reasons.append("not in the question or source answer: " + ", ".join(flags))
        answer = canonical_text(parsed) if parsed.compliant else None
        return Verdict(ok=not reasons, reasons=reasons, flags=flags, score=parsed.score, answer=answer)
