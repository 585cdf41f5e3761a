"""Loss on supervised tokens only, without materialising the full logits.

Qwen2.5's vocabulary has 151,936 entries: full fp32 logits for a batch of 4 x 1024 tokens take 2.5 GB,
and their gradient as much again, although only the answer tokens carry a label. The patched forward
runs the backbone, keeps the hidden states whose next token is supervised, and sends them through
``LinearCrossEntropy``: the LM head and the cross-entropy chunk by chunk, with the gradient of each chunk
computed right away (softmax minus one-hot, times the head's weight), so at most one chunk of logits is
alive at a time and backward has nothing left to recompute. (Checkpointing each chunk instead, as before,
ran the 152k-wide head twice: about a tenth of a 0.5B model's training step on a CPU.)
Generation (no ``medtune_labels``) goes through the original forward untouched.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

from medtune.data.template import IGNORE_INDEX


@dataclass
class SelectiveLossOutput(ModelOutput):
    loss: torch.Tensor | None = None
    num_tokens: torch.Tensor | None = None
    num_correct: torch.Tensor | None = None


class LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T + bias`` against ``target``, and the top-1 hits.

    The gradients are computed in forward and only scaled in backward; which ones are wanted is decided
    by the caller (``needs``), since grad mode is off inside ``forward``.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, target, chunk: int, needs: tuple[bool, bool, bool]):
        need_h, need_w, need_b = needs
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = torch.zeros_like(bias) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        # One buffer of logits for all chunks (fp32), turned into the softmax in place (log_softmax would
        # add a second one: 311 MB at 512 x 152k in fp32); one allocation of that size per step, not one
        # per chunk, also spares the heap a recurring hole.
        reuse = hidden.dtype == weight.dtype == torch.float32
        buf = hidden.new_empty((min(chunk, hidden.size(0)), weight.size(0))) if reuse else None
        for start in range(0, hidden.size(0), chunk):
            h, t = hidden[start : start + chunk], target[start : start + chunk]
            if buf is None:
                logits = F.linear(h, weight, bias).float()
            elif bias is None:
                logits = torch.mm(h, weight.t(), out=buf[: h.size(0)])
            else:
                logits = torch.addmm(bias, h, weight.t(), out=buf[: h.size(0)])
            rows = torch.arange(t.numel(), device=t.device)
            target_logit = logits[rows, t]
            top = logits.amax(-1)
            correct += (target_logit >= top).sum()  # a top-1 hit: no logit above the target's
            norm = logits.sub_(top[:, None]).exp_().sum(-1)
            total += (norm.log() + top - target_logit).sum()  # -log softmax at the targets
            if need_h or need_w or need_b:
                grad = logits.div_(norm[:, None])  # the softmax
                grad[rows, t] -= 1.0
                grad = grad.to(hidden.dtype)
                if need_h:
                    torch.mm(grad, weight, out=grad_h[start : start + chunk])
                if need_w:
                    grad_w.addmm_(grad.t(), h)
                if need_b:
                    grad_b += grad.sum(0)
            del logits
        del buf
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.mark_non_differentiable(correct)
        return total, correct

    @staticmethod
    def backward(ctx, grad_total, grad_correct):
        grads = [None if g is None else g * grad_total.to(g.dtype) for g in ctx.saved_tensors]
        return *grads, None, None, None


def selective_loss(
    hidden: torch.Tensor, labels: torch.Tensor, lm_head: torch.nn.Module, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over supervised positions; also the count and the top-1 hits."""
    hidden = hidden[:, :-1]
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    hs = hidden[mask]
    tg = target[mask]
    if hs.size(0) == 0:
        # Keeps the graph connected for a batch with no labels.
        zero = hidden.sum() * 0.0
        return zero, mask.sum(), torch.zeros((), dtype=torch.long, device=hidden.device)
    weight, bias = lm_head.weight, getattr(lm_head, "bias", None)
    grad_on = torch.is_grad_enabled()
    needs = (
        grad_on and hs.requires_grad,
        grad_on and weight.requires_grad,
        grad_on and bias is not None and bias.requires_grad,
    )
    total, correct = LinearCrossEntropy.apply(hs, weight, bias, tg, chunk, needs)
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


def remove_selective_lm_head(model: torch.nn.Module) -> None:
    """Give ``model`` its class's forward back (undoes ``add_selective_lm_head``)."""
    if getattr(vars(model).get("forward"), "__func__", None) is not None:
        del model.forward


def has_selective_lm_head(model: torch.nn.Module) -> bool:
    return "forward" in vars(model)
