"""Client-side RPM/TPM limits, on a virtual clock so the test takes no real time."""

from __future__ import annotations

import asyncio

from medtune.data.restructure.limits import RateLimiter


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def _times(limiter: RateLimiter, clock: VirtualClock, sizes: list[int]) -> list[float]:
    async def go():
        out = []
        for size in sizes:
            await limiter.acquire(size)
            out.append(round(clock.now, 6))
        return out

    return asyncio.run(go())


def test_requests_per_minute_spaces_requests_evenly():
    clock = VirtualClock()
    limiter = RateLimiter(requests_per_minute=120, clock=clock, sleep=clock.sleep)
    times = _times(limiter, clock, [1] * 7)
    # 2 per second with a one-second bucket: two at once, then one every half second.
    assert times == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_tokens_per_minute_limits_the_token_rate():
    clock = VirtualClock()
    limiter = RateLimiter(tokens_per_minute=6000, clock=clock, sleep=clock.sleep)  # 100 tokens/s
    times = _times(limiter, clock, [100] * 5)
    assert times[-1] >= 4.0 - 1e-6  # 500 tokens at 100/s, with one second in the bucket at the start


def test_a_request_larger_than_the_bucket_still_goes_and_leaves_debt():
    clock = VirtualClock()
    limiter = RateLimiter(tokens_per_minute=600, clock=clock, sleep=clock.sleep)  # 10 tokens/s
    times = _times(limiter, clock, [50, 10])
    assert times[0] == 0.0  # waits for a full bucket only, not forever
    assert times[1] >= 5.0 - 1e-6  # pays back the 40-token debt plus its own 10


def test_settling_real_usage_refunds_the_estimate():
    clock = VirtualClock()
    limiter = RateLimiter(tokens_per_minute=600, clock=clock, sleep=clock.sleep)

    async def go():
        await limiter.acquire(10)
        limiter.settle(estimated=10, actual=1)  # the answer was short
        await limiter.acquire(9)
        return clock.now

    assert asyncio.run(go()) == 0.0


def test_no_limits_never_waits():
    clock = VirtualClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    assert _times(limiter, clock, [10**6] * 3) == [0.0, 0.0, 0.0]
    assert not limiter.active
