"""Padding-free packing must not let samples attend to each other."""

import torch

from medtune.data.template import IGNORE_INDEX, encode_messages
from medtune.prompts import build_messages


def _per_sample_losses(model, ids, labels, position_ids=None, attention_mask=None):
    # use_cache=False as in training: transformers only reads packing from position_ids without a KV cache.
    out = model(input_ids=ids, position_ids=position_ids, attention_mask=attention_mask, use_cache=False)
    logits = out.logits[0, :-1].float()
    target = labels[0, 1:]
    return torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")


def test_packed_batch_gives_the_same_per_sample_loss_as_unpacked(qwen_tokenizer):
    from medtune.model.tiny import build_tiny_model

    model = build_tiny_model(qwen_tokenizer, seed=1).eval()
    samples = [
        encode_messages(qwen_tokenizer, build_messages("头疼两天了", "一、病情分析\n考虑紧张性头痛。")),
        encode_messages(
            qwen_tokenizer, build_messages("孩子拉肚子怎么办", "二、原因分析\n多为病毒感染。多喝水。")
        ),
        encode_messages(qwen_tokenizer, build_messages("咳嗽", "三、治疗建议\n多休息。")),
    ]
    separate = []
    with torch.no_grad():
        for s in samples:
            ids, labels = torch.tensor([s.input_ids]), torch.tensor([s.labels])
            separate.append(_per_sample_losses(model, ids, labels))
        ids = torch.tensor([sum((s.input_ids for s in samples), [])])
        # The first label of every packed sample is masked, exactly as TRL's padding-free collator does.
        labels = torch.tensor([sum(([IGNORE_INDEX] + s.labels[1:] for s in samples), [])])
        position_ids = torch.tensor([sum((list(range(len(s.input_ids))) for s in samples), [])])
        packed = _per_sample_losses(model, ids, labels, position_ids=position_ids)
    offset = 0
    for s, alone in zip(samples, separate):
        n = len(s.input_ids)
        # Position n-1 of a sample predicts the next sample's first token: that label is masked in both.
        torch.testing.assert_close(packed[offset : offset + n - 1], alone, rtol=1e-4, atol=1e-4)
        offset += n


def test_without_position_ids_samples_would_leak(qwen_tokenizer):
    """The control: packing with a plain causal mask changes the later samples' losses."""
    from medtune.model.tiny import build_tiny_model

    model = build_tiny_model(qwen_tokenizer, seed=1).eval()
    a = encode_messages(qwen_tokenizer, build_messages("头疼两天了", "一、病情分析\n考虑紧张性头痛。"))
    b = encode_messages(qwen_tokenizer, build_messages("咳嗽", "三、治疗建议\n多休息。"))
    with torch.no_grad():
        alone = _per_sample_losses(model, torch.tensor([b.input_ids]), torch.tensor([b.labels]))
        ids = torch.tensor([a.input_ids + b.input_ids])
        labels = torch.tensor([[IGNORE_INDEX] * len(a.input_ids) + b.labels])
        leaked = _per_sample_losses(model, ids, labels, attention_mask=torch.ones_like(ids))
    assert not torch.allclose(
        leaked[len(a.input_ids) : len(a.input_ids) + len(b.input_ids) - 1], alone, atol=1e-4
    )
