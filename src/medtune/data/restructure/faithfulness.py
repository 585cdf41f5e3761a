"""Faithfulness of a rewrite to its source: drugs, doses and diagnoses the teacher added on its own.

A rewrite may reorder, summarise and rephrase; it may not introduce a drug, a number with a unit (dose,
temperature, duration, age, count) or a named diagnosis that appears in neither the patient's question nor
the source answer. Those are what a model tuned on the rewrite would learn to state without grounds.

Extraction is lexical, on purpose: it is fast, deterministic and explainable in a rejects file.

- Drugs and diagnoses come first from ``lexicon.yaml`` (alias groups: 扑热息痛 supports 对乙酰氨基酚),
  longest name first; then from suffix rules for names the lexicon lacks (…沙星, …霉素, …胶囊; …炎, …癌,
  …综合征). A suffix match counts as supported when any tail of it (at least one character before the
  suffix) appears in the source, which errs towards letting a rewrite through.
- Measures are numbers (Arabic or Chinese numerals, ranges as both ends) with a unit; units are normalised
  (毫克 = mg, 度 = ℃ = °C, 星期 = 周, 日 = 天), and ``39度8`` reads as 39.8℃. ``一次`` is too common as a
  plain phrase (再一次, 一次性) to count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

KINDS = ("drug", "measure", "diagnosis")
_CJK = "\u4e00-\u9fff"

_DRUG_SUFFIXES = (
    "西林|霉素|沙星|他汀|洛尔|地平|普利|沙坦|拉唑|替丁|米松|尼松|尼龙|昔布|洛芬|洛韦|他韦|唑仑|西泮|他定|利嗪"
    "|环素|格列净|列汀|胶囊|颗粒|口服液|注射液|软膏|乳膏|滴眼液|滴耳液|喷雾剂|混悬液|缓释片|肠溶片|分散片|泡腾片|滴丸"
)
_DIAG_SUFFIXES = "综合征|炎|癌|瘤|结石|溃疡|囊肿|息肉|骨折|梗死|梗塞|结节"
# Characters that end a name going leftwards: function words, verbs of taking/having, punctuation.
_STOP = set(
    "的了是为和与及或等如有患得在用服吃涂喷滴可以需要应该会能请再并且而但、，。；：！？（）()《》“”\"' \n\t"
)
_LEADS = (
    "排除",
    "考虑",
    "怀疑",
    "警惕",
    "提示",
    "诊断",
    "合并",
    "伴有",
    "出现",
    "引起",
    "导致",
    "注意",
    "预防",
    "治疗",
    "口服",
    "服用",
    "使用",
    "外用",
    "涂抹",
    "建议",
    "需要",
    "继发",
    "并发",
    "患",
    "需",
    "用",
    "服",
)
_GENERIC = {
    "发炎",
    "消炎",
    "抗炎",
    "炎症",
    "癌症",
    "肿瘤",
    "结石",
    "溃疡",
    "息肉",
    "囊肿",
    "结节",
    "骨折",
    "止炎",
}
_GENERIC_DRUG = {
    "胶囊",
    "颗粒",
    "软膏",
    "乳膏",
    "口服液",
    "注射液",
    "滴眼液",
    "滴耳液",
    "喷雾剂",
    "混悬液",
    "滴丸",
}

_CN_DIGITS = {
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_UNITS = {
    "mg": "mg",
    "毫克": "mg",
    "μg": "μg",
    "ug": "μg",
    "mcg": "μg",
    "微克": "μg",
    "kg": "kg",
    "公斤": "kg",
    "g": "g",
    "克": "g",
    "斤": "斤",
    "ml": "ml",
    "毫升": "ml",
    "l": "L",
    "升": "L",
    "iu": "IU",
    "国际单位": "IU",
    "万单位": "万IU",
    "mmhg": "mmHg",
    "mmol/l": "mmol/L",
    "%": "%",
    "℃": "℃",
    "°c": "℃",
    "°": "℃",
    "度": "℃",
    "天": "天",
    "日": "天",
    "周": "周",
    "星期": "周",
    "礼拜": "周",
    "月": "月",
    "年": "年",
    "小时": "小时",
    "钟头": "小时",
    "h": "小时",
    "分钟": "分钟",
    "min": "分钟",
    "秒": "秒",
    "次": "次",
    "片": "片",
    "粒": "粒",
    "袋": "袋",
    "支": "支",
    "滴": "滴",
    "喷": "喷",
    "岁": "岁",
    "周岁": "岁",
}
_BARE_OK = ("岁", "℃", "mmHg", "mmol/L", "%", "次")
_BARE_CHARS = set("岁℃mmHgol/L%次")
_NUM = r"(?:\d+(?:\.\d+)?|[零一二两三四五六七八九十百半]+)"
_UNIT_ALT = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
_MEASURE_RE = re.compile(
    rf"(?P<a>{_NUM})(?:\s*(?:-|~|～|—|至|到)\s*(?P<b>{_NUM}))?\s*个?(?:多|余|来|几)?个?\s*(?P<unit>{_UNIT_ALT})"
    rf"(?P<frac>(?<=度)\d)?(?![a-z])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Finding:
    kind: str
    """drug, measure or diagnosis."""
    text: str
    """As written in the rewrite (a measure in its normalised form)."""

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, list[tuple[str, int]]]:
    """kind -> [(name, group id)], longest names first."""
    raw = yaml.safe_load(
        resources.files("medtune.data.restructure").joinpath("lexicon.yaml").read_text("utf-8")
    )
    out: dict[str, list[tuple[str, int]]] = {}
    for kind, key in (("drug", "drugs"), ("diagnosis", "diagnoses")):
        names = [(str(name), gid) for gid, group in enumerate(raw[key]) for name in group]
        out[kind] = sorted(names, key=lambda t: len(t[0]), reverse=True)
    return out


@lru_cache(maxsize=1)
def _groups() -> dict[str, dict[int, list[str]]]:
    out: dict[str, dict[int, list[str]]] = {}
    for kind, names in _lexicon().items():
        groups: dict[int, list[str]] = {}
        for name, gid in names:
            groups.setdefault(gid, []).append(name)
        out[kind] = groups
    return out


def _norm(text: str) -> str:
    """Full-width ASCII to half-width and lower case, so ＣＯＰＤ and COPD, ５ｍｇ and 5mg compare equal."""
    return "".join(chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else c for c in text).lower()


def _lexicon_hits(kind: str, text: str) -> tuple[list[tuple[str, int]], list[tuple[int, int]]]:
    """Non-overlapping lexicon names in ``text`` (longest first) and the spans they cover."""
    taken: list[tuple[int, int]] = []
    hits: list[tuple[str, int]] = []
    for name, gid in _lexicon()[kind]:
        key = _norm(name)
        start = text.find(key)
        while start >= 0:
            end = start + len(key)
            if not any(s < end and start < e for s, e in taken):
                taken.append((start, end))
                hits.append((name, gid))
            start = text.find(key, end)
    return hits, taken


def _suffix_candidates(text: str, suffixes: str, taken: list[tuple[int, int]]) -> list[str]:
    out = []
    for m in re.finditer(suffixes, text):
        start, end = m.start(), m.end()
        if any(s < end and start < e for s, e in taken):
            continue
        i = start
        if len(m.group(0)) == 1 and text[end : end + 1] in ("症", "药", "性"):
            continue  # 炎症, 抗炎药, 炎性: not the end of a name
        while (
            i > 0
            and start - i < 6
            and text[i - 1] not in _STOP
            and re.match(f"[{_CJK}A-Za-z0-9]", text[i - 1])
            and not any(s <= i - 1 < e for s, e in taken)  # 阿莫西林|胶囊 is the form of a known drug
        ):
            i -= 1
        name = text[i:end]
        while True:  # verbs left in front of the name (排除…, 口服…) are not part of it
            lead = next(
                (w for w in _LEADS if name.startswith(w) and len(name) - len(w) > len(m.group(0))), None
            )
            if lead is None:
                break
            name = name[len(lead) :]
        if len(name) > len(m.group(0)):  # a bare 胶囊 or 炎 is no name
            out.append(name)
    return out


def _tail_supported(candidate: str, suffix_len: int, source: str) -> bool:
    return any(candidate[k:] in source for k in range(0, len(candidate) - suffix_len))


def _names(kind: str, rewrite: str, source: str) -> list[str]:
    hits, taken = _lexicon_hits(kind, rewrite)
    groups = _groups()[kind]
    found = [name for name, gid in hits if not any(_norm(alias) in source for alias in groups[gid])]
    suffixes = _DRUG_SUFFIXES if kind == "drug" else _DIAG_SUFFIXES
    generic = _GENERIC_DRUG if kind == "drug" else _GENERIC
    for cand in _suffix_candidates(rewrite, suffixes, taken):
        suffix = re.search(f"(?:{suffixes})$", cand)
        suffix_len = len(suffix.group(0)) if suffix else 1
        if cand in generic or cand[-2:] in generic and len(cand) == 2:
            continue
        if not _tail_supported(cand, suffix_len, source):
            found.append(cand)
    return found


def _number(text: str) -> float | None:
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if text == "半":
        return 0.5
    if text in _CN_DIGITS:
        return float(_CN_DIGITS[text])
    m = re.fullmatch(
        r"(?:([一二两三四五六七八九])百)?(?:([一二两三四五六七八九])?(十))?([一二三四五六七八九])?", text
    )
    if m and text:
        hundreds = _CN_DIGITS[m.group(1)] * 100 if m.group(1) else 0
        tens = (_CN_DIGITS[m.group(2)] if m.group(2) else 1) * 10 if m.group(3) else 0
        return float(hundreds + tens + (_CN_DIGITS[m.group(4)] if m.group(4) else 0))
    return None  # 十几, 一两, 百 ...: vague amounts are compared as written


def measures(text: str) -> set[str]:
    """Normalised numbers with units in ``text``, e.g. {'38.5℃', '3天', '500mg'}."""
    text = _norm(text)
    out = set()
    for m in _MEASURE_RE.finditer(text):
        unit = _UNITS[m.group("unit").lower()]
        if unit == "次" and m.group("a") == "一" and not m.group("b"):
            continue
        for raw in (m.group("a"), m.group("b")):
            if not raw:
                continue
            value = _number(raw)
            if value is not None and m.group("frac") and raw == m.group("a") and not m.group("b"):
                value = float(f"{int(value)}.{m.group('frac')}")  # 39度8 -> 39.8
            shown = raw if value is None else (f"{value:g}")
            out.add(f"{shown}{unit}")
    return out


def unsupported(
    question: str, source: str, rewrite: str, kinds: tuple[str, ...] | list[str] = KINDS
) -> list[Finding]:
    """Entities in ``rewrite`` found in neither ``question`` nor ``source``, in a stable order."""
    basis = _norm(f"{question}\n{source}")
    text = _norm(rewrite)
    findings: list[Finding] = []
    for kind in ("drug", "diagnosis"):
        if kind in kinds:
            findings += [Finding(kind, n) for n in dict.fromkeys(_names(kind, text, basis))]
    if "measure" in kinds:
        known = measures(basis)
        # Patients write ages, temperatures, blood pressure and rates bare ("女 45", "高烧39.8", "150/95"):
        # for those units the bare number in the source supports the measure. Doses and durations must match.
        bare = {f"{float(n):g}" for n in re.findall(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])", basis)}
        extra = measures(text) - known
        extra = {m for m in extra if not (m.endswith(_BARE_OK) and m.rstrip("".join(_BARE_CHARS)) in bare)}
        findings += [Finding("measure", m) for m in sorted(extra)]
    return findings
