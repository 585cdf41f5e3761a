"""Frozen weights kept in 16 bits must train exactly as the fp32 model loaded from the same checkpoint."""

import math

import pytest
import torch

from medtune.config import LoraConfig
from medtune.model.adapters import attach_lora
from medtune.train import compact_weights
from medtune.train.compact_weights import adapters_in_fp32, compact_frozen_weights, widen_frozen_weights
from medtune.train.fused_lora import fuse_lora_linears, unfuse_lora_linears


def _model(qwen_tokenizer, dtype: torch.dtype):
    """The tiny model rounded to fp16 (as a 16-bit checkpoint holds it), loaded in ``dtype``, with LoRA."""
    from medtune.model.tiny import build_tiny_model

    model = build_tiny_model(qwen_tokenizer, seed=3).half().to(dtype)
    adapters_in_fp32(model)
    torch.manual_seed(3)
    model = attach_lora(model, LoraConfig(r=4, alpha=8, dropout=0.2))
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)
    torch.manual_seed(3)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = torch.randn_like(p, dtype=torch.float32) * 0.05
    return model.train()


def _step(model, ids):
    model.zero_grad()
    torch.manual_seed(11)  # the same dropout masks in both models
    logits = model(input_ids=ids, use_cache=False).logits
    logits.float().pow(2).mean().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_compact_model_trains_exactly_as_the_fp32_model(qwen_tokenizer, monkeypatch):
    from medtune.train import fused_lora

    monkeypatch.setattr(fused_lora, "MLP_ROWS", 7)  # the MLP's three widened weights held across slices
    ids = torch.randint(0, 150000, (2, 19))
    wide = _model(qwen_tokenizer, torch.float32)
    fuse_lora_linears(wide)
    ref_logits, ref_grads = _step(wide, ids)

    compact = _model(qwen_tokenizer, torch.float16)
    fuse_lora_linears(compact)
    saved = compact_frozen_weights(compact)
    base = compact.base_model.model
    layer = base.model.layers[0]
    assert layer.self_attn.q_proj.base_layer.weight.dtype == torch.float16
    assert layer.mlp.down_proj.base_layer.weight.dtype == torch.float16
    assert base.model.embed_tokens.weight.dtype == torch.float16  # untied: looked up, then widened
    assert base.lm_head.weight.dtype == torch.float32
    assert layer.self_attn.q_proj.base_layer.bias.dtype == torch.float32
    assert layer.input_layernorm.weight.dtype == torch.float32
    assert layer.self_attn.q_proj.lora_A["default"].weight.dtype == torch.float32
    linears = [m.base_layer.weight for m in compact.modules() if hasattr(m, "base_layer")]
    embedding = base.model.embed_tokens.weight
    assert saved == 2 * (sum(w.numel() for w in linears) + embedding.numel())

    logits, grads = _step(compact, ids)
    assert logits.dtype == torch.float32
    assert grads.keys() == ref_grads.keys() and any("lora_A" in n for n in grads)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=0, atol=0, msg=name)

    unfuse_lora_linears(compact)
    widen_frozen_weights(compact)
    unfuse_lora_linears(wide)
    assert {p.dtype for p in compact.parameters()} == {torch.float32}
    assert not base.model.embed_tokens._forward_hooks
    with torch.no_grad():
        compact.eval(), wide.eval()
        torch.testing.assert_close(compact(input_ids=ids).logits, wide(input_ids=ids).logits, rtol=0, atol=0)


def test_a_call_that_needs_the_unfused_forward_is_a_clear_error(qwen_tokenizer):
    model = _model(qwen_tokenizer, torch.float16)
    fuse_lora_linears(model)
    compact_frozen_weights(model)
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    x = torch.randn(1, 3, q_proj.in_features)
    assert q_proj(x).dtype == torch.float32
    with (
        pytest.raises(RuntimeError, match="compact_frozen_weights=false"),
        torch.autocast("cpu", torch.bfloat16),
    ):
        q_proj(x)


def test_tied_embeddings_are_widened_for_the_lm_head(qwen_tokenizer):
    from medtune.model.tiny import build_tiny_model

    model = build_tiny_model(qwen_tokenizer, seed=1)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    model = attach_lora(model.half(), LoraConfig(r=4, alpha=8, dropout=0.0))
    fuse_lora_linears(model)
    compact_frozen_weights(model)
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_auto_dtype_loads_the_checkpoint_as_stored(tmp_path, qwen_tokenizer):
    """What run_sft relies on to keep a 16-bit checkpoint in 16 bits and an fp32 one in fp32."""
    from medtune.config import ModelConfig
    from medtune.model.loader import load_model
    from medtune.model.tiny import build_tiny_model

    model = build_tiny_model(qwen_tokenizer, layers=1, hidden=32)
    model.save_pretrained(tmp_path / "fp32")
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    for name in ("fp32", "bf16"):
        qwen_tokenizer.save_pretrained(tmp_path / name)
    assert (
        load_model(ModelConfig(name_or_path=str(tmp_path / "fp32")), dtype="auto")[0].dtype == torch.float32
    )
    assert (
        load_model(ModelConfig(name_or_path=str(tmp_path / "bf16")), dtype="auto")[0].dtype == torch.bfloat16
    )


def test_adapters_start_from_the_values_an_fp32_model_gets(qwen_tokenizer):
    """PEFT would create the adapters in the base layer's 16-bit dtype: their initial values rounded."""
    from medtune.model.tiny import build_tiny_model

    inits = []
    for dtype in (torch.float16, torch.float32):
        model = build_tiny_model(qwen_tokenizer, seed=2, layers=1).half().to(dtype)
        adapters_in_fp32(model)
        torch.manual_seed(4)
        model = attach_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0))
        inits.append({n: p.detach() for n, p in model.named_parameters() if "lora_A" in n})
    assert inits[0].keys() == inits[1].keys() and inits[0]
    for name, value in inits[1].items():
        assert inits[0][name].dtype == torch.float32
        torch.testing.assert_close(inits[0][name], value, rtol=0, atol=0, msg=name)


def test_run_sft_from_an_fp16_checkpoint_trains_with_compact_weights(
    tmp_path, tiny_model_dir, qwen_tokenizer, tiny_config, monkeypatch
):
    """The whole training path: the fp16 checkpoint loaded as stored, weights compact while training,
    the model handed back in fp32 (the arithmetic itself is compared with fp32's above)."""
    from transformers import AutoModelForCausalLM

    from medtune.data.prepare import prepare
    from medtune.train.sft import run_sft

    half_dir = tmp_path / "tiny-fp16"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).half().save_pretrained(half_dir)
    qwen_tokenizer.save_pretrained(half_dir)
    dtypes: list[set] = []
    real = compact_weights.compact_frozen_weights

    def recording(model):
        saved = real(model)
        dtypes.append({p.dtype for n, p in model.named_parameters() if "base_layer" in n and "weight" in n})
        return saved

    monkeypatch.setattr(compact_weights, "compact_frozen_weights", recording)
    cfg = tiny_config(
        f"model.name_or_path={half_dir}",
        "train.max_steps=2",
        "train.eval_steps=0",
        "train.load_best_at_end=false",
    )
    prepare(cfg)
    result = run_sft(cfg)
    assert dtypes == [{torch.float16}]
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}
    assert math.isfinite(result.metrics["train_loss"])
