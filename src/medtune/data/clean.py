"""Cleaning rules: each one switchable in config, counted, and able to say why it dropped a record.

A rule is a name plus a function ``fn(record, counts) -> None | str | Drop``: it may rewrite the record in
place (and tally what it did in ``counts``), and returns a reason to drop it or None to keep it.
``build_rules(data_config)`` gives the built-in pipeline in order; ``prepare(cfg, extra_rules=...)`` runs
further rules after it and before deduplication (the place for e.g. a safety screen).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from medtune.data.pii import URL_PATTERN, PiiScrubber
from medtune.data.schema import QARecord

# ---------------------------------------------------------------------------------------------
# Text functions (pure, usable on their own)

# Every pattern starts with a fixed character or a choice of fixed words: `re` then jumps straight to
# candidate positions; a pattern starting with an optional part is tried at every character (5-10x slower).
BOILERPLATE_PATTERNS = (
    # greetings that open Q&A-site answers
    r"^(?:您好|你好|这位朋友|朋友你好|很高兴为(?:您|你)(?:解答|解惑|服务))[，,！!。：:\s]*",
    r"(?:感谢|谢谢)(?:您|你)的?(?:进行)?(?:咨询|提问|信任|来信)",
    # 希望我的回答对您有帮助 / 期望上述的答案可以协助到您 / 希望以上的解答能帮到你 ...
    r"(?:希望|期望|望|以上|上述)(?:我的|以上的?|上述的?|的)?(?:问题)?(?:回答|答案|解答|解释|建议)?"
    r"(?:希望|期望)?(?:可以|能够?)?(?:对(?:您|你|大家)有所?(?:帮助|启发)|帮(?:到|助)(?:您|你|大家)|"
    r"协助到(?:您|你|大家))(?:[，,]?谢谢)?",
    r"祝福?(?:您|你|患者|宝宝)?(?:身体)?(?:早日)?(?:恢复)?(?:康复|健康)(?:，拥有健康的身体和美好的生活)?",
    r"以上是(?:我的|个人的?)?(?:建议|回答|意见)(?:，仅供参考)?",
    r"谢谢[！!。~～]*$",
)
"""Regexes of Q&A-site formulas removed from answers (config: ``data.boilerplate_patterns``)."""

REFERRAL_PATTERNS = (
    r"(?:到|去|前往|来)(?:当地|附近|正规|大|专业|三甲|上级)?的?(?:医院|医疗机构|门诊|诊所|专科|科室)"
    r"[\u4e00-\u9fff]{0,6}?(?:就诊|就医|检查|诊治|治疗|咨询|看看|看一下|复查|面诊|明确诊断)",
    r"(?:建议|请)(?:您|你)?(?:咨询|询问|找)(?:一下)?(?:专业|专科|相关)?的?(?:医生|大夫|医师)",
    r"(?:面诊|当面诊断|遵医嘱|听从医生的?建议)",
    r"具体(?:情况|用药|治疗)?(?:请|需|要)?(?:遵医嘱|咨询医生|面诊)",
    r"(?:网上|线上)(?:无法|不能|不好)(?:确诊|诊断|判断)",
    # the words around a referral: 建议您尽快 / 根据您的描述 / 这种情况 / 一般来说
    r"(?:建议|最好|应该|需要|请|可以|尽快|及时|马上|立即|立刻|还是)(?:您|你)?",
    r"根据(?:您|你)的?(?:描述|叙述|情况)",
    r"(?:您的|你的|您这种|你这种|这种|这个|目前的|目前|您|你)情况下?",
    r"(?:一般来说|的话)",
)
"""Regexes of referral phrases; an answer that is nothing but these is dropped (``data.referral_patterns``)."""

_REFERRAL_MAX_CHINESE = 80
"""Answers with more Chinese characters than this are never referral-only: a referral with its greeting
and filler (你好，根据你的描述，建议尽快到正规医院消化内科就诊，具体请遵医嘱) is 20-60. Skipping longer
answers saves most of the rule's cost."""
_WS_RE = re.compile(r"[ \t\u3000\u00a0\u2000-\u200b\u202f\u205f]+")
_MANY_NL_RE = re.compile(r"\n{3,}")
_NL_SPACE_RE = re.compile(r" ?\n ?")  # after _WS_RE, at most one space sits on either side of a break


def normalize_text(text: str) -> str:
    """Unicode NFC, unify spaces, trim; keeps Chinese full-width punctuation as it is."""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _WS_RE.sub(" ", text)
    if "\n" in text:
        text = _MANY_NL_RE.sub("\n\n", _NL_SPACE_RE.sub("\n", text))
    return text.strip()


def compile_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """Each pattern compiled on its own, swallowing the punctuation after it. Not one alternation: `re`
    skips quickly to each pattern's first characters, several times faster on long answers."""
    return tuple(re.compile(f"(?:{p})[。！!，,~～]*", re.MULTILINE) for p in patterns)


_BOILERPLATE = compile_patterns(BOILERPLATE_PATTERNS)
_DANGLING_RE = re.compile(r"[，,、；;]+$", re.MULTILINE)  # the comma that stood before a removed formula


def remove_patterns(text: str, patterns: Iterable[re.Pattern[str]]) -> str:
    out = text
    for pattern in patterns:
        out = pattern.sub("", out)
    return _DANGLING_RE.sub("", out) if out != text else out


def strip_boilerplate(text: str, patterns: Iterable[re.Pattern[str]] | None = None) -> str:
    """Remove Q&A-site formulas (``patterns``: compiled with compile_patterns; default the built-in list)."""
    return remove_patterns(text, _BOILERPLATE if patterns is None else patterns).strip()


# Full-width punctuation that Chinese text uses as such, plus characters whose NFKC form loses meaning
# in medical text (10⁹/L would become 109/L, ① would become 1, …… would become ......, ℃ would become °C).
_PROTECTED = (
    "，：；！？（）～…℃"
    + "²³¹"
    + "".join(chr(c) for c in range(0x2070, 0x20A0))
    + "".join(chr(c) for c in range(0x2460, 0x2500))
)
_PUA_BASE = 0xF0000  # supplementary private use: never produced by NFKC, hardly ever in user text
_PROTECT = {ord(c): chr(_PUA_BASE + i) for i, c in enumerate(_PROTECTED)}
_UNPROTECT = {_PUA_BASE + i: c for i, c in enumerate(_PROTECTED)}
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# The punctuation first, then the look-behind: `re` can then skip ahead to candidate characters quickly.
_ASCII_PUNCT_AFTER_CJK_RE = re.compile(f"[,;:?!](?<=[{_CJK}].)")
_TO_FULLWIDTH = {",": "，", ";": "；", ":": "：", "?": "？", "!": "！"}


def _char_class(codepoints: list[int]) -> str:
    ranges: list[list[int]] = []
    for cp in codepoints:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    parts = (re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return "[" + "".join(parts) + "]"


@lru_cache(maxsize=1)
def _compat_re() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Characters NFKC would change (or combine), except the protected ones, as (BMP, astral) patterns: the
    fast path skips text without any, which is most Chinese text. Written as ranges and split by plane
    because `re` only has a fast lookup table for BMP ranges."""
    blocks = (range(0x80, 0x10000), range(0x1D400, 0x1D800), range(0x1F100, 0x1F300), range(0x2F800, 0x2FA20))
    chars = [
        cp
        for block in blocks
        for cp in block
        if not 0xD800 <= cp < 0xE000
        and chr(cp) not in _PROTECTED
        and (unicodedata.combining(chr(cp)) or unicodedata.normalize("NFKC", chr(cp)) != chr(cp))
    ]
    return (
        re.compile(_char_class([c for c in chars if c < 0x10000])),
        re.compile(_char_class([c for c in chars if c >= 0x10000])),
    )


_ANY_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")


def _needs_nfkc(text: str) -> bool:
    bmp, astral = _compat_re()
    if bmp.search(text):
        return True
    # Most text has no character beyond the BMP; a single-range test is ~15x cheaper than the astral class.
    return _ANY_ASTRAL_RE.search(text) is not None and astral.search(text) is not None


def normalize_unicode(text: str) -> str:
    """NFKC (full-width letters/digits to ASCII, ㎎ to mg ...) while Chinese full-width punctuation,
    superscripts and circled numbers stay; ASCII , ; : ? ! right after a Chinese character become full-width."""
    if _needs_nfkc(text):
        text = unicodedata.normalize("NFKC", text.translate(_PROTECT)).translate(_UNPROTECT)
    return _ASCII_PUNCT_AFTER_CJK_RE.sub(lambda m: _TO_FULLWIDTH[m.group()], text)


_HTML_TAG_RE = re.compile(r"<(?:br|p|div|li|tr|h[1-6])\b[^>]*>|</(?:p|div|li|tr|h[1-6])>", re.IGNORECASE)
_HTML_ANY_TAG_RE = re.compile(
    r"<!--.*?-->|<(?:script|style)\b.*?</(?:script|style)>|</?[a-zA-Z][^<>]*>", re.S | re.I
)


def strip_html(text: str) -> str:
    """Drop tags (block tags become line breaks) and decode entities; plain text passes unchanged."""
    if "<" not in text and "&" not in text:
        return text
    if "<" in text:
        text = _HTML_TAG_RE.sub("\n", text)
        text = _HTML_ANY_TAG_RE.sub("", text)
    return html.unescape(text) if "&" in text else text


URL_RE = re.compile(URL_PATTERN, re.IGNORECASE)


def strip_urls(text: str) -> str:
    if "." not in text and "//" not in text:
        return text
    return URL_RE.sub("", text)


_CJK_RUN_RE = re.compile(f"[{_CJK}]+")


def chinese_chars(text: str) -> int:
    return len(text) - len(_CJK_RUN_RE.sub("", text))


# Letters of other scripts: Latin (with accents), Cyrillic, Japanese kana, Hangul.
_OTHER_LETTERS_RE = re.compile(r"[A-Za-z\u00c0-\u024f\u0400-\u04ff\u3040-\u30ff\uac00-\ud7af]+")


def chinese_ratio(text: str) -> float:
    """Chinese characters among all letters. Digits, punctuation and spaces do not count, so a question
    full of lab values (HBsAg(+), ALT 32 U/L) is still Chinese; an English one is not."""
    cjk = chinese_chars(text)
    letters = cjk + len(text) - len(_OTHER_LETTERS_RE.sub("", text))
    return cjk / letters if letters else 0.0


def mojibake_score(text: str) -> float:
    """Share of non-ASCII characters outside GB2312 (the 6,763 common hanzi, Chinese punctuation, Greek,
    kana ...). Text decoded with the wrong codec (UTF-8 read as GBK, GBK read as UTF-8 or Latin-1) is made
    of rare hanzi, U+FFFD and Latin-1 letters and scores 0.6-1.0; real Chinese medical text scores < 0.05."""
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return _outside_gb2312(text) / non_ascii if non_ascii else 0.0


def _outside_gb2312(text: str) -> int:
    return text.encode("gb2312", "replace").count(b"?") - text.count("?")


def is_mojibake(text: str, max_ratio: float) -> bool:
    if "\ufffd\ufffd" in text or "锟斤拷" in text or "烫烫烫" in text or "屯屯屯" in text:
        return True
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return non_ascii >= 4 and _outside_gb2312(text) >= max_ratio * non_ascii


# ---------------------------------------------------------------------------------------------
# Rules


class Drop(NamedTuple):
    """Why a rule dropped a record; ``kept`` names the record it duplicates, if any."""

    detail: str
    kept: str | None = None


RuleFn = Callable[[QARecord, Counter], "str | Drop | None"]


@dataclass(frozen=True)
class Rule:
    name: str
    """Also the reason recorded for every record it drops (``dropped_<name>`` in the counts)."""
    fn: RuleFn
    doc: str = ""


@dataclass
class RuleStats:
    seen: int = 0
    dropped: int = 0
    counts: Counter = field(default_factory=Counter)
    """What a rule did besides dropping: records ``changed``, personal data found per kind, ..."""
    examples: list[dict[str, Any]] = field(default_factory=list)


def text_rule(name: str, func: Callable[[str], str], doc: str, answers_only: bool = False) -> Rule:
    """A rule that rewrites every text of a record (question, answer, earlier turns) with ``func``."""

    def apply(rec: QARecord, counts: Counter) -> None:
        changed = False
        if not answers_only:
            new = func(rec.question)
            if new != rec.question:
                rec.question, changed = new, True
        new = func(rec.answer)
        if new != rec.answer:
            rec.answer, changed = new, True
        for turn in rec.history:
            if answers_only and turn["role"] != "assistant":
                continue
            new = func(turn["content"])
            if new != turn["content"]:
                turn["content"], changed = new, True
        if changed:
            counts["changed"] += 1

    return Rule(name, apply, doc)


def _snippet(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "…"


def build_rules(dcfg: Any) -> list[Rule]:
    """The built-in pipeline for a ``DataConfig``, in order. Off switches leave a rule out entirely."""
    rules: list[Rule] = []
    if dcfg.drop_mojibake:
        max_ratio = dcfg.mojibake_ratio

        def mojibake(rec: QARecord, counts: Counter) -> str | None:
            for part, text in (("question", rec.question), ("answer", rec.answer)):
                if is_mojibake(text, max_ratio):
                    return f"{part} looks garbled ({mojibake_score(text):.0%} unusual characters): {_snippet(text)}"
            return None

        rules.append(Rule("mojibake", mojibake, "garbled text from a wrong encoding"))
    if dcfg.strip_html:
        rules.append(text_rule("html", strip_html, "HTML tags and entities removed"))
    if dcfg.normalize_unicode:
        rules.append(text_rule("unicode", normalize_unicode, "NFKC, Chinese punctuation kept full-width"))
    if dcfg.strip_urls:
        rules.append(text_rule("urls", strip_urls, "URLs removed"))
    if dcfg.scrub_pii and dcfg.pii_kinds:
        scrubber = PiiScrubber(dcfg.pii_kinds)

        def pii(rec: QARecord, counts: Counter) -> None:
            found: Counter = Counter()
            rec.question = scrubber.scrub(rec.question, found)
            rec.answer = scrubber.scrub(rec.answer, found)
            for turn in rec.history:
                turn["content"] = scrubber.scrub(turn["content"], found)
            if found:
                counts["changed"] += 1
                counts.update(found)

        rules.append(Rule("pii", pii, "personal data replaced by typed placeholders"))
    boiler = compile_patterns(
        BOILERPLATE_PATTERNS if dcfg.boilerplate_patterns is None else dcfg.boilerplate_patterns
    )
    if dcfg.strip_boilerplate and (dcfg.boilerplate_patterns is None or dcfg.boilerplate_patterns):
        rules.append(
            text_rule(
                "boilerplate", lambda t: strip_boilerplate(t, boiler), "Q&A-site formulas", answers_only=True
            )
        )
    if dcfg.normalize_whitespace:
        rules.append(text_rule("whitespace", normalize_text, "spaces, line breaks and NFC unified"))

    def length_rule(name: str, attr: str, limit: int, too_short: bool) -> Rule:
        def check(rec: QARecord, counts: Counter) -> str | None:
            n = len(getattr(rec, attr))
            if (n < limit) if too_short else (n > limit):
                return f"{attr} has {n} characters ({'minimum' if too_short else 'maximum'} {limit})"
            return None

        return Rule(name, check, f"{attr} length")

    rules.append(length_rule("question_too_short", "question", dcfg.min_question_chars, True))
    rules.append(length_rule("answer_too_short", "answer", dcfg.min_answer_chars, True))
    if dcfg.max_question_chars is not None:
        rules.append(length_rule("question_too_long", "question", dcfg.max_question_chars, False))
    if dcfg.max_answer_chars is not None:
        rules.append(length_rule("answer_too_long", "answer", dcfg.max_answer_chars, False))

    def ratio_rule(name: str, attr: str, minimum: float) -> Rule:
        def check(rec: QARecord, counts: Counter) -> str | None:
            text = getattr(rec, attr)
            ratio = chinese_ratio(text)
            if ratio < minimum:
                return f"{attr} is {ratio:.0%} Chinese (minimum {minimum:.0%}): {_snippet(text)}"
            return None

        return Rule(name, check, f"share of Chinese characters in the {attr}")

    if dcfg.min_chinese_ratio_question > 0:
        rules.append(ratio_rule("question_not_chinese", "question", dcfg.min_chinese_ratio_question))
    if dcfg.min_chinese_ratio_answer > 0:
        rules.append(ratio_rule("answer_not_chinese", "answer", dcfg.min_chinese_ratio_answer))
    if dcfg.drop_referral_only:
        referral = compile_patterns(
            REFERRAL_PATTERNS if dcfg.referral_patterns is None else dcfg.referral_patterns
        )
        min_content = dcfg.referral_min_content_chars

        def referral_only(rec: QARecord, counts: Counter) -> str | None:
            if chinese_chars(rec.answer) > _REFERRAL_MAX_CHINESE:
                return None
            rest = strip_boilerplate(remove_patterns(rec.answer, referral), boiler)
            if chinese_chars(rest) < min_content:
                return f"answer only refers the patient on: {_snippet(rec.answer)}"
            return None

        rules.append(Rule("referral_only", referral_only, "answers that only send the patient elsewhere"))
    return rules


class RulePipeline:
    """Runs rules in order on each record; keeps per-rule counts and the first examples of each drop."""

    def __init__(self, rules: list[Rule], examples: int = 5) -> None:
        names = [r.name for r in rules]
        duplicated = {n for n in names if names.count(n) > 1}
        if duplicated:
            raise ValueError(f"rule names must be unique, repeated: {sorted(duplicated)}")
        self.rules = rules
        self.n_examples = examples
        self.stats: dict[str, RuleStats] = {r.name: RuleStats() for r in rules}

    def add(self, rule: Rule) -> None:
        if rule.name in self.stats:
            raise ValueError(f"a rule named {rule.name!r} is already in the pipeline")
        self.rules.append(rule)
        self.stats[rule.name] = RuleStats()

    def __call__(self, rec: QARecord) -> tuple[str, Drop] | None:
        """None when the record survives every rule, else (rule name, Drop)."""
        for rule in self.rules:
            st = self.stats[rule.name]
            st.seen += 1
            verdict = rule.fn(rec, st.counts)
            if verdict is None:
                continue
            drop = verdict if isinstance(verdict, Drop) else Drop(str(verdict))
            st.dropped += 1
            if len(st.examples) < self.n_examples:
                st.examples.append(drop_example(rec, rule.name, drop))
            return rule.name, drop
        return None


def merge_stats(into: dict[str, RuleStats], part: dict[str, RuleStats], n_examples: int) -> None:
    """Add a worker's per-rule stats for one chunk; merged in chunk order, the examples are the serial ones."""
    for name, st in part.items():
        total = into[name]
        total.seen += st.seen
        total.dropped += st.dropped
        total.counts.update(st.counts)
        total.examples.extend(st.examples[: max(0, n_examples - len(total.examples))])


def drop_example(rec: QARecord, rule: str, drop: Drop) -> dict[str, Any]:
    row = {"id": rec.id, "source": rec.source, "rule": rule, "detail": drop.detail}
    if drop.kept is not None:
        row["kept"] = drop.kept
    row["question"] = _snippet(rec.question, 80)
    return row
