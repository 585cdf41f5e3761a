"""The OpenAI-compatible API, live on loopback with the tiny model, driven through the official openai client.

One server (two keys, a small prompt limit, one generation slot and one place in line) serves most tests;
the few that need other settings start their own small server on the same engine.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager

import httpx
import openai
import pytest

from medtune.config import ConfigError, load_config
from tests.serve.conftest import hold_first_step_until

KEYS = ["sk-test-alpha-0123456789", "sk-test-bravo-9876543210"]
QUESTION = "胃疼怎么办"


def serve_config(*overrides: str):
    return load_config(None, ["serve.safety=false", *overrides])


@contextmanager
def live(app):
    """The app served by uvicorn on a free loopback port, in a thread; yields the base URL."""
    from medtune.serve.api import build_server

    server = build_server(app, "127.0.0.1", 0, grace_s=0.5, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Live:
    def __init__(self, url: str, app):
        self.url = url
        self.app = app
        self.serving = app.state.serving

    def client(self, key: str | None = KEYS[0]) -> openai.OpenAI:
        # No retries: a test must see the first 429 or 5xx, not the client's retry of it.
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or "none", max_retries=0, timeout=60)

    def post(self, body, key: str = KEYS[0], **kwargs) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return httpx.post(
            f"{self.url}/v1/chat/completions", content=body, headers=headers, timeout=60, **kwargs
        )

    def idle(self, timeout: float = 20) -> None:
        """Wait until no generation runs or waits, so tests do not see each other's load."""
        deadline = time.monotonic() + timeout
        while self.serving.admission.running or self.serving.admission.waiting:
            assert time.monotonic() < deadline, "the server stayed busy"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def api(engine):
    from medtune.serve.api import create_app

    cfg = serve_config(
        "serve.max_input_tokens=256", "serve.max_queue=1", "serve.rate_limit_per_minute=null",
        "serve.max_concurrent=1",
    )  # fmt: skip
    app = create_app(engine, cfg, KEYS)
    with live(app) as url:
        yield Live(url, app)


def ask(client: openai.OpenAI, content: str = QUESTION, **kwargs):
    kwargs = {"model": "medtune", "max_tokens": 8, "temperature": 0, **kwargs}
    return client.chat.completions.create(messages=[{"role": "user", "content": content}], **kwargs)


def greedy(engine, n: int = 8, question: str = QUESTION):
    from medtune.serve.engine import GenerationSettings

    return engine.generate([question], GenerationSettings(max_new_tokens=n, temperature=0.0))[0]


def prompt_tokens(engine, question: str = QUESTION) -> int:
    return len(engine.tokenizer(engine.prompt_text(question), add_special_tokens=False)["input_ids"])


# --- answers ---------------------------------------------------------------------------------------


def test_completion_is_the_engine_answer_with_exact_usage_and_finish_reason(api, engine):
    expected = greedy(engine)
    reply = ask(api.client())
    choice = reply.choices[0]
    assert choice.message.content.strip() == expected.text
    assert choice.finish_reason == ("stop" if expected.finished else "length")
    assert reply.usage.prompt_tokens == prompt_tokens(engine)
    assert reply.usage.completion_tokens == expected.num_tokens
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_an_answer_cut_at_max_tokens_reports_length_streamed_too(api, engine):
    expected = greedy(engine, 6)
    assert not expected.finished, "the tiny random model does not end its turn within 6 tokens"
    assert ask(api.client(), max_tokens=6).choices[0].finish_reason == "length"
    chunks = list(ask(api.client(), max_tokens=6, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text.strip() == expected.text and finishes == ["length"]
    assert chunks[-1].usage.completion_tokens == 6 and chunks[-1].usage.prompt_tokens == prompt_tokens(engine)


def test_stop_sequences_cut_the_answer_with_finish_reason_stop(api, engine):
    text = ask(api.client(), max_tokens=12).choices[0].message.content
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    expected = text[: text.index(stop)]
    reply = ask(api.client(), max_tokens=12, stop=[stop, "never-there"])
    assert reply.choices[0].message.content == expected and reply.choices[0].finish_reason == "stop"
    chunks = list(ask(api.client(), max_tokens=12, stop=stop, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_models_lists_tuned_and_base_and_an_unknown_model_is_404(api):
    client = api.client()
    assert [m.id for m in client.models.list().data] == ["medtune", "medtune:base"]
    assert ask(client, model="medtune:base", max_tokens=2).choices[0].message.content is not None
    with pytest.raises(openai.NotFoundError) as err:
        ask(client, model="gpt-4o")
    assert err.value.body == {
        "message": err.value.body["message"],
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert "gpt-4o" in err.value.body["message"]


def test_other_openai_fields_are_accepted_and_ignored(api):
    reply = ask(api.client(), max_tokens=2, seed=1, user="u1", presence_penalty=0.5, logprobs=False, n=1)
    assert reply.choices[0].finish_reason in ("stop", "length")


# --- keys ------------------------------------------------------------------------------------------


def test_a_missing_or_wrong_key_is_401_and_health_is_open(api):
    for key in ("sk-wrong", KEYS[0] + "x", KEYS[0][:-1]):
        with pytest.raises(openai.AuthenticationError) as err:
            ask(api.client(key))
        assert err.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        api.client("sk-wrong").models.list()
    assert httpx.post(f"{api.url}/v1/chat/completions", json={}).status_code == 401
    assert httpx.get(f"{api.url}/metrics").status_code == 401
    assert httpx.get(f"{api.url}/health").json()["status"] == "ok"
    assert ask(api.client(KEYS[1]), max_tokens=1).choices


def test_health_is_not_ready_until_the_engine_has_warmed_up(engine, monkeypatch):
    from medtune.serve.api import create_app

    release = threading.Event()
    warmed = []

    def held_warm_up() -> float:
        assert release.wait(30)
        warmed.append(real())
        return warmed[-1]

    real = engine.warm_up
    monkeypatch.setattr(engine, "warm_up", held_warm_up)
    with live(create_app(engine, serve_config(), KEYS, warm_up=True)) as url:
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "warming_up"
        release.set()
        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{url}/health", timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, health.json()
            time.sleep(0.05)
        assert health.json()["status"] == "ok" and warmed and warmed[0] > 0


def test_a_failed_warm_up_keeps_health_unready(engine, monkeypatch):
    from medtune.serve.api import create_app

    def broken() -> float:
        raise RuntimeError("no kernels")

    monkeypatch.setattr(engine, "warm_up", broken)
    with live(create_app(engine, serve_config(), KEYS, warm_up=True)) as url:
        deadline = time.monotonic() + 10
        while (health := httpx.get(f"{url}/health", timeout=10)).json()["status"] == "warming_up":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert health.status_code == 503 and health.json()["status"] == "failed"


def test_keys_come_from_the_environment_and_the_keys_file(tmp_path):
    from medtune.serve.auth import load_api_keys

    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# ops team\nsk-file-1\n\n  sk-file-2  \nsk-env-1\n", encoding="utf-8")
    cfg = serve_config(f"serve.api_keys_file={keys_file}")
    env = {"MEDTUNE_API_KEYS": "sk-env-1, sk-env-2,"}
    assert load_api_keys(cfg.serve, env) == ["sk-env-1", "sk-env-2", "sk-file-1", "sk-file-2"]
    with pytest.raises(ConfigError, match="does not exist"):
        load_api_keys(serve_config(f"serve.api_keys_file={tmp_path / 'none'}").serve, {})


def test_an_open_api_is_refused_off_loopback():
    from medtune.serve.auth import check_exposure

    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure(host, [])
    check_exposure("0.0.0.0", ["sk-1"])
    for host in ("0.0.0.0", "192.168.1.5", "::", "medtune.example.org"):
        with pytest.raises(ConfigError, match="MEDTUNE_API_KEYS"):
            check_exposure(host, [])


def test_logs_hold_neither_keys_nor_message_contents(api, caplog):
    secret_text = "我的秘密病情XYZ-723"
    with caplog.at_level(logging.DEBUG):
        ask(api.client(), secret_text, max_tokens=2)
        list(ask(api.client(KEYS[1]), secret_text, max_tokens=2, stream=True))
        with pytest.raises(openai.AuthenticationError):
            ask(api.client("sk-leaked-guess-42"), secret_text)
        api.post({"messages": [{"role": "user", "content": secret_text}], "temperature": "hot"})
    assert "completion=" in caplog.text, "the request log line was not captured"
    for needle in (secret_text, *KEYS, "sk-leaked-guess-42"):
        assert needle not in caplog.text


# --- limits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"max_completion_tokens": 100_000}, "max_completion_tokens"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": 3}, "presence_penalty"),
    ],
)
def test_parameters_out_of_bounds_are_400_with_the_reason(api, kwargs, param):
    with pytest.raises(openai.BadRequestError) as err:
        ask(api.client(), **kwargs)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"
    assert err.value.body["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b"\xff\xfe\x00",
        {"messages": "hello"},
        {"messages": []},
        {"model": "medtune"},
        {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
        {"messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1.5},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"messages": [{"role": "user", "content": 42}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        {"messages": [{"role": "assistant", "content": "hi"}]},
    ],
)
def test_malformed_bodies_are_400_with_the_openai_error_body(api, body):
    r = api.post(body)
    assert r.status_code == 400, r.text
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_a_2mb_body_is_refused_with_413_in_milliseconds(api):
    body = {"messages": [{"role": "user", "content": "痛" * 700_000}]}
    start = time.perf_counter()
    r = api.post(body)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert time.perf_counter() - start < 1.0


def test_a_chunked_body_without_content_length_is_cut_off_at_the_limit_too(api):
    def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"x" * 10_000

    r = httpx.post(
        f"{api.url}/v1/chat/completions",
        content=chunks(),
        headers={"authorization": f"Bearer {KEYS[0]}", "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413


def test_message_count_and_length_are_bounded_before_tokenising(api, engine, monkeypatch):
    def no_tokenising(*args, **kwargs):
        raise AssertionError("tokenised a request that the character check should have refused")

    monkeypatch.setattr(engine, "prompt_text", no_tokenising)
    r = api.post({"messages": [{"role": "user", "content": "痛" * 16_001}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages.0.content"
    many = [{"role": "user", "content": "hi"}] * 65
    r = api.post({"messages": many})
    assert r.status_code == 400 and "at most 64 messages" in r.json()["error"]["message"]


def test_a_prompt_over_max_input_tokens_is_400(api):
    with pytest.raises(openai.BadRequestError) as err:
        ask(api.client(), "头疼" * 300)
    assert err.value.body["code"] == "context_length_exceeded" and "256" in err.value.body["message"]


def test_the_rate_limit_per_key_is_429_with_retry_after(engine):
    from medtune.serve.api import create_app

    app = create_app(engine, serve_config("serve.rate_limit_per_minute=2"), KEYS)
    with live(app) as url:
        server = Live(url, app)
        for _ in range(2):
            assert server.client().models.list().data  # not limited: only chat requests spend tokens
            ask(server.client(), max_tokens=1)
        with pytest.raises(openai.RateLimitError) as err:
            ask(server.client(), max_tokens=1)
        assert 1 <= int(err.value.response.headers["retry-after"]) <= 30
        assert err.value.body["code"] == "rate_limit_exceeded"
        ask(server.client(KEYS[1]), max_tokens=1)  # another key has its own bucket


def test_a_full_line_is_429_and_a_client_that_disconnects_frees_its_slot(api):
    client, admission = api.client(), api.serving.admission
    api.idle()
    long_stream = ask(client, max_tokens=2000, stream=True)
    next(iter(long_stream))  # headers and the first chunk: it holds the only slot
    assert admission.running == 1
    waiting = {}
    second = threading.Thread(target=lambda: waiting.update(reply=ask(client, max_tokens=3)))
    second.start()
    deadline = time.monotonic() + 10
    while admission.waiting < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(openai.RateLimitError) as err:
        ask(client, max_tokens=1)
    assert err.value.body["code"] == "queue_full"
    assert int(err.value.response.headers["retry-after"]) >= 1
    long_stream.close()  # the client goes away mid-stream
    second.join(timeout=15)
    assert waiting["reply"].choices[0].finish_reason == "length", "the waiting request never ran"
    api.idle()


def test_a_client_waiting_in_line_that_disconnects_leaves_the_line(api):
    import socket
    from urllib.parse import urlsplit

    client, admission = api.client(), api.serving.admission
    api.idle()
    long_stream = ask(client, max_tokens=2000, stream=True)
    next(iter(long_stream))
    body = json.dumps({"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 3}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEYS[0]}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    url = urlsplit(api.url)
    with socket.create_connection((url.hostname, url.port)) as raw:
        raw.sendall(head + body)
        deadline = time.monotonic() + 10
        while admission.waiting < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    deadline = time.monotonic() + 5
    while admission.waiting:
        assert time.monotonic() < deadline, "a departed client kept its place in line"
        time.sleep(0.01)
    assert admission.running == 1, "the departed client must not have taken the slot"
    long_stream.close()
    api.idle()


# --- metrics, CORS ---------------------------------------------------------------------------------


def test_metrics_are_prometheus_text(api):
    ask(api.client(), max_tokens=2)
    list(ask(api.client(), max_tokens=2, stream=True))
    with pytest.raises(openai.AuthenticationError):
        ask(api.client("sk-wrong"))
    r = httpx.get(f"{api.url}/metrics", headers={"authorization": f"Bearer {KEYS[0]}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'medtune_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert 'medtune_requests_total{route="/v1/chat/completions",status="401"}' in text
    for name in (
        "medtune_request_duration_seconds_bucket",
        "medtune_time_to_first_token_seconds_count",
        "medtune_generated_tokens_total",
        "medtune_prompt_tokens_total",
        "medtune_queue_depth",
        "medtune_in_flight_requests",
    ):
        assert name in text
    generated = next(line for line in text.splitlines() if line.startswith("medtune_generated_tokens_total"))
    assert float(generated.split()[-1]) >= 4


def test_cors_is_off_by_default_and_on_for_listed_origins(api, engine):
    from fastapi.testclient import TestClient

    from medtune.serve.api import create_app

    origin = {"origin": "https://evil.example"}
    assert "access-control-allow-origin" not in httpx.get(f"{api.url}/health", headers=origin).headers
    app = create_app(engine, serve_config("serve.cors_origins=[https://app.example]"), KEYS)
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    r = TestClient(app).options("/v1/chat/completions", headers=preflight)
    assert r.headers["access-control-allow-origin"] == "https://app.example"


# --- shutdown --------------------------------------------------------------------------------------


def test_sigterm_stops_the_server_within_seconds_mid_generation(tiny_model_dir, tmp_path):
    """The real command (`medtune serve CONFIG --api key=value`) in a subprocess, stopped by SIGTERM."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from tests.conftest import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MEDTUNE_API_KEYS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "medtune.cli", "serve", str(ROOT / "configs/tiny/lora_sft.yaml"), "--api"]
    cmd += [f"model.name_or_path={tiny_model_dir}", f"output_root={tmp_path}", f"serve.api_port={port}"]
    cmd += ["serve.shutdown_grace_s=1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        stream = ask(client, max_tokens=2000, stream=True)
        chunks = iter(stream)
        next(chunks)
        next(chunks)  # the model is generating
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(openai.APIError, match="shutting down"):
            for _ in chunks:
                pass
        proc.wait(timeout=15)
        assert time.monotonic() - start < 8, "shutdown waited for the answer to finish"
        # uvicorn re-raises the signal once it has shut down, so a supervisor sees a SIGTERM exit.
        assert proc.returncode in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
    assert "Traceback" not in output, output


def test_concurrent_streams_share_the_running_batch(engine, monkeypatch):
    from medtune.serve.api import create_app
    from medtune.serve.engine import ChatEngine

    batched = ChatEngine(engine.model, engine.tokenizer, name="tiny", max_batch=4)
    app = create_app(
        batched, serve_config("serve.max_concurrent=4", "serve.rate_limit_per_minute=null"), KEYS
    )
    questions = ["胃疼怎么办", "头疼", "孩子发烧38度", "咳嗽有痰"]
    expected = [greedy(engine, 12, q).text for q in questions]
    hold_first_step_until(batched.scheduler, monkeypatch, rows=len(questions))
    with live(app) as url:
        server = Live(url, app)
        replies: dict[int, str] = {}

        def one(i: int) -> None:
            stream = ask(server.client(), questions[i], max_tokens=12, stream=True)
            replies[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [replies[i].strip() for i in range(4)] == expected
    assert batched.scheduler.peak_batch == len(questions)
