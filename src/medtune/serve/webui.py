"""``medtune serve``: the Gradio web chat on port 7860, on the shared ChatEngine.

Two tabs: a streaming chat (tuned model by default, base at a click) whose answers are rendered with
their three sections as headings, and a side-by-side view where base and tuned answer the same question.
Every reply goes through the safety layer (emergency banner first, notes, disclaimer). Each answer in the
chat can be rated (thumbs up/down) and commented on; ratings go to the feedback store (serve.feedback_url,
scrubbed of personal data) for ``medtune feedback export``. With ``serve.remote_url`` the answers come from
an OpenAI-compatible server (a vLLM deployment) instead of a model loaded here.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from medtune.config import Config
from medtune.data.structure import NOTICE_MARKERS, SECTION_TITLES, SUBLABELS
from medtune.serve.engine import ChatEngine, GenerationSettings, StreamControl
from medtune.serve.feedback import Feedback, FeedbackStore, feedback_url

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


class RawAnswers:
    """What the model said behind each answer shown (the chat holds the rendered Markdown), for feedback.

    Bounded: a rating normally follows its answer within minutes; an older one falls back to the shown text.
    """

    def __init__(self, size: int = 2048):
        self._map: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    @staticmethod
    def _key(shown: str) -> str:
        # The chat hands the message back with its whitespace normalised; compare without any.
        return re.sub(r"\s+", "", shown)

    def put(self, shown: str, raw: str) -> None:
        shown = self._key(shown)
        with self._lock:
            self._map[shown] = raw
            self._map.move_to_end(shown)
            while len(self._map) > self._size:
                self._map.popitem(last=False)

    def get(self, shown: str) -> str:
        with self._lock:
            return self._map.get(self._key(shown), shown)


def _content_text(content: Any) -> str:
    """A chat message's text, whether Gradio hands it over as a string or as a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    if isinstance(content, list):
        return "".join(_content_text(part) for part in content)
    return ""


def chat_handler(engine: ChatEngine, settings: GenerationSettings, answers: RawAnswers | None = None):
    def respond(message: str, history: list, use_tuned: bool) -> Iterator[str]:
        text = ""
        for piece in engine.reply_stream(
            message, _history_messages(history), settings, use_adapter=use_tuned
        ):
            text += piece
            yield render_sections(text)
        if answers is not None:
            answers.put(render_sections(text), text)

    return respond


def feedback_handler(
    engine: ChatEngine, store: FeedbackStore, settings: GenerationSettings, answers: RawAnswers
):
    """The chat's like/dislike listener: stores the rated answer with its question; returns the row id."""

    def on_like(history: list, use_tuned: bool, data) -> tuple[str, int | None]:
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        messages = [m if isinstance(m, dict) else dataclasses.asdict(m) for m in history or []]
        if not 0 <= index < len(messages) or messages[index].get("role") != "assistant":
            return "", None
        question = next(
            (_content_text(m["content"]) for m in reversed(messages[:index]) if m.get("role") == "user"), ""
        )
        # The event's own value is the message as shown; the chat's value can lag behind the stream.
        shown = _content_text(data.value) or _content_text(messages[index]["content"])
        answer = answers.get(shown)
        model = f"{engine.name} ({'tuned' if use_tuned and engine.has_adapter else 'base'})"
        row = store.add(
            Feedback(question, answer, 1 if data.liked else -1, model, dataclasses.asdict(settings))
        )
        return ("👍 已记录，谢谢！" if data.liked else "👎 已记录，可在下方补充意见。"), row

    def on_comment(comment: str, row: int | None) -> tuple[str, str]:
        if row is None or not (comment or "").strip():
            return comment, "请先对一条回答点赞或点踩，再填写意见。"
        store.comment(row, comment.strip())
        return "", "意见已保存，谢谢！"

    return on_like, on_comment


def compare_handler(engine: ChatEngine, settings: GenerationSettings):
    """Base and tuned answers to one question, streamed side by side at the same time.

    Both requests go into the engine's running batch together, a base row and a tuned row (PEFT routes
    each row around or through the adapter), so one pass over the weights advances both answers: the pair
    takes about as long as one answer instead of base first and tuned after it (which is how this tab
    used to run: the tuned column stayed empty for the whole base answer).
    """

    def compare(question: str) -> Iterator[tuple[str, str]]:
        question = (question or "").strip()
        if not question:
            yield "", ""
            return
        pieces: queue.Queue = queue.Queue()
        controls = {use: StreamControl() for use in (False, True)}

        def run(use: bool) -> None:
            try:
                for piece in engine.reply_stream(question, None, settings, use, controls[use]):
                    pieces.put((use, piece))
            except Exception as exc:  # shown to the user by Gradio, as a sequential handler's would be
                pieces.put((use, exc))
            finally:
                pieces.put((use, None))

        for use in (False, True):
            threading.Thread(target=run, args=(use,), name="medtune-compare", daemon=True).start()
        texts = {False: "", True: ""}
        running = 2
        try:
            while running:
                use, piece = pieces.get()
                if piece is None:
                    running -= 1
                    continue
                if isinstance(piece, Exception):
                    raise piece
                texts[use] += piece
                yield render_sections(texts[False]), render_sections(texts[True])
        finally:  # the visitor left or one side failed: the other row leaves the batch too
            for control in controls.values():
                control.cancel.set()

    return compare


def build_ui(engine: ChatEngine, cfg: Config, store: FeedbackStore | None = None):
    import gradio as gr

    settings = GenerationSettings(cfg.serve.max_new_tokens, cfg.serve.temperature, cfg.serve.top_p)
    store = store or FeedbackStore(feedback_url(cfg))
    answers = RawAnswers()
    on_like, on_comment = feedback_handler(engine, store, settings, answers)
    # Gradio hands the like event's data to the parameter annotated with its class; this module's
    # annotations are strings (postponed) and gradio is imported only here, so the class is set now.
    on_like.__annotations__["data"] = gr.LikeData
    with gr.Blocks(title="medtune 医疗问答") as demo:
        gr.Markdown(
            f"## medtune 医疗问答助手\n模型：{engine.name}。内容仅供健康科普参考，不能替代医生面诊；急症请立即拨打120。"
        )
        with gr.Tab("问诊"):
            use_tuned = gr.Checkbox(
                value=engine.has_adapter, label="使用微调后的模型 (tuned)", interactive=engine.has_adapter
            )
            chat = gr.ChatInterface(chat_handler(engine, settings, answers), additional_inputs=[use_tuned])
            gr.Examples(EXAMPLES, inputs=chat.textbox, label="示例问题")
            rated = gr.State(None)
            status = gr.Markdown(elem_id="feedback-status")
            with gr.Row():
                comment = gr.Textbox(
                    label="对上一条评价的补充意见（可选）", elem_id="feedback-comment", scale=4
                )
                send = gr.Button("提交意见", elem_id="feedback-send", scale=1)
            chat.chatbot.like(on_like, inputs=[chat.chatbot, use_tuned], outputs=[status, rated])
            send.click(on_comment, inputs=[comment, rated], outputs=[comment, status])
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
    if engine is None and cfg.serve.remote_url:
        from medtune.serve.remote import RemoteEngine

        engine = RemoteEngine.from_config(cfg)  # same interface: the UI needs no model of its own
    engine = engine or ChatEngine.from_config(cfg)
    if isinstance(engine, ChatEngine):  # the first visitors do not pay the first pass's set-up
        engine.warm_up()
    demo = build_ui(engine, cfg)
    logger.info("web UI on http://%s:%d", cfg.serve.host, cfg.serve.port)
    # The engine batches concurrent answers, so the UI lets as many generate at once as the batch holds and
    # keeps a bounded line behind them, like the API's admission.
    demo.queue(default_concurrency_limit=cfg.serve.max_concurrent, max_size=cfg.serve.max_queue)
    demo.launch(server_name=cfg.serve.host, server_port=cfg.serve.port)
