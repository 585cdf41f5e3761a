"""Admission control for the API: who generates now, who waits, who is turned away and for how long.

``Admission`` runs at most ``max_concurrent`` generations and keeps at most ``max_queue`` requests waiting,
first come first served; anything past that is refused at once with a Retry-After estimate, so load never
turns into an unbounded backlog. A request holds a ``Ticket`` from admission until its generation has
really stopped. A batching scheduler can take this module's place behind the same enqueue / ticket
interface. ``RateLimiter`` is the per-key token bucket in front of it.

Everything here runs on the server's event loop thread; none of it is thread-safe on its own.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable


class Refused(Exception):
    """A request that cannot be admitted; ``retry_after`` is a hint in seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(Refused):
    """Every generation slot is busy and the waiting line is full."""


class ShuttingDown(Refused):
    """The server is draining before it stops."""


class Ticket:
    """One request's place: waiting, then holding a generation slot until released."""

    def __init__(self, admission: Admission, granted: asyncio.Future):
        self._admission = admission
        self.granted = granted
        """Resolves when the slot is this request's (or fails with ShuttingDown)."""
        self._started: float | None = None
        self._released = False

    def release(self) -> None:
        """Give the slot back, or leave the line; safe to call more than once."""
        if self._released:
            return
        self._released = True
        if self.granted.done() and not self.granted.cancelled() and self.granted.exception() is None:
            self._admission._hand_over(time.monotonic() - (self._started or time.monotonic()))
        else:
            self.granted.cancel()
            self._admission._leave(self)


class Admission:
    def __init__(self, max_concurrent: int, max_queue: int):
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.running = 0
        """Generation slots in use."""
        self._line: deque[Ticket] = deque()
        self._closed = False
        self._mean_hold_s: float | None = None

    @property
    def waiting(self) -> int:
        return len(self._line)

    def enqueue(self) -> Ticket:
        """A ticket that is granted now or later; raises Refused when it can be neither."""
        if self._closed:
            raise ShuttingDown("the server is shutting down", retry_after=5)
        ticket = Ticket(self, asyncio.get_running_loop().create_future())
        if self.running < self.max_concurrent and not self._line:
            self._grant(ticket)
        elif len(self._line) < self.max_queue:
            self._line.append(ticket)
        else:
            raise QueueFull(
                f"the server is busy ({self.running} generating, {self.waiting} waiting); retry later",
                retry_after=self.retry_after(),
            )
        return ticket

    def retry_after(self) -> int:
        """Seconds until the line has moved by one place, from the mean time a slot is held."""
        mean = self._mean_hold_s if self._mean_hold_s is not None else 5.0
        return max(1, math.ceil(mean * (self.waiting + 1) / self.max_concurrent))

    def close(self) -> None:
        """Stop admitting: new requests and everyone still waiting get ShuttingDown."""
        self._closed = True
        while self._line:
            ticket = self._line.popleft()
            if not ticket.granted.done():
                ticket.granted.set_exception(ShuttingDown("the server is shutting down", retry_after=5))

    def _grant(self, ticket: Ticket) -> None:
        self.running += 1
        ticket._started = time.monotonic()
        ticket.granted.set_result(None)

    def _hand_over(self, held_s: float) -> None:
        # A running mean that follows load changes within a few requests.
        self._mean_hold_s = held_s if self._mean_hold_s is None else 0.8 * self._mean_hold_s + 0.2 * held_s
        self.running -= 1
        while self._line and self.running < self.max_concurrent:
            ticket = self._line.popleft()
            if not ticket.granted.done():
                self._grant(ticket)

    def _leave(self, ticket: Ticket) -> None:
        if ticket in self._line:
            self._line.remove(ticket)


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, in bursts of up to ``per_minute``."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: str) -> int:
        """0 when the request may go ahead (a token is spent), else the seconds until it may."""
        now = self._clock()
        tokens, then = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))
