"""The Gradio UI: section rendering, the chat and compare handlers, and a real server answering HTTP."""

import shutil

import pytest

from medtune.serve.webui import render_sections
from tests.conftest import THREE_PART_ANSWER


def test_sections_render_as_headings_and_bold_labels():
    md = render_sections("【紧急提示】请立即拨打120。\n\n" + THREE_PART_ANSWER)
    assert "#### 一、病情分析" in md and "#### 三、治疗建议" in md
    assert "**症状评估**：" in md and "**治疗与生活建议**：" in md
    assert "> 【紧急提示】请立即拨打120。" in md


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model

    from medtune.config import ModelConfig
    from medtune.model.loader import load_model
    from medtune.safety import default_engine
    from medtune.serve.engine import ChatEngine

    model, tok, _ = load_model(ModelConfig(name_or_path=str(tiny_model_dir)))
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    return ChatEngine(model, tok, name="tiny", safety=default_engine())


def test_chat_handler_streams_growing_text_with_disclaimer(engine):
    from medtune.safety import DISCLAIMER
    from medtune.serve.engine import GenerationSettings
    from medtune.serve.webui import chat_handler

    outputs = list(chat_handler(engine, GenerationSettings(max_new_tokens=4))("头疼", [], True))
    assert len(outputs) >= 2
    assert all(b.startswith(a[:10]) for a, b in zip(outputs, outputs[1:]))
    assert DISCLAIMER in outputs[-1]


def test_compare_handler_fills_base_then_tuned(engine):
    from medtune.serve.engine import GenerationSettings
    from medtune.serve.webui import compare_handler

    steps = list(compare_handler(engine, GenerationSettings(max_new_tokens=4))("胸口疼还出冷汗"))
    base, tuned = steps[-1]
    assert base and tuned
    assert base.startswith("> 【紧急提示】") and tuned.startswith("> 【紧急提示】")
    assert steps[0][1] == "", "tuned starts after base is done"


def test_ui_serves_http(engine):
    import httpx

    from medtune.config import Config
    from medtune.serve.webui import build_ui

    demo = build_ui(engine, Config())
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        page = httpx.get(demo.local_url, timeout=30)
        assert page.status_code == 200
        config = httpx.get(demo.local_url.rstrip("/") + "/config", timeout=30).json()
        labels = {c.get("props", {}).get("label") for c in config["components"]}
        assert "使用微调后的模型 (tuned)" in labels and "问题" in labels
    finally:
        demo.close()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package `chromium`)")
def test_a_real_browser_renders_the_ui(engine, tmp_path):
    """Headless Chromium loads the page and runs Gradio's front end: the components appear in the DOM."""
    import subprocess

    from medtune.config import Config
    from medtune.serve.webui import build_ui

    demo = build_ui(engine, Config())
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
    ]  # fmt: skip
    try:
        dom = subprocess.run(
            [CHROMIUM, *flags, "--dump-dom", demo.local_url], capture_output=True, text=True, timeout=120
        ).stdout
    finally:
        demo.close()
    assert "使用微调后的模型 (tuned)" in dom, "the front end did not render the chat tab"
    assert "对比 base vs tuned" in dom and "示例问题" in dom


HOSTILE = [
    "<script>alert(1)</script>",
    "\n一、病情分析\n",
    "<img src=x onerror=alert(document.cookie)>",
    " a & b",
]


def test_model_output_is_rendered_as_text_never_as_html(engine, monkeypatch):
    from medtune.serve.engine import GenerationSettings
    from medtune.serve.webui import chat_handler, compare_handler

    monkeypatch.setattr(engine, "stream", lambda *a, **k: iter(HOSTILE))
    settings = GenerationSettings(max_new_tokens=4)
    shown = list(chat_handler(engine, settings)("头疼", [], True))[-1]
    base, tuned = list(compare_handler(engine, settings)("头疼"))[-1]
    for md in (shown, base, tuned):
        assert "<script" not in md and "<img" not in md
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
        assert "&lt;img src=x onerror=alert(document.cookie)&gt;" in md
        assert "#### 一、病情分析" in md and "a &amp; b" in md
