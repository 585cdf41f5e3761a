"""The batched letter scorer gives exactly what a plain forward pass over each full prompt gives."""

import itertools
import math

import pytest
import torch

from medtune.eval.exam import PREFILL, LetterScorer, letter_token_ids, score_generated, user_message
from medtune.eval.sets import ExamItem


@pytest.fixture
def engine(tiny_peft_engine):
    return tiny_peft_engine


def item(i, answer="B", n_options=4, length=1):
    options = {chr(65 + k): f"选项{k}" * (1 + (i + k) % 3) for k in range(n_options)}
    return ExamItem(
        f"q{i}", "患者男，45岁，" * length + f"第{i}题问的是哪一项？", options, frozenset(answer), f"f:{i}"
    )


ITEMS = [item(i, length=1 + i % 4) for i in range(7)]
SHOTS = [item(100, "A"), item(101, "C")]


def naive_letter_probs(engine, it, shots):
    """The reference: the whole prompt through the model, full logits, softmax over the letters' tokens."""
    text = engine.prompt_text(user_message(it, shots)) + PREFILL
    ids = torch.tensor([engine.tokenizer.encode(text, add_special_tokens=False)])
    with torch.inference_mode():
        logits = engine.model(input_ids=ids).logits[0, -1].float()
    letters = letter_token_ids(engine.tokenizer, "".join(it.options))
    flat = [t for ts in letters.values() for t in ts]
    probs = torch.softmax(logits[flat], dim=-1).tolist()
    by_token = dict(zip(flat, probs))
    return {k: sum(by_token[t] for t in ts) for k, ts in letters.items()}


@pytest.mark.parametrize("shots", [[], SHOTS], ids=["zero-shot", "2-shot"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_batched_prefix_cached_scores_equal_a_plain_forward(engine, shots, batch_size):
    scorer = LetterScorer(engine.model, engine.tokenizer, engine.prompt_text, batch_size)
    results = dict((it.id, r) for it, r in scorer.score(ITEMS, shots))
    assert len(results) == len(ITEMS)
    for it in ITEMS:
        probs = naive_letter_probs(engine, it, shots)
        best = max(probs, key=probs.get)
        r = results[it.id]
        assert r.predicted == [best]
        assert r.confidence == pytest.approx(probs[best], abs=2e-4)
        assert r.correct == (best == "B")


def test_the_shared_prefix_is_a_true_token_prefix(engine):
    scorer = LetterScorer(engine.model, engine.tokenizer, engine.prompt_text)
    for it in ITEMS:
        prefix, suffix = scorer.split_prompt(it, SHOTS)
        full = engine.tokenizer.encode(
            engine.prompt_text(user_message(it, SHOTS)) + PREFILL, add_special_tokens=False
        )
        assert prefix + suffix == full and len(prefix) > 50


def test_multiple_answer_items_pick_the_most_probable_complete_answer(engine):
    it = item(7, answer="AC", n_options=3)
    scorer = LetterScorer(engine.model, engine.tokenizer, engine.prompt_text, batch_size=2)
    [(got_item, result)] = list(scorer.score([it], []))
    # Reference: each candidate letter set + end of turn, scored on its own full sequence.
    text = engine.prompt_text(user_message(it, [])) + PREFILL
    prompt = engine.tokenizer.encode(text, add_special_tokens=False)
    end = engine.tokenizer.encode("<|im_end|>", add_special_tokens=False)
    scores = {}
    for n in (1, 2, 3):
        for combo in itertools.combinations("ABC", n):
            cont = engine.tokenizer.encode("".join(combo), add_special_tokens=False) + end
            ids = torch.tensor([prompt + cont])
            with torch.inference_mode():
                logp = torch.log_softmax(engine.model(input_ids=ids).logits[0].float(), -1)
            scores["".join(combo)] = sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(cont))
    best = max(scores, key=scores.get)
    assert "".join(result.predicted) == best
    total = sum(math.exp(s - scores[best]) for s in scores.values())
    assert result.confidence == pytest.approx(1 / total, abs=2e-4)
    assert result.correct == (best == "AC")


def test_the_adapter_changes_the_scores_and_disabling_it_gives_the_base(engine):
    scorer = LetterScorer(engine.model, engine.tokenizer, engine.prompt_text, 4)
    tuned = [r.confidence for _, r in sorted(scorer.score(ITEMS, []), key=lambda x: x[0].id)]
    with engine.model.disable_adapter():
        base = [r.confidence for _, r in sorted(scorer.score(ITEMS, []), key=lambda x: x[0].id)]
        reference = [
            max(naive_letter_probs(engine, it, []).values()) for it in sorted(ITEMS, key=lambda i: i.id)
        ]
    assert base == pytest.approx(reference, abs=2e-4)
    assert tuned != pytest.approx(base, abs=1e-6)


def test_the_last_layer_mlp_runs_on_the_last_positions_only_and_is_restored(engine):
    scorer = LetterScorer(engine.model, engine.tokenizer, engine.prompt_text, 4)
    mlp = scorer.backbone.layers[-1].mlp
    shapes = []
    # The MLP's own projections see what it computes on (a hook on the MLP sees the full input it is handed).
    hook = mlp.down_proj.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    try:
        results = list(scorer.score(ITEMS, []))
    finally:
        hook.remove()
    singles = [s for s in shapes if s[1] == 1]
    assert len(singles) == 2 and sum(s[0] for s in singles) == len(
        ITEMS
    )  # batches of 4 and 3, one position each
    assert "forward" not in vars(mlp)
    # Scores still equal a plain forward pass (which runs the MLP everywhere).
    reference = {it.id: max(naive_letter_probs(engine, it, []).values()) for it in ITEMS}
    assert {it.id: r.confidence for it, r in results} == pytest.approx(reference, abs=2e-4)


def test_scoring_keeps_freed_memory_only_while_it_runs(engine, monkeypatch):
    from medtune.train import allocator

    if allocator._glibc() is None:
        pytest.skip("the allocator setting applies to glibc only")
    seen = []
    real_hidden = LetterScorer._hidden

    def spy(self, *args):
        seen.append(allocator.settings())
        return real_hidden(self, *args)

    monkeypatch.setattr(LetterScorer, "_hidden", spy)
    scorer = LetterScorer(engine.model, engine.tokenizer, engine.prompt_text, 4)
    assert allocator.settings() == {}
    list(scorer.score(ITEMS, []))
    assert seen and all(s == {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1} for s in seen)
    assert allocator.settings() == {}
    # A caller that already keeps freed memory (a training run) keeps it afterwards.
    allocator.keep_freed_memory()
    try:
        list(scorer.score(ITEMS[:2], []))
        assert allocator.settings() == {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1}
    finally:
        allocator.release_freed_memory()


def test_generated_answers_are_scored_as_exact_sets():
    it = item(1, answer="AC", n_options=4)
    assert score_generated(it, "答案：A、C").correct
    assert not score_generated(it, "答案：A").correct
    r = score_generated(it, "我无法回答")
    assert r.predicted is None and r.how == "refusal" and not r.correct
