"""Admission (generation slots and a bounded line) and the per-key token bucket, without a server."""

import asyncio

import pytest

from medtune.serve.admission import Admission, QueueFull, RateLimiter, ShuttingDown


def test_slots_go_first_come_first_served_and_the_line_is_bounded():
    async def scenario():
        admission = Admission(max_concurrent=1, max_queue=2)
        first = admission.enqueue()
        second, third = admission.enqueue(), admission.enqueue()
        assert first.granted.done() and not second.granted.done()
        assert (admission.running, admission.waiting) == (1, 2)
        with pytest.raises(QueueFull) as full:
            admission.enqueue()
        assert full.value.retry_after >= 1
        second.release()  # gave up waiting: leaves the line
        first.release()
        first.release()  # releasing twice changes nothing
        assert third.granted.done() and (admission.running, admission.waiting) == (1, 0)
        third.release()
        assert (admission.running, admission.waiting) == (0, 0)

    asyncio.run(scenario())


def test_closing_refuses_new_and_waiting_requests():
    async def scenario():
        admission = Admission(max_concurrent=1, max_queue=4)
        running, waiting = admission.enqueue(), admission.enqueue()
        admission.close()
        with pytest.raises(ShuttingDown):
            await waiting.granted
        with pytest.raises(ShuttingDown):
            admission.enqueue()
        waiting.release()
        running.release()
        assert admission.running == 0

    asyncio.run(scenario())


def test_the_token_bucket_allows_a_burst_then_one_per_interval_per_key():
    now = [0.0]
    limiter = RateLimiter(per_minute=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == 20  # one token every 20 s
    assert limiter.take("b") == 0
    now[0] = 19.0
    assert limiter.take("a") == 1
    now[0] = 20.5
    assert limiter.take("a") == 0
