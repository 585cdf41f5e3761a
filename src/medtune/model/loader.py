"""Resolve a model source (hub id, local folder, GGUF file, or the demo model) and load it explicitly.

A GGUF file is dequantised by transformers once and saved as a normal safetensors folder (fp16) in the cache,
keyed by the file's sha256, so every later run loads a plain model folder in seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medtune.config import ConfigError, ModelConfig
from medtune.model.demo_model import (
    DEMO_GGUF_SHA256,
    DEMO_NAME,
    ModelSourceError,
    assemble_demo_gguf,
    default_cache_dir,
    sha256_file,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


@dataclass
class ResolvedModel:
    path: str
    """What to pass to from_pretrained: a local folder or a hub id."""
    display_name: str
    """Human name for reports and the UI."""


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


def _converted_dir(cache: Path, gguf: Path, digest: str) -> Path:
    return cache / "converted" / f"{gguf.stem}-{digest[:12]}-f16"


def convert_gguf(gguf: Path, cache: Path, expected_sha256: str | None = None) -> Path:
    """Dequantise ``gguf`` into a safetensors model folder under ``cache`` (once) and return the folder."""
    if not gguf.is_file():
        raise ModelSourceError(f"{gguf}: GGUF file not found; pass an existing .gguf path or a model folder")
    marker_name = "medtune_source.txt"
    # The sha256 is checked before every conversion and pinned into the folder name, so a converted
    # folder always corresponds to one exact GGUF; a folder from a different file is never reused.
    digest = expected_sha256 or sha256_file(gguf)
    if expected_sha256:
        found = (
            sha256_file(gguf) if not (_converted_dir(cache, gguf, digest) / marker_name).is_file() else digest
        )
        if found != expected_sha256:
            raise ModelSourceError(
                f"{gguf}: sha256 is {found}, expected {expected_sha256}; the file is corrupt or not the model "
                "you meant. Delete it and fetch it again, or fix model.gguf_sha256."
            )
    out = _converted_dir(cache, gguf, digest)
    if (out / marker_name).is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s into a safetensors folder (once; about a minute for 0.5B)", gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers 5 refuses save_pretrained on a model that still carries its GGUF quantizer, although
    # the weights are already dequantised to plain tensors at this point.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Stored in fp16: half the disk and memory of fp32, and a rounding (2^-11 relative) far below the
    # quantisation's own error; loading in fp32 widens it exactly, and CPU training keeps the frozen
    # weights in fp16 (medtune.train.compact_weights). bf16 if some value is beyond fp16's range.
    big = max(float(p.detach().abs().max()) for p in model.parameters() if p.is_floating_point())
    model = model.to(torch.float16 if big < 60000 else torch.bfloat16)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / marker_name).write_text(f"{gguf.name}\nsha256 {digest}\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    # An fp32 conversion of the same file by an earlier medtune version is superseded: free its disk.
    shutil.rmtree(out.with_name(out.name.removesuffix("-f16")), ignore_errors=True)
    logger.info("converted model saved to %s", out)
    return out


def resolve_model_source(cfg: ModelConfig) -> ResolvedModel:
    """Turn ``model.name_or_path`` into something from_pretrained can load, fetching or converting if needed."""
    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    src = cfg.name_or_path
    if src == "tiny":
        from medtune.model.tiny import ensure_tiny_model_dir

        return ResolvedModel(str(ensure_tiny_model_dir(cache)), "tiny-qwen2")
    if src == "demo":
        gguf = assemble_demo_gguf(cache)
        return ResolvedModel(str(convert_gguf(gguf, cache, DEMO_GGUF_SHA256)), DEMO_NAME)
    path = Path(src).expanduser()
    if path.suffix.lower() == ".gguf":
        return ResolvedModel(str(convert_gguf(path, cache, cfg.gguf_sha256)), path.stem)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"{path}: not a model folder (no config.json); point model.name_or_path at one"
            )
        return ResolvedModel(str(path), path.name)
    if path.exists():
        raise ModelSourceError(f"{path}: not a model folder or a .gguf file")
    if _looks_like_hub_id(src):
        return ResolvedModel(src, src.split("/")[-1])
    raise ModelSourceError(
        f"{src}: model path does not exist and is not a Hugging Face id (org/name); "
        "use 'demo', a local folder, a .gguf file or e.g. Qwen/Qwen2.5-7B-Instruct"
    )


# Compute precision (train.precision) -> weights dtype name (model.dtype).
PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_precision(name: str = "auto") -> str:
    """The compute precision, ``fp32``, ``bf16`` or ``fp16``: the one place where ``auto`` is decided.

    ``train.precision: auto`` and ``model.dtype: auto`` (resolve_dtype) both come from here, so training
    never runs in one precision over weights loaded for another. ``auto`` is bf16 on a GPU with native bf16
    (Ampere or newer, ROCm) and fp32 everywhere else. Not fp16 on an older GPU: it needs loss scaling and
    overflows where bf16 and fp32 do not, so it stays an explicit choice. Not emulated bf16 either:
    ``torch.cuda.is_bf16_supported()`` says yes on pre-Ampere GPUs, which only emulate it, slowly.
    """
    import torch

    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16"
        return "fp32"  # CPUs without native bf16 (AVX-512 BF16/AMX) run autocast bf16 slower than fp32
    if name == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.precision=fp16 needs a CUDA GPU; use fp32 or bf16 on CPU")
    if name not in PRECISION_DTYPES:
        raise ConfigError(f"train.precision: unknown precision {name!r}")
    return name


def resolve_dtype(name: str) -> torch.dtype:
    """``model.dtype`` as a torch dtype; ``auto`` is the dtype of ``resolve_precision("auto")``."""
    import torch

    if name == "auto":
        name = PRECISION_DTYPES[resolve_precision("auto")]
    mapping = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in mapping:
        raise ConfigError(f"model.dtype: unknown dtype {name!r}")
    return mapping[name]


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    # Decoder-only generation needs left padding; training collators pad themselves and ignore this.
    tok.padding_side = "left"
    return tok


def load_model(
    cfg: ModelConfig,
    *,
    quantization_config: object | None = None,
    device_map: str | dict | None = None,
    dtype: torch.dtype | str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ResolvedModel]:
    """Load tokenizer and causal LM with an explicit dtype and attention implementation.

    ``dtype`` overrides ``cfg.dtype``; ``"auto"`` loads the weights in the checkpoint's own dtype.
    """
    from transformers import AutoModelForCausalLM

    resolved = resolve_model_source(cfg)
    tokenizer = load_tokenizer(resolved.path, cfg.trust_remote_code)
    kwargs: dict = {
        "dtype": dtype or resolve_dtype(cfg.dtype),
        "attn_implementation": cfg.attn_implementation,
        "trust_remote_code": cfg.trust_remote_code,
    }
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, **kwargs)
    except (ImportError, ValueError) as exc:
        if "flash" in str(exc).lower():
            raise ModelSourceError(
                f"attn_implementation={cfg.attn_implementation!r} is not available here ({exc}); "
                "set model.attn_implementation=sdpa explicitly"
            ) from None
        raise
    except OSError as exc:
        raise ModelSourceError(f"{resolved.path}: could not load the model ({exc})") from None
    logger.info("loaded %s (%s, %s)", resolved.display_name, model.dtype, cfg.attn_implementation)
    return model, tokenizer, resolved
