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


def test_compare_handler_streams_base_and_tuned_at_once_with_the_answers_of_each_alone(engine):
    from medtune.serve.engine import GenerationSettings
    from medtune.serve.webui import compare_handler

    settings = GenerationSettings(max_new_tokens=8, temperature=0.0)
    question = "胸口疼还出冷汗"
    steps = list(compare_handler(engine, settings)(question))
    base, tuned = steps[-1]
    assert base.startswith("> 【紧急提示】") and tuned.startswith("> 【紧急提示】")
    # Greedy rows batched together answer as each would alone.
    alone = [
        render_sections(engine.reply(question, None, settings, use_adapter=use)) for use in (False, True)
    ]
    assert [base, tuned] == alone


def test_compare_handler_runs_both_streams_concurrently(engine, monkeypatch):
    import threading
    import time

    from medtune.serve.engine import GenerationSettings
    from medtune.serve.webui import compare_handler

    active, most = [0], [0]
    lock = threading.Lock()

    def slow(question, history=None, settings=None, use_adapter=True, control=None):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            for word in ("一、", "病情", "分析"):
                time.sleep(0.05)
                yield f"{word}{'T' if use_adapter else 'B'}"
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(engine, "stream", slow)
    steps = list(compare_handler(engine, GenerationSettings(max_new_tokens=4))("头疼"))
    assert most[0] == 2, "base and tuned generate at the same time"
    first_tuned = next(i for i, (_, t) in enumerate(steps) if t)
    assert steps[first_tuned][0] != steps[-1][0], "tuned text appears before base is done"
    assert "分析T" in steps[-1][1] and "分析B" in steps[-1][0]


def test_leaving_the_compare_tab_cancels_both_rows(engine, monkeypatch):
    from medtune.serve.engine import GenerationSettings
    from medtune.serve.webui import compare_handler

    controls = []

    def endless(question, history=None, settings=None, use_adapter=True, control=None):
        controls.append(control)
        while not control.cancel.wait(0.01):
            yield "字"

    monkeypatch.setattr(engine, "stream", endless)
    steps = compare_handler(engine, GenerationSettings(max_new_tokens=4))("头疼")
    next(steps)
    steps.close()  # Gradio closes the generator when the visitor leaves
    assert len(controls) == 2 and all(c.cancel.is_set() for c in controls)


@pytest.fixture
def store(tmp_path):
    from medtune.serve.feedback import FeedbackStore

    return FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")


def test_ui_serves_http(engine, store):
    import httpx

    from medtune.config import Config
    from medtune.serve.webui import build_ui

    demo = build_ui(engine, Config(), store)
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
def test_a_real_browser_renders_the_ui(engine, tmp_path, store):
    """Headless Chromium loads the page and runs Gradio's front end: the components appear in the DOM."""
    import subprocess

    from medtune.config import Config
    from medtune.serve.webui import build_ui

    demo = build_ui(engine, Config(), store)
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


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package `chromium`)")
def test_a_browser_asks_sees_the_streamed_sections_and_rates_the_answer(engine, tmp_path, store, monkeypatch):
    """Playwright drives the system Chromium: ask in Chinese, watch the answer stream in with its section
    headings, thumbs up, add a comment, and find the rating in the database. Screenshot in tmp_path."""
    sync_api = pytest.importorskip("playwright.sync_api")
    import time

    from medtune.config import Config
    from medtune.serve.webui import build_ui

    def slow_answer(*args, **kwargs):
        for line in THREE_PART_ANSWER.splitlines(keepends=True):
            time.sleep(0.1)  # slow enough for the page to show a partial answer
            yield line

    monkeypatch.setattr(engine, "stream", slow_answer)
    demo = build_ui(engine, Config(), store)
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(demo.local_url, timeout=60_000)
            box = page.get_by_placeholder("Type a message...").or_(page.locator("textarea").first).first
            box.fill("孩子发烧38.5度一天了，需要去医院吗？")
            box.press("Enter")
            bot = page.locator(".message.bot, [data-testid='bot']").last
            bot.wait_for(timeout=60_000)
            partial = bot.inner_text(timeout=30_000)
            page.locator("h4", has_text="三、治疗建议").first.wait_for(timeout=60_000)
            page.get_by_text("免责声明").or_(page.get_by_text("仅供")).first.wait_for(timeout=60_000)
            final = bot.inner_text()
            assert "一、病情分析" in final and len(partial) < len(final), "the answer did not stream in"
            page.locator("button[aria-label='Like'], button[title='Like']").last.click()
            page.get_by_text("已记录").first.wait_for(timeout=30_000)
            page.locator("#feedback-comment textarea").fill("回答很清楚，我的电话是13812345678")
            page.locator("#feedback-send").click()
            page.get_by_text("意见已保存").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "webui.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    [row] = store.all()
    assert row.question == "孩子发烧38.5度一天了，需要去医院吗？" and row.rating == 1
    assert row.answer.startswith(THREE_PART_ANSWER.strip()[:20]), repr(row.answer[-300:])
    assert "13812345678" not in row.comment
    assert (tmp_path / "webui.png").stat().st_size > 10_000
