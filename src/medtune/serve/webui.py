"""``medtune serve``: the Gradio web chat on port 7860, streaming, on the shared ChatEngine."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from medtune.config import Config
from medtune.serve.engine import ChatEngine, GenerationSettings

logger = logging.getLogger(__name__)

EXAMPLES = [
    "孩子3岁，发烧38.5度一天了，精神还可以，需要马上去医院吗？",
    "女，35岁，最近胃老是反酸烧心，晚上躺下更明显，怎么办",
    "我爸65岁，早上起来说话不清楚，右手拿不住筷子",
]


def _history_messages(history: list) -> list[dict[str, str]]:
    out = []
    for item in history or []:
        if isinstance(item, dict) and item.get("role") in ("user", "assistant"):
            content = item.get("content")
            if isinstance(content, str):
                out.append({"role": item["role"], "content": content})
    return out


def build_ui(engine: ChatEngine, cfg: Config):
    import gradio as gr

    settings = GenerationSettings(cfg.serve.max_new_tokens, cfg.serve.temperature, cfg.serve.top_p)

    def respond(message: str, history: list, use_tuned: bool) -> Iterator[str]:
        text = ""
        for piece in engine.reply_stream(
            message, _history_messages(history), settings, use_adapter=use_tuned
        ):
            text += piece
            yield text

    with gr.Blocks(title="medtune 医疗问答") as demo:
        gr.Markdown(
            f"## medtune 医疗问答助手\n模型：{engine.name}。内容仅供健康科普参考，不能替代医生面诊；急症请立即拨打120。"
        )
        use_tuned = gr.Checkbox(
            value=engine.has_adapter, label="使用微调后的模型 (tuned)", interactive=engine.has_adapter
        )
        gr.ChatInterface(
            respond, additional_inputs=[use_tuned], examples=[[e, engine.has_adapter] for e in EXAMPLES]
        )
    return demo


def serve_webui(cfg: Config, engine: ChatEngine | None = None) -> None:
    engine = engine or ChatEngine.from_config(cfg)
    demo = build_ui(engine, cfg)
    logger.info("web UI on http://%s:%d", cfg.serve.host, cfg.serve.port)
    demo.queue(default_concurrency_limit=1).launch(server_name=cfg.serve.host, server_port=cfg.serve.port)
