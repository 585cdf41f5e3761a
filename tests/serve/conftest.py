"""The serving tests' engine: the tiny model with a random (non-zero) LoRA adapter, built once per session."""

import pytest


@pytest.fixture(scope="session")
def engine(tiny_peft_engine):
    return tiny_peft_engine


def hold_first_step_until(scheduler, monkeypatch, rows: int, timeout: float = 30.0):
    """Make the scheduler's first decode step wait until ``rows`` requests are running or queued.

    Tests of rows sharing a batch must not depend on the machine's speed: on a fast one a short request
    finished before the next one arrived, and the batch never held two rows. Returns an event set when
    the first step has begun (the first row is running).
    """
    import threading
    import time

    started = threading.Event()
    step = scheduler._step

    def first_step_waits(running, state):
        if not started.is_set():
            started.set()
            deadline = time.monotonic() + timeout
            while len(running) + scheduler._pending.qsize() < rows and time.monotonic() < deadline:
                time.sleep(0.005)
        return step(running, state)

    monkeypatch.setattr(scheduler, "_step", first_step_waits)
    return started
