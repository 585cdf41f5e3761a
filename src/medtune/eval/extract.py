"""Reading the chosen option(s) out of a generated exam answer.

Models rarely answer with a bare letter: they write "答案是B", "选B。", "B和D", "(C) 非离子型", repeat the
option's text instead of its letter, explain first, or refuse. Extraction tries the most explicit forms
first, so the letters in an explanation ("A 项错误，因为……故选 C") do not outvote the stated answer.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

LETTERS = "ABCDEFGH"
_L = f"[{LETTERS}]"
_SEP = r"(?:\s*(?:[、,，/和与及]|以及|and|&)?\s*)"
_GROUP = rf"({_L}(?:{_SEP}{_L})*)"
# "答案是B" "正确答案为：A、C" "故选D" "应选择 B" "the answer is C"; a letter must not be glued to
# more Latin letters (e.g. "选择ATP" is no answer).
_EXPLICIT = re.compile(
    rf"(?:正确答案|参考答案|最佳答案|答案|正确选项|应选择|应选|故选|所以选|因此选|选择|选|answer\s*(?:is)?)"
    rf"\s*(?:是|为|应为|应该是|:|：|\s)*[\(（\[【]?\s*{_GROUP}(?![A-Za-z])",
    re.IGNORECASE,
)
_LEADING = re.compile(rf"^\s*[\(（\[【]?\s*{_GROUP}\s*(?:[\)）\]】]|[\.．。、:：,，;；\s]|$|选项|项)")
_STANDALONE = re.compile(rf"(?<![A-Za-z]){_L}(?![A-Za-z])")
_REFUSAL = re.compile(
    r"无法(?:回答|确定|判断|作答)|不能(?:回答|确定|判断)|抱歉|不确定|没有正确答案|以上都不对|cannot answer|not sure"
)


@dataclass(frozen=True)
class Extracted:
    letters: frozenset[str] | None
    """The chosen options, or None when no answer could be read."""
    how: str
    """explicit | leading | option_text | standalone | refusal | empty | none."""


def _letters(group: str, valid: str) -> frozenset[str]:
    return frozenset(c for c in group.upper() if c in valid)


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"[\s。，,.;；:：、\"'“”‘’()（）]", "", text).lower()


def extract_choice(text: str, options: dict[str, str]) -> Extracted:
    """The option letters a generated answer chooses, restricted to the item's own option letters."""
    valid = "".join(sorted(options))
    if not text or not text.strip():
        return Extracted(None, "empty")
    clean = unicodedata.normalize("NFKC", text)
    for pattern, how in ((_EXPLICIT, "explicit"), (_LEADING, "leading")):
        m = pattern.search(clean)
        if m:
            found = _letters(m.group(1), valid)
            if found:
                return Extracted(found, how)
    # The option's text instead of its letter: the longest option text found wins (a short option such as
    # "皂类" must not match inside a longer one's text that the answer quotes).
    norm = _norm(clean)
    hits = [(len(_norm(t)), k) for k, t in options.items() if len(_norm(t)) >= 2 and _norm(t) in norm]
    if hits:
        hits.sort(reverse=True)
        best_len = hits[0][0]
        best = [k for n, k in hits if n == best_len]
        if len(best) == 1:
            return Extracted(frozenset(best), "option_text")
    if _REFUSAL.search(clean):
        return Extracted(None, "refusal")
    standalone = {m.group(0).upper() for m in _STANDALONE.finditer(clean) if m.group(0).upper() in valid}
    if len(standalone) == 1:
        return Extracted(frozenset(standalone), "standalone")
    return Extracted(None, "none")
