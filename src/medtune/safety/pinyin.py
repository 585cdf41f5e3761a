"""Reading questions typed in pinyin: "wo ba ba xiong kou hen tong" is read as 我爸爸胸口很痛.

Children who cannot write the characters, older people learning to type, foreigners and anyone on a phone without
a Chinese keyboard write their emergency in toneless pinyin. Neither the rules (Chinese phrases) nor the n-gram
model (trained on Chinese text) can read it: on the questions of dev rounds 37 and 38 romanised with pypinyin the
engine found 33% of the emergencies; read back into characters with this module, 96% (with a lexicon built
before those rounds; the engine had been tuned on them in characters, so this measures the reading).

The reading is a small input method: a run of pinyin words is cut into syllables (fewest first: "daoxia" is
dao xia), and the syllables into the words of a lexicon by the most probable path (a unigram model over word
counts). The lexicon is built from the development set itself (``medtune safety pinyin``, which needs
``pypinyin``): the words of medical questions and answers, each under its toneless reading, the most
frequent word kept where two share one. Only the reading of packaged data is needed at run time.

English stays English: a run is read only when every word in it is made of pinyin syllables and one of them is a
syllable alone that is not a common English word ("he can", "time" and "headache" are left as they are).
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGED_LEXICON = Path(__file__).with_name("pinyin_lexicon.json.xz")
MAX_WORD_SYLLABLES = 4
MIN_COUNT = 5
"""A word of two or more characters enters the lexicon when it occurs at least this often (3 made the lexicon
half as large again, 145,000 readings against 85,000, for under a point of character accuracy)."""
_CJK_RUN = re.compile("[\u4e00-\u9fff]+")
# A pinyin word: letters, then an optional tone digit; not glued to other letters, digits, "_" or "'" (38du,
# covid19, kidney_disease, don't).
_WORD = re.compile(r"(?<![a-z0-9_'])[a-z]+[1-5]?(?![a-z0-9_'])", re.IGNORECASE)
# Words of one run are separated by spaces only: punctuation ends a run.
_GAP = re.compile(r"[ \t]+")
# Common English words that are also one pinyin syllable: no evidence of pinyin on their own ("he can").
_ENGLISH = frozenset(
    re.findall(
        r"\w+",
        "a an he she me you can man men die lie tie pie pan fan tan sun hang "
        "bang gang sang long song ping pong ding dong pen ran dan bin",
    )
)
_TEMPERATURE = re.compile(r"(?<![\d.])(3[4-9]|4[0-2])(\.\d)? ?(?:du|sheshidu)(?![a-z])")
# Readings pypinyin lists that are no help here: interjections (呣 m, 嗯 n/ng, 哼 hm/hng) would turn "mg" or "n"
# into characters, and "ea" and "o" are English letters here far more often than 诶 or 哦.
_NOT_SYLLABLES = frozenset({"m", "n", "ng", "hm", "hng", "ea", "o"})
# Two words in a run, or one long enough to be read alone: what every reading needs, tested before anything else.
_HINT = re.compile(r"[a-z][1-5]?[ \t]+[a-z]|[a-z]{5}", re.IGNORECASE)


@dataclass(frozen=True)
class PinyinLexicon:
    """Words by toneless reading ("xiong kou" -> 胸口), each with the log of its share of all word counts."""

    words: dict[str, tuple[str, float]]
    syllables: frozenset[str]
    longest_syllable: int

    @classmethod
    def from_counts(cls, counts: dict[str, tuple[str, int]]) -> PinyinLexicon:
        total = sum(count for _, count in counts.values()) or 1
        words = {key: (word, math.log(count / total)) for key, (word, count) in counts.items()}
        syllables = frozenset(s for key in counts for s in key.split()) - _NOT_SYLLABLES
        return cls(words, syllables, max(map(len, syllables), default=1))

    # ------------------------------------------------------------------------------------------ reading
    def syllabify(self, word: str) -> list[str] | None:
        """The fewest pinyin syllables that spell ``word``, or None when it is not pinyin."""
        best: list[list[str] | None] = [None] * (len(word) + 1)
        best[0] = []
        for i in range(len(word)):
            head = best[i]
            if head is None:
                continue
            for j in range(i + 1, min(len(word), i + self.longest_syllable) + 1):
                if word[i:j] in self.syllables and (best[j] is None or len(head) + 1 < len(best[j])):
                    best[j] = head + [word[i:j]]
        return best[len(word)]

    def hanzi(self, syllables: list[str]) -> str | None:
        """The most probable words for a sequence of syllables, or None when some syllable has no word."""
        n = len(syllables)
        score = [-math.inf] * (n + 1)
        back: list[tuple[int, str]] = [(0, "")] * (n + 1)
        score[0] = 0.0
        for i in range(n):
            if score[i] == -math.inf:
                continue
            for k in range(1, min(MAX_WORD_SYLLABLES, n - i) + 1):
                entry = self.words.get(" ".join(syllables[i : i + k]))
                if entry is not None and score[i] + entry[1] > score[i + k]:
                    score[i + k] = score[i] + entry[1]
                    back[i + k] = (i, entry[0])
        if score[n] == -math.inf:
            return None
        out, j = [], n
        while j > 0:
            j, word = back[j]
            out.append(word)
        return "".join(reversed(out))

    def _looks_like_pinyin(self, words: list[str], spelled: list[list[str]], pinyin_text: bool) -> bool:
        """English words can be spelled in syllables too ("he can", "see a", "headache" = he a da che), so a run
        is read only on evidence: a word of one syllable that is not a common English word in a run of two or
        more words, or one word run together from six syllables or more ("tayizhichou..."). Once a text has
        shown it is written in pinyin, a lone syllable is read too ("wo 70 sui")."""
        single = sum(
            len(parts) == 1 and word.rstrip("12345") not in _ENGLISH for word, parts in zip(words, spelled)
        )
        if len(words) >= 2:
            return single >= 1
        return len(spelled[0]) >= 6 or (pinyin_text and single == 1)

    def read(self, text: str) -> str:
        """``text`` with every run of pinyin words written in characters (in any case: "WO TOU TENG"). Anything
        else, English and separators included, is left as it is."""
        if not _HINT.search(text):
            return text
        text = _TEMPERATURE.sub(lambda m: f"{m[1]}{m[2] or ''}度", text)
        matches = list(_WORD.finditer(text))
        spelled = [self.syllabify(m[0].rstrip("12345").lower()) for m in matches]
        runs: list[tuple[int, int]] = []
        i = 0
        while i < len(matches):
            if spelled[i] is None:
                i += 1
                continue
            # a run: pinyin words with only spaces between them (punctuation or an English word ends it)
            j = i
            while (
                j + 1 < len(matches)
                and spelled[j + 1] is not None
                and _GAP.fullmatch(text[matches[j].end() : matches[j + 1].start()])
            ):
                j += 1
            runs.append((i, j))
            i = j + 1
        readings: dict[int, str] = {}
        for lone_ok in (False, True):  # runs with evidence first; then lone syllables, if any run was read
            if lone_ok and not readings:
                break
            for i, j in runs:
                if i in readings:
                    continue
                words = [m[0].lower() for m in matches[i : j + 1]]
                parts: list[list[str]] = spelled[i : j + 1]  # type: ignore[assignment]
                if self._looks_like_pinyin(words, parts, lone_ok):
                    read = self.hanzi([s for p in parts for s in p])
                    if read is not None:
                        readings[i] = read
        out: list[str] = []
        pos = 0
        for i, j in runs:
            if i in readings:
                out += [text[pos : matches[i].start()], readings[i]]
                pos = matches[j].end()
        out.append(text[pos:])
        return "".join(out)


def _char_reading(char: str) -> str:
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(char, style=Style.NORMAL, errors="ignore")[0]


def build_counts(texts: Iterable[str], min_count: int = MIN_COUNT) -> dict[str, tuple[str, int]]:
    """Every Chinese word of 1 to 4 characters in ``texts`` (seen ``min_count`` times when longer than one) by
    its toneless reading, the most frequent kept where two share a reading. Needs ``pypinyin``."""
    try:
        from pypinyin import Style, lazy_pinyin
    except ImportError as exc:  # a maintainer's tool: the reading itself needs no pypinyin
        raise RuntimeError("building the pinyin lexicon needs pypinyin: pip install 'medtune[dev]'") from exc
    grams: Counter[str] = Counter()
    for text in texts:
        for run in _CJK_RUN.findall(text):
            for size in range(1, MAX_WORD_SYLLABLES + 1):
                grams.update(run[i : i + size] for i in range(len(run) - size + 1))
    best: dict[str, tuple[str, int]] = {}
    for word, count in sorted(grams.items()):
        if len(word) > 1 and count < min_count:
            continue
        reading = lazy_pinyin(word, style=Style.NORMAL, errors="ignore")
        if len(reading) != len(word):
            continue
        key = " ".join(reading)
        if key not in best or count > best[key][1]:
            best[key] = (word, count)
    return best


def save_counts(counts: dict[str, tuple[str, int]], path: str | Path) -> Path:
    """Write the lexicon compactly and atomically: the words with their counts, each character's default
    reading, and the readings of the words whose characters read otherwise in them (觉 jiao in 睡觉)."""
    path = Path(path)
    chars = sorted({c for word, _ in counts.values() for c in word})
    reading = {c: _char_reading(c) for c in chars}
    words = sorted(counts.items(), key=lambda kv: kv[1][0])
    payload = {
        "format": 1,
        "chars": "".join(chars),
        "readings": " ".join(reading[c] for c in chars),
        "words": "\n".join(f"{word}\t{count}" for _, (word, count) in words),
        "exceptions": "\n".join(
            f"{word}\t{key}" for key, (word, _) in words if " ".join(reading[c] for c in word) != key
        ),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(lzma.compress(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode(), preset=9))
    tmp.replace(path)
    return path


def load_counts(path: str | Path) -> dict[str, tuple[str, int]]:
    data = json.loads(lzma.decompress(Path(path).read_bytes()))
    if data.get("format") != 1:
        raise ValueError(f"{path}: pinyin lexicon format {data.get('format')!r}, expected 1")
    reading = dict(zip(data["chars"], data["readings"].split(" "), strict=True))
    exceptions = dict(line.split("\t") for line in data["exceptions"].splitlines())
    counts: dict[str, tuple[str, int]] = {}
    for line in data["words"].splitlines():
        word, count = line.split("\t")
        key = exceptions.get(word) or " ".join(reading[c] for c in word)
        counts[key] = (word, int(count))
    return counts


@cache
def packaged() -> PinyinLexicon:
    """The packaged lexicon, read the first time a text needs it (about 0.2 s)."""
    return PinyinLexicon.from_counts(load_counts(PACKAGED_LEXICON))


def read_pinyin(text: str) -> str:
    """``text`` with its runs of pinyin written in characters by the packaged lexicon (see the module)."""
    return packaged().read(text) if _HINT.search(text) else text


def _texts(paths: list[str]) -> Iterable[str]:
    """The questions and answers of JSONL files, read as `medtune safety train` reads them (held-out files
    refused); any other file is read as plain text (the rules file: its phrases are words too)."""
    from medtune.safety.cli import InputError, is_held_out, read_records  # the CLI imports this module

    for name in paths:
        path = Path(name)
        if path.suffix != ".jsonl":
            yield path.read_text(encoding="utf-8")
            continue
        rows = [r for _, r in read_records(path, "question", "answer")]
        held_out = sorted({str(r["split"]) for r in rows if is_held_out(str(r.get("split", "")))})
        if held_out:
            raise InputError(
                f"{path}: holds held-out records (split {', '.join(held_out)}); never build on them"
            )
        for record in rows:
            yield str(record.get("question") or "")
            yield str(record.get("answer") or "")


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``medtune safety pinyin``."""
    parser = argparse.ArgumentParser(
        prog="medtune safety pinyin",
        description="Build the pinyin lexicon from JSONL files of questions and answers (the dev set) and any "
        "plain-text files (the rules). Needs pypinyin (the dev extra).",
    )
    parser.add_argument("files", nargs="+")
    parser.add_argument("--out", default=str(PACKAGED_LEXICON), help="default: the packaged lexicon")
    parser.add_argument("--min-count", type=int, default=MIN_COUNT)
    args = parser.parse_args(argv)
    from medtune.safety.cli import EXIT_BAD_INPUT, InputError

    try:
        counts = build_counts(_texts(args.files), args.min_count)
    except (InputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = save_counts(counts, args.out)
    print(f"{len(counts)} words from {len(args.files)} files; wrote {out} ({out.stat().st_size:,} bytes)")
    return 0
