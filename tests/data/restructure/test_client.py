"""The teacher client against a real loopback server through the real ``openai`` client: retries, backoff,
Retry-After, and the errors that must stop a run at once."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from medtune.data.restructure.client import (
    FatalTeacherError,
    RequestFailed,
    TeacherClient,
    backoff_delay,
    retry_after_seconds,
)
from tests.data.restructure.conftest import SECRET

MESSAGES = [
    {"role": "user", "content": "<question>\n咳嗽三天\n</question>\n<answer>\n多喝水，注意休息。\n</answer>"}
]


def _client(server, **kwargs) -> TeacherClient:
    options = dict(backoff_initial_s=0.01, backoff_max_s=0.05, timeout_s=5.0, max_retries=6)
    options |= kwargs
    api_key = options.pop("api_key", SECRET)
    return TeacherClient(
        base_url=server.base_url, model="fake", api_key=api_key, api_key_env="MY_KEY", **options
    )


def _complete(client: TeacherClient, messages=MESSAGES):
    async def go():
        try:
            return await client.complete(messages)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_transient_faults_are_retried_until_an_answer_comes(fake_server):
    server = fake_server()
    server.script("429", "503", "malformed", "empty", "disconnect")
    client = _client(server)
    completion = _complete(client)
    assert "病情分析" in completion.text
    assert [r["fault"] for r in server.log] == ["429", "503", "malformed", "empty", "disconnect", None]
    assert dict(client.stats.retries) == {"429": 1, "5xx": 1, "malformed": 1, "empty": 1, "connection": 1}
    assert client.stats.requests == 6


def test_retry_after_from_the_server_is_honoured(fake_server):
    server = fake_server(retry_after_s=0.4)
    server.script("429")
    client = _client(server, backoff_initial_s=0.001, backoff_max_s=0.002)
    _complete(client)
    gap = server.log[1]["t"] - server.log[0]["t"]
    assert 0.4 <= gap < 1.5, gap  # the computed backoff alone would have been ~1 ms


def test_a_request_past_the_timeout_is_abandoned_and_retried(fake_server):
    server = fake_server(slow_s=10)
    server.script("timeout")
    client = _client(server, timeout_s=0.3)
    t0 = time.perf_counter()
    _complete(client)
    assert time.perf_counter() - t0 < 3
    assert client.stats.retries["timeout"] == 1


def test_backoff_doubles_up_to_the_cap_with_jitter():
    rng = random.Random(0)
    for retry in range(8):
        nominal = min(8.0, 0.5 * 2**retry)
        delays = [backoff_delay(retry, 0.5, 8.0, rng) for _ in range(50)]
        assert all(nominal / 2 <= d <= nominal for d in delays)
        assert len(set(delays)) > 1, "jitter spreads clients that failed together"


def test_gives_up_after_max_retries_and_fails_only_that_request(fake_server):
    server = fake_server()
    server.script("503", "503", "503")
    with pytest.raises(RequestFailed, match="gave up after 3 attempts"):
        _complete(_client(server, max_retries=2))
    assert len(server.log) == 3


def test_a_request_the_server_cannot_serve_is_not_retried(fake_server):
    server = fake_server()
    server.script("bad_request")
    with pytest.raises(RequestFailed, match="HTTP 400"):
        _complete(_client(server))
    assert len(server.log) == 1


def test_a_refused_key_stops_at_once_and_never_shows_the_key(fake_server):
    server = fake_server()
    wrong = "sk-wrong-key-000111222333"
    with pytest.raises(FatalTeacherError) as info:
        _complete(_client(server, api_key=wrong))
    assert len(server.log) == 1, "an authentication error must not be retried"
    assert "$MY_KEY" in str(info.value) and "401" in str(info.value)
    assert wrong not in str(info.value)


def test_exhausted_quota_stops_at_once(fake_server):
    server = fake_server()
    server.script("quota")
    with pytest.raises(FatalTeacherError, match="no quota"):
        _complete(_client(server))
    assert len(server.log) == 1


def test_plain_rate_limit_mentioning_quota_is_still_retried(fake_server, monkeypatch):
    # DashScope's rate limit is "Throttling.RateQuota": transient, unlike an empty account.
    from tests.fakes import fake_openai

    original = fake_openai._error

    def patched(status, message, kind, code):
        if status == 429 and code == "rate_limit_exceeded":
            return original(status, "Requests rate limit exceeded, RateQuota", kind, "Throttling.RateQuota")
        return original(status, message, kind, code)

    monkeypatch.setattr(fake_openai, "_error", patched)
    server = fake_server()
    server.script("429")
    client = _client(server)
    _complete(client)
    assert client.stats.retries["429"] == 1


def test_concurrency_caps_requests_in_flight(fake_server):
    server = fake_server(latency_s=0.1)
    client = _client(server, concurrency=3)

    async def go():
        try:
            await asyncio.gather(*(client.complete(MESSAGES) for _ in range(9)))
        finally:
            await client.aclose()

    t0 = time.perf_counter()
    asyncio.run(go())
    assert time.perf_counter() - t0 >= 0.3  # 9 requests, 3 at a time, 0.1 s each


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "100", "retry-after": "9"}, 0.1),
        ({}, None),
        ({"retry-after": "soon"}, None),
    ],
)
def test_retry_after_headers_are_read(headers, expected):
    assert retry_after_seconds(headers) == expected


def test_retry_after_http_date_is_read():
    import email.utils

    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3 <= retry_after_seconds({"retry-after": when}) <= 6
