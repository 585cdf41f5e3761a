"""Frozen base weights kept in the checkpoint's 16-bit dtype while training computes in fp32 (CPU).

A CPU without native bf16 trains fastest in fp32, but a model loaded in fp32 holds every frozen weight
at twice the size of its bf16 or fp16 checkpoint: 2.5 GB instead of 1.3 for Qwen2.5-0.5B, 30 GB
instead of 15 for 7B. LoRA never updates those weights, and widening a bf16 or fp16 number to fp32 is
exact, so they can stay as stored: the fused LoRA functions (``medtune.train.fused_lora``) widen each
projection's weight to fp32 right before its matmul and drop the copy afterwards (about 1% of a
projection's time at 1-2k tokens, measured on a 2-core EPYC), and the input embedding's rows are widened
after the lookup. Every other tensor (norms, biases, the LM head, the adapters) is fp32, so the
arithmetic is exactly that of the fp32 model loaded from the same checkpoint.

``adapters_in_fp32`` runs before LoRA is attached (PEFT would otherwise create the adapters in the base
layer's dtype: their initial values rounded to 16 bits), ``compact_frozen_weights`` after LoRA is
attached and fused; ``widen_frozen_weights`` gives the model back in fp32 after training (evaluation and
generation then run PEFT's modules as usual).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

COMPACT_DTYPES = (torch.bfloat16, torch.float16)
_HOOK_ATTR = "_medtune_widen_hook"


def adapters_in_fp32(model: nn.Module) -> None:
    """Mark 16-bit linears as computing in fp32, so PEFT creates (and initialises) their adapters in fp32.

    PEFT reads a base layer's ``compute_dtype`` (set by bitsandbytes' 4-bit layers for the same reason)
    before its weight's dtype when it places a new adapter.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.dtype in COMPACT_DTYPES:
            module.compute_dtype = torch.float32


def _forget_compute_dtype(module: nn.Module) -> None:
    if isinstance(module, nn.Linear) and vars(module).get("compute_dtype") is torch.float32:
        del module.compute_dtype


def _widen_output(module, args, output):
    return output.float() if output.dtype in COMPACT_DTYPES else output


def compact_frozen_weights(model: nn.Module) -> int:
    """Keep 16-bit the frozen weights the fused functions widen per use; everything else to fp32.

    ``model`` is a PEFT model loaded in its checkpoint's 16-bit dtype, with LoRA fused. Returns the bytes
    saved against holding those weights in fp32 (0 when the model holds no 16-bit weights).
    """
    from medtune.train.fused_lora import fused_projection_weights

    keep = {id(w) for w in fused_projection_weights(model)}  # only the fused functions multiply with these
    embeddings = model.get_input_embeddings()
    outputs = model.get_output_embeddings()
    tied = outputs is not None and outputs.weight is embeddings.weight
    if not tied and not embeddings.weight.requires_grad:
        keep.add(id(embeddings.weight))
    saved = 0
    seen: set[int] = set()
    for module in model.modules():
        _forget_compute_dtype(module)
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if id(tensor) in seen or tensor.dtype not in COMPACT_DTYPES:
                continue
            seen.add(id(tensor))
            if id(tensor) in keep and not tensor.requires_grad:
                saved += tensor.numel() * (4 - tensor.element_size())
                continue
            tensor.data = tensor.data.float()
    if id(embeddings.weight) in keep and embeddings.weight.dtype in COMPACT_DTYPES:
        setattr(embeddings, _HOOK_ATTR, embeddings.register_forward_hook(_widen_output))
    if saved:
        logger.info(
            "frozen base weights kept in 16 bits, widened to fp32 per use: %.2f GB saved", saved / 1e9
        )
    return saved


def widen_frozen_weights(model: nn.Module) -> None:
    """Every 16-bit tensor of ``model`` back to fp32 (after training), and the embedding hook removed."""
    from medtune.train.fused_lora import release_widening_buffers

    release_widening_buffers()
    for module in model.modules():
        _forget_compute_dtype(module)
        hook = vars(module).pop(_HOOK_ATTR, None)
        if hook is not None:
            hook.remove()
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if tensor.dtype in COMPACT_DTYPES:
                tensor.data = tensor.data.float()
