"""PEFT's LoRA linear, computed as one autograd function while training.

PEFT evaluates ``base(x) + lora_B(lora_A(dropout(x))) * scaling`` as five separate autograd operations.
On a CPU the composition costs more than its arithmetic: the dropout draws a float mask with
``bernoulli_`` (after the matmuls the slowest kernel of a Qwen2.5-0.5B training step, ~8% of it), autograd
keeps that float mask and the dropped copy of the input for backward (8 bytes per input element, per
adapted module: q, k and v each keep their own), and the scaling and the sum each write a new tensor the
size of the output.

``LoraLinearFunction`` does the same arithmetic with less traffic: the dropout mask is drawn as 16-bit
integers (numpy's PCG64, seeded from torch's generator so runs stay reproducible and ``--resume``
replays them) and kept as one byte per element; the dropout rescale and the LoRA scaling are applied to the rank-r
intermediate, not to the input or the output; the low-rank product is accumulated into the base output in
place; and backward recomputes the dropped input from the saved input and mask instead of keeping a copy.

The adapters stay PEFT's own modules and parameters: only ``forward`` of eligible instances is rerouted
(``fuse_lora_linears``), and every case the fused path does not cover (several or mixed adapters, DoRA,
LoRA bias, merged or disabled adapters, quantised bases, autocast, mixed dtypes) goes through PEFT's
forward unchanged. A frozen weight may be held in bf16 or fp16 under an fp32 input (see
``medtune.train.compact_weights``): it is widened to the input's dtype right before each matmul.
"""

from __future__ import annotations

import logging
import math
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

_INT16_SPAN = 1 << 16
_COMPACT = (torch.bfloat16, torch.float16)


def dropout_mask(shape: tuple[int, ...], p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean mask of the elements to drop, and the rescale ``1 / (1 - p_effective)`` for the rest.

    On CPU the mask comes from 16-bit draws, so the drop probability is ``p`` rounded to 1/65536; the
    rescale uses that exact probability, which keeps the expectation of the dropped input equal to the input.
    """
    if device.type != "cpu":
        return torch.rand(shape, device=device) < p, 1.0 / (1.0 - p)
    threshold = round(p * _INT16_SPAN)
    # Raw 64-bit draws of numpy's PCG64 cut into four 16-bit numbers each: ~10x faster than torch's
    # bernoulli_ here. The seed comes from torch's generator.
    seed = int(torch.randint(0, 2**62, (1,)).item())
    count = math.prod(shape)
    bits = np.random.default_rng(seed).bit_generator.random_raw((count + 3) // 4)
    draws = torch.from_numpy(bits.view(np.int16)[:count]).view(shape)
    mask = draws < threshold - (1 << 15)
    return mask, _INT16_SPAN / (_INT16_SPAN - threshold)


_WIDE: dict[tuple, torch.Tensor] = {}


def _widened(weight: torch.Tensor, dtype: torch.dtype, slot: int = 0) -> torch.Tensor:
    """``weight`` in ``dtype``; a compact (16-bit) frozen weight is widened exactly into a reused buffer.

    A slot's buffer is valid until the next call for that slot: the fused MLP holds its three projections'
    weights in slots 0-2 while it runs, everything else multiplies with slot 0 at once. Reused buffers,
    instead of a fresh fp32 copy per projection, keep those copies out of the heap between the activations.
    """
    if weight.dtype == dtype:
        return weight
    key = (weight.device, dtype, slot)
    buf = _WIDE.get(key)
    if buf is None or buf.numel() < weight.numel():
        buf = _WIDE[key] = torch.empty(weight.numel(), dtype=dtype, device=weight.device)
    return buf[: weight.numel()].view(weight.shape).copy_(weight)


def release_widening_buffers() -> None:
    _WIDE.clear()


def _forward_2d(x2, weight, bias, lora_a, lora_b, scale: float, drop, out=None, low=None):
    """Base output plus the scaled low-rank product; also the rank-r intermediate backward needs.

    ``weight`` is in ``x2``'s dtype (see ``_widened``); ``out`` and ``low`` may be given to write into.
    """
    if bias is not None:
        out = torch.addmm(bias, x2, weight.t(), out=out)
    else:
        out = torch.mm(x2, weight.t(), out=out)
    if lora_a is None:
        return out, None
    dropped = x2.masked_fill(drop.view_as(x2), 0.0) if drop is not None else x2
    low = torch.mm(dropped, lora_a.t(), out=low)
    low.mul_(scale)  # the scalings touch the rank-r tensor only
    out.addmm_(low, lora_b.t())
    return out, low


def _backward_2d(g, x2, weight, lora_a, lora_b, low, scale: float, drop, need_x: bool):
    """Gradients of ``_forward_2d`` for the input and the two LoRA factors (None where not wanted)."""
    grad_x = g @ weight if need_x else None
    if lora_a is None:
        return grad_x, None, None
    mask = drop.view_as(x2) if drop is not None else None
    grad_b = g.t() @ low if lora_b.requires_grad else None
    g_low = (g @ lora_b).mul_(scale)  # gradient of (drop(x) A^T), the unscaled rank-r product
    grad_a = (
        g_low.t() @ (x2.masked_fill(mask, 0.0) if mask is not None else x2) if lora_a.requires_grad else None
    )
    if grad_x is not None:
        if mask is None:
            grad_x.addmm_(g_low, lora_a)
        else:
            grad_x.add_((g_low @ lora_a).masked_fill_(mask, 0.0))
    return grad_x, grad_a, grad_b


class LoraLinearFunction(torch.autograd.Function):
    """``x W^T + b + s * (drop(x) A^T) B^T`` with ``s`` = LoRA scaling x dropout rescale; 2-D or more."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scale: float, drop):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        out, low = _forward_2d(x2, _widened(weight, x2.dtype), bias, lora_a, lora_b, scale, drop)
        ctx.save_for_backward(x2, weight, lora_a, lora_b, low, drop)
        ctx.scale = scale
        ctx.lead = lead
        return out.view(*lead, out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, weight, lora_a, lora_b, low, drop = ctx.saved_tensors
        need_x, need_w, need_bias = ctx.needs_input_grad[:3]
        g = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x, grad_a, grad_b = _backward_2d(
            g, x2, _widened(weight, g.dtype), lora_a, lora_b, low, ctx.scale, drop, need_x
        )
        if grad_x is not None:
            grad_x = grad_x.view(*ctx.lead, x2.shape[-1])
        grad_w = g.t() @ x2 if need_w else None
        grad_bias = g.sum(0) if need_bias else None
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None, None


MLP_ROWS = 512
"""Tokens per slice in the fused MLP: its intermediate-width temporaries (silu(gate) * up, the dropped copy,
their gradients) are this many rows whatever the batch's width, so each step reuses the same few blocks
instead of leaving differently sized holes between the activations kept for backward."""


def _rows(t: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    """Rows ``start:stop`` of ``t`` seen as 2-D (tokens x features)."""
    return None if t is None else t.reshape(-1, t.shape[-1])[start:stop]


def _add(total: torch.Tensor | None, part: torch.Tensor | None) -> torch.Tensor | None:
    return part if total is None else (total if part is None else total.add_(part))


class LoraMLPFunction(torch.autograd.Function):
    """``down(silu(gate(x)) * up(x))`` where each projection may carry a LoRA adapter (frozen bases).

    Autograd would keep four intermediate-sized tensors per token (gate, silu(gate), up and their product,
    the down projection's input); this keeps gate and up only and recomputes the other two in backward:
    for Qwen2.5-0.5B, 39 of the 111 KB of activations per token and layer. Both passes run over slices of
    ``MLP_ROWS`` tokens (the dropout masks are drawn for the whole batch, as PEFT draws them).
    """

    @staticmethod
    def forward(ctx, x, wg, bg, ag, btg, dg, wu, bu, au, btu, du, wd, bd, ad, btd, dd, scales):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        n, dtype = x2.size(0), x2.dtype
        sg, su, sd = scales
        wg_, wu_, wd_ = (_widened(w, dtype, slot) for slot, w in enumerate((wg, wu, wd)))
        gate = x2.new_empty(n, wg.size(0))
        up = x2.new_empty(n, wu.size(0))
        out = x2.new_empty(n, wd.size(0))
        low_g, low_u, low_d = (None if a is None else x2.new_empty(n, a.size(0)) for a in (ag, au, ad))
        for i in range(0, n, MLP_ROWS):
            j = min(i + MLP_ROWS, n)
            xs = x2[i:j]
            _forward_2d(xs, wg_, bg, ag, btg, sg, _rows(dg, i, j), gate[i:j], _rows(low_g, i, j))
            _forward_2d(xs, wu_, bu, au, btu, su, _rows(du, i, j), up[i:j], _rows(low_u, i, j))
            prod = F.silu(gate[i:j]).mul_(up[i:j])
            _forward_2d(prod, wd_, bd, ad, btd, sd, _rows(dd, i, j), out[i:j], _rows(low_d, i, j))
            del prod
        ctx.save_for_backward(
            x2, gate, up, wg, ag, btg, low_g, dg, wu, au, btu, low_u, du, wd, ad, btd, low_d, dd
        )
        ctx.scales = scales
        ctx.lead = lead
        return out.view(*lead, out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        (x2, gate, up, wg, ag, btg, low_g, dg, wu, au, btu, low_u, du, wd, ad, btd, low_d, dd) = (
            ctx.saved_tensors
        )
        sg, su, sd = ctx.scales
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        n, dtype = x2.size(0), g2.dtype
        wg_, wu_, wd_ = (_widened(w, dtype, slot) for slot, w in enumerate((wg, wu, wd)))
        need_x = ctx.needs_input_grad[0]
        grad_x = x2.new_empty(x2.shape) if need_x else None
        grads: list[torch.Tensor | None] = [None] * 6  # A and B of gate, up, down
        for i in range(0, n, MLP_ROWS):
            j = min(i + MLP_ROWS, n)
            gate_s, up_s = gate[i:j], up[i:j]
            act = F.silu(gate_s)
            prod = act * up_s
            grad_prod, a_d, b_d = _backward_2d(
                g2[i:j], prod, wd_, ad, btd, _rows(low_d, i, j), sd, _rows(dd, i, j), True
            )
            del prod
            grad_up = grad_prod * act
            del act
            grad_gate = torch.ops.aten.silu_backward(grad_prod.mul_(up_s), gate_s)
            del grad_prod
            xs = x2[i:j]
            gx_g, a_g, b_g = _backward_2d(
                grad_gate, xs, wg_, ag, btg, _rows(low_g, i, j), sg, _rows(dg, i, j), need_x
            )
            gx_u, a_u, b_u = _backward_2d(
                grad_up, xs, wu_, au, btu, _rows(low_u, i, j), su, _rows(du, i, j), need_x
            )
            if need_x:
                torch.add(gx_g, gx_u, out=grad_x[i:j])
            for k, part in enumerate((a_g, b_g, a_u, b_u, a_d, b_d)):
                grads[k] = _add(grads[k], part)
        grad_ag, grad_btg, grad_au, grad_btu, grad_ad, grad_btd = grads
        if need_x:
            grad_x = grad_x.view(*ctx.lead, x2.shape[-1])
        return (
            grad_x,
            None, None, grad_ag, grad_btg, None,
            None, None, grad_au, grad_btu, None,
            None, None, grad_ad, grad_btd, None,
            None,
        )  # fmt: skip


def _fusable(module: nn.Module) -> bool:
    """A PEFT LoRA linear whose adapters are plain LoRA over a plain ``nn.Linear``."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(module) is not LoraLinear or type(module.base_layer) is not nn.Linear:
        return False
    if module.fan_in_fan_out or getattr(module, "lora_variant", None):
        return False
    return not any(getattr(module, "lora_bias", {}).values())


def _projection(module: nn.Module, x: torch.Tensor, shape: torch.Size | None = None):
    """``(weight, bias, lora_a, lora_b, drop, scale)`` of a plain or LoRA linear, or None where PEFT must run.

    ``shape`` is the shape of the module's input when that is not ``x`` itself (the down projection).
    """
    if type(module) is nn.Linear:
        if not _weight_fits(module.weight, x):
            return None
        return module.weight, module.bias, None, None, None, 1.0
    base = module.base_layer
    if not _weight_fits(base.weight, x):
        return None
    if module.disable_adapters or module.merged:
        return base.weight, base.bias, None, None, None, 1.0
    adapters = [a for a in module.active_adapters if a in module.lora_A]
    if len(adapters) != 1:
        return None
    name = adapters[0]
    lora_a, lora_b = module.lora_A[name].weight, module.lora_B[name].weight
    if not x.dtype == lora_a.dtype == lora_b.dtype:
        return None
    dropout = module.lora_dropout[name]
    p = dropout.p if isinstance(dropout, nn.Dropout) and dropout.training else 0.0
    drop, rescale = dropout_mask(shape or x.shape, p, x.device) if p > 0 else (None, 1.0)
    return base.weight, base.bias, lora_a, lora_b, drop, module.scaling[name] * rescale


def _weight_fits(weight: torch.Tensor, x: torch.Tensor) -> bool:
    """The input's dtype, or a 16-bit frozen weight under an fp32 input (widened exactly per use)."""
    return weight.dtype == x.dtype or (
        x.dtype == torch.float32 and weight.dtype in _COMPACT and not weight.requires_grad
    )


def _unfused_call(module: nn.Module, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """The module's own forward, which cannot multiply an fp32 input with a compact 16-bit weight."""
    compact = [p for p in module.parameters() if p.dtype in _COMPACT and p.dtype != x.dtype]
    if compact:
        raise RuntimeError(
            f"{type(module).__name__}: this call (autocast, several adapters or extra arguments) needs the "
            f"module's own forward, which cannot use frozen weights kept in {compact[0].dtype}; train with "
            "train.compact_frozen_weights=false"
        )
    return type(module).forward(module, x, *args, **kwargs)


def _fused_linear_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    spec = None if args or kwargs or torch.is_autocast_enabled(x.device.type) else _projection(self, x)
    if spec is None:
        return _unfused_call(self, x, *args, **kwargs)
    weight, bias, lora_a, lora_b, drop, scale = spec
    return LoraLinearFunction.apply(x, weight, bias, lora_a, lora_b, scale, drop)


def _fusable_mlp(module: nn.Module) -> bool:
    """A gated SiLU MLP (Qwen2, Llama, Mistral) whose projections are frozen plain or fusable LoRA linears."""
    projections = [getattr(module, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
    if any(p is None for p in projections) or not type(module).__name__.endswith("MLP"):
        return False
    if (
        not isinstance(getattr(module, "act_fn", None), nn.SiLU)
        and type(module.act_fn).__name__ != "SiLUActivation"
    ):
        return False
    for proj in projections:
        if not (type(proj) is nn.Linear or _fusable(proj)):
            return False
        base = proj if type(proj) is nn.Linear else proj.base_layer
        if base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
            return False
    return True


def _fused_mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    specs = None
    if not torch.is_autocast_enabled(x.device.type):
        specs = [_projection(p, x) for p in (self.gate_proj, self.up_proj)]
        if all(specs):
            # The down projection's input has the intermediate width: its dropout mask is drawn for that.
            inner = torch.Size((*x.shape[:-1], self.down_proj.in_features))
            specs.append(_projection(self.down_proj, x, inner))
    if specs is None or not all(specs):
        return _unfused_call(self, x)
    flat = [t for w, b, a, bb, d, _ in specs for t in (w, b, a, bb, d)]
    return LoraMLPFunction.apply(x, *flat, tuple(spec[5] for spec in specs))


def fuse_lora_linears(model: nn.Module) -> int:
    """Route eligible PEFT LoRA linears and gated MLPs of ``model`` through the fused functions.

    Returns the number of LoRA linears now computed by a fused function. The projections of a fused MLP
    are rerouted too, for the calls where the MLP has to fall back to its own forward.
    """
    linears = mlps = 0
    for module in model.modules():
        if _fusable_mlp(module):
            module.forward = types.MethodType(_fused_mlp_forward, module)
            mlps += 1
        elif _fusable(module):
            module.forward = types.MethodType(_fused_linear_forward, module)
            linears += 1
    logger.info("fused LoRA: %d MLPs, %d linears", mlps, linears)
    return linears


def fused_projection_weights(model: nn.Module) -> list[torch.Tensor]:
    """The frozen weights of the linears now computed by a fused function (LoRA bases, plain MLP projections)."""
    weights = []
    for module in model.modules():
        forward = getattr(vars(module).get("forward"), "__func__", None)
        if forward is _fused_linear_forward:
            weights.append(module.base_layer.weight)
        elif forward is _fused_mlp_forward:
            weights += [
                p.weight for p in (module.gate_proj, module.up_proj, module.down_proj) if type(p) is nn.Linear
            ]
    return weights


def unfuse_lora_linears(model: nn.Module) -> None:
    """Give every module back its own forward."""
    for module in model.modules():
        if getattr(vars(module).get("forward"), "__func__", None) in (
            _fused_linear_forward,
            _fused_mlp_forward,
        ):
            del module.forward
