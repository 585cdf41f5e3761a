"""The fused LoRA linear must compute what PEFT computes: outputs and every gradient, with and without dropout."""

import pytest
import torch
from torch import nn

from medtune.config import LoraConfig
from medtune.model.adapters import attach_lora
from medtune.train import fused_lora
from medtune.train.fused_lora import dropout_mask, fuse_lora_linears, unfuse_lora_linears


def _peft_model(qwen_tokenizer, dropout: float, seed: int = 5):
    from medtune.model.tiny import build_tiny_model

    model = build_tiny_model(qwen_tokenizer, seed=seed)
    model = attach_lora(model, LoraConfig(r=4, alpha=8, dropout=dropout))
    # PEFT initialises B to zero; random B makes the low-rank path (and its gradients) non-trivial.
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.05)
    return model


def _loss_and_grads(model, ids):
    model.zero_grad()
    out = model(input_ids=ids, use_cache=False).logits
    loss = out.float().pow(2).mean()
    loss.backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fused_equals_peft_without_dropout(qwen_tokenizer):
    model = _peft_model(qwen_tokenizer, dropout=0.0).train()
    ids = torch.randint(0, 150000, (2, 17))
    ref_out, ref_grads = _loss_and_grads(model, ids)
    assert fuse_lora_linears(model) == 7 * model.config.num_hidden_layers
    assert all("forward" in vars(layer.mlp) for layer in model.base_model.model.model.layers)
    out, grads = _loss_and_grads(model, ids)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys() and any("lora_A" in n for n in grads)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fused_dropout_equals_peft_with_the_same_mask(qwen_tokenizer, monkeypatch):
    """With dropout, each module's mask is recorded and replayed through PEFT's own dropout modules.

    The fused MLP runs over slices of 5 of the 26 tokens here (the last one short); the test without
    dropout runs it in one slice.
    """
    monkeypatch.setattr(fused_lora, "MLP_ROWS", 5)
    model = _peft_model(qwen_tokenizer, dropout=0.3).train()
    ids = torch.randint(0, 150000, (2, 13))
    masks: list[tuple[torch.Tensor, float]] = []
    real = fused_lora.dropout_mask

    def recording(shape, p, device):
        drop, rescale = real(shape, p, device)
        masks.append((drop, rescale))
        return drop, rescale

    monkeypatch.setattr(fused_lora, "dropout_mask", recording)
    fuse_lora_linears(model)
    out, grads = _loss_and_grads(model, ids)
    unfuse_lora_linears(model)

    replay = iter(list(masks))

    class Replay(nn.Module):
        def forward(self, x):
            drop, rescale = next(replay)
            return x.masked_fill(drop, 0.0) * rescale

    for module in model.modules():
        if hasattr(module, "lora_dropout"):
            module.lora_dropout["default"] = Replay()
    ref_out, ref_grads = _loss_and_grads(model, ids)
    assert len(masks) == 7 * model.config.num_hidden_layers
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_dropout_mask_rate_and_reproducibility():
    torch.manual_seed(0)
    drop, rescale = dropout_mask((400, 1000), 0.05, torch.device("cpu"))
    assert drop.dtype == torch.bool
    assert abs(drop.float().mean().item() - 0.05) < 0.002
    assert rescale == pytest.approx(1 / (1 - round(0.05 * 65536) / 65536))
    torch.manual_seed(0)
    again, _ = dropout_mask((400, 1000), 0.05, torch.device("cpu"))
    assert torch.equal(drop, again)  # seeded from torch's generator: set_seed and --resume replay it
    assert not torch.equal(drop, dropout_mask((400, 1000), 0.05, torch.device("cpu"))[0])


def test_unfused_and_ineligible_cases_use_peft(qwen_tokenizer):
    model = _peft_model(qwen_tokenizer, dropout=0.0).eval()
    ids = torch.randint(0, 150000, (1, 9))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        fuse_lora_linears(model)
        with model.disable_adapter():  # disabled adapters fall back to PEFT's forward: base model only
            base = model(input_ids=ids).logits
        fused = model(input_ids=ids).logits
        unfuse_lora_linears(model)
        assert not any("forward" in vars(m) for m in model.modules() if hasattr(m, "lora_A"))
        with model.disable_adapter():
            torch.testing.assert_close(model(input_ids=ids).logits, base)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(base, plain, atol=1e-4)

    from medtune.model.tiny import build_tiny_model

    dora = attach_lora(build_tiny_model(qwen_tokenizer, seed=1), LoraConfig(r=4, alpha=8, use_dora=True))
    assert fuse_lora_linears(dora) == 0
