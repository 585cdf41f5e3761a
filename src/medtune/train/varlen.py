"""Padding-free batches with exact per-sample attention, on any device (no flash-attention needed).

With ``train.padding_free`` each batch is one row: its samples laid end to end, with per-sample position
ids and the sequence boundaries TRL's padding-free collator computes (``cu_seq_lens_q``). Every linear
layer, the bulk of the work, then runs on real tokens only. Flash-attention kernels take such rows
natively; PyTorch's SDPA does not, and transformers falls back to one dense block-diagonal mask over the
whole row, which costs attention over every pair of tokens in the batch and stops SDPA from skipping the
masked half of a causal product.

``varlen_attention`` (registered as the attention implementation ``medtune_varlen``) runs causal SDPA on
each sample's slice instead: exactly the attention of the unpacked samples, at their cost. Padded batches
(a 2-D attention mask) are handled row by row the same way, and anything else (a KV cache during
generation, left padding) gets an explicit mask, so the implementation is safe for every call the model
receives while it is set.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import repeat_kv

NAME = "medtune_varlen"

# Every layer of one forward pass gets the same boundary tensors: they are read (a device-to-host copy on
# a GPU) once per pass, and the result kept while those very tensors are alive and unmodified.
_last_bounds: tuple | None = None


def _key(t: torch.Tensor | None):
    return None if t is None else (weakref.ref(t), t._version)


def _boundaries(kwargs: dict, attention_mask: torch.Tensor | None, batch: int, length: int):
    """``_read_boundaries``, computed once per forward pass rather than once per layer."""
    global _last_bounds
    sources = (kwargs.get("cu_seq_lens_q"), attention_mask, kwargs.get("position_ids"))
    if _last_bounds is not None:
        shape, keys, bounds = _last_bounds
        if shape == (batch, length) and all(
            (k is None and t is None)
            or (k is not None and t is not None and k[0]() is t and k[1] == t._version)
            for k, t in zip(keys, sources)
        ):
            return bounds
    bounds = _read_boundaries(kwargs, attention_mask, batch, length)
    _last_bounds = (batch, length), tuple(_key(t) for t in sources), bounds
    return bounds


def _read_boundaries(kwargs: dict, attention_mask: torch.Tensor | None, batch: int, length: int):
    """Per row, the (start, end) of every sample; None when the rows are not plain right-padded or packed."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None and batch == 1:
        edges = cu.tolist()
        return [list(zip(edges[:-1], edges[1:]))]
    if attention_mask is not None:
        if attention_mask.dim() != 2:
            return None
        keep = attention_mask.bool()
        # Right padding only: every row is ones followed by zeros (never rising again).
        if bool((keep[:, 1:] & ~keep[:, :-1]).any()):
            return None
        return [[(0, int(n))] for n in keep.sum(-1).tolist()]
    position_ids = kwargs.get("position_ids")
    if position_ids is not None and position_ids.dim() == 2 and position_ids.shape[-1] == length:
        rows = []
        for row in position_ids.expand(batch, -1):
            starts = (row == 0).nonzero().flatten().tolist() or [0]
            if starts[0] != 0:
                return None
            rows.append(list(zip(starts, starts[1:] + [length])))
        return rows
    return [[(0, length)] for _ in range(batch)]


def varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention for query/key/value of shape (batch, heads, tokens, head_dim); returns (batch, tokens, heads, dim)."""
    batch, _, q_len, _ = query.shape
    kv_len = key.shape[2]
    groups = query.shape[1] // key.shape[1]
    bounds = _boundaries(kwargs, attention_mask, batch, q_len) if q_len == kv_len else None
    if bounds is None:
        return _masked_attention(query, key, value, attention_mask, dropout, scaling, groups), None
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    rows = []
    for b, segments in enumerate(bounds):
        parts = [
            F.scaled_dot_product_attention(
                query[b : b + 1, :, s:e],
                key[b : b + 1, :, s:e],
                value[b : b + 1, :, s:e],
                dropout_p=dropout,
                scale=scaling,
                is_causal=True,
            )  # fmt: skip
            for s, e in segments
            if e > s
        ]
        covered = segments[-1][1] if segments else 0
        if covered < q_len:  # padding: its outputs are never read by a real token or a label
            parts.append(query.new_zeros(1, query.shape[1], q_len - covered, value.shape[-1]))
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


def _masked_attention(query, key, value, attention_mask, dropout, scaling, groups):
    """General case: causal (aligned to the end, as with a KV cache) and the 2-D padding mask, if any."""
    q_len, kv_len = query.shape[2], key.shape[2]
    key_pos = torch.arange(kv_len, device=query.device)[None, :]
    query_pos = torch.arange(q_len, device=query.device)[:, None] + (kv_len - q_len)
    mask = (key_pos <= query_pos)[None, None]
    if attention_mask is not None:
        if attention_mask.dim() == 2:
            mask = mask & attention_mask[:, None, None, -kv_len:].bool()
        elif attention_mask.dtype == torch.bool:
            mask = attention_mask
        else:
            mask = attention_mask > torch.finfo(attention_mask.dtype).min / 2
    # Every query may attend to its own key: a padding query would otherwise see nothing, and its NaN
    # output would reach real tokens through a zero attention weight (0 x NaN).
    mask = mask | (key_pos == query_pos)[None, None]
    out = F.scaled_dot_product_attention(
        query,
        repeat_kv(key, groups),
        repeat_kv(value, groups),
        attn_mask=mask,
        dropout_p=dropout,
        scale=scaling,
    )
    return out.transpose(1, 2).contiguous()


def reset_cache() -> None:
    """Forget the boundaries kept from the last forward pass (module state; see ``_boundaries``)."""
    global _last_bounds
    _last_bounds = None


def registered() -> bool:
    from transformers import AttentionInterface

    return NAME in AttentionInterface._global_mapping


def unregister() -> None:
    """Remove ``medtune_varlen`` from transformers' attention and mask registries (after training)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface._global_mapping.pop(NAME, None)
    type(ALL_MASK_ATTENTION_FUNCTIONS)._global_mapping.pop(NAME, None)
    reset_cache()


def register() -> str:
    """Make ``medtune_varlen`` a valid ``config._attn_implementation``; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

    AttentionInterface.register(NAME, varlen_attention)
    # The model hands attention the 2-D padding mask (None when there is no padding), as it does for
    # flash-attention; an unregistered implementation would get no mask at all, and left padding would leak.
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, flash_attention_mask)
    return NAME
