"""Continuous batching in the engine: rows join and leave a running batch; greedy output as if alone."""

import threading
import time

import pytest

from medtune.serve.engine import ChatEngine, GenerationSettings, StreamControl
from tests.serve.conftest import hold_first_step_until

QUESTIONS = ["发烧怎么办", "胃反酸烧心，晚上躺下更明显，怎么办？需要做胃镜吗", "头疼", "孩子咳嗽三天了，有痰"]


@pytest.fixture(scope="module")
def batched(engine):
    return ChatEngine(engine.model, engine.tokenizer, name="tiny", max_batch=4)


def _tokens(engine, question, settings, use_adapter=True):
    control = StreamControl()
    text = "".join(engine.stream(question, settings=settings, use_adapter=use_adapter, control=control))
    return text, control


def test_stream_alone_matches_hf_generate(batched):
    settings = GenerationSettings(max_new_tokens=12, temperature=0.0)
    text, control = _tokens(batched, QUESTIONS[1], settings)
    [answer] = batched.generate([QUESTIONS[1]], settings, batch_size=1)
    assert text.strip() == answer.text
    assert control.completion_tokens == answer.num_tokens


def test_batched_greedy_output_is_identical_to_alone(batched, monkeypatch):
    settings = GenerationSettings(max_new_tokens=16, temperature=0.0)
    # Base and tuned rows, different prompt lengths, mixed in one batch.
    jobs = [(q, i % 2 == 0) for i, q in enumerate(QUESTIONS)]
    alone = [_tokens(batched, q, settings, use) for q, use in jobs]
    scheduler = batched.scheduler
    steps = scheduler.steps
    results: dict[int, tuple] = {}

    # The later requests must arrive while the first one is generating; sleeping between arrivals made
    # that depend on the machine's speed, so the first row's first step waits until the others are queued.
    first_running = hold_first_step_until(scheduler, monkeypatch, rows=len(jobs))

    def run(i, q, use):
        results[i] = _tokens(batched, q, settings, use)

    threads = [threading.Thread(target=run, args=(i, q, use)) for i, (q, use) in enumerate(jobs)]
    threads[0].start()
    assert first_running.wait(30)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join()
    assert [results[i][0] for i in range(len(jobs))] == [a[0] for a in alone]
    assert scheduler.peak_batch == len(jobs), "the later rows joined the running one"
    assert scheduler.prefix_hits >= 2 * len(jobs)  # the system turn's cache was reused
    # Fewer steps than one request after another would take.
    assert scheduler.steps - steps < sum(a[1].completion_tokens for a in alone)


def test_cancel_frees_the_row_at_once(batched):
    long = GenerationSettings(max_new_tokens=400, temperature=0.0, repetition_penalty=1.0)
    control = StreamControl()
    pieces = batched.stream(QUESTIONS[0], settings=long, control=control)
    next(pieces)
    control.cancel.set()
    started = time.perf_counter()
    rest = list(pieces)
    assert time.perf_counter() - started < 2.0
    assert control.finish_reason == "cancelled"
    assert control.completion_tokens < 400
    assert len(rest) < 50
    # The consumer leaving also ends the row.
    control2 = StreamControl()
    pieces = batched.stream(QUESTIONS[0], settings=long, control=control2)
    next(pieces)
    pieces.close()
    assert control2.finish_reason == "cancelled"


def test_sampling_rows_run_alongside_greedy(batched):
    sampled = GenerationSettings(max_new_tokens=8, temperature=0.8, top_p=0.9)
    greedy = GenerationSettings(max_new_tokens=8, temperature=0.0)
    out = {}
    threads = [
        threading.Thread(target=lambda: out.setdefault("s", _tokens(batched, QUESTIONS[0], sampled))),
        threading.Thread(target=lambda: out.setdefault("g", _tokens(batched, QUESTIONS[2], greedy))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out["g"][0] == _tokens(batched, QUESTIONS[2], greedy)[0]
    assert out["s"][1].finish_reason in ("stop", "length")


def test_warm_up_runs_the_serving_path_once_joins_included(engine):
    from medtune.serve.batching import BASE

    fresh = ChatEngine(engine.model, engine.tokenizer, name="tiny", max_batch=4)
    assert fresh.warm_up() > 0
    scheduler = fresh.scheduler
    assert scheduler.steps > 0
    assert scheduler.peak_batch == 3, "rows joined a running batch"
    assert set(scheduler._prefix_kv) == {BASE, engine.model.active_adapter}, "both adapters' prefix caches"
    # Afterwards the engine serves as before.
    settings = GenerationSettings(max_new_tokens=6, temperature=0.0)
    assert (
        _tokens(fresh, QUESTIONS[0], settings)[0]
        == _tokens(ChatEngine(engine.model, engine.tokenizer, name="tiny"), QUESTIONS[0], settings)[0]
    )


def test_the_roomy_cache_layer_appends_in_place_and_holds_what_concatenation_would():
    import torch

    from medtune.serve.batching import _roomy_layer_class

    layer = _roomy_layer_class()()
    torch.manual_seed(0)
    steps = [torch.randn(2, 3, n, 4) for n in (5, 1, 1, 1)]
    keys, values = layer.update(steps[0], -steps[0])
    buffer = layer._room_keys
    for new in steps[1:]:
        keys, values = layer.update(new, -new)
    assert layer._room_keys is buffer, "no new buffer while there is room"
    assert torch.equal(keys, torch.cat(steps, dim=-2)) and torch.equal(values, -torch.cat(steps, dim=-2))
    assert layer.get_seq_length() == 8
    # Rows leaving (what _keep does): the layer gets new tensors and moves them into a new buffer.
    layer.keys, layer.values = keys[[1]], values[[1]]
    last = torch.randn(1, 3, 1, 4)
    keys, _ = layer.update(last, -last)
    assert layer._room_keys is not buffer
    assert torch.equal(keys, torch.cat([torch.cat(steps, dim=-2)[[1]], last], dim=-2))
