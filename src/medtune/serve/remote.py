"""The web UI on any OpenAI-compatible server (``serve.remote_url``): a vLLM fleet, a hosted endpoint.

``RemoteEngine`` offers what the UI calls on a ``ChatEngine`` (``name``, ``has_adapter``, ``reply_stream``)
and streams through the ``openai`` client. The safety layer still runs here, on this side: the banner,
notes and disclaimer do not depend on what the server does. The remote server renders its own chat
template, so it must carry the medical system prompt (``medtune serve --engine vllm`` sets it); the
UI sends the question and the earlier turns, no system message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from medtune.serve.engine import ChatEngine, GenerationSettings, StreamControl, strip_safety_text

if TYPE_CHECKING:
    from medtune.config import Config
    from medtune.safety import SafetyEngine

logger = logging.getLogger(__name__)

REMOTE_KEY_ENV = "MEDTUNE_REMOTE_API_KEY"


class RemoteEngine:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        safety: SafetyEngine | None = None,
        safety_policy: str = "annotate",
        base_model: str | None = None,
    ):
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=1, timeout=600)
        self.model = model
        self.base_model = base_model
        """The server's name for the model without the adapter; None hides the base/tuned switch."""
        self.name = f"{model} @ {base_url}"
        self.safety = safety
        self.safety_policy = safety_policy
        # The rules still run here; a model's second opinion would need an endpoint of its own.
        self.second_opinion = None

    @property
    def has_adapter(self) -> bool:
        return self.base_model is not None

    @classmethod
    def from_config(cls, cfg: Config) -> RemoteEngine:
        safety = None
        if cfg.serve.safety:
            from medtune.safety import default_engine

            safety = default_engine()
        return cls(
            cfg.serve.remote_url, cfg.serve.remote_model, os.environ.get(REMOTE_KEY_ENV), safety,
            cfg.serve.safety_policy,
        )  # fmt: skip

    def stream(
        self,
        question: str,
        history: list[dict] | None = None,
        settings: GenerationSettings | None = None,
        use_adapter: bool = True,
        control: StreamControl | None = None,
    ) -> Iterator[str]:
        settings = settings or GenerationSettings()
        control = control or StreamControl()
        messages = [strip_safety_text(m) for m in history or []] + [{"role": "user", "content": question}]
        model = self.model if use_adapter or self.base_model is None else self.base_model
        stream = self.client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            stop=list(settings.stop) or None,
            stream=True,
        )
        control.finish_reason = "cancelled"
        try:
            for chunk in stream:
                if control.cancel.is_set():
                    return
                for choice in chunk.choices:
                    if choice.delta.content:
                        control.completion_tokens += 1  # a streamed piece is about a token
                        yield choice.delta.content
                    if choice.finish_reason:
                        control.finish_reason = "length" if choice.finish_reason == "length" else "stop"
        finally:
            stream.close()

    # The banner, streamed answer, notes and disclaimer exactly as the local engine adds them.
    reply_stream = ChatEngine.reply_stream
    reply = ChatEngine.reply
