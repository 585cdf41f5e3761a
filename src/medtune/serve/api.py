"""An OpenAI-compatible chat-completions API on the shared ChatEngine (``medtune serve --api``).

Any OpenAI client can talk to it: ``base_url=http://127.0.0.1:8000/v1``. The server keeps its own medical
system prompt (the one the model was trained with); a client's system message is ignored on purpose.
Model ``<name>`` answers with the adapter on; ``<name>:base`` with it off, for side-by-side comparison.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from pydantic import BaseModel, Field

from medtune.config import Config
from medtune.serve.engine import ChatEngine, GenerationSettings

logger = logging.getLogger(__name__)

MODEL_ID = "medtune"


class ChatRequest(BaseModel):
    """The subset of the OpenAI chat-completions request that medtune honours."""

    model: str = MODEL_ID
    messages: list[dict[str, Any]]
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stream: bool = False


def _split_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    turns = [
        {"role": m["role"], "content": m["content"]}
        for m in messages
        if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
    ]
    if not turns or turns[-1]["role"] != "user":
        raise ValueError("messages must end with a user message")
    return turns[-1]["content"], turns[:-1]


def create_app(engine: ChatEngine, cfg: Config):
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import StreamingResponse

    app = FastAPI(title="medtune API", version="1")
    model_id = MODEL_ID

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": engine.name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        ids = [model_id] + ([f"{model_id}:base"] if engine.has_adapter else [])
        return {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "medtune"} for i in ids]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest):
        try:
            question, history = _split_messages(req.messages)
        except (ValueError, KeyError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        use_adapter = not req.model.endswith(":base")
        settings = GenerationSettings(
            max_new_tokens=req.max_tokens or cfg.serve.max_new_tokens,
            temperature=cfg.serve.temperature if req.temperature is None else req.temperature,
            top_p=req.top_p or cfg.serve.top_p,
        )
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if req.stream:

            def events():
                head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model}
                first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                yield f"data: {json.dumps(head | {'choices': [first]}, ensure_ascii=False)}\n\n"
                for piece in engine.reply_stream(question, history, settings, use_adapter):
                    chunk = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                    yield f"data: {json.dumps(head | {'choices': [chunk]}, ensure_ascii=False)}\n\n"
                last = {"index": 0, "delta": {}, "finish_reason": "stop"}
                yield f"data: {json.dumps(head | {'choices': [last]}, ensure_ascii=False)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        text = engine.reply(question, history, settings, use_adapter)
        prompt_tokens = len(
            engine.tokenizer(engine.prompt_text(question, history), add_special_tokens=False)["input_ids"]
        )
        completion_tokens = len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    return app


def serve_api(cfg: Config, engine: ChatEngine | None = None) -> None:
    import uvicorn

    engine = engine or ChatEngine.from_config(cfg)
    logger.info("OpenAI-compatible API on http://%s:%d/v1", cfg.serve.host, cfg.serve.api_port)
    uvicorn.run(create_app(engine, cfg), host=cfg.serve.host, port=cfg.serve.api_port, log_level="info")
