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

Fuzzy pinyin (模糊音): many southern speakers, and phone keyboards with fuzzy pinyin turned on, merge zh/z, ch/c,
sh/s, n/l, r/l, hu/fu and the finals an/ang, en/eng, in/ing (ian/iang, uan/uang with them), so 喘不上气 comes as
"cuan bu sang qi" and 自杀 as "zi sa". Where a span of syllables has no word of its own, the most frequent word
whose reading is the same up to those merges stands in for it, at a fixed cost (``FUZZY_PENALTY``); a span that
has a word is read as before. Syllables only a merge makes ("ten" for teng, "suang" for shuang) join a run that
is read anyway, but never count as evidence of pinyin. The index of words by merged reading is built the first
time a reading could use it (0.1 s, 11 MiB). On dev round 45's emergencies romanised with zh/ch/sh, -ng and n
merged, the rules flagged 52% with exact readings alone and 90% with fuzzy ones; in exact pinyin, 92% either way.
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
from functools import cache, cached_property
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
FUZZY_PENALTY = 5.0
"""What reading a span of syllables by a fuzzy word costs, in log probability. Fuzzy words cannot wait until a run
has no exact reading: every real syllable has a word of one character, so "cuan bu sang qi" always has one
(窜不桑气). So a span with no word of its own may be read by a fuzzy word, which must be e**5 (about 150) times
as probable as the exact words it displaces. The same "zi sa" is 自杀 from a fuzzy typist and a slip from anyone
else; with no way to tell who merges what, one fixed cost per word is the simplest prior, chosen on the dev rounds
but 45 romanised by pypinyin. In exact pinyin of 36,454 questions a cost of 5 changed 411 readings and the rules'
verdict on 8 emergencies (5 lost, 3 found: 华法令 read 华法林); 7 changed 117 (1 lost, 2 found), 8 changed 51
(none lost). But the cost is what a merged spelling must overcome: 自杀 (-10.5) beats 子撒 (-16.7) only below
6.2, 叫不醒 only below 6.1, and with every merge applied rounds 43-44's emergencies were flagged 76% at 5, 71% at
7, 68% at 8, 40% by exact readings alone."""
_INITIAL = re.compile(r"[zcs]h|[bpmfdtnlgkhjqxrzcsyw]")
# The merges of fuzzy pinyin as one canonical initial per class: zh ch sh -> z c s, and n r -> l (n/l and r/l are
# both merges, so n, l and r make one class: 呢 and 热 share a key); h -> f before u. The finals ang eng ing (with
# iang, uang) lose their g. ong and iong stay: "on" is no syllable and no keyboard merges them.
_KEY_INITIAL = {"zh": "z", "ch": "c", "sh": "s", "n": "l", "r": "l"}
# The initial a fuzzy typist writes for another, the way the merges go in speech: zh as z, not z as zh; r as l,
# not l as r (热 is "le"); n and l either way. h and f swap before u only.
_TYPED_AS = {"zh": "z", "ch": "c", "sh": "s", "n": "l", "l": "n", "r": "l"}
_NG_FINAL = re.compile(r"[aei]ng$")


def _split(syllable: str) -> tuple[str, str]:
    initial = _INITIAL.match(syllable)
    head = initial[0] if initial else ""
    return head, syllable[len(head) :]


def fuzzy_key(syllable: str) -> str:
    """The canonical spelling of ``syllable`` under the merges of fuzzy pinyin: "shang", "sang" and "san" are all
    "san", "ren", "len" and "neng" all "len": two syllables share a key exactly when a chain of merges joins them."""
    if syllable in _NOT_SYLLABLES:
        return syllable
    head, rest = _split(syllable)
    head = "f" if head == "h" and rest.startswith("u") else _KEY_INITIAL.get(head, head)
    return head + (rest[:-1] if _NG_FINAL.search(rest) else rest)


def _fuzzy_spellings(syllable: str) -> set[str]:
    """How a fuzzy typist may write ``syllable``, itself included: zh ch sh as z c s, r as l, n and l either way,
    hu and fu either way, and a final -ng as -n ("shuang" as suang, shuan or suan; "teng" as ten)."""
    head, rest = _split(syllable)
    heads = {head}
    if head in _TYPED_AS:
        heads.add(_TYPED_AS[head])
    elif head in ("h", "f") and rest.startswith("u"):
        heads.add("f" if head == "h" else "h")
    finals = {rest, rest[:-1]} if _NG_FINAL.search(rest) else {rest}
    return {h + f for h in heads for f in finals}


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
    def syllabify(self, word: str, fuzzy: bool = False) -> list[str] | None:
        """The fewest pinyin syllables that spell ``word``, or None when it is not pinyin; with ``fuzzy``, the
        spellings of fuzzy pinyin count as syllables too ("ten" for teng)."""
        syllables = self._typed_syllables if fuzzy else self.syllables
        best: list[list[str] | None] = [None] * (len(word) + 1)
        best[0] = []
        for i in range(len(word)):
            head = best[i]
            if head is None:
                continue
            for j in range(i + 1, min(len(word), i + self.longest_syllable) + 1):
                if word[i:j] in syllables and (best[j] is None or len(head) + 1 < len(best[j])):
                    best[j] = head + [word[i:j]]
        return best[len(word)]

    def hanzi(self, syllables: list[str]) -> str | None:
        """The most probable words for a sequence of syllables, or None when some syllable has no word. A span
        with a word of its own is read by it; a span without one may be read by a fuzzy word (see the module),
        at ``FUZZY_PENALTY``, and the fuzzy index is consulted only when such a word could win."""
        n = len(syllables)
        spans = [
            [
                self.words.get(" ".join(syllables[i : i + k]))
                for k in range(1, min(MAX_WORD_SYLLABLES, n - i) + 1)
            ]
            for i in range(n)
        ]
        if self._fuzzy_could_win(spans):
            index, key = self._fuzzy_index, self._fuzzy_keys
            for i, row in enumerate(spans):
                for k, entry in enumerate(row, 1):
                    if entry is None:
                        fuzzy = index.get(" ".join(key.get(s) or fuzzy_key(s) for s in syllables[i : i + k]))
                        row[k - 1] = None if fuzzy is None else (fuzzy[0], fuzzy[1] - FUZZY_PENALTY)
        score = [-math.inf] * (n + 1)
        back: list[tuple[int, str]] = [(0, "")] * (n + 1)
        score[0] = 0.0
        for i in range(n):
            if score[i] == -math.inf:
                continue
            for k, entry in enumerate(spans[i], 1):
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

    def _fuzzy_could_win(self, spans: list[list[tuple[str, float] | None]]) -> bool:
        """Whether some fuzzy word could change the reading, decided without the fuzzy index. A reading that uses
        fuzzy words beats the exact one only if one of its fuzzy words beats the best exact words for its own
        span (the exact reading with the same word boundaries elsewhere scores at least as well), and no fuzzy
        word of k syllables scores more than the most probable word of k syllables less the penalty. So where
        every span without a word is read exactly at least that well, the exact reading stands: most readings
        of exact pinyin never build the index."""
        best = self._best_logp
        for i in range(len(spans)):
            inside = [0.0] + [-math.inf] * len(spans[i])  # the best exact words for syllables i .. i + k
            for k in range(1, len(spans[i]) + 1):
                for start in range(k):
                    entry = spans[i + start][k - start - 1]
                    if entry is not None:
                        inside[k] = max(inside[k], inside[start] + entry[1])
                if spans[i][k - 1] is None and best[k] - FUZZY_PENALTY > inside[k]:
                    return True
        return False

    # --------------------------------------------------------------------------------- fuzzy pinyin
    @cached_property
    def _typed_syllables(self) -> frozenset[str]:
        """The syllables and every fuzzy spelling of them (about 25 more: "ten", "suang", "fui")."""
        return self.syllables.union(*map(_fuzzy_spellings, self.syllables))

    @cached_property
    def _best_logp(self) -> tuple[float, ...]:
        """The log probability of the most probable word of each length, by syllables (index 0 unused)."""
        best = [-math.inf] * (MAX_WORD_SYLLABLES + 1)
        for key, (_, logp) in self.words.items():
            k = key.count(" ") + 1
            if k <= MAX_WORD_SYLLABLES and logp > best[k]:
                best[k] = logp
        return tuple(best)

    @cached_property
    def _fuzzy_keys(self) -> dict[str, str]:
        """The fuzzy key of every syllable of the lexicon and of every fuzzy spelling of one."""
        return {s: fuzzy_key(s) for s in self._typed_syllables | _NOT_SYLLABLES}

    @cached_property
    def _fuzzy_index(self) -> dict[str, tuple[str, float]]:
        """The most probable word for each reading up to the merges ("zi sa" -> 自杀), built the first time a
        reading may need it (0.1 s and 11.5 MiB for the packaged lexicon of 144,106 readings)."""
        key = self._fuzzy_keys
        index: dict[str, tuple[str, float]] = {}
        for reading, entry in self.words.items():
            fuzzy = " ".join(key[s] for s in reading.split())
            known = index.get(fuzzy)
            if known is None or entry[1] > known[1]:
                index[fuzzy] = entry
        return index

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
        runs = self._runs(text, matches, spelled)
        evidence = {
            lone_ok: {
                i
                for i, j in runs
                if self._looks_like_pinyin(
                    [m[0].lower() for m in matches[i : j + 1]],
                    spelled[i : j + 1],  # type: ignore[arg-type]
                    lone_ok,
                )
            }
            for lone_ok in (False, True)
        }
        if not evidence[False]:
            return text
        # The syllables to read: a word that is pinyin only in a fuzzy spelling ("wo tou ten") joins the runs it
        # stands next to but is never evidence of pinyin ("ten", "fun" and "tin" are English words); a word that a
        # fuzzy syllable spells in fewer syllables is read in them ("suai" is 摔, not su ai), fewest first as ever.
        sounds: list[list[str] | None] = []
        for m, parts in zip(matches, spelled):
            fuzzy = (
                None
                if parts and len(parts) == 1
                else self.syllabify(m[0].rstrip("12345").lower(), fuzzy=True)
            )
            sounds.append(fuzzy if fuzzy and (parts is None or len(fuzzy) < len(parts)) else parts)
        only_fuzzy = [parts is None and sound is not None for parts, sound in zip(spelled, sounds)]
        readings: dict[tuple[int, int], str | None] = {}
        chosen: list[tuple[int, int]] = []
        for lone_ok in (False, True):  # runs with evidence first; then lone syllables, if any run was read
            if lone_ok and not any(readings.values()):
                break
            read = {i for i, _ in runs if i in evidence[False] or (lone_ok and i in evidence[True])}
            chosen = self._joined(text, matches, runs, read, only_fuzzy)
            for i, j in chosen:
                if (i, j) not in readings:
                    readings[i, j] = self.hanzi([s for k in range(i, j + 1) for s in sounds[k] or ()])
        out: list[str] = []
        pos = 0
        for i, j in chosen:
            reading = readings[i, j]
            if reading is not None:
                out += [text[pos : matches[i].start()], reading]
                pos = matches[j].end()
        out.append(text[pos:])
        return "".join(out)

    @staticmethod
    def _runs(
        text: str, matches: list[re.Match[str]], spelled: list[list[str] | None]
    ) -> list[tuple[int, int]]:
        """The runs of pinyin words (first and last index) with only spaces between them: punctuation or a word
        that is not pinyin ends a run."""
        runs: list[tuple[int, int]] = []
        i = 0
        while i < len(matches):
            if spelled[i] is None:
                i += 1
                continue
            j = i
            while (
                j + 1 < len(matches)
                and spelled[j + 1] is not None
                and _GAP.fullmatch(text[matches[j].end() : matches[j + 1].start()])
            ):
                j += 1
            runs.append((i, j))
            i = j + 1
        return runs

    @staticmethod
    def _joined(
        text: str,
        matches: list[re.Match[str]],
        runs: list[tuple[int, int]],
        read: set[int],
        only_fuzzy: list[bool],
    ) -> list[tuple[int, int]]:
        """The runs to read (those starting at an index in ``read``), each grown by the words next to it that
        are pinyin only in a fuzzy spelling; two runs that such words join become one."""

        def gap(k: int) -> bool:  # only spaces between words k and k + 1
            return _GAP.fullmatch(text[matches[k].end() : matches[k + 1].start()]) is not None

        out: list[tuple[int, int]] = []
        for i, j in runs:
            if i not in read:
                continue
            while i > 0 and only_fuzzy[i - 1] and gap(i - 1):
                i -= 1
            while j + 1 < len(matches) and only_fuzzy[j + 1] and gap(j):
                j += 1
            if out and out[-1][1] >= i:  # the fuzzy words between two runs grew both
                out[-1] = (out[-1][0], j)
            else:
                out.append((i, j))
        return out


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
