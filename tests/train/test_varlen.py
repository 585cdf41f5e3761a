"""medtune's per-sample attention must give exactly the attention of the unpacked, unpadded samples."""

import pytest
import torch

from medtune.data.template import IGNORE_INDEX, encode_messages
from medtune.prompts import build_messages
from medtune.train.varlen import register


@pytest.fixture
def models(qwen_tokenizer):
    """The same tiny model twice: plain SDPA and medtune_varlen."""
    from medtune.model.tiny import build_tiny_model

    plain = build_tiny_model(qwen_tokenizer, seed=2).eval()
    varlen = build_tiny_model(qwen_tokenizer, seed=2).eval()
    varlen.set_attn_implementation(register())
    return plain, varlen


def _samples(tok):
    pairs = [
        ("头疼两天了", "一、病情分析\n考虑紧张性头痛。"),
        ("孩子拉肚子怎么办", "二、原因分析\n多为病毒感染。多喝水。"),
        ("咳嗽", "三、治疗建议\n多休息。"),
    ]
    return [encode_messages(tok, build_messages(q, a)) for q, a in pairs]


def _token_losses(logits, labels):
    return torch.nn.functional.cross_entropy(
        logits[0, :-1].float(), labels[0, 1:], ignore_index=IGNORE_INDEX, reduction="none"
    )


@pytest.mark.parametrize("with_cu", [True, False])
def test_padding_free_row_equals_separate_samples(models, qwen_tokenizer, with_cu):
    plain, varlen = models
    samples = _samples(qwen_tokenizer)
    ids = torch.tensor([sum((s.input_ids for s in samples), [])])
    labels = torch.tensor([sum(([IGNORE_INDEX] + s.labels[1:] for s in samples), [])])
    position_ids = torch.tensor([sum((list(range(len(s.input_ids))) for s in samples), [])])
    extra = {}
    if with_cu:  # what TRL's padding-free collator adds
        edges = [0]
        for s in samples:
            edges.append(edges[-1] + len(s.input_ids))
        extra["cu_seq_lens_q"] = torch.tensor(edges, dtype=torch.int32)
    packed = varlen(input_ids=ids, position_ids=position_ids, use_cache=False, **extra).logits
    offset = 0
    with torch.no_grad():
        for s in samples:
            alone = plain(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits
            n = len(s.input_ids)
            torch.testing.assert_close(packed[:, offset : offset + n], alone, rtol=1e-4, atol=1e-4)
            offset += n
    # Gradients flow through the per-sample slices.
    _token_losses(packed, labels).nansum().backward()
    assert varlen.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_right_padded_batch_equals_separate_samples(models, qwen_tokenizer):
    plain, varlen = models
    samples = _samples(qwen_tokenizer)
    width = max(len(s.input_ids) for s in samples)
    ids = torch.tensor([s.input_ids + [0] * (width - len(s.input_ids)) for s in samples])
    mask = torch.tensor([[1] * len(s.input_ids) + [0] * (width - len(s.input_ids)) for s in samples])
    with torch.no_grad():
        batched = varlen(input_ids=ids, attention_mask=mask, use_cache=False).logits
        for row, s in enumerate(samples):
            n = len(s.input_ids)
            alone = plain(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits
            torch.testing.assert_close(batched[row : row + 1, :n], alone, rtol=1e-4, atol=1e-4)


def test_left_padding_and_kv_cache_fall_back_to_a_full_mask(models, qwen_tokenizer):
    """Generation (left padding, KV cache) while the implementation is set gives SDPA's tokens."""
    plain, varlen = models
    qwen_tokenizer.padding_side = "left"
    prompts = ["头疼两天了怎么办", "咳嗽"]
    enc = qwen_tokenizer(prompts, return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=qwen_tokenizer.pad_token_id)
    with torch.no_grad():
        expected = plain.generate(**enc, **kwargs)
        got = varlen.generate(**enc, **kwargs)
        torch.testing.assert_close(
            varlen(**enc).logits[enc["attention_mask"].bool()],
            plain(**enc).logits[enc["attention_mask"].bool()],
            rtol=1e-4,
            atol=1e-4,
        )
    assert torch.equal(got, expected)


def test_boundaries_are_read_once_per_forward_and_follow_new_inputs(models, monkeypatch):
    from medtune.train import varlen as module

    _, model = models
    reads = []
    real = module._read_boundaries
    monkeypatch.setattr(module, "_read_boundaries", lambda *a: reads.append(1) or real(*a))
    ids = torch.randint(0, 150000, (1, 12))
    position_ids = torch.tensor([list(range(5)) + list(range(7))])
    with torch.no_grad():
        model(input_ids=ids, position_ids=position_ids, use_cache=False)
        assert len(reads) == 1  # not once per layer
        split_5_7 = module._boundaries({"position_ids": position_ids}, None, 1, 12)
        position_ids[0, 5:] = torch.arange(5, 12)  # the same tensor changed in place: one sample now
        assert module._boundaries({"position_ids": position_ids}, None, 1, 12) == [[(0, 12)]]
    assert split_5_7 == [[(0, 5), (5, 12)]]
