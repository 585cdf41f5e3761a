"""Loss on supervised tokens only, without materialising the full logits.

Qwen2.5's vocabulary has 151,936 entries: full fp32 logits for a batch of 4 x 1024 tokens take 2.5 GB,
and their gradient as much again, although only the answer tokens carry a label. The patched forward
runs the backbone, keeps the hidden states whose next token is supervised, and projects them through
the LM head in chunks under activation checkpointing, so at most one chunk of logits is alive at a time.
Generation (no ``medtune_labels``) goes through the original forward untouched.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers.utils import ModelOutput

from medtune.data.template import IGNORE_INDEX


@dataclass
class SelectiveLossOutput(ModelOutput):
    loss: torch.Tensor | None = None
    num_tokens: torch.Tensor | None = None
    num_correct: torch.Tensor | None = None


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor):
    logits = F.linear(hidden, weight, bias).float()
    loss = F.cross_entropy(logits, target, reduction="sum")
    correct = (logits.detach().argmax(-1) == target).sum()
    return loss, correct


def selective_loss(
    hidden: torch.Tensor, labels: torch.Tensor, lm_head: torch.nn.Module, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over supervised positions; also the count and the top-1 hits."""
    hidden = hidden[:, :-1]
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    hs = hidden[mask]
    tg = target[mask]
    total = hs.new_zeros((), dtype=torch.float32)
    correct = torch.zeros((), dtype=torch.long, device=hs.device)
    weight, bias = lm_head.weight, getattr(lm_head, "bias", None)
    # A single chunk is computed plainly: checkpointing it would only add a recomputation of the head.
    recompute = torch.is_grad_enabled() and hs.size(0) > chunk
    for start in range(0, hs.size(0), chunk):
        h, t = hs[start : start + chunk], tg[start : start + chunk]
        if recompute:
            loss, hit = checkpoint(_chunk_loss, h, weight, bias, t, use_reentrant=False)
        else:
            loss, hit = _chunk_loss(h, weight, bias, t)
        total = total + loss
        correct = correct + hit
    if hs.size(0) == 0:
        total = hidden.sum() * 0.0  # keeps the graph connected for a batch with no labels
    return total, mask.sum(), correct


def add_selective_lm_head(model: torch.nn.Module, chunk: int = 1024) -> None:
    """Patch ``model.forward`` (a *ForCausalLM, before PEFT wrapping) to accept ``medtune_labels``."""
    original_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, medtune_labels=None, num_items_in_batch=None, **kwargs):
        if medtune_labels is None:
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        # Backbone and head are looked up on every call: PEFT and FSDP replace modules after patching.
        backbone = getattr(self, self.base_model_prefix)
        hidden = backbone(*args, **kwargs).last_hidden_state
        loss_sum, n_tokens, n_correct = selective_loss(
            hidden, medtune_labels, self.get_output_embeddings(), chunk
        )
        denom = n_tokens.clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return SelectiveLossOutput(loss=loss_sum / denom, num_tokens=n_tokens, num_correct=n_correct)

    model.forward = types.MethodType(forward, model)
