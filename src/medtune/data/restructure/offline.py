"""Rule-based restructuring without any LLM: the source answer's own sentences, sorted into the three parts.

Each sentence (or, when that leaves a part empty, each comma clause) is scored against cue words for
analysis (考虑, 可能, 症状 …), cause (引起, 导致, 由于 …) and advice (建议, 注意, 就医 …) and goes to
the best-scoring part; ties go by position (early sentences describe, late ones advise). Within a part,
sentences keep their source order and are grouped under the six sub-labels when their cues say so.
Greetings and sign-offs (你好, 希望对你有帮助) are dropped. Nothing is added, so the output is faithful
by construction; when the answer is too short to fill three parts, ``restructure_answer`` returns None
and the record goes to the rejects with that reason. Outputs pass the same gate as teacher rewrites.
"""

from __future__ import annotations

import hashlib
import re

from medtune.data.structure import SECTION_TITLES, SUBSECTIONS

RULES_VERSION = "offline-rules-v1"

_CUES = {
    "analysis": (
        "考虑",
        "可能",
        "根据",
        "描述",
        "症状",
        "表现",
        "提示",
        "诊断",
        "怀疑",
        "像是",
        "多半",
        "不排除",
        "危险信号",
        "情况",
        "属于",
        "说明",
        "一般是",
    ),
    "cause": (
        "原因",
        "引起",
        "导致",
        "所致",
        "由于",
        "因为",
        "诱发",
        "诱因",
        "有关",
        "相关",
        "造成",
        "病因",
        "感染",
        "刺激",
        "因素",
        "常见于",
        "多见于",
        "多由",
        "多为",
        "是一种",
        "机制",
        "鉴别",
        "区别",
        "排除",
        "病毒",
        "细菌",
        "过敏",
        "压力",
        "劳累",
        "受凉",
        "激素",
        "肥胖",
        "超重",
        "吸烟",
        "饮酒",
        "遗传",
        "体质",
        "生理性",
        "功能性",
        "习惯",
        "缺乏",
        "紊乱",
        "失调",
        "退变",
        "退行性",
        "损伤",
        "受压",
        "压迫",
        "狭窄",
        "增生",
        "反流",
        "诱因",
        "风险",
        "危险因素",
        "年龄",
        "情绪",
    ),
    "advice": (
        "建议",
        "可以",
        "可在",
        "应该",
        "应当",
        "需要",
        "注意",
        "避免",
        "不要",
        "别",
        "多喝",
        "多饮",
        "休息",
        "就诊",
        "就医",
        "医院",
        "急诊",
        "120",
        "复查",
        "服用",
        "用药",
        "治疗",
        "如果",
        "若",
        "一旦",
        "及时",
        "立即",
        "尽快",
        "遵医嘱",
        "观察",
        "饮食",
        "锻炼",
        "戒烟",
        "少吃",
        "多吃",
        "保持",
        "千万",
    ),
}
_SUBLABEL_CUES = {
    "可能疾病": re.compile("考虑|可能|诊断|怀疑|提示|不排除|属于|像是"),
    "鉴别要点": re.compile("鉴别|排除|区分|区别|需与|不同于"),
    "就医指导": re.compile("就医|就诊|医院|急诊|120|复查|检查|门诊|[内外儿妇]科"),
}
_KEY = dict(zip(SECTION_TITLES, ("analysis", "cause", "advice")))
_GREETING_RE = re.compile(r"^\s*(?:(?:你好|您好|家长你好|家长您好)[，,！!。：:\s]*)+")
_CLOSING_RE = re.compile(
    r"(?:希望(?:我的)?(?:回答|解答|建议)?(?:能)?对(?:你|您)有(?:所)?帮助|祝(?:你|您)?(?:身体)?(?:健康|早日康复)"
    r"|以上(?:建议|回答)?仅供参考)[^。！!？?]*[。！!？?]?"
)
_SENTENCE_RE = re.compile(r"[^。！!？?；;\n]+[。！!？?；;]*")
_CLAUSE_RE = re.compile(r"[^，,。！!？?；;\n]+[，,。！!？?；;]*")
MIN_UNIT_CHARS = 4


def rules_hash() -> str:
    """Version of these rules, standing in for the prompt hash in journal keys and output metadata."""
    blob = repr((RULES_VERSION, _CUES, {k: v.pattern for k, v in _SUBLABEL_CUES.items()}))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _clean(answer: str) -> str:
    text = _GREETING_RE.sub("", answer.replace("\r\n", "\n"))
    return _CLOSING_RE.sub("", text).strip()


def _score(unit: str) -> dict[str, int]:
    return {key: sum(unit.count(cue) for cue in cues) for key, cues in _CUES.items()}


def _assign(units: list[str]) -> list[str]:
    labels: list[str] = []
    n = len(units)
    for i, unit in enumerate(units):
        score = _score(unit)
        best = max(score.values())
        previous = labels[-1] if labels else "analysis"
        if best == 0:
            labels.append(previous)  # no cue: it continues what the sentence before it was doing
            continue
        tied = [k for k, v in score.items() if v == best]
        position = ("analysis", "cause", "advice")[min(2, int(3 * i / n))]
        labels.append(
            tied[0]
            if len(tied) == 1
            else previous
            if previous in tied
            else position
            if position in tied
            else tied[0]
        )
    return labels


def _fill_empty(units: list[str], labels: list[str]) -> list[str]:
    """Give an empty part the unit of a larger part that has the most cues for it (none: leave it empty)."""
    order = ("analysis", "cause", "advice")
    for target in order:
        if target in labels:
            continue
        donors = {k for k in order if labels.count(k) > 1}
        candidates = [i for i, lab in enumerate(labels) if lab in donors and _score(units[i])[target] > 0]
        if candidates:
            labels[max(candidates, key=lambda j: _score(units[j])[target])] = target
    return labels


def _section_body(title: str, units: list[tuple[str, int]]) -> str:
    """Sub-labels by sentence: a sentence whose clauses carry the special cue goes under that label whole."""
    first, second = SUBSECTIONS[title]
    special = first if first in _SUBLABEL_CUES else second
    other = second if special == first else first
    hit = {k for u, k in units if _SUBLABEL_CUES[special].search(u)}
    groups = {special: [t for t in units if t[1] in hit], other: [t for t in units if t[1] not in hit]}
    return "\n".join(f"{label}：" + _join(groups[label]) for label in (first, second) if groups[label])


def _split(text: str, by_clause: bool) -> list[tuple[str, int]]:
    """Units (sentences, or comma clauses) with the index of the sentence each comes from."""
    out = []
    for k, sentence in enumerate(_SENTENCE_RE.findall(text)):
        pieces = _CLAUSE_RE.findall(sentence) if by_clause else [sentence]
        out += [(u.strip(), k) for u in pieces if len(re.sub(r"\W", "", u)) >= MIN_UNIT_CHARS]
    return out


def _join(units: list[tuple[str, int]]) -> str:
    """Clauses of one sentence join with a comma, sentences end with a full stop."""
    text = ""
    for i, (unit, k) in enumerate(units):
        same_sentence_next = i + 1 < len(units) and units[i + 1][1] == k
        unit = unit.strip().rstrip("，,、；;。")
        text += unit + ("，" if same_sentence_next else "" if unit.endswith(("！", "？", "!", "?")) else "。")
    return text


def restructure_answer(question: str, answer: str) -> str | None:
    """The three-part form of ``answer`` built from its own sentences, or None if it cannot fill three parts.

    ``question`` is accepted for symmetry with the teacher (and future rules); nothing from it is copied.
    """
    del question
    text = _clean(answer)
    units = _split(text, by_clause=False)
    labels = _assign([u for u, _ in units])
    if len(set(labels)) < 3:
        units = _split(text, by_clause=True)
        labels = _fill_empty([u for u, _ in units], _assign([u for u, _ in units]))
    if len(set(labels)) < 3:
        return None
    parts = []
    for n, title in zip("一二三", SECTION_TITLES):
        chosen = [u for u, lab in zip(units, labels) if lab == _KEY[title]]
        parts.append(f"{n}、{title}\n{_section_body(title, chosen)}")
    return "\n\n".join(parts)
