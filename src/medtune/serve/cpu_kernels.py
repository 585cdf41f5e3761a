"""Faster small-batch linear layers for CPU decoding.

Decoding multiplies a handful of rows (the batch) by every weight matrix. For such skinny products the
CPU BLAS that PyTorch ships (MKL) is slow on some processors: on the 2-core AMD EPYC (AVX2) machines this
project is built on, ``x @ W.T`` for 8 rows of Qwen2.5's 151,936 x 896 LM head takes ~190 ms while the
algebraically equal ``(W @ x.T).T`` takes ~95 ms, and the MLP projections show the same 2x. Within the
context below, every ``nn.Linear`` of the model computes the second form when its input has few rows.
Training and large prefill batches are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

SKINNY_ROWS = 64


def _skinny_linear(module: torch.nn.Linear):
    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows > SKINNY_ROWS or x.dtype != module.weight.dtype:
            return F.linear(x, module.weight, module.bias)
        flat = x.reshape(rows, x.shape[-1])
        out = torch.matmul(module.weight, flat.t()).t()
        if module.bias is not None:
            out = out + module.bias
        return out.reshape(*x.shape[:-1], module.weight.shape[0])

    return forward


@contextmanager
def skinny_cpu_linears(model: torch.nn.Module) -> Iterator[None]:
    """Patch the model's linear layers for skinny CPU products for the duration of the block."""
    if next(model.parameters()).device.type != "cpu":
        yield
        return
    patched = [m for m in model.modules() if type(m) is torch.nn.Linear]
    for m in patched:
        m.forward = _skinny_linear(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward  # back to the class's forward
