"""The shared ChatEngine: batched and streamed generation, stop sequences, cancellation, the safety layer.

The API on top of it is tested live in test_api.py."""

import pytest


def settings(n=8):
    from medtune.serve.engine import GenerationSettings

    return GenerationSettings(max_new_tokens=n, temperature=0.0)


def test_generate_is_deterministic_and_reports_cut_offs(engine):
    a = engine.generate(["头疼怎么办", "咳嗽一周"], settings(), batch_size=2)
    b = engine.generate(["头疼怎么办", "咳嗽一周"], settings(), batch_size=1)
    assert [x.text for x in a] == [x.text for x in b], (
        "batching with left padding must not change greedy output"
    )
    assert all(x.num_tokens <= 8 for x in a)
    assert all(x.finished or x.num_tokens == 8 for x in a)


def test_mixed_batch_compare_equals_separate_generation(engine):
    questions = ["头疼怎么办", "孩子发烧38度"]
    base, tuned = engine.generate_compare(questions, settings(), batch_size=4)
    assert [a.text for a in base] == [
        a.text for a in engine.generate(questions, settings(), use_adapter=False)
    ]
    assert [a.text for a in tuned] == [
        a.text for a in engine.generate(questions, settings(), use_adapter=True)
    ]


def test_stream_yields_the_same_text_as_generate(engine):
    streamed = "".join(engine.stream("胃疼", settings=settings()))
    assert streamed.strip() == engine.generate(["胃疼"], settings())[0].text


def test_loss_is_lower_for_nothing_and_finite(engine):
    from medtune.data.schema import QARecord

    loss = engine.loss([QARecord("a", "头疼", "多休息")])
    assert 0 < loss < 50


def test_stop_sequences_are_found_across_pieces_and_text_before_them_streams():
    from medtune.serve.engine import _until_stop

    seen = []
    out = list(
        _until_stop(["一、病", "情分", "析 <", "|x", "|> 后面"], ["<|x|>", "zz"], lambda: seen.append(1))
    )
    assert "".join(out) == "一、病情分析 " and seen == [1]
    assert list(_until_stop(["ab", "c"], [], lambda: None)) == ["ab", "c"]
    assert "".join(_until_stop(["abc", "def"], ["zz"], lambda: None)) == "abcdef"
    assert list(_until_stop(["stop here"], ["stop"], lambda: None)) == []


def test_a_stream_reports_length_stop_and_cancellation(engine):
    from dataclasses import replace

    from medtune.serve.engine import StreamControl

    control = StreamControl()
    text = "".join(engine.stream("胃疼", settings=settings(6), control=control))
    assert control.finish_reason == "length" and control.completion_tokens == 6
    control = StreamControl()
    cut = "".join(engine.stream("胃疼", settings=replace(settings(6), stop=(text[2:4],)), control=control))
    assert cut == text[: text.index(text[2:4])] and control.finish_reason == "stop"

    control = StreamControl()
    pieces = engine.stream("胃疼", settings=settings(5000), control=control)
    next(pieces)
    control.cancel.set()
    rest = list(pieces)
    assert control.finish_reason == "cancelled" and control.completion_tokens < 100, len(rest)


def test_a_consumer_that_stops_reading_stops_the_model(engine):
    import time

    pieces = engine.stream("胃疼", settings=settings(5000))
    next(pieces)
    start = time.perf_counter()
    pieces.close()  # joins the generation thread, which must notice and stop
    assert time.perf_counter() - start < 5
    assert engine._lock.acquire(timeout=1), "the model is still generating for nobody"
    engine._lock.release()


@pytest.fixture
def safe_engine(engine):
    from medtune.safety import default_engine
    from medtune.serve.engine import ChatEngine

    return ChatEngine(engine.model, engine.tokenizer, name="tiny", safety=default_engine())


def test_red_flag_question_gets_the_emergency_banner_first(safe_engine):
    pieces = list(safe_engine.reply_stream("我爸突然胸口剧痛，满头大汗，左胳膊也疼", settings=settings(4)))
    assert pieces[0].startswith("【紧急提示】") and "120" in pieces[0]
    from medtune.safety import DISCLAIMER

    assert "".join(pieces).rstrip().endswith(DISCLAIMER)


def test_ordinary_question_has_no_banner_but_a_disclaimer(safe_engine):
    from medtune.safety import DISCLAIMER

    text = safe_engine.reply("最近有点失眠，入睡困难", settings=settings(4))
    assert "【紧急提示】" not in text and text.rstrip().endswith(DISCLAIMER)


def test_block_policy_replaces_dangerous_answers(safe_engine, monkeypatch):
    from medtune.safety import BLOCKED_TEXT

    safe_engine.safety_policy = "block"
    monkeypatch.setattr(safe_engine, "stream", lambda *a, **k: iter(["可以给孩子吃阿司匹林退烧。"]))
    text = safe_engine.reply("孩子3岁发烧39度怎么办", settings=settings(4))
    assert BLOCKED_TEXT in text and "阿司匹林退烧" not in text


def test_annotate_policy_keeps_the_answer_and_adds_a_note(safe_engine, monkeypatch):
    safe_engine.safety_policy = "annotate"
    monkeypatch.setattr(safe_engine, "stream", lambda *a, **k: iter(["可以给孩子吃", "阿司匹林退烧。"]))
    pieces = list(safe_engine.reply_stream("孩子3岁发烧39度怎么办", settings=settings(4)))
    text = "".join(pieces)
    assert "可以给孩子吃阿司匹林退烧。" in text and "【安全提示】" in text
    assert pieces[:2] == ["可以给孩子吃", "阿司匹林退烧。"], "the answer streams as it is generated"


def test_history_is_fed_back_without_serving_annotations(safe_engine):
    from medtune.safety import DISCLAIMER

    history = [
        {"role": "user", "content": "胸痛出汗"},
        {
            "role": "assistant",
            "content": f"【紧急提示】请立即拨打120。\n\n一、病情分析\n考虑心梗可能\n\n{DISCLAIMER}",
        },
    ]
    prompt = safe_engine.prompt_text("还需要注意什么", history)
    assert "一、病情分析\n考虑心梗可能" in prompt
    assert "【紧急提示】" not in prompt and DISCLAIMER not in prompt


class _SeesAnEmergency:
    """A stand-in second opinion (the real one is tested against the fake OpenAI server in tests/safety)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def triage(self, question, flags):
        from medtune.safety import RedFlag

        self.asked.append(question)
        if flags:
            return list(flags)
        return [
            RedFlag(
                "second_opinion",
                "模型复核提示可能属于急症",
                "emergency_department",
                "请立即前往急诊。",
                "",
                "",
            )
        ]


def test_second_opinion_adds_a_banner_the_rules_missed_and_is_not_asked_when_they_flag(
    safe_engine, monkeypatch
):
    from medtune.safety import DISCLAIMER, default_engine

    # the premise: neither the rules nor the learned layer flag this question, so only the opinion can
    assert default_engine().triage("嗓子怪怪的好几天了") == []
    opinion = _SeesAnEmergency()
    safe_engine.second_opinion = opinion
    monkeypatch.setattr(safe_engine, "stream", lambda *a, **k: iter(["多喝水，注意休息。"]))
    try:
        pieces = list(safe_engine.reply_stream("嗓子怪怪的好几天了", settings=settings(4)))
        assert pieces[0].startswith("【紧急提示】") and "急诊" in pieces[0]
        text = "".join(pieces)
        assert text.count("多喝水，注意休息。") == 1 and text.rstrip().endswith(DISCLAIMER)
        safe_engine.reply("我爸突然胸口剧痛，满头大汗", settings=settings(4))
        assert opinion.asked == ["嗓子怪怪的好几天了"]
    finally:
        safe_engine.second_opinion = None
