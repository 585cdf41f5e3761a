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
forward unchanged.
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


def _forward_2d(x2, weight, bias, lora_a, lora_b, scale: float, drop):
    """Base output plus the scaled low-rank product; also the rank-r intermediate backward needs."""
    out = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()
    if lora_a is None:
        return out, None
    dropped = x2.masked_fill(drop.view_as(x2), 0.0) if drop is not None else x2
    low = dropped @ lora_a.t()
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
        out, low = _forward_2d(x2, weight, bias, lora_a, lora_b, scale, drop)
        ctx.save_for_backward(x2, weight, lora_a, lora_b, low, drop)
        ctx.scale = scale
        ctx.lead = lead
        return out.view(*lead, out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, weight, lora_a, lora_b, low, drop = ctx.saved_tensors
        need_x, need_w, need_bias = ctx.needs_input_grad[:3]
        g = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x, grad_a, grad_b = _backward_2d(g, x2, weight, lora_a, lora_b, low, ctx.scale, drop, need_x)
        if grad_x is not None:
            grad_x = grad_x.view(*ctx.lead, x2.shape[-1])
        grad_w = g.t() @ x2 if need_w else None
        grad_bias = g.sum(0) if need_bias else None
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None, None


class LoraMLPFunction(torch.autograd.Function):
    """``down(silu(gate(x)) * up(x))`` where each projection may carry a LoRA adapter (frozen bases).

    Autograd would keep four intermediate-sized tensors per token (gate, silu(gate), up and their product,
    the down projection's input); this keeps gate and up only and recomputes the other two in backward:
    for Qwen2.5-0.5B, 39 of the 111 KB of activations per token and layer.
    """

    @staticmethod
    def forward(ctx, x, wg, bg, ag, btg, dg, wu, bu, au, btu, du, wd, bd, ad, btd, dd, scales):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        sg, su, sd = scales
        gate, low_g = _forward_2d(x2, wg, bg, ag, btg, sg, dg)
        up, low_u = _forward_2d(x2, wu, bu, au, btu, su, du)
        prod = F.silu(gate).mul_(up)
        out, low_d = _forward_2d(prod, wd, bd, ad, btd, sd, dd)
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
        g = grad_out.reshape(-1, grad_out.shape[-1])
        act = F.silu(gate)
        prod = act * up
        grad_prod, grad_ad, grad_btd = _backward_2d(g, prod, wd, ad, btd, low_d, sd, dd, True)
        del prod
        grad_up = grad_prod * act
        del act
        grad_gate = torch.ops.aten.silu_backward(grad_prod.mul_(up), gate)
        del grad_prod
        need_x = ctx.needs_input_grad[0]
        gx_g, grad_ag, grad_btg = _backward_2d(grad_gate, x2, wg, ag, btg, low_g, sg, dg, need_x)
        gx_u, grad_au, grad_btu = _backward_2d(grad_up, x2, wu, au, btu, low_u, su, du, need_x)
        grad_x = gx_g.add_(gx_u).view(*ctx.lead, x2.shape[-1]) if need_x else None
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
        return module.weight, module.bias, None, None, None, 1.0
    base = module.base_layer
    if module.disable_adapters or module.merged:
        return base.weight, base.bias, None, None, None, 1.0
    adapters = [a for a in module.active_adapters if a in module.lora_A]
    if len(adapters) != 1:
        return None
    name = adapters[0]
    lora_a, lora_b = module.lora_A[name].weight, module.lora_B[name].weight
    if not (x.dtype == base.weight.dtype == lora_a.dtype == lora_b.dtype):
        return None
    dropout = module.lora_dropout[name]
    p = dropout.p if isinstance(dropout, nn.Dropout) and dropout.training else 0.0
    drop, rescale = dropout_mask(shape or x.shape, p, x.device) if p > 0 else (None, 1.0)
    return base.weight, base.bias, lora_a, lora_b, drop, module.scaling[name] * rescale


def _fused_linear_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    spec = None if args or kwargs or torch.is_autocast_enabled(x.device.type) else _projection(self, x)
    if spec is None:
        return type(self).forward(self, x, *args, **kwargs)
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
        return type(self).forward(self, x)
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


def unfuse_lora_linears(model: nn.Module) -> None:
    """Give every module back its own forward."""
    for module in model.modules():
        if getattr(vars(module).get("forward"), "__func__", None) in (
            _fused_linear_forward,
            _fused_mlp_forward,
        ):
            del module.forward
