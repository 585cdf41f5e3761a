"""Parse and score the three-part answer form 病情分析 / 原因分析 / 治疗建议.

One parser for everything that needs to know whether an answer is well-formed: the restructuring gate,
evaluation (structure compliance) and the UI (rendering sections). The section titles, their sub-labels and
the markers of the notices the safety layer adds are declared here, once, and imported everywhere else. Headings are recognised in the
spellings teachers and models actually produce: ``一、病情分析``, ``1. 病情分析``, ``### 病情分析``,
``**病情分析**``, ``【病情分析】`` and the common synonyms (治病建议, 就医建议 …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SECTION_TITLES = ("病情分析", "原因分析", "治疗建议")
SUBSECTIONS = {
    "病情分析": ("症状评估", "可能疾病"),
    "原因分析": ("主要病因", "鉴别要点"),
    "治疗建议": ("就医指导", "治疗与生活建议"),
}
SUBLABELS = tuple(label for labels in SUBSECTIONS.values() for label in labels)

# Paragraphs the safety layer adds around a served answer start with one of these; they are not the
# model's words (serving strips them from the history, the UI renders them as quotes).
EMERGENCY_NOTICE = "【紧急提示】"
SAFETY_NOTICE = "【安全提示】"
DISCLAIMER_NOTICE = "【温馨提示】"
NOTICE_MARKERS = (EMERGENCY_NOTICE, SAFETY_NOTICE, DISCLAIMER_NOTICE)

# Heading spellings only: words that also serve as sub-labels (可能疾病, 主要病因, 就医指导) must not appear here,
# or a sub-label line would read as a second section.
SECTION_ALIASES: dict[str, tuple[str, ...]] = {
    "病情分析": ("病情分析", "病情评估", "病情概述", "症状分析", "病情解读"),
    "原因分析": ("原因分析", "病因分析", "病因与鉴别", "原因解析"),
    "治疗建议": (
        "治疗建议",
        "治病建议",
        "就医建议",
        "处理建议",
        "诊疗建议",
        "治疗与建议",
        "就诊建议",
        "诊治建议",
        "处理意见",
        "治疗意见",
    ),
}
_ALIAS_TO_CANON = {alias: canon for canon, aliases in SECTION_ALIASES.items() for alias in aliases}
_NUMBERING = r"(?:[一二三四五六七八九十]+\s*[、.．:：]|\(?[（(]?[一二三四五六七八九十1-9][)）]|[1-9]\s*[、.．:：)]|第[一二三四五六七八九十]部分[、:：]?)"
_HEADING_RE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:" + _NUMBERING + r")?[ \t]*(?:\*\*|__|【|\[)?[ \t]*"
    r"(?P<title>" + "|".join(sorted(map(re.escape, _ALIAS_TO_CANON), key=len, reverse=True)) + r")"
    r"[ \t]*(?:\*\*|__|】|\])?[ \t]*[:：]?[ \t]*(?:\*\*|__)?",
    re.MULTILINE,
)
_SUBLABEL_RE = {
    label: re.compile(
        r"(?:^|\n)[ \t]*(?:[-*•]\s*)?(?:\*\*|【)?[ \t]*" + re.escape(label) + r"[ \t]*(?:\*\*|】)?[ \t]*[:：]"
    )
    for labels in SUBSECTIONS.values()
    for label in labels
}
MIN_SECTION_CHARS = 8


@dataclass
class ParsedAnswer:
    sections: dict[str, str] = field(default_factory=dict)
    """Canonical section title -> its text (first occurrence)."""
    order: list[str] = field(default_factory=list)
    """Canonical titles in the order their headings appear."""
    subsections: dict[str, bool] = field(default_factory=dict)
    """Sub-label (症状评估 …) -> whether it appears in its section."""
    preamble: str = ""
    """Text before the first heading."""
    problems: list[str] = field(default_factory=list)
    """Human-readable reasons the answer is not fully compliant."""
    score: float = 0.0
    """0..1: sections present, in order, non-empty, balanced, sub-labels present."""

    @property
    def compliant(self) -> bool:
        """All three sections present exactly once, in order and non-empty."""
        return not any(p.startswith(("missing", "out of order", "empty", "repeated")) for p in self.problems)


def parse_answer(text: str) -> ParsedAnswer:
    """Split ``text`` at the section headings and score its compliance with the three-part form."""
    result = ParsedAnswer()
    text = (text or "").replace("\r\n", "\n")
    matches = list(_HEADING_RE.finditer(text))
    found: list[tuple[str, int, int]] = []
    for m in matches:
        canon = _ALIAS_TO_CANON[m.group("title")]
        found.append((canon, m.start(), m.end()))
    result.preamble = text[: found[0][1]].strip() if found else text.strip()
    seen: set[str] = set()
    for i, (canon, _start, end) in enumerate(found):
        stop = found[i + 1][1] if i + 1 < len(found) else len(text)
        body = text[end:stop].strip()
        if canon in seen:
            result.problems.append(f"repeated section {canon}")
            continue
        seen.add(canon)
        result.order.append(canon)
        result.sections[canon] = body

    present = [t for t in SECTION_TITLES if t in result.sections]
    for title in SECTION_TITLES:
        if title not in result.sections:
            result.problems.append(f"missing section {title}")
        elif len(re.sub(r"\s", "", result.sections[title])) < MIN_SECTION_CHARS:
            result.problems.append(f"empty section {title}")
    in_order = result.order == [t for t in SECTION_TITLES if t in result.order]
    if not in_order:
        result.problems.append("out of order: " + " > ".join(result.order))

    lengths = [len(result.sections[t]) for t in present]
    balanced = bool(lengths) and min(lengths) * 8 >= max(lengths)
    if lengths and not balanced:
        result.problems.append("unbalanced sections (one is over 8x another)")

    for title, labels in SUBSECTIONS.items():
        body = "\n" + result.sections.get(title, "")
        for label in labels:
            result.subsections[label] = bool(_SUBLABEL_RE[label].search(body))

    non_empty = sum(1 for t in present if len(re.sub(r"\s", "", result.sections[t])) >= MIN_SECTION_CHARS)
    result.score = round(
        0.5 * len(present) / 3
        + 0.2 * non_empty / 3
        + 0.1 * (1.0 if in_order and present else 0.0)
        + 0.05 * (1.0 if balanced else 0.0)
        + 0.15 * sum(result.subsections.values()) / len(result.subsections),
        4,
    )
    return result


def compliance_rate(answers: list[str]) -> float:
    """Fraction of answers that are compliant three-part answers."""
    if not answers:
        return 0.0
    return sum(parse_answer(a).compliant for a in answers) / len(answers)


def canonical_text(parsed: ParsedAnswer) -> str:
    """The answer rewritten with the canonical headings 一、病情分析 / 二、原因分析 / 三、治疗建议.

    Only the headings change (``### 1. **病情分析**`` and ``【病因分析】`` become one spelling), so training
    data teaches a single form; section bodies are kept as written. Needs all three sections.
    """
    missing = [t for t in SECTION_TITLES if t not in parsed.sections]
    if missing:
        raise ValueError(f"cannot write the canonical form without {', '.join(missing)}")
    return "\n\n".join(
        f"{n}、{title}\n{parsed.sections[title].strip()}" for n, title in zip("一二三", SECTION_TITLES)
    )
