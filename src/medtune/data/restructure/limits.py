"""Client-side request and token rate limits (token buckets), so a run stays under the plan's RPM/TPM
instead of learning them from a storm of 429s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Requests-per-minute and tokens-per-minute buckets, refilled continuously, waited on in FIFO order.

    Each bucket holds at most one second of its rate, so a run starts smoothly rather than spending a
    minute's allowance in the first second (providers enforce their limits over short windows too).
    Tokens are charged up front from an estimate (prompt + max_tokens, as providers count them) and
    settled with the real usage afterwards; a request larger than the bucket waits for a full bucket and
    leaves it in debt, so the long-run rate still holds.
    """

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._r_rate = requests_per_minute / 60.0 if requests_per_minute else 0.0
        self._t_rate = tokens_per_minute / 60.0 if tokens_per_minute else 0.0
        self._r_cap = max(1.0, self._r_rate)
        self._t_cap = max(1.0, self._t_rate)
        self._r = self._r_cap
        self._t = self._t_cap
        self._last = clock()
        self._lock = asyncio.Lock()
        self.waited_s = 0.0
        """Total time callers spent waiting for the limits (shown in the summary)."""

    @property
    def active(self) -> bool:
        return bool(self._r_rate or self._t_rate)

    def _refill(self) -> None:
        now = self._clock()
        elapsed, self._last = now - self._last, now
        if self._r_rate:
            self._r = min(self._r_cap, self._r + elapsed * self._r_rate)
        if self._t_rate:
            self._t = min(self._t_cap, self._t + elapsed * self._t_rate)

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of about ``tokens`` tokens may be sent."""
        if not self.active:
            return
        async with self._lock:  # FIFO: a waiting request is not overtaken by later ones
            while True:
                self._refill()
                wait = 0.0
                if self._r_rate and self._r < 1.0:
                    wait = (1.0 - self._r) / self._r_rate
                need = min(float(tokens), self._t_cap)
                if self._t_rate and self._t < need:
                    wait = max(wait, (need - self._t) / self._t_rate)
                if wait <= 0:
                    if self._r_rate:
                        self._r -= 1.0
                    if self._t_rate:
                        self._t -= tokens
                    return
                self.waited_s += wait
                await self._sleep(wait)

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once the real usage of a request is known."""
        if self._t_rate:
            self._t = min(self._t_cap, self._t + estimated - actual)
