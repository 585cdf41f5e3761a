"""Bad input: empty, huge, binary-looking, mixed-script and emoji text gets a result fast, never a crash."""

from __future__ import annotations

import random
import time

import pytest

from medtune.safety import SafetyEngine, default_engine
from medtune.safety.engine import MAX_SCAN_CHARS

MB = 1_000_000
LIMIT_S = 0.5
# A catastrophic backtrack costs seconds or hours, hundreds of times what a plain text costs; a slower or busier
# machine (CI ran prefix_repeats at 0.57 s where it costs 0.22 s here) slows every text alike. So the limit is
# 0.5 s or SLOWDOWN times a plain text of the same size measured beside it, whichever is larger, and the fastest
# of three tries counts.
SLOWDOWN = 5
TRIES = 3


@pytest.fixture(scope="module")
def engine() -> SafetyEngine:
    engine = default_engine()
    # What a first check pays once (the pinyin lexicon, read on the first Latin letter; regexes compiled on first
    # use) is start-up, not the cost of an input: the limit is on what each text costs.
    engine.check("wo ba ba xiong kou teng, 38.5度, 胸口疼", "可以吃布洛芬 ibuprofen 200mg")
    return engine


def _fastest(engine: SafetyEngine, text: str, under: float = 0.0) -> float:
    best = float("inf")
    for _ in range(TRIES):
        start = time.perf_counter()
        engine.check(text, text)
        best = min(best, time.perf_counter() - start)
        if best < under:
            break
    return best


@pytest.fixture(scope="module")
def limit_s(engine: SafetyEngine) -> float:
    plain = ("今天天气不错，我们去公园散步。" * 70_000)[:MB]
    return max(LIMIT_S, SLOWDOWN * _fastest(engine, plain))


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
def test_adversarial_text_is_checked_within_the_time_limit(
    engine: SafetyEngine, limit_s: float, name: str
) -> None:
    text = _adversarial()[name]
    elapsed = _fastest(engine, text, under=limit_s)
    assert elapsed < limit_s, f"{name}: {elapsed:.2f} s, limit {limit_s:.2f} s"
    assert engine.check(text, text).truncated == (len(text) > MAX_SCAN_CHARS)


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
