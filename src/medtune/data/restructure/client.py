"""The teacher client: the official async ``openai`` client with our own concurrency, rate limits, retries
and error policy around it.

The library's built-in retries are switched off (``max_retries=0``) because the policy here differs:
transient failures (429, 5xx, timeouts, dropped connections, malformed or empty responses) are retried
with exponential backoff and jitter, honouring ``Retry-After``; authentication, billing/quota and
not-found errors stop the whole run at once, since retrying them ten thousand times only burns time;
other 4xx errors fail the one record and leave it for the next run. The API key is held only by the
``openai`` client and is scrubbed from every message this module produces.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import openai

from medtune.data.restructure.limits import RateLimiter

logger = logging.getLogger(__name__)

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class FatalTeacherError(RuntimeError):
    """The endpoint refuses the whole run (bad key, no quota, unknown model): stop, do not retry."""


class RequestFailed(RuntimeError):
    """One request could not be completed (retries exhausted, or a 4xx that retrying cannot fix)."""

    def __init__(self, message: str, kind: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        """Tokens billed by the failed attempts (an empty answer still has usage)."""


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_known: bool = True
    logprobs: Any = None
    """The first choice's ``logprobs`` block when the request asked for it (evaluation of endpoints)."""


@dataclass
class ClientStats:
    """Counters shared by every request of a run (single event loop: no locking needed)."""

    requests: int = 0
    """HTTP requests sent, retries included."""
    retries: Counter = field(default_factory=Counter)
    """Retried failures by kind: 429, 5xx, timeout, connection, malformed, empty."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_missing: int = 0
    """Responses without a usage block (their tokens are unknown and not priced)."""


class _Transient(Exception):
    def __init__(
        self, kind: str, message: str, retry_after: float | None = None, usage: tuple[int, int] = (0, 0)
    ):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.usage = usage


def backoff_delay(retry: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Delay before retry number ``retry`` (0-based): exponential, capped, with "equal jitter".

    Half the delay is fixed and half random, so many clients that failed together spread out, yet none
    retries immediately."""
    delay = min(maximum, initial * (2**retry))
    return delay / 2 + rng.uniform(0, delay / 2)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms`` (OpenAI), else ``Retry-After`` seconds/date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())


class TeacherClient:
    """``complete(messages)`` with retries; one instance per run, closed with ``aclose()``."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str,
        api_key_env: str,
        timeout_s: float = 120.0,
        max_retries: int = 6,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        concurrency: int = 16,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        max_tokens: int = 1536,
        temperature: float = 0.3,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.max_retries = max_retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.stats = ClientStats()
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self._api_key_env = api_key_env
        self._secret = api_key
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._slots = asyncio.Semaphore(concurrency)
        self._fatal: FatalTeacherError | None = None
        url = urlparse(base_url)
        if url.scheme == "http" and (url.hostname or "") not in _LOOPBACK:
            logger.warning("base_url %s is plain http: the API key travels unencrypted", base_url)
        # TLS verification stays at the library default (on); there is no option to turn it off.
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0
        )

    @classmethod
    def from_config(cls, rc: Any, api_key: str, **kwargs: Any) -> TeacherClient:
        """Build from a ``RestructureConfig``."""
        return cls(
            base_url=rc.base_url,
            model=rc.model,
            api_key=api_key,
            api_key_env=rc.api_key_env,
            timeout_s=rc.timeout_s,
            max_retries=rc.max_retries,
            backoff_initial_s=rc.backoff_initial_s,
            backoff_max_s=rc.backoff_max_s,
            concurrency=rc.concurrency,
            requests_per_minute=rc.requests_per_minute,
            tokens_per_minute=rc.tokens_per_minute,
            max_tokens=rc.max_tokens,
            temperature=rc.temperature,
            **kwargs,
        )

    def scrub(self, text: str) -> str:
        """``text`` with the API key blanked out (error bodies sometimes echo it)."""
        return text.replace(self._secret, "***") if self._secret else text

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion:
        """One chat completion, retried on transient failures; raises FatalTeacherError or RequestFailed.

        ``params`` override or add request fields (``max_tokens``, ``logprobs`` ...) for this call."""
        # Providers count prompt + max_tokens against TPM up front; about one token per Chinese character.
        estimate = sum(len(m["content"]) for m in messages) + params.get("max_tokens", self.max_tokens)
        last = "no attempt"
        billed = [0, 0]  # tokens of failed attempts that were still billed, so per-record cost is complete
        for attempt in range(self.max_retries + 1):
            await self.limiter.acquire(estimate)
            try:
                async with self._slots:
                    if self._fatal is not None:  # another request already hit a wall: send nothing more
                        raise self._fatal
                    done = self._settle(estimate, await self._request(messages, params))
                done.prompt_tokens += billed[0]
                done.completion_tokens += billed[1]
                return done
            except _Transient as exc:
                billed[0] += exc.usage[0]
                billed[1] += exc.usage[1]
                last = f"{exc.kind}: {exc}"
                if attempt == self.max_retries:
                    break
                self.stats.retries[exc.kind] += 1
                delay = backoff_delay(attempt, self.backoff_initial_s, self.backoff_max_s, self._rng)
                if exc.retry_after is not None:
                    # The server knows best; a little jitter still keeps waiters from returning in lockstep.
                    delay = exc.retry_after + self._rng.uniform(0, 0.1 * exc.retry_after)
                logger.debug("retry %d in %.2fs after %s", attempt + 1, delay, last)
                await self._sleep(delay)  # outside the slot: a waiting retry does not block other records
        raise RequestFailed(
            f"gave up after {self.max_retries + 1} attempts; last error {last}", "retries", *billed
        )

    def _settle(self, estimate: int, completion: Completion) -> Completion:
        self.limiter.settle(estimate, completion.prompt_tokens + completion.completion_tokens)
        return completion

    async def _request(
        self, messages: list[dict[str, str]], params: dict[str, Any] | None = None
    ) -> Completion:
        self.stats.requests += 1
        request = {"max_tokens": self.max_tokens, "temperature": self.temperature, **(params or {})}
        try:
            resp = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                **request,
            )
        except openai.APIStatusError as exc:
            error = self._status_error(exc)
            if isinstance(error, FatalTeacherError):
                self._fatal = error
            raise error from exc
        except openai.APITimeoutError as exc:
            raise _Transient("timeout", "request timed out") from exc
        except openai.APIConnectionError as exc:
            raise _Transient("connection", self.scrub(str(exc))) from exc
        except (openai.APIResponseValidationError, ValueError) as exc:
            # A 200 whose body is not the JSON it should be (json.JSONDecodeError is a ValueError).
            raise _Transient("malformed", f"malformed response: {self.scrub(str(exc))[:160]}") from exc
        usage = getattr(resp, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0
        ct = int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0
        if usage is None:
            self.stats.usage_missing += 1
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        choices = getattr(resp, "choices", None) or []
        if not choices:
            raise _Transient("empty", "response has no choices", usage=(pt, ct))
        message = choices[0].message
        text = getattr(message, "content", None)
        if not text or not text.strip():
            reason = f"response has no content (finish_reason={choices[0].finish_reason})"
            raise _Transient("empty", reason, usage=(pt, ct))
        logprobs = getattr(choices[0], "logprobs", None)
        return Completion(text, choices[0].finish_reason, pt, ct, usage is not None, logprobs)

    def _status_error(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        body_msg = self.scrub(str(getattr(exc, "message", "") or exc))[:200]
        code = f"{exc.code or ''} {getattr(exc, 'type', '') or ''}".lower()
        low = body_msg.lower()
        # 402 (DeepSeek), insufficient_quota (OpenAI), Arrearage (DashScope): billing, not rate. A plain
        # rate-limit 429 may also say "quota" (DashScope's Throttling.RateQuota), so that alone is not enough.
        billing = "insufficient_quota" in code or "arrearage" in code
        billing = billing or ("insufficient" in low and ("quota" in low or "balance" in low))
        if status == 402 or billing:
            return FatalTeacherError(
                f"the teacher account at {self.base_url} has no quota or credit left (HTTP {status}: {body_msg}); "
                "top it up, then run the same command again: finished records are kept"
            )
        if status in (401, 403):
            return FatalTeacherError(
                f"the teacher at {self.base_url} refused the API key from ${self._api_key_env} "
                f"(HTTP {status}: {body_msg}); check the key and restructure.api_key_env"
            )
        if status == 404:
            return FatalTeacherError(
                f"model {self.model!r} or its endpoint was not found at {self.base_url} (HTTP 404: {body_msg}); "
                "check restructure.model and restructure.base_url"
            )
        if status == 429:
            return _Transient("429", body_msg, retry_after_seconds(exc.response.headers))
        if status >= 500 or status in (408, 409):
            return _Transient(
                "5xx" if status >= 500 else str(status), body_msg, retry_after_seconds(exc.response.headers)
            )
        return RequestFailed(f"HTTP {status}: {body_msg}", f"http_{status}")
