"""The OpenAI chat-completions wire format as medtune speaks it: the request, its checks, errors, chunks.

Fields medtune acts on are validated with OpenAI's bounds; other fields a client may send (``seed``,
``user``, ``logprobs``, penalties, ...) are accepted and ignored, so stock clients work unchanged. Errors use
OpenAI's body, ``{"error": {"message", "type", "param", "code"}}``, which the openai client turns into its
typed exceptions (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429 RateLimitError).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_STOP_SEQUENCES = 4
"""OpenAI's limit on ``stop``."""


class APIError(Exception):
    """An error answered with an HTTP status and OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class _Strict(BaseModel):
    # Strict: "0.5" is not a temperature and "true" is not a bool, as with OpenAI; unknown fields pass.
    model_config = ConfigDict(strict=True, extra="allow")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    """The chat-completions request; bounds that depend on the server's config are checked in the API."""

    model: str = Field(default="medtune", min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """OpenAI's newer name for max_tokens; wins when both are given."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return value

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def output_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def parse_request(body: bytes) -> ChatRequest:
    """The request, or a 400 naming the first problem (malformed JSON, a wrong type, a value out of bounds)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if request.n not in (None, 1):
        raise APIError(400, "only n=1 is supported", param="n", code="invalid_value")
    return request


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


def validation_error(exc: ValidationError) -> APIError:
    # A value that fits no member of a union gets one error per member; the deepest is the most telling.
    # Member tags such as "str" or "list[TextPart]" are pydantic's, not the client's, and are dropped.
    errors = exc.errors(include_url=False)
    worst = max(errors, key=lambda e: len(e["loc"]))
    path = [str(p) for p in worst["loc"] if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS))]
    param = ".".join(path) or None
    return APIError(
        400, f"{param}: {worst['msg']}" if param else worst["msg"], param=param, code="invalid_value"
    )


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event, as OpenAI streams them."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
