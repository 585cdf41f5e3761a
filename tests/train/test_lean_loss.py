"""The selective LM head must give exactly the loss (and gradients) of plain full-logit cross-entropy."""

import pytest
import torch

from medtune.data.template import IGNORE_INDEX
from medtune.train.lean_loss import add_selective_lm_head, selective_loss


def _full_loss(model, ids, labels, mask):
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE_INDEX
    )


@pytest.fixture
def tiny_model(qwen_tokenizer):
    from medtune.model.tiny import build_tiny_model

    return build_tiny_model(qwen_tokenizer, seed=3)


def _batch():
    torch.manual_seed(0)
    ids = torch.randint(0, 150000, (2, 24))
    labels = ids.clone()
    labels[:, :10] = IGNORE_INDEX
    labels[1, 20:] = IGNORE_INDEX  # padding at the end of the second row
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    return ids, labels, mask


@pytest.mark.parametrize("chunk", [1, 5, 1024])
def test_selective_loss_equals_full_cross_entropy(tiny_model, chunk):
    ids, labels, mask = _batch()
    expected = _full_loss(tiny_model, ids, labels, mask)
    add_selective_lm_head(tiny_model, chunk=chunk)
    out = tiny_model(input_ids=ids, attention_mask=mask, medtune_labels=labels)
    assert out.num_tokens.item() == int((labels[:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)


def test_selective_loss_gradients_match(tiny_model):
    ids, labels, mask = _batch()
    _full_loss(tiny_model, ids, labels, mask).backward()
    expected = {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}
    tiny_model.zero_grad()
    add_selective_lm_head(tiny_model, chunk=4)  # several chunks: the checkpointed path
    tiny_model(input_ids=ids, attention_mask=mask, medtune_labels=labels).loss.backward()
    for name, grad in expected.items():
        torch.testing.assert_close(dict(tiny_model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6)


def test_generation_path_is_untouched(tiny_model):
    ids, _, mask = _batch()
    before = tiny_model(input_ids=ids, attention_mask=mask).logits
    add_selective_lm_head(tiny_model)
    torch.testing.assert_close(tiny_model(input_ids=ids, attention_mask=mask).logits, before)


def test_batch_without_labels_gives_a_connected_zero(tiny_model):
    ids, labels, mask = _batch()
    hidden = tiny_model.model(input_ids=ids).last_hidden_state
    loss, n, _ = selective_loss(hidden, torch.full_like(labels, IGNORE_INDEX), tiny_model.lm_head, 8)
    assert n.item() == 0 and loss.item() == 0.0
    loss.backward()  # must not raise


@pytest.mark.parametrize("chunk", [3, 1024])
def test_top1_hits_count_the_argmax_of_the_full_logits(tiny_model, chunk):
    ids, labels, mask = _batch()
    with torch.no_grad():
        hidden = tiny_model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        predicted = tiny_model.lm_head(hidden).argmax(-1)
    # Every other supervised target is the model's own top-1 prediction: some hits, some misses.
    labels[:, 1::2] = torch.where(labels[:, 1::2] != IGNORE_INDEX, predicted[:, :-1:2], labels[:, 1::2])
    target = labels[:, 1:]
    expected = int(((predicted[:, :-1] == target) & (target != IGNORE_INDEX)).sum())
    _, _, hits = selective_loss(hidden, labels, tiny_model.lm_head, chunk)
    assert hits.item() == expected > 0
