"""Gradient checkpointing only where memory needs it: per batch, per layer, within an activation budget.

Checkpointing every layer costs about a third more compute; checkpointing none can need more memory than
the machine has (Qwen2.5-0.5B in fp32 keeps ~72 KB per token and layer with medtune's fused LoRA, 156 KB
with PEFT's modules: 4 x 1024 tokens are 7 or 15 GB).
Batches of medical answers vary several-fold in width, so the choice is made for each batch: the
``budget`` is split into as many layers as fit whole (their activations kept), and the remaining adapted
layers are checkpointed (they keep only their input). Short batches run without recomputation, long
ones recompute just enough layers to stay within the budget.

``train.gradient_checkpointing``: ``true`` (every adapted layer, every step), ``false`` (never), ``auto``
(this plan; ``train.activation_budget_gb`` sets the budget, by default the smaller of 40% of the free
memory and 1.5x the size of the model's weights at the compute precision).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)


def activation_bytes(
    model_config,
    tokens: int,
    adapted_layers: int,
    bytes_per_value: int,
    lora_dropout: bool = True,
    fused: bool = True,
) -> int:
    """Size of the activations autograd keeps for ``tokens`` tokens through ``adapted_layers`` layers.

    Counted from the tensors a LoRA'd Qwen2 decoder layer saves for backward, per token and layer:

    - with medtune's fused LoRA (``train.fused_lora``): 6 hidden-sized tensors (the residual and normed
      inputs of both blocks, the rotated query, the attention output and its copy for o_proj), the rotated
      key and the value, gate and up (the fused MLP recomputes the rest), and a one-byte dropout mask for
      the input of every adapted module (6 hidden + 1 intermediate).
    - with PEFT's modules: ~8 hidden-sized and 4 intermediate-sized tensors (gate, SiLU, up and their
      product), and LoRA dropout's dropped copy of every adapted input (6 hidden + 1 intermediate more).

    Measured with autograd's saved-tensor hooks on Qwen2.5-0.5B in fp32 with dropout: 72.3 KB fused
    (this gives 71.7) and 155.8 KB with PEFT (this gives 148.5); the tests count the tiny model the same
    way. The process grows by more than this (freed temporaries, the LM head's chunk): the budget is for
    the tensors. Frozen layers below the lowest adapter keep nothing, since nothing there needs a gradient.
    """
    hidden, inter = model_config.hidden_size, model_config.intermediate_size
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or hidden // heads
    kv = 2 * getattr(model_config, "num_key_value_heads", heads) * head_dim
    if fused:
        per_token_layer = (6 * hidden + 2 * inter + kv) * bytes_per_value
        if lora_dropout:
            per_token_layer += 6 * hidden + inter
    else:
        n_hidden, n_inter = (14, 5) if lora_dropout else (8, 4)
        per_token_layer = (n_hidden * hidden + n_inter * inter + kv) * bytes_per_value
    return tokens * adapted_layers * per_token_layer


@dataclass
class CheckpointPlan:
    """How activations are kept: ``all`` layers checkpointed, ``off``, or per batch within a ``budget``."""

    mode: Literal["off", "all", "budget"]
    budget_bytes: int = 0
    bytes_per_token_layer: int = 0
    history: list[tuple[int, int]] = field(default_factory=list)
    """(checkpointed, adapted) layers of every training batch under ``budget``."""

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def layers_to_checkpoint(self, tokens: int, layers: int) -> int:
        if self.mode != "budget":
            return layers if self.mode == "all" else 0
        keep = self.budget_bytes // max(1, tokens * self.bytes_per_token_layer)
        return max(0, layers - int(keep))

    def apply(self, layers: list[Any], tokens: int) -> int:
        """Set the checkpointing flag of each adapted layer for a batch of ``tokens`` tokens."""
        n = self.layers_to_checkpoint(tokens, len(layers))
        # The lowest adapted layers are checkpointed: any choice costs the same recomputation.
        for i, layer in enumerate(layers):
            layer.gradient_checkpointing = i < n
        self.history.append((n, len(layers)))
        return n

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode}
        if self.mode == "budget":
            out["budget_gb"] = round(self.budget_bytes / 1e9, 2)
            if self.history:
                done = sum(n for n, _ in self.history)
                total = sum(m for _, m in self.history)
                out["checkpointed_layer_share"] = round(done / max(total, 1), 3)
                out["batches_without_recompute"] = sum(1 for n, _ in self.history if n == 0)
                out["batches"] = len(self.history)
        return out


def free_memory_bytes() -> int:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.mem_get_info()[0]
    import psutil

    return psutil.virtual_memory().available


def weight_bytes(model, bytes_per_value: int | None = None) -> int:
    """The parameters' size, as held or (``bytes_per_value``) at a given precision."""
    return sum(p.numel() * (bytes_per_value or p.element_size()) for p in model.parameters())


def resolve_checkpointing(cfg, model_config, precision: str, weights: int | None = None) -> CheckpointPlan:
    """The plan for ``train.gradient_checkpointing``: fixed, or per batch within the activation budget."""
    setting = cfg.train.gradient_checkpointing
    if isinstance(setting, bool):
        return CheckpointPlan("all" if setting else "off")
    layers = cfg.lora.top_layers or model_config.num_hidden_layers
    bpv = 4 if precision == "fp32" else 2
    per = activation_bytes(
        model_config,
        1,
        1,
        bpv,
        lora_dropout=cfg.lora.dropout > 0,
        # The fused functions step aside under autocast (bf16/fp16): PEFT's modules keep more there.
        fused=cfg.train.fused_lora and precision == "fp32",
    )
    free = free_memory_bytes()
    if cfg.train.activation_budget_gb is not None:
        budget = int(cfg.train.activation_budget_gb * 1e9)
    else:
        budget = int(0.4 * free)
        if weights:
            # 1.5x the weights (at the compute precision): with the frozen weights held as stored and the
            # fused MLP's slices, training then peaks near 3x the model's fp32 size on a CPU.
            budget = min(budget, int(1.5 * weights))
    if budget <= 0:
        return CheckpointPlan("all")
    widest = cfg.train.batch_size * cfg.train.cutoff_len * layers * per
    if widest <= budget:
        logger.info(
            "gradient checkpointing off: the widest batch keeps ~%.1f GB of activations, budget %.1f GB",
            widest / 1e9, budget / 1e9,
        )  # fmt: skip
        return CheckpointPlan("off")
    tokens_fit = budget // (layers * per)
    logger.info(
        "gradient checkpointing per batch: budget %.1f GB of activations (free memory %.1f GB); batches up to "
        "~%d tokens run without recomputation, wider ones checkpoint just enough of the %d adapted layers",
        budget / 1e9, free / 1e9, tokens_fit, layers,
    )  # fmt: skip
    return CheckpointPlan("budget", budget_bytes=budget, bytes_per_token_layer=per)


def adapted_layers(model) -> list[Any]:
    """The decoder layers that hold trainable parameters, bottom to top."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [
        m
        for m in model.modules()
        if isinstance(m, GradientCheckpointingLayer) and any(p.requires_grad for p in m.parameters())
    ]
