"""The shared ChatEngine, and the OpenAI-compatible API on top of it (driven with the real openai client)."""

import threading

import pytest
import torch


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from medtune.config import ModelConfig
    from medtune.model.loader import load_model
    from medtune.serve.engine import ChatEngine

    model, tok, _ = load_model(ModelConfig(name_or_path=str(tiny_model_dir)))
    torch.manual_seed(0)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    return ChatEngine(peft_model, tok, name="tiny")


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


@pytest.fixture(scope="module")
def api_url(engine):
    import uvicorn

    from medtune.config import Config
    from medtune.serve.api import create_app

    config = uvicorn.Config(create_app(engine, Config()), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=5)


def test_openai_client_gets_a_completion(api_url, engine):
    from openai import OpenAI

    client = OpenAI(base_url=api_url, api_key="unused-locally")
    reply = client.chat.completions.create(
        model="medtune", messages=[{"role": "user", "content": "胃疼"}], max_tokens=8, temperature=0
    )
    assert reply.choices[0].message.content.strip() == engine.generate(["胃疼"], settings())[0].text
    assert reply.usage.completion_tokens > 0
    models = [m.id for m in client.models.list().data]
    assert models == ["medtune", "medtune:base"]


def test_openai_client_streams(api_url):
    from openai import OpenAI

    client = OpenAI(base_url=api_url, api_key="unused-locally")
    stream = client.chat.completions.create(
        model="medtune:base", messages=[{"role": "user", "content": "咳嗽"}], max_tokens=6, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) >= 2


def test_api_rejects_a_conversation_not_ending_with_the_user(api_url):
    import httpx

    r = httpx.post(f"{api_url}/chat/completions", json={"messages": [{"role": "assistant", "content": "hi"}]})
    assert r.status_code == 400 and "end with a user message" in r.text


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
