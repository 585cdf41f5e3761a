"""Per-batch gradient checkpointing: the plan's arithmetic, that the chosen layers really recompute, and
that training under a budget gives the adapter of a run without checkpointing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from medtune.data.prepare import prepare
from medtune.train.checkpointing import (
    CheckpointPlan,
    activation_bytes,
    adapted_layers,
    resolve_checkpointing,
)


def test_plan_keeps_as_many_layers_as_the_budget_holds():
    plan = CheckpointPlan("budget", budget_bytes=1000, bytes_per_token_layer=10)
    assert plan.layers_to_checkpoint(tokens=10, layers=24) == 14  # 1000 // 100 = 10 layers kept
    assert plan.layers_to_checkpoint(tokens=4, layers=24) == 0  # 25 would fit: nothing to recompute
    assert plan.layers_to_checkpoint(tokens=200, layers=24) == 24  # not even one layer fits
    assert CheckpointPlan("all").layers_to_checkpoint(5, 3) == 3
    assert CheckpointPlan("off").layers_to_checkpoint(5, 3) == 0


def _qwen_config(hidden: int, inter: int, layers: int, heads: int, kv_heads: int) -> SimpleNamespace:
    return SimpleNamespace(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
    )


def test_activation_estimate_matches_the_measured_size():
    qwen05 = _qwen_config(896, 4864, 24, 14, 2)
    # Measured on Qwen2.5-0.5B, fp32, LoRA with dropout (see the docstring): 72.3 KB fused, 155.8 KB with PEFT.
    assert 68e3 < activation_bytes(qwen05, 1, 1, 4) < 76e3
    assert 140e3 < activation_bytes(qwen05, 1, 1, 4, fused=False) < 165e3
    assert activation_bytes(qwen05, 1, 1, 4, lora_dropout=False) < activation_bytes(qwen05, 1, 1, 4)


@pytest.mark.parametrize("fused", [True, False])
def test_activation_estimate_matches_what_autograd_keeps(qwen_tokenizer, fused):
    """Count the bytes autograd saves in one forward of the tiny model and compare with the estimate."""
    from medtune.config import LoraConfig
    from medtune.model.adapters import attach_lora
    from medtune.model.tiny import build_tiny_model
    from medtune.train.fused_lora import fuse_lora_linears

    model = attach_lora(build_tiny_model(qwen_tokenizer, seed=0), LoraConfig(r=2, alpha=4, dropout=0.1))
    if fused:
        fuse_lora_linears(model)
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    tokens = 2 * 96
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=torch.randint(0, 150000, (2, 96)), use_cache=False).logits.sum()
    cfg = model.config
    layers = cfg.num_hidden_layers
    expected = activation_bytes(cfg, tokens, layers, 4, lora_dropout=True, fused=fused)
    # Only the decoder layers are counted by the estimate: the final norm's input and the low-rank
    # intermediates add a few percent.
    assert expected < sum(saved.values()) < 1.15 * expected


def test_auto_resolves_from_the_budget(tiny_config, monkeypatch):
    from medtune.train import checkpointing

    monkeypatch.setattr(checkpointing, "free_memory_bytes", lambda: 10**11)
    qwen7b = _qwen_config(3584, 18944, 28, 28, 4)
    tiny = _qwen_config(64, 128, 2, 4, 2)
    assert resolve_checkpointing(tiny_config("train.gradient_checkpointing=auto"), tiny, "fp32").mode == "off"
    plan = resolve_checkpointing(
        tiny_config("train.gradient_checkpointing=auto", "train.activation_budget_gb=2"), qwen7b, "bf16"
    )
    assert plan.mode == "budget" and plan.budget_bytes == 2e9
    # The default budget is capped at 1.5x the size of the weights.
    plan = resolve_checkpointing(
        tiny_config("train.gradient_checkpointing=auto"), qwen7b, "bf16", weights=10**9
    )
    assert plan.mode == "budget" and plan.budget_bytes == 1.5e9
    assert resolve_checkpointing(tiny_config("train.gradient_checkpointing=true"), tiny, "fp32").mode == "all"
    assert (
        resolve_checkpointing(tiny_config("train.gradient_checkpointing=false"), qwen7b, "fp32").mode == "off"
    )


def test_the_chosen_layers_and_only_they_recompute(tiny_config):
    from medtune.model.adapters import attach_lora
    from medtune.model.loader import load_model

    cfg = tiny_config()
    model, _, _ = load_model(cfg.model)
    model = attach_lora(model, cfg.lora)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    layers = adapted_layers(model)
    assert len(layers) == model.config.num_hidden_layers
    calls = []
    for i, layer in enumerate(layers):
        inner = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _i=i, _f=inner, **k: calls.append(_i) or _f(*a, **k)
    ids = torch.randint(100, 1000, (2, 30))
    per = 1000
    for budget_layers, expected in ((2, []), (1, [0]), (0, [0, 1])):
        plan = CheckpointPlan("budget", budget_bytes=budget_layers * 60 * per, bytes_per_token_layer=per)
        calls.clear()
        assert plan.apply(layers, ids.numel()) == len(expected)
        model(input_ids=ids, labels=ids).loss.backward()
        assert calls == expected


@pytest.mark.parametrize("budget", ["0.001"])
def test_training_under_a_budget_gives_the_adapter_of_a_run_without_checkpointing(tiny_config, budget):
    from medtune.train.sft import run_sft

    adapters, plans = {}, {}
    for name, overrides in (
        ("nockpt", ["train.gradient_checkpointing=false"]),
        ("budget", ["train.gradient_checkpointing=auto", f"train.activation_budget_gb={budget}"]),
    ):
        cfg = tiny_config(
            *overrides, f"run_name={name}", "train.eval_steps=0", "train.load_best_at_end=false"
        )
        prepare(cfg)
        result = run_sft(cfg)
        adapters[name] = load_file(cfg.adapter_dir / "adapter_model.safetensors")
        plans[name] = result.metrics["gradient_checkpointing"]
    assert plans["nockpt"] == {"mode": "off"}
    assert plans["budget"]["mode"] == "budget" and plans["budget"]["batches"] == 4
    assert plans["budget"]["checkpointed_layer_share"] > 0
    for key, value in adapters["nockpt"].items():
        torch.testing.assert_close(adapters["budget"][key], value, atol=1e-5, rtol=0)
