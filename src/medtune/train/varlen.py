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

import torch
import torch.nn.functional as F

NAME = "medtune_varlen"


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    if groups == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, groups, t, d).reshape(b, h * groups, t, d)


def _boundaries(kwargs: dict, attention_mask: torch.Tensor | None, batch: int, length: int):
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
    key, value = _repeat_kv(key, groups), _repeat_kv(value, groups)
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
    device = query.device
    mask = torch.arange(kv_len, device=device)[None, :] <= torch.arange(q_len, device=device)[:, None] + (
        kv_len - q_len
    )
    # Every query may attend to its own key: a padding query would otherwise see nothing, and its NaN
    # output would reach real tokens through a zero attention weight (0 x NaN).
    diagonal = torch.arange(kv_len, device=device)[None, :] == torch.arange(q_len, device=device)[:, None] + (
        kv_len - q_len
    )
    mask = mask[None, None]
    if attention_mask is not None:
        if attention_mask.dim() == 2:
            mask = mask & attention_mask[:, None, None, -kv_len:].bool()
        elif attention_mask.dtype == torch.bool:
            mask = attention_mask
        else:
            mask = attention_mask > torch.finfo(attention_mask.dtype).min / 2
    mask = mask | diagonal[None, None]
    out = F.scaled_dot_product_attention(
        query,
        _repeat_kv(key, groups),
        _repeat_kv(value, groups),
        attn_mask=mask,
        dropout_p=dropout,
        scale=scaling,
    )
    return out.transpose(1, 2).contiguous()


def register() -> str:
    """Make ``medtune_varlen`` a valid ``config._attn_implementation``; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

    AttentionInterface.register(NAME, varlen_attention)
    # The model hands attention the 2-D padding mask (None when there is no padding), as it does for
    # flash-attention; an unregistered implementation would get no mask at all, and left padding would leak.
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, flash_attention_mask)
    return NAME
