"""Bad input: empty, huge, binary-looking, mixed-script and emoji text gets a result fast, never a crash."""

from __future__ import annotations

import random
import time

import pytest

from medtune.safety import SafetyEngine, default_engine
from medtune.safety.engine import MAX_SCAN_CHARS

MB = 1_000_000
LIMIT_S = 0.5


@pytest.fixture(scope="module")
def engine() -> SafetyEngine:
    engine = default_engine()
    # What a first check pays once (the pinyin lexicon, read on the first Latin letter; regexes compiled on first
    # use) is start-up, not the cost of an input: the limit is on what each text costs.
    engine.check("wo ba ba xiong kou teng, 38.5度, 胸口疼", "可以吃布洛芬 ibuprofen 200mg")
    return engine


def _adversarial() -> dict[str, str]:
    rng = random.Random(13)
    return {
        "empty": "",
        "whitespace": " \n\t" * 1000,
        "chinese_red_flags": ("我爸突然胸口疼，满头大汗，" * 90_000)[:MB],
        "one_digit_run": "1" * MB,
        "digits_and_dots": "38.5." * (MB // 5),
        "regex_gap_bait": "胸口" + "痛" * MB,
        "commas": "，" * MB,
        "prefix_repeats": "吃了" * (MB // 2),
        "emoji": "😀🚑💊" * (MB // 3),
        "binary_as_latin1": bytes(rng.randrange(256) for _ in range(MB)).decode("latin-1"),
        "control_chars": "".join(chr(rng.randrange(32)) for _ in range(MB)),
        "mixed_scripts": ("血压200/120 ﾃｽﾄ тест 頭暈 ３９度８ " * 40_000)[:MB],
        "surrogate_escape": "胸痛\udcff出汗" * 1000,
    }


@pytest.mark.parametrize("name", sorted(_adversarial()))
def test_adversarial_text_is_checked_within_the_time_limit(engine: SafetyEngine, name: str) -> None:
    text = _adversarial()[name]
    start = time.perf_counter()
    report = engine.check(text, text)
    elapsed = time.perf_counter() - start
    assert elapsed < LIMIT_S, f"{name}: {elapsed:.2f} s"
    assert report.truncated == (len(text) > MAX_SCAN_CHARS)


def test_a_red_flag_at_the_end_of_a_huge_question_is_still_found(engine: SafetyEngine) -> None:
    question = "你好。" * 400_000 + "我爸突然胸口疼，满头大汗"
    assert engine.triage(question)


def test_empty_text_gets_an_empty_result(engine: SafetyEngine) -> None:
    report = engine.check("", "")
    assert report.flags == () and report.findings == () and not report.referral


def test_traditional_characters_and_worded_temperatures_are_read(engine: SafetyEngine) -> None:
    assert engine.triage("我爸突然胸口疼，滿頭大汗")
    assert {f.category for f in engine.triage("宝宝出生四十天，发烧三十八度五")} == {"infant_fever"}


def test_bytes_are_refused_with_a_clear_error(engine: SafetyEngine) -> None:
    with pytest.raises(TypeError, match="str"):
        engine.triage("胸痛".encode())  # type: ignore[arg-type]
