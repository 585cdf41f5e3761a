"""A fault-injecting OpenAI-compatible chat-completions server on loopback, for tests and benchmarks.

It speaks enough HTTP/1.1 (keep-alive, Content-Length bodies) and enough of the OpenAI protocol
(``POST /v1/chat/completions``, ``GET /v1/models``, Bearer keys, error bodies, ``usage``) for the real
``openai`` client to drive it. Faults are injected on request, either scripted (the next requests, or the
requests whose text contains a marker) or at random with a fixed seed:

    ==============  =================================================================================
    ``429``         rate limited, with ``retry-after-ms`` and ``retry-after`` headers
    ``quota``       429 ``insufficient_quota`` (a billing problem: retrying cannot help)
    ``auth``        401 ``invalid_api_key``
    ``500``/``503`` server errors
    ``timeout``     answers only after ``slow_s`` seconds, past any sensible client timeout
    ``disconnect``  closes the connection without answering
    ``malformed``   200 with a body that is not JSON
    ``empty``       200 with ``choices: []``
    ``noncompliant`` 200 with an answer that is not in the three-part form
    ``unfaithful``  200 with a three-part answer that invents a drug, a dose and a duration
    ``cutoff``      200 with half an answer and ``finish_reason: length``
    ``bad_request`` 400 ``context_length_exceeded`` (retrying cannot help this request)
    ==============  =================================================================================

The default teacher answers with the offline rule-based restructuring of the ``<answer>`` in the prompt,
so a healthy server gives compliant, faithful rewrites. Usage is counted as one token per character, so
tests can recompute costs exactly from the request log.

In-process (tests)::

    with FakeOpenAIServer(api_key="k", latency_s=0.05) as server:
        server.script("429", "503")
        ... AsyncOpenAI(base_url=server.base_url, api_key="k") ...
        server.log  # one dict per request

As a process (benchmarks; run from the repository root, where ``tests`` is importable)::

    python -m tests.fakes.fake_openai --latency 0.05 --fault-rate 0.05 --fault-kinds 429,503
    # prints FAKE_OPENAI_URL=http://127.0.0.1:PORT/v1; GET /_fake/log returns the request log
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from medtune.data.structure import SECTION_TITLES

FAULTS = (
    "429",
    "quota",
    "auth",
    "500",
    "503",
    "timeout",
    "disconnect",
    "malformed",
    "empty",
    "noncompliant",
    "unfaithful",
    "cutoff",
    "bad_request",
)
_REASONS = {
    200: "OK",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
_REASONS |= {503: "Service Unavailable", 400: "Bad Request", 405: "Method Not Allowed"}
_TAG_RE = {tag: re.compile(rf"<{tag}>\n?(.*?)\n?</{tag}>", re.S) for tag in ("question", "answer")}
UNFAITHFUL_ADDITION = "建议口服阿莫西林胶囊500mg，每日3次，连用7天。"

Responder = Callable[[list[dict[str, Any]]], str]


def prompt_parts(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """The ``<question>`` and ``<answer>`` of the first user message that has them ('' when absent)."""
    for m in messages:
        content = m.get("content") or ""
        if m.get("role") == "user" and "<answer>" in content:
            q = _TAG_RE["question"].search(content)
            a = _TAG_RE["answer"].search(content)
            return (q.group(1) if q else ""), (a.group(1) if a else content)
    return "", ""


def default_responder(messages: list[dict[str, Any]]) -> str:
    """A faithful teacher: the offline restructuring of the source answer, or a plain three-way split."""
    from medtune.data.restructure.offline import restructure_answer
    from medtune.data.structure import parse_answer

    question, answer = prompt_parts(messages)
    text = restructure_answer(question, answer)
    if text and not parse_answer(text).problems:
        return text
    body = answer.strip() or "（无内容）" * 3
    third = max(1, len(body) // 3)
    parts = [body[:third], body[third : 2 * third], body[2 * third :]]
    return "\n\n".join(f"{n}、{t}\n{p}" for n, t, p in zip("一二三", SECTION_TITLES, parts))


class FakeOpenAIServer:
    """See the module docstring. Start with ``start()`` or ``with``; every request is appended to ``log``."""

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        model: str = "fake-teacher",
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = ("429", "503"),
        retry_after_s: float = 0.05,
        slow_s: float = 30.0,
        seed: int = 0,
        responder: Responder | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        unknown = set(fault_kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULTS)}")
        self.api_key = api_key
        self.model = model
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self.retry_after_s = retry_after_s
        self.slow_s = slow_s
        self.responder = responder or default_responder
        self.host = host
        self.port = port
        self.log: list[dict[str, Any]] = []
        self._rng = random.Random(seed)
        self._script: list[tuple[str | None, str]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._conn_tasks: set[asyncio.Task] = set()

    # -- control ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *faults: str, match: str | None = None) -> None:
        """Inject ``faults`` into the next requests, one each, in order; with ``match``, only into requests
        whose messages contain that text. ``ok`` is a no-fault placeholder."""
        for fault in faults:
            if fault not in FAULTS and fault != "ok":
                raise ValueError(f"unknown fault {fault!r}; known: ok, {', '.join(FAULTS)}")
        with self._lock:
            self._script.extend((match, f) for f in faults)

    def requests_for(self, text: str) -> list[dict[str, Any]]:
        """Logged requests whose question contains ``text``."""
        with self._lock:
            return [r for r in self.log if text in r["question"]]

    def _next_fault(self, blob: str) -> str | None:
        with self._lock:
            for i, (match, fault) in enumerate(self._script):
                if match is None or match in blob:
                    del self._script[i]
                    return None if fault == "ok" else fault
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.fault_kinds)
        return None

    # -- lifecycle -------------------------------------------------------------------------------
    async def serve(self) -> None:
        """Bind and record the port; the caller keeps the loop running."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> FakeOpenAIServer:
        """Serve from a background thread with its own event loop."""
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.serve())
            except BaseException as exc:  # reported to the starting thread below
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        if error:
            raise error[0]
        return self

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conn_tasks):
            task.cancel()
        await asyncio.gather(*self._conn_tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    method, target, _version = line.decode("latin-1").split(" ", 2)
                except ValueError:
                    break
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = raw.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                reply = await self._dispatch(method, target.split("?", 1)[0], headers, body)
                if reply is None:  # the "disconnect" fault
                    break
                status, extra_headers, payload = reply
                head = [
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                    f"Content-Length: {len(payload)}",
                ]
                content_type = extra_headers.pop("content-type", "application/json")
                head += [f"Content-Type: {content_type}", "Connection: keep-alive"]
                head += [f"{k}: {v}" for k, v in extra_headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._conn_tasks.discard(task)
            writer.close()

    async def _dispatch(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        if path == "/_fake/log" and method == "GET":
            with self._lock:
                return 200, {}, json.dumps({"requests": self.log}, ensure_ascii=False).encode()
        if path == "/_fake/script" and method == "POST":
            req = json.loads(body or b"{}")
            self.script(*req.get("faults", []), match=req.get("match"))
            return 200, {}, b"{}"
        if path.rstrip("/").endswith("/models") and method == "GET":
            models = {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "owned_by": "medtune"}],
            }
            return 200, {}, json.dumps(models).encode()
        if not path.rstrip("/").endswith("/chat/completions"):
            return _error(404, f"no route {path}", "invalid_request_error", "not_found")
        if method != "POST":
            return _error(405, "use POST", "invalid_request_error", None)
        return await self._chat(headers, body)

    async def _chat(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        try:
            req = json.loads(body)
            messages = req["messages"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return _error(400, "request body must be JSON with messages", "invalid_request_error", None)
        question, _answer = prompt_parts(messages)
        entry: dict[str, Any] = {
            "n": len(self.log),
            "t": time.time(),
            "question": question,
            "turns": len(messages),
            "last": str(messages[-1].get("content") or "")[:300] if messages else "",
            "fault": None,
            "status": 200,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        }
        with self._lock:
            self.log.append(entry)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            entry.update(fault="auth", status=401)
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        blob = "\n".join(str(m.get("content") or "") for m in messages)
        fault = self._next_fault(blob)
        entry["fault"] = fault
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault == "auth":
            entry["status"] = 401
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if fault == "429":
            entry["status"] = 429
            status, _, payload = _error(
                429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded"
            )
            retry = {"retry-after-ms": str(int(self.retry_after_s * 1000))}
            retry["retry-after"] = str(max(1, round(self.retry_after_s)))
            return status, retry, payload
        if fault == "quota":
            entry["status"] = 429
            return _error(429, "You exceeded your current quota.", "insufficient_quota", "insufficient_quota")
        if fault == "bad_request":
            entry["status"] = 400
            return _error(
                400,
                "This model's maximum context length is exceeded.",
                "invalid_request_error",
                "context_length_exceeded",
            )
        if fault in ("500", "503"):
            entry["status"] = int(fault)
            return _error(int(fault), "The server is overloaded.", "server_error", None)
        if fault == "disconnect":
            entry["status"] = None
            return None
        if fault == "timeout":
            await asyncio.sleep(self.slow_s)
        if fault == "malformed":
            return (
                200,
                {},
                b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess',
            )
        text = self.responder(messages)
        finish = "stop"
        if fault == "noncompliant":
            text = "你好，这种情况一般问题不大，多喝水、注意休息，观察几天。"
        elif fault == "unfaithful":
            text = text.rstrip() + UNFAITHFUL_ADDITION
        elif fault == "cutoff":
            text, finish = text[: len(text) // 2], "length"
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in messages)
        choices = [] if fault == "empty" else [_choice(text, finish)]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text)}
        usage["total_tokens"] = prompt_tokens + len(text)
        entry.update(prompt_tokens=prompt_tokens, completion_tokens=len(text))
        completion = {
            "id": f"chatcmpl-{entry['n']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(req.get("model") or self.model),
            "choices": choices,
            "usage": usage,
        }
        if req.get("stream") and choices:
            return 200, {"content-type": "text/event-stream"}, _sse(completion, text, finish)
        return 200, {}, json.dumps(completion, ensure_ascii=False).encode()


def _sse(completion: dict[str, Any], text: str, finish: str) -> bytes:
    """A streamed answer in one body: a chunk per 8 characters, then the finish and ``[DONE]``."""
    head = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    deltas = [{"role": "assistant", "content": ""}] + [
        {"content": text[i : i + 8]} for i in range(0, len(text), 8)
    ]
    events = [head | {"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append(head | {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    lines = [f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


def _choice(text: str, finish: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    return {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}


def _error(status: int, message: str, kind: str, code: str | None) -> tuple[int, dict[str, str], bytes]:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return status, {}, json.dumps(body).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.fake_openai", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-key", help="expected Bearer key ('' accepts any)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every chat request")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-kinds", default="429,503")
    parser.add_argument("--retry-after", type=float, default=0.05, help="seconds announced by injected 429s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(
        api_key=args.api_key or None,
        latency_s=args.latency,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(k for k in args.fault_kinds.split(",") if k),
        retry_after_s=args.retry_after,
        seed=args.seed,
        port=args.port,
    )

    async def run() -> None:
        await server.serve()
        print(f"FAKE_OPENAI_URL={server.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server._shutdown()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
