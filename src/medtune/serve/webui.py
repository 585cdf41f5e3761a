"""``medtune serve``: the Gradio web chat on port 7860, on the shared ChatEngine.

Two tabs: a streaming chat (tuned model by default, base at a click) whose answers are rendered with
their three sections as headings, and a side-by-side view where base and tuned answer the same question.
Every reply goes through the safety layer (emergency banner first, notes, disclaimer).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator

from medtune.config import Config
from medtune.data.structure import NOTICE_MARKERS, SECTION_TITLES, SUBLABELS
from medtune.serve.engine import ChatEngine, GenerationSettings

logger = logging.getLogger(__name__)

EXAMPLES = [
    "孩子3岁，发烧38.5度一天了，精神还可以，需要马上去医院吗？",
    "女，35岁，最近胃老是反酸烧心，晚上躺下更明显，怎么办",
    "我爸65岁，早上起来说话不清楚，右手拿不住筷子",
]

_HEADING = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*)?([一二三]、\s*(?:" + "|".join(SECTION_TITLES) + r")[^\n]*?)(?:\*\*)?\s*$", re.M
)
_LABEL = re.compile(r"^(\s*)(" + "|".join(SUBLABELS) + r")[:：]", re.M)
_NOTICE = re.compile(r"^((?:" + "|".join(map(re.escape, NOTICE_MARKERS)) + r").*)$", re.M)


def render_sections(text: str) -> str:
    """Markdown for the chat window: section headings, bold sub-labels, notices as quotes.

    The model's text is escaped first: it is shown as text, and markup in an answer (``<script>``, an
    ``<img onerror=...>``, whether the model made it up or a question coaxed it out) never reaches the page
    as HTML. Gradio's own sanitiser stays on as a second line.
    """
    text = html.escape(text, quote=False)
    text = _HEADING.sub(lambda m: f"#### {m.group(1).strip()}", text)
    text = _LABEL.sub(lambda m: f"{m.group(1)}**{m.group(2)}**：", text)
    return _NOTICE.sub(lambda m: f"> {m.group(1)}", text)


def _history_messages(history: list) -> list[dict[str, str]]:
    out = []
    for item in history or []:
        if isinstance(item, dict) and item.get("role") in ("user", "assistant"):
            content = item.get("content")
            if isinstance(content, str):
                out.append({"role": item["role"], "content": content})
    return out


def chat_handler(engine: ChatEngine, settings: GenerationSettings):
    def respond(message: str, history: list, use_tuned: bool) -> Iterator[str]:
        text = ""
        for piece in engine.reply_stream(
            message, _history_messages(history), settings, use_adapter=use_tuned
        ):
            text += piece
            yield render_sections(text)

    return respond


def compare_handler(engine: ChatEngine, settings: GenerationSettings):
    def compare(question: str) -> Iterator[tuple[str, str]]:
        question = (question or "").strip()
        if not question:
            yield "", ""
            return
        base = ""
        for piece in engine.reply_stream(question, None, settings, use_adapter=False):
            base += piece
            yield render_sections(base), ""
        tuned = ""
        for piece in engine.reply_stream(question, None, settings, use_adapter=True):
            tuned += piece
            yield render_sections(base), render_sections(tuned)

    return compare


def build_ui(engine: ChatEngine, cfg: Config):
    import gradio as gr

    settings = GenerationSettings(cfg.serve.max_new_tokens, cfg.serve.temperature, cfg.serve.top_p)
    with gr.Blocks(title="medtune 医疗问答") as demo:
        gr.Markdown(
            f"## medtune 医疗问答助手\n模型：{engine.name}。内容仅供健康科普参考，不能替代医生面诊；急症请立即拨打120。"
        )
        with gr.Tab("问诊"):
            use_tuned = gr.Checkbox(
                value=engine.has_adapter, label="使用微调后的模型 (tuned)", interactive=engine.has_adapter
            )
            chat = gr.ChatInterface(chat_handler(engine, settings), additional_inputs=[use_tuned])
            gr.Examples(EXAMPLES, inputs=chat.textbox, label="示例问题")
        with gr.Tab("对比 base vs tuned", visible=engine.has_adapter):
            question = gr.Textbox(label="问题", placeholder=EXAMPLES[0], lines=2)
            ask = gr.Button("同时询问两个模型", variant="primary")
            with gr.Row():
                base_out = gr.Markdown(label="base", elem_id="base-answer")
                tuned_out = gr.Markdown(label="tuned", elem_id="tuned-answer")
            ask.click(compare_handler(engine, settings), inputs=question, outputs=[base_out, tuned_out])
            gr.Examples(EXAMPLES, inputs=question)
    return demo


def serve_webui(cfg: Config, engine: ChatEngine | None = None) -> None:
    engine = engine or ChatEngine.from_config(cfg)
    demo = build_ui(engine, cfg)
    logger.info("web UI on http://%s:%d", cfg.serve.host, cfg.serve.port)
    # The engine batches concurrent answers, so the UI lets as many generate at once as the batch holds and
    # keeps a bounded line behind them, like the API's admission.
    demo.queue(default_concurrency_limit=cfg.serve.max_concurrent, max_size=cfg.serve.max_queue)
    demo.launch(server_name=cfg.serve.host, server_port=cfg.serve.port)
