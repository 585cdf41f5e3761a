"""``auto`` precision is decided once: the precision run_sft trains in and the dtype it loads the model in
agree on every device, a pre-Ampere GPU included (simulated by patching torch.cuda)."""

from types import SimpleNamespace

import pytest
import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class _Stop(Exception):
    """Raised once both decisions are seen, before anything is trained."""


def _simulate_gpu(monkeypatch, native_bf16: bool, emulated_bf16: bool) -> None:
    """A CUDA device as torch reports it: pre-Ampere GPUs have no native bf16; torch >= 2.3 says
    is_bf16_supported() is True there anyway (emulation) unless asked for native support only."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: native_bf16 or (including_emulation and emulated_bf16),
    )
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: (8, 0) if native_bf16 else (7, 0)
    )


def _run_sft_decisions(monkeypatch, tmp_path, *overrides: str) -> tuple[str, torch.dtype]:
    """(training precision, model load dtype) as run_sft chooses them for the default config."""
    import medtune.data.template
    import medtune.model.loader as loader
    import medtune.train.sft as sft
    from medtune.config import load_config
    from medtune.train.patches import PatchedTraining

    seen = {}

    def fake_load_model(model_cfg, *, quantization_config=None, device_map=None, dtype=None):
        seen["dtype"] = loader.resolve_dtype(model_cfg.dtype) if dtype is None else dtype
        return SimpleNamespace(dtype=seen["dtype"], config=None), None, None

    def fake_apply(self, model):
        seen["precision"] = self.ctx.precision
        raise _Stop

    monkeypatch.setattr(loader, "load_model", fake_load_model)
    monkeypatch.setattr(medtune.data.template, "preflight", lambda tokenizer, system_prompt: {})
    monkeypatch.setattr(PatchedTraining, "apply", fake_apply)
    with pytest.raises(_Stop):
        # reuse_freed_memory off: the run stops before it could hand the memory back.
        cfg = load_config(None, [f"output_root={tmp_path}", "train.reuse_freed_memory=false", *overrides])
        sft.run_sft(cfg)
    return seen["precision"], seen["dtype"]


@pytest.mark.parametrize(
    "device, native_bf16, emulated_bf16, expected",
    [
        ("pre-Ampere GPU, torch reporting emulated bf16", False, True, "fp32"),
        ("pre-Ampere GPU, torch without bf16 emulation", False, False, "fp32"),
        ("Ampere GPU", True, True, "bf16"),
    ],
)
def test_auto_training_precision_and_load_dtype_agree_on_gpus(
    monkeypatch, tmp_path, device, native_bf16, emulated_bf16, expected
):
    _simulate_gpu(monkeypatch, native_bf16, emulated_bf16)
    precision, dtype = _run_sft_decisions(monkeypatch, tmp_path)
    assert DTYPES[precision] == dtype, f"{device}: trains in {precision} over weights loaded in {dtype}"
    assert precision == expected, device


def test_auto_training_precision_and_load_dtype_agree_on_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # Compact frozen weights load as stored and widen to fp32 per matmul: a separate, exact choice.
    decisions = _run_sft_decisions(monkeypatch, tmp_path, "train.compact_frozen_weights=false")
    assert decisions == ("fp32", torch.float32)
