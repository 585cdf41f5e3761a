"""Questions typed in pinyin are read in characters before the rules and the model see them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medtune.cli import main as cli_main
from medtune.safety import SafetyEngine
from medtune.safety.pinyin import (
    PACKAGED_LEXICON,
    PinyinLexicon,
    build_counts,
    load_counts,
    read_pinyin,
    save_counts,
)
from medtune.safety.rules import normalize


@pytest.fixture(scope="module")
def pypinyin() -> None:
    """The builder's dependency (the dev extra); reading the packaged lexicon needs none."""
    pytest.importorskip("pypinyin")


TEXTS = [
    "我爸爸胸口很痛，出了很多汗。",
    "胸口痛要打120，胸口痛不能等。",
    "妈妈倒下了，叫不醒，叫不醒怎么办",
    "孩子发烧，发烧39度，发烧两天",
    "晚上睡觉前觉得头疼，头疼，睡觉，觉得",
    "我的狗吃了巧克力，狗吃了巧克力",
] * 5


@pytest.fixture(scope="module")
def toy(pypinyin: None) -> PinyinLexicon:
    return PinyinLexicon.from_counts(build_counts(TEXTS, min_count=2))


def test_a_run_of_pinyin_is_read_as_the_most_probable_words(toy: PinyinLexicon) -> None:
    assert toy.read("wo ba ba xiong kou hen tong") == "我爸爸胸口很痛"
    assert toy.read("mama daoxia le, jiao bu xing") == "妈妈倒下了, 叫不醒"  # run together; punctuation kept
    assert toy.read("xiong3 kou3 tong4") == "胸口痛"  # tone digits
    assert toy.read("wo de gou chi le qiao ke li") == "我的狗吃了巧克力"
    assert toy.read("孩子 fa shao 39du") == "孩子 发烧 39度"  # a temperature in pinyin


def test_english_and_lone_words_stay_as_they_are(toy: PinyinLexicon) -> None:
    for text in ("he can go home", "the ct scan was fine", "ibuprofen 400mg", "tong", "a"):
        assert toy.read(text) == text
    # pinyin around English is read where three syllables stand together
    assert toy.read("wo ba ba chest pain hen tong") == "我爸爸 chest pain 很痛"
    # interjection syllables are not syllables here: "mg" and "n" stay
    assert "m" not in toy.syllables and "n" not in toy.syllables


def test_the_lexicon_keeps_each_words_own_reading(tmp_path: Path, pypinyin: None) -> None:
    """觉 reads jiao in 睡觉 and jue in 觉得: the file stores the characters' default readings and the words
    that read otherwise, and loads back to the same lexicon."""
    counts = build_counts(TEXTS, min_count=2)
    assert counts["shui jiao"][0] == "睡觉" and counts["jue de"][0] == "觉得"
    path = save_counts(counts, tmp_path / "lex.json.xz")
    assert not list(tmp_path.glob("*.tmp"))
    assert load_counts(path) == counts
    assert (
        PinyinLexicon.from_counts(load_counts(path)).read("shui jiao qian jue de tou teng")
        == "睡觉前觉得头疼"
    )


def test_the_builder_reads_jsonl_and_refuses_held_out_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pypinyin: None
) -> None:
    dev = tmp_path / "dev.jsonl"
    dev.write_text(
        "\n".join(json.dumps({"question": t, "answer": "快打120"}, ensure_ascii=False) for t in TEXTS) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "lex.json.xz"
    assert cli_main(["safety", "pinyin", str(dev), "--out", str(out), "--min-count", "2"]) == 0
    assert "words from 1 files" in capsys.readouterr().out
    assert PinyinLexicon.from_counts(load_counts(out)).read("kuai da 120") == "快打 120"
    frozen = tmp_path / "frozen.jsonl"
    frozen.write_text('{"question": "胸口痛", "answer": "", "split": "frozen-r9"}\n', encoding="utf-8")
    assert cli_main(["safety", "pinyin", str(frozen), "--out", str(out)]) == 2
    assert "frozen.jsonl: holds held-out records (split frozen-r9)" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "胸口痛"}\n{"question": \n', encoding="utf-8")
    assert cli_main(["safety", "pinyin", str(broken), "--out", str(out)]) == 2
    assert "broken.jsonl:2: invalid JSON" in capsys.readouterr().err


def test_the_packaged_lexicon_lets_the_engine_read_a_pinyin_emergency() -> None:
    question = "wo ba ba xiong kou teng de li hai, chu le hen duo han, zen me ban"
    assert "胸口疼" in read_pinyin(question) and "出了很多汗" in normalize(question)
    engine = SafetyEngine.load(model=None)  # the rules alone: they read Chinese phrases only
    report = engine.check(question, "多喝热水，明天再看。")
    assert [f.category for f in report.flags] == ["chest_pain"]
    assert "dismissive" in {f.kind for f in report.findings}
    # the same words without a red flag stay calm
    assert not engine.check("wo ba ba zuo tian ti jian, yi sheng shuo xin zang mei wen ti", "").flags
    # plain English is left alone by the normalisation
    assert normalize("He can go home") == "he can go home"


def test_the_packaged_lexicon_is_rebuilt_from_the_dev_set_and_rules(tmp_path: Path, pypinyin: None) -> None:
    """The shipped lexicon is what `medtune safety pinyin` builds from the dev set and the rules file: a dev
    round or a rule change that forgot to rebuild it fails here."""
    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "data" / "safety").glob("labelled*.jsonl"))
    rules = root / "src" / "medtune" / "safety" / "rules.yaml"
    out = tmp_path / "lexicon.json.xz"
    assert cli_main(["safety", "pinyin", *map(str, files), str(rules), "--out", str(out)]) == 0
    assert out.read_bytes() == PACKAGED_LEXICON.read_bytes()


def test_the_rules_phrases_are_written_in_characters() -> None:
    """Inputs are read out of pinyin, the rules' own phrases are not (so the lexicon is not loaded at every start):
    a phrase written in pinyin could then never match. Every string of the rules file reads the same either way."""
    rules = Path(__file__).resolve().parents[2] / "src" / "medtune" / "safety" / "rules.yaml"

    def strings(node: object) -> list[str]:
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    texts = strings(yaml.safe_load(rules.read_text(encoding="utf-8")))
    assert len(texts) > 10_000
    assert [t for t in texts if read_pinyin(t.lower()) != t.lower()] == []
    assert read_pinyin("xiong kou teng") != "xiong kou teng"  # and the test sees pinyin when it is there


# ------------------------------------------------------------------------------------------------ fuzzy pinyin
def test_fuzzy_keys_join_exactly_the_merges_of_fuzzy_pinyin() -> None:
    from medtune.safety.pinyin import fuzzy_key

    merged = (
        "zhi zi, chuan cuan, shang sang shan san, nan lan ran rang, hu fu, huang huan, teng ten, jiang jian"
    )
    for group in merged.split(", "):
        assert len({fuzzy_key(s) for s in group.split()}) == 1, group
    apart = "zhi ji, si xi, fa ha, tong teng, xiong xing, bin pin, e n, ng n"
    for pair in apart.split(", "):
        a, b = pair.split()
        assert fuzzy_key(a) != fuzzy_key(b), pair


def test_a_fuzzy_spelling_is_read_where_no_exact_word_explains_it(toy: PinyinLexicon) -> None:
    """zh/z, ch/c, sh/s, n/l, r/l, hu/fu and -n/-ng typed as one: a span of syllables with no word of its own is
    read by the most probable word that sounds the same up to those merges."""
    assert toy.read("wo de gou ci le qiao ke li") == "我的狗吃了巧克力"  # ci for chi (not a syllable here)
    assert toy.read("mama daoxia le, jiao bu xin") == "妈妈倒下了, 叫不醒"  # xin for xing
    assert toy.read("hai zi fa sao 39du") == "孩子发烧 39度"  # sao for shao
    assert toy.read("sui jiao qian jue de tou ten") == "睡觉前觉得头疼"  # "ten": a syllable only fuzzily
    # exact spellings read as before
    assert toy.read("wo ba ba xiong kou hen tong") == "我爸爸胸口很痛"
    assert toy.read("shui jiao qian jue de tou teng") == "睡觉前觉得头疼"


def test_fuzzy_only_syllables_join_a_run_but_are_no_evidence(toy: PinyinLexicon) -> None:
    """ "ten", "fun" and "tin" are syllables only in fuzzy pinyin and English words: they are read inside a run of
    pinyin and never make one."""
    assert toy.syllabify("ten") is None and toy.syllabify("ten", fuzzy=True) == ["ten"]
    assert toy.read("xiong kou ten") == "胸口疼"
    assert toy.read("wo ba ba xiong kou ten, hen tong") == "我爸爸胸口疼, 很痛"
    for text in ("ten min", "he can go home", "i have a fun time", "ten", "the ct scan was fine"):
        assert toy.read(text) == text
    assert toy.read("ten, xiong kou hen tong") == "ten, 胸口很痛"  # punctuation keeps it out


def test_the_fuzzy_index_is_built_only_when_a_fuzzy_word_could_win(toy: PinyinLexicon) -> None:
    """Exact readings whose every span has a word, or is read well enough without one, never build the index;
    and skipping it never changes a reading (the bound in `_fuzzy_could_win` is safe)."""
    from pypinyin import Style, lazy_pinyin

    fresh = PinyinLexicon.from_counts(build_counts(TEXTS, min_count=2))
    assert fresh.read("wo ba ba xiong kou hen tong") == "我爸爸胸口很痛"
    assert fresh.read("he can go home") == "he can go home"
    assert "_fuzzy_index" not in fresh.__dict__
    assert fresh.read("wo ba ba xiong kou ten") == "我爸爸胸口疼"
    assert "_fuzzy_index" in fresh.__dict__

    class Always(PinyinLexicon):
        def _fuzzy_could_win(self, spans: list[list[tuple[str, float] | None]]) -> bool:
            return True

    always = Always(toy.words, toy.syllables, toy.longest_syllable)
    skipped = 0
    for text in dict.fromkeys(TEXTS):
        syllables = lazy_pinyin("".join(c for c in text if "\u4e00" <= c <= "\u9fff"), style=Style.NORMAL)
        for i in range(len(syllables)):
            for j in range(i + 1, min(len(syllables), i + 8) + 1):
                part = syllables[i:j]
                spans = [
                    [toy.words.get(" ".join(part[a : a + k])) for k in range(1, min(4, len(part) - a) + 1)]
                    for a in range(len(part))
                ]
                if not toy._fuzzy_could_win(spans):
                    skipped += 1
                    assert always.hanzi(part) == toy.hanzi(part), part
    assert skipped > 50


def test_the_packaged_lexicon_reads_emergencies_typed_in_fuzzy_pinyin() -> None:
    engine = SafetyEngine.load(model=None)
    cases = [
        ("wo ba xiong kou teng, cuan bu sang qi", "喘不上气", "breathing"),
        ("wo xiang zi sa", "自杀", "suicide_self_harm"),
        (
            "ta suai dao le, yun guo qu le, jiao bu xin",
            "摔倒",
            "unconscious",
        ),  # suai: one syllable, not su ai
    ]
    for question, words, category in cases:
        assert words in read_pinyin(question), question
        assert category in {f.category for f in engine.triage(question)}, question
    # exact pinyin reads as it did, and English stays English
    assert read_pinyin("xiong kou teng, chu le hen duo han") == "胸口疼, 出了很多汗"
    assert read_pinyin("ten, wo tou ten") == "ten, 我头疼"
    assert read_pinyin("ten minutes ago he had a fun time") == "ten minutes ago he had a fun time"
