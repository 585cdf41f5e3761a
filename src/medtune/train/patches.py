"""Everything medtune changes in the model or the process for training, as named, reversible patches.

The CPU speed-ups (2.59x the baseline recipe's tokens/s at 0.58x its memory) come from replacing pieces of
transformers, PEFT and TRL: a forward here, an attention function there, a process-wide allocator setting.
Each such change is a :class:`Patch` with a name, the condition it applies under (``applies``: device,
dtype, method, config switch), the library versions it was verified on, ``apply`` and ``undo``.

    with training_patches(cfg) as patched:             # process patches (the allocator) on
        model, tokenizer, _ = load_model(cfg.model, **patched.load_kwargs())
        model = patched.apply(model)                   # model patches, in order
        ...                                            # train
    # every applied patch undone, in reverse order, also after an exception or Ctrl-C

Outside a verified version range a patch warns (:class:`PatchVersionWarning`, naming it) and the plain
library path runs instead: a patch that leans on private internals must never give a silently wrong
result. On CUDA every patch verified on CPU only is off: the GPU path is plain PEFT + TRL until
``bench/gpu_train.py`` has run on a GPU. ``medtune doctor`` prints this table for a machine and config.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from packaging.version import Version

from medtune.config import Config, ConfigError

logger = logging.getLogger(__name__)

CPU_ONLY = "verified on CPU only; bench/gpu_train.py has not run on a GPU"

# Installed when the patches were last verified (tests/train on CPU): the lowest verified release up to,
# not including, the next minor release.
VERIFIED: dict[str, tuple[str, str]] = {
    "torch": ("2.13.0", "2.14"),
    "transformers": ("5.25.0", "5.26"),
    "peft": ("0.21.2", "0.22"),
    "trl": ("1.16.0", "1.17"),
}


class PatchVersionWarning(UserWarning):
    """A patch was skipped because an installed library is outside the range it was verified on."""


def library_versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "liger-kernel"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class PatchContext:
    """What the patches decide on: the config, the device, the precision, and what loading found."""

    cfg: Config
    device: str
    precision: str
    versions: dict[str, str]
    model_dtype: Any = None
    """The loaded model's dtype (None before loading)."""
    checkpointing: Any = None
    """The activation plan (``medtune.train.checkpointing.CheckpointPlan``), set once the model is loaded."""

    @classmethod
    def from_config(cls, cfg: Config, device: str | None = None) -> PatchContext:
        import torch

        from medtune.model.loader import resolve_precision

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if cfg.train.method == "qlora" and device != "cuda":
            raise ConfigError(
                "train.method=qlora needs a CUDA GPU (bitsandbytes 4-bit); use method=lora on CPU"
            )
        return cls(cfg, device, resolve_precision(cfg.train.precision), library_versions())


class Patch:
    """One change for training. Subclasses set the class attributes and override what they change."""

    name: str = ""
    what: str = ""
    libraries: tuple[str, ...] = ()
    """Libraries whose internals the patch relies on: checked against :data:`VERIFIED`."""
    cpu_only: bool = True
    process: bool = False
    """Applied when the context opens (before the model loads) rather than to the model."""

    def switch(self, ctx: PatchContext) -> tuple[bool, str]:
        """The config, method and dtype conditions (device and versions are checked by ``applies``)."""
        return True, "always"

    def version_problem(self, ctx: PatchContext) -> str | None:
        for lib in self.libraries:
            low, high = VERIFIED[lib]
            have = ctx.versions.get(lib)
            if have is None or not Version(low) <= Version(have) < Version(high):
                return f"verified on {lib} >={low},<{high}; installed {have}: plain {lib} path used"
        return None

    def applies(self, ctx: PatchContext) -> tuple[bool, str]:
        on, reason = self.switch(ctx)
        if not on:
            return False, reason
        if self.cpu_only and ctx.device != "cpu":
            return False, CPU_ONLY
        problem = self.version_problem(ctx)
        return (False, problem) if problem else (True, reason)

    def load_kwargs(self, ctx: PatchContext) -> dict[str, Any]:
        return {}

    def apply(self, model, ctx: PatchContext):
        return model

    def undo(self) -> None:
        """Give back what ``apply`` changed outside the trained adapters (idempotent)."""


class KeepFreedMemory(Patch):
    name, what = "allocator", "glibc keeps freed memory for the next step (medtune.train.allocator)"
    process = True

    def switch(self, ctx):
        from medtune.train import allocator

        if not ctx.cfg.train.reuse_freed_memory:
            return False, "train.reuse_freed_memory=false"
        if allocator._glibc() is None:
            return False, "not Linux with glibc"
        return True, "train.reuse_freed_memory"

    def apply(self, model, ctx):
        from medtune.train import allocator

        allocator.keep_freed_memory()
        return model

    def undo(self):
        from medtune.train import allocator

        allocator.release_freed_memory()


class QLoRA4Bit(Patch):
    name, what = "qlora_4bit", "NF4 weights (bitsandbytes) and PEFT's k-bit preparation"
    cpu_only = False  # the library path itself

    def switch(self, ctx):
        return ctx.cfg.train.method == "qlora", f"train.method={ctx.cfg.train.method}"

    def load_kwargs(self, ctx):
        import torch
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if ctx.precision == "bf16" else torch.float16
        return {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            )
        }

    def apply(self, model, ctx):
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=ctx.checkpointing.enabled)


class LeanLMHead(Patch):
    name, what = "lean_lm_head", "loss on supervised tokens only, logits chunk by chunk (lean_loss)"
    libraries = ("transformers", "trl")  # the causal LM's backbone/head layout; SFTTrainer's metrics

    def switch(self, ctx):
        return True, f"train.lm_head_chunk={ctx.cfg.train.lm_head_chunk}"

    def apply(self, model, ctx):
        from medtune.train.lean_loss import add_selective_lm_head

        add_selective_lm_head(model, ctx.cfg.train.lm_head_chunk)
        self._model = model
        return model

    def undo(self):
        from medtune.train.lean_loss import remove_selective_lm_head

        model = vars(self).pop("_model", None)
        if model is not None:
            remove_selective_lm_head(model)


class PerSampleAttention(Patch):
    name, what = "per_sample_attention", "padding-free batches attend per sample (medtune_varlen)"
    libraries = ("transformers",)  # AttentionInterface, the mask registry, repeat_kv

    def switch(self, ctx):
        train, attn = ctx.cfg.train, ctx.cfg.model.attn_implementation
        if not (train.padding_free or train.packing):
            return False, "train.padding_free=false and train.packing=false"
        if attn not in (None, "sdpa"):
            return False, f"model.attn_implementation={attn} reads packed rows itself"
        return True, "train.padding_free over SDPA"

    def apply(self, model, ctx):
        from medtune.train import varlen

        self._before = model.config._attn_implementation
        if self._before != "sdpa":
            return model
        self._registered_here = not varlen.registered()
        model.set_attn_implementation(varlen.register())
        self._model = model
        return model

    def undo(self):
        from medtune.train import varlen

        model = vars(self).pop("_model", None)
        if model is not None:
            model.set_attn_implementation(self._before)
            if self._registered_here:
                varlen.unregister()
        varlen.reset_cache()


class WeightsAsStored(Patch):
    name, what = "weights_as_stored", "16-bit checkpoint loaded as stored; adapters created in fp32"
    libraries = ("peft",)  # PEFT reads a base layer's compute_dtype when it creates an adapter

    def switch(self, ctx):
        import torch

        from medtune.model.loader import resolve_dtype

        train = ctx.cfg.train
        if not train.compact_frozen_weights:
            return False, "train.compact_frozen_weights=false"
        if ctx.precision != "fp32" or resolve_dtype(ctx.cfg.model.dtype) != torch.float32:
            return False, f"trains in {ctx.precision}, not fp32 over an fp32 model.dtype"
        fused, why = FusedLoRA().applies(ctx)
        if not fused:
            return False, f"needs fused_lora ({why})"
        if ctx.model_dtype is not None and ctx.model_dtype not in (torch.bfloat16, torch.float16):
            return False, f"the checkpoint is stored in {ctx.model_dtype}: nothing to keep compact"
        return True, "a bf16/fp16 checkpoint under fp32 training"

    def load_kwargs(self, ctx):
        return {"dtype": "auto"}

    def apply(self, model, ctx):
        from medtune.train.compact_weights import adapters_in_fp32

        if self.applies(ctx)[0]:  # decided again: the checkpoint's dtype is known now
            adapters_in_fp32(model)
        return model


class LoRA(Patch):
    name, what = "lora", "PEFT LoRA adapters (the product: kept after training)"
    cpu_only = False

    def switch(self, ctx):
        return True, f"lora.r={ctx.cfg.lora.r} on {', '.join(ctx.cfg.lora.target_modules)}"

    def apply(self, model, ctx):
        from medtune.model.adapters import attach_lora

        return attach_lora(model, ctx.cfg.lora)


class FusedLoRA(Patch):
    name, what = "fused_lora", "LoRA linears and gated MLPs as fused autograd functions (fused_lora)"
    libraries = (
        "peft",
        "transformers",
        "torch",
    )  # LoraLinear internals, the SiLU/MLP layout, aten.silu_backward

    def switch(self, ctx):
        return ctx.cfg.train.fused_lora, f"train.fused_lora={ctx.cfg.train.fused_lora}"

    def apply(self, model, ctx):
        from medtune.train.fused_lora import fuse_lora_linears

        fuse_lora_linears(model)
        self._model = model
        return model

    def undo(self):
        from medtune.train.fused_lora import release_widening_buffers, unfuse_lora_linears

        model = vars(self).pop("_model", None)
        if model is not None:
            unfuse_lora_linears(model)
        release_widening_buffers()


class CompactFrozenWeights(WeightsAsStored):
    name, what = "compact_frozen_weights", "frozen weights kept 16-bit, widened per matmul (compact_weights)"

    def load_kwargs(self, ctx):
        return {}

    def apply(self, model, ctx):
        from medtune.train import compact_weights

        if self.applies(ctx)[0]:
            compact_weights.compact_frozen_weights(model)
            self._model = model
        return model

    def undo(self):
        from medtune.train.compact_weights import widen_frozen_weights

        model = vars(self).pop("_model", None)
        if model is not None:
            widen_frozen_weights(model)


class CheckpointingPlan(Patch):
    name, what = "checkpointing_plan", "per-batch gradient checkpointing within a budget (checkpointing)"
    libraries = ("transformers",)  # GradientCheckpointingLayer's flag, Trainer.training_step

    def switch(self, ctx):
        setting = ctx.cfg.train.gradient_checkpointing
        return setting == "auto", f"train.gradient_checkpointing={setting}"

    def apply(self, model, ctx):
        from medtune.train.checkpointing import adapted_layers

        self._flags = [(layer, layer.gradient_checkpointing) for layer in adapted_layers(model)]
        return model

    def undo(self):
        for layer, flag in vars(self).pop("_flags", []):
            layer.gradient_checkpointing = flag


def all_patches() -> list[Patch]:
    """Every patch, in the order it is applied (undone in reverse)."""
    return [
        KeepFreedMemory(),
        QLoRA4Bit(),
        LeanLMHead(),
        PerSampleAttention(),
        WeightsAsStored(),
        LoRA(),
        FusedLoRA(),
        CompactFrozenWeights(),
        CheckpointingPlan(),
    ]


def plan(ctx: PatchContext) -> list[tuple[Patch, bool, str]]:
    """(patch, applies, reason) for every patch; warns for each one a library version switched off."""
    rows = []
    for patch in all_patches():
        on, reason = patch.applies(ctx)
        if not on and patch.switch(ctx)[0] and (ctx.device == "cpu" or not patch.cpu_only):
            problem = patch.version_problem(ctx)
            if problem:
                warnings.warn(f"patch {patch.name} off: {problem}", PatchVersionWarning, stacklevel=3)
        rows.append((patch, on, reason))
    return rows


@dataclass
class PatchedTraining:
    """The patches of one run: what loading needs, the model patches, and what to undo."""

    ctx: PatchContext
    rows: list[tuple[Patch, bool, str]]
    applied: list[Patch] = field(default_factory=list)

    def on(self, name: str) -> bool:
        return any(p.name == name and on for p, on, _ in self.rows)

    def load_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for patch, on, _ in self.rows:
            if on:
                kwargs |= patch.load_kwargs(self.ctx)
        return kwargs

    def _apply(self, patch: Patch, model):
        self.applied.append(patch)  # before apply: a patch that fails halfway is undone too
        return patch.apply(model, self.ctx)

    def apply(self, model):
        """The model patches in order, on a freshly loaded model; returns the PEFT model to train."""
        from medtune.train import checkpointing

        self.ctx.model_dtype = model.dtype
        bytes_per_value = None
        if self.on("weights_as_stored") and WeightsAsStored().applies(self.ctx)[0]:
            bytes_per_value = 4  # the budget follows the weights at the compute precision
        if self.on("checkpointing_plan"):
            self.ctx.checkpointing = checkpointing.resolve_checkpointing(
                self.ctx.cfg,
                model.config,
                self.ctx.precision,
                checkpointing.weight_bytes(model, bytes_per_value=bytes_per_value),
            )
        else:  # the plain library path: every layer, or none
            setting = self.ctx.cfg.train.gradient_checkpointing
            self.ctx.checkpointing = checkpointing.CheckpointPlan("off" if setting is False else "all")
        for patch, on, _ in self.rows:
            if on and not patch.process:
                model = self._apply(patch, model)
        if self.ctx.checkpointing.enabled:
            # LoRA freezes the embeddings; checkpointed blocks need an input that requires grad.
            model.enable_input_require_grads()
        return model

    @property
    def per_sample_attention(self) -> bool:
        return any(
            p.name == "per_sample_attention" and vars(p).get("_model") is not None for p in self.applied
        )

    def undo(self) -> None:
        while self.applied:
            self.applied.pop().undo()


@contextmanager
def training_patches(cfg: Config, device: str | None = None) -> Iterator[PatchedTraining]:
    """Process patches on entry, model patches through ``apply``; all undone on exit, however it exits."""
    ctx = PatchContext.from_config(cfg, device)
    patched = PatchedTraining(ctx, plan(ctx))
    try:
        for patch, on, _ in patched.rows:
            if on and patch.process:
                patched._apply(patch, None)
        yield patched
    finally:
        patched.undo()


def doctor_rows(cfg: Config, device: str | None = None) -> list[tuple[str, str, str, str, str]]:
    """(patch, on/off, reason, libraries relied on, what it does) for ``medtune doctor``."""
    ctx = PatchContext.from_config(cfg, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PatchVersionWarning)  # the reason column says it
        rows = plan(ctx)
    return [
        (p.name, "on" if on else "off", reason, ", ".join(p.libraries) or "-", p.what)
        for p, on, reason in rows
    ]
