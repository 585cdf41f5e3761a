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


def test_activation_estimate_matches_the_measured_size():
    qwen05 = SimpleNamespace(hidden_size=896, intermediate_size=4864, num_hidden_layers=24)
    # Measured: 194 KB per token and layer (Qwen2.5-0.5B, fp32, LoRA with dropout), see the module doc.
    assert 180e3 < activation_bytes(qwen05, 1, 1, 4) < 205e3
    assert activation_bytes(qwen05, 1, 1, 4, lora_dropout=False) < activation_bytes(qwen05, 1, 1, 4)


def test_auto_resolves_from_the_budget(tiny_config):
    qwen7b = SimpleNamespace(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28)
    tiny = SimpleNamespace(hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    assert resolve_checkpointing(tiny_config("train.gradient_checkpointing=auto"), tiny, "fp32").mode == "off"
    plan = resolve_checkpointing(
        tiny_config("train.gradient_checkpointing=auto", "train.activation_budget_gb=2"), qwen7b, "bf16"
    )
    assert plan.mode == "budget" and plan.budget_bytes == 2e9
    # The default budget is capped at twice the weights.
    plan = resolve_checkpointing(
        tiny_config("train.gradient_checkpointing=auto"), qwen7b, "bf16", weights=10**9
    )
    assert plan.mode == "budget" and plan.budget_bytes <= 2 * 10**9
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


@pytest.mark.parametrize("budget", ["0.005"])
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
