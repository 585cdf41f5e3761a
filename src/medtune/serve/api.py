"""An OpenAI-compatible chat-completions API on the shared ChatEngine (``medtune serve --api``).

Any OpenAI client can talk to it: ``base_url=http://127.0.0.1:8000/v1``. The server keeps its own medical
system prompt (the one the model was trained with); a client's system message is ignored on purpose.
Model ``medtune`` answers with the adapter on; ``medtune:base`` with it off, for side-by-side comparison.

A chat request passes, in this order and before any model compute: the API key (401), the key's rate
limit (429), the body size (413), the request's fields and bounds (400), the model name (404), message
count and length in characters, then the prompt's length in tokens (400), and admission: a generation
slot or a place in a bounded line (429 when both are taken). ``serve.max_concurrent`` slots are the rows
of the engine's running batch: an admitted request joins it at the next decode step (continuous batching,
``medtune.serve.batching``) and leaves it, freeing its slot, when it ends, when the client goes away or
when the server shuts down. ``/health`` is open, and answers 200 only once the engine has warmed up (503
before, so no first user pays the first pass's set-up); ``/v1/models`` and ``/metrics`` (Prometheus) need
a key like the chat route. Keys and message contents are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from medtune.config import Config
from medtune.serve.admission import Admission, RateLimiter, Refused, ShuttingDown, Ticket
from medtune.serve.auth import KeyCheck, check_exposure, load_api_keys
from medtune.serve.engine import ChatEngine, GenerationSettings, StreamControl
from medtune.serve.metrics import MetricsMiddleware, ServeMetrics
from medtune.serve.protocol import APIError, ChatMessage, ChatRequest, error_body, parse_request, sse

logger = logging.getLogger(__name__)

MODEL_ID = "medtune"
_END = object()


class ClientGone(Exception):
    """The client disconnected before its request was admitted."""


def split_messages(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """The last user question and the earlier user/assistant turns (system and tool messages dropped)."""
    turns = [{"role": m.role, "content": m.text()} for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user":
        raise APIError(400, "messages must end with a user message", param="messages")
    return turns[-1]["content"], turns[:-1]


@dataclass
class _Serving:
    """What one app shares between its requests."""

    engine: ChatEngine
    cfg: Config
    keys: KeyCheck
    admission: Admission
    limiter: RateLimiter | None
    metrics: ServeMetrics
    controls: set[StreamControl] = field(default_factory=set)
    """Generations running now, so shutdown can stop them."""
    draining: bool = False
    warm: str = "ok"
    """``warming_up`` while the engine warms up, then ``ok`` (or ``failed``); /health is 200 only at ok."""

    def warm_up(self) -> None:
        """Warm the engine up on a thread; /health says ready once it is done (``ChatEngine.warm_up``)."""
        self.warm = "warming_up"

        def run() -> None:
            try:
                self.engine.warm_up()
                self.warm = "ok"
            except Exception:
                logger.exception("warm-up failed")
                self.warm = "failed"

        threading.Thread(target=run, name="medtune-warm-up", daemon=True).start()

    def drain(self, grace_s: float) -> None:
        """Refuse new and waiting requests now; stop what still generates after ``grace_s`` seconds."""
        self.draining = True
        self.admission.close()
        if self.controls:
            logger.info("draining: %d generation(s) get %g s to finish", len(self.controls), grace_s)

        def cut_off() -> None:
            for control in list(self.controls):
                control.cancel.set()

        asyncio.get_running_loop().call_later(grace_s, cut_off)


class _Generation:
    """One admitted request's generation on a worker thread, its text handed to the event loop.

    The ticket is released when the engine has really stopped, not when the client goes away: a slot is
    free only once the model is.
    """

    def __init__(self, serving: _Serving, ticket: Ticket):
        self.serving = serving
        self.ticket = ticket
        self.control = StreamControl()
        self._loop = asyncio.get_running_loop()
        self._pieces: asyncio.Queue = asyncio.Queue()

    def start(
        self,
        question: str,
        history: list[dict],
        settings: GenerationSettings,
        use_adapter: bool,
        on_end: Callable[[StreamControl], None],
    ) -> None:
        """Generate on a worker thread; ``on_end`` runs on the event loop once the engine has stopped."""
        self._on_end = on_end
        self.serving.controls.add(self.control)
        engine = self.serving.engine

        def run() -> None:
            try:
                for piece in engine.reply_stream(question, history, settings, use_adapter, self.control):
                    self._post(piece)
            except Exception as exc:  # handed to the request, which answers with a server error
                self._post(exc)
            finally:
                self._post(_END)

        threading.Thread(target=run, name="medtune-generation", daemon=True).start()

    def _post(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError:  # the event loop has closed: the process is exiting
            logger.debug("generation ended after the event loop closed")

    def _deliver(self, item: object) -> None:
        if item is _END:
            self.serving.controls.discard(self.control)
            self.ticket.release()
            self._on_end(self.control)
        self._pieces.put_nowait(item)

    async def pieces(self) -> AsyncIterator[str]:
        while (item := await self._pieces.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            yield item


class _GenerationResponse(StreamingResponse):
    """A streamed answer whose generation stops when the response ends for any reason.

    Starlette cancels the body when the client disconnects, wherever the body was waiting; setting the
    cancel event here, rather than in the body generator, catches every such path.
    """

    def __init__(self, content: AsyncIterator[str], control: StreamControl):
        super().__init__(content, media_type="text/event-stream")
        self._control = control

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._control.cancel.set()


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body has been read, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(engine: ChatEngine, cfg: Config, api_keys: Sequence[str] | None = None, warm_up: bool = False):
    """The API app; ``api_keys`` None reads them from $MEDTUNE_API_KEYS and ``serve.api_keys_file``.

    ``warm_up``: warm the engine up on a thread now; /health answers 503 ``warming_up`` until it is done.
    """
    serve = cfg.serve
    admission = Admission(serve.max_concurrent, serve.max_queue)
    serving = _Serving(
        engine=engine,
        cfg=cfg,
        keys=KeyCheck(load_api_keys(serve) if api_keys is None else api_keys),
        admission=admission,
        limiter=RateLimiter(serve.rate_limit_per_minute) if serve.rate_limit_per_minute else None,
        metrics=ServeMetrics(admission),
    )
    model_ids = [MODEL_ID] + ([f"{MODEL_ID}:base"] if engine.has_adapter else [])
    if warm_up:
        serving.warm_up()

    app = FastAPI(title="medtune API", version="1")
    app.state.serving = serving
    app.add_middleware(MetricsMiddleware, metrics=serving.metrics)
    if serve.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=serve.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default is a 422 in its own format; OpenAI clients expect a 400 with an error body.
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        return JSONResponse(error_body(f"{param}: {first['msg']}", param=param), status_code=400)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
        return JSONResponse(error_body("internal server error", "server_error"), status_code=500)

    def authenticate(request: Request) -> str:
        who = serving.keys.identify(request.headers.get("authorization"))
        if who is None:
            raise APIError(401, "invalid or missing API key", code="invalid_api_key")
        return who

    @app.get("/health")
    def health() -> JSONResponse:
        # Ready (200) only once warmed up: a load balancer sends no user to pay the first pass's set-up.
        status = "draining" if serving.draining else serving.warm
        return JSONResponse(
            {"status": status, "model": engine.name}, status_code=200 if status == "ok" else 503
        )

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, Any]:
        authenticate(request)
        return {
            "object": "list",
            "data": [{"id": i, "object": "model", "owned_by": "medtune"} for i in model_ids],
        }

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        authenticate(request)
        body, content_type = serving.metrics.exposition()
        return Response(body, media_type=content_type)

    async def read_body(request: Request) -> bytes:
        limit = serve.max_body_bytes
        too_large = APIError(413, f"the request body is over {limit} bytes", code="request_too_large")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        return bytes(body)

    def check_conversation(req: ChatRequest) -> tuple[str, list[dict[str, str]]]:
        if len(req.messages) > serve.max_messages:
            raise APIError(400, f"at most {serve.max_messages} messages per request", param="messages")
        for i, message in enumerate(req.messages):
            # Characters before tokens: a huge message is refused without tokenising it.
            if len(message.text()) > serve.max_message_chars:
                raise APIError(
                    400,
                    f"message {i} is over {serve.max_message_chars} characters",
                    param=f"messages.{i}.content",
                    code="message_too_long",
                )
        return split_messages(req.messages)

    def count_prompt_tokens(question: str, history: list[dict[str, str]]) -> int:
        text = engine.prompt_text(question, history)
        return len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def admit(request: Request) -> Ticket:
        """A granted ticket; waits in line while watching for the client to leave."""
        try:
            ticket = admission.enqueue()
        except Refused as exc:
            status = 503 if isinstance(exc, ShuttingDown) else 429
            raise APIError(
                status, str(exc), "server_error" if status == 503 else "rate_limit_error",
                code="shutting_down" if status == 503 else "queue_full",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None  # fmt: skip
        if ticket.granted.done():
            return ticket
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({ticket.granted, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not ticket.granted.done():
                raise ClientGone
            ticket.granted.result()
        except ShuttingDown as exc:
            raise APIError(503, str(exc), "server_error", code="shutting_down") from None
        except BaseException:
            ticket.release()
            raise
        finally:
            gone.cancel()
        return ticket

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        arrived = time.perf_counter()
        who = authenticate(request)
        if serving.limiter is not None and (wait := serving.limiter.take(who)):
            raise APIError(
                429, "rate limit reached for this API key", "requests", code="rate_limit_exceeded",
                headers={"Retry-After": str(wait)},
            )  # fmt: skip
        req = parse_request(await read_body(request))
        if req.model not in model_ids:
            raise APIError(
                404, f"the model '{req.model}' does not exist; available: {', '.join(model_ids)}",
                param="model", code="model_not_found",
            )  # fmt: skip
        budget = req.output_budget
        if budget is not None and budget > serve.max_output_tokens:
            param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
            raise APIError(400, f"{param} must be at most {serve.max_output_tokens}", param=param)
        question, history = check_conversation(req)
        prompt_tokens = await run_in_threadpool(count_prompt_tokens, question, history)
        if prompt_tokens > serve.max_input_tokens:
            raise APIError(
                400, f"the prompt is {prompt_tokens} tokens, over the limit of {serve.max_input_tokens}",
                param="messages", code="context_length_exceeded",
            )  # fmt: skip
        settings = GenerationSettings(
            max_new_tokens=budget or serve.max_new_tokens,
            temperature=serve.temperature if req.temperature is None else req.temperature,
            top_p=serve.top_p if req.top_p is None else req.top_p,
            stop=req.stop_sequences,
        )
        try:
            ticket = await admit(request)
        except ClientGone:
            logger.info("client left while waiting (key %s)", who)
            return Response(status_code=499)
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        head = {"id": rid, "created": int(time.time()), "model": req.model}

        def ended(control: StreamControl) -> None:
            # Runs whether or not anyone is still listening, so the counts include cut-off answers.
            serving.metrics.prompt_tokens.inc(prompt_tokens)
            serving.metrics.generated_tokens.inc(control.completion_tokens)
            logger.info(
                "%s key=%s model=%s prompt=%d completion=%d finish=%s %.2fs",
                rid, who, req.model, prompt_tokens, control.completion_tokens, control.finish_reason,
                time.perf_counter() - arrived,
            )  # fmt: skip

        generation = _Generation(serving, ticket)
        try:
            generation.start(question, history, settings, not req.model.endswith(":base"), ended)
        except BaseException:
            ticket.release()
            raise

        def usage() -> dict[str, int]:
            completion = generation.control.completion_tokens
            return {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            }

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            def chunk(delta: dict[str, str], finish: str | None = None) -> str:
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                return sse(head | {"object": "chat.completion.chunk", "choices": [choice]})

            async def events() -> AsyncIterator[str]:
                yield chunk({"role": "assistant", "content": ""})
                first = True
                try:
                    async for piece in generation.pieces():
                        if first:
                            serving.metrics.ttft.observe(time.perf_counter() - arrived)
                            first = False
                        yield chunk({"content": piece})
                except Exception:
                    logger.exception("%s: generation failed", rid)
                    yield sse(error_body("generation failed", "server_error"))
                    return
                finish = generation.control.finish_reason
                if finish == "cancelled":  # only the server stops a generation whose client still listens
                    yield sse(error_body("the server is shutting down", "server_error", code="shutting_down"))
                    return
                yield chunk({}, finish)
                if include_usage:
                    yield sse(head | {"object": "chat.completion.chunk", "choices": [], "usage": usage()})
                yield sse("[DONE]")

            return _GenerationResponse(events(), generation.control)

        gone = asyncio.ensure_future(_disconnected(request))
        gone.add_done_callback(lambda _: generation.control.cancel.set())
        try:
            text = "".join([piece async for piece in generation.pieces()])
        finally:
            gone.cancel()
            generation.control.cancel.set()  # a no-op once finished; stops the model if we were cancelled
        finish = generation.control.finish_reason
        if finish == "cancelled":
            raise APIError(503, "the server is shutting down", "server_error", code="shutting_down")
        message = {"role": "assistant", "content": text}
        return head | {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage(),
        }

    return app


def build_server(app, host: str, port: int, grace_s: float, log_level: str = "info"):
    """A uvicorn server that drains the app on shutdown (SIGTERM, SIGINT or ``should_exit``)."""
    import uvicorn

    class _DrainingServer(uvicorn.Server):
        # uvicorn waits for open responses before its lifespan shutdown runs, and an answer can take
        # minutes: the app must hear about the shutdown first, here, to refuse, drain and cut off.
        async def shutdown(self, sockets=None) -> None:
            app.state.serving.drain(grace_s)
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # A backstop past the grace period: generations check for cancellation after every token.
        timeout_graceful_shutdown=int(grace_s) + 5,
    )
    return _DrainingServer(config)


def serve_api(cfg: Config, engine: ChatEngine | None = None) -> None:
    keys = load_api_keys(cfg.serve)
    check_exposure(cfg.serve.host, keys)  # before the model loads: a refused start should be instant
    engine = engine or ChatEngine.from_config(cfg)
    app = create_app(engine, cfg, keys, warm_up=True)
    auth = f"{len(keys)} API key(s)" if keys else "no API key (loopback only)"
    logger.info("OpenAI-compatible API on http://%s:%d/v1, %s", cfg.serve.host, cfg.serve.api_port, auth)
    build_server(app, cfg.serve.host, cfg.serve.api_port, cfg.serve.shutdown_grace_s).run()
