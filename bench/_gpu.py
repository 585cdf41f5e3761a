"""Helpers of the GPU training benchmark (bench/gpu_train.py): GPU peaks, FLOPs per token, packed rows, the
random Qwen2.5-7B, the report. Not a benchmark itself (``make bench`` leaves out files starting with ``_``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from _common import SAMPLE, matmul_params_from_config, sample_pairs, skip, table

TARGET_QLORA_GB = 10.0
TARGET_MFU = 0.40

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's data sheets. First match wins:
# H200 must come before the H20 pattern, the PCIe/NVL H100 parts before the SXM one.
GPU_PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    (r"H200", 989.0),
    (r"H100.*(PCIe|PCIE)", 756.0),
    (r"H100.*NVL", 835.0),
    (r"H100", 989.0),
    (r"H800", 989.0),
    (r"\bH20\b", 148.0),
    (r"A100", 312.0),
    (r"A800", 312.0),
    (r"L40S", 362.0),
    (r"\bL4\b", 121.0),
]


RANDOM_7B = "qwen2.5-7b-random"
# Qwen2.5-7B(-Instruct)'s published config.json: the architecture, without its weights.
QWEN25_7B = dict(
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    vocab_size=152064,
    rope_theta=1e6,
    max_position_embeddings=32768,
    tie_word_embeddings=False,
    rms_norm_eps=1e-6,
    hidden_act="silu",
    bos_token_id=151643,
    eos_token_id=151645,
)


def peak_tflops(device_name: str) -> float | None:
    for pattern, tflops in GPU_PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops
    return None


def flops_per_token(config: Any, mean_context: float, checkpointing: bool) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) per trained token of a LoRA step.

    FLOPs per token: N = weights every token is multiplied through (linear layers + LM head, from the config).
    Model FLOPs (MFU) = 4N + 3A: forward 2N and backward 2N (input gradients only; the base is frozen), and
    attention A = 4 x layers x heads x head_dim x mean context per token, forward once and backward twice.
    Hardware FLOPs (HFU) add the recomputation of gradient checkpointing (2N + A). Peaks are dense bf16
    tensor-core TFLOP/s from the vendors' data sheets (``--peak-tflops`` for any other GPU).
    """
    n = matmul_params_from_config(config)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    attn = 4 * config.num_hidden_layers * heads * head_dim * mean_context
    model = 4 * n + 3 * attn
    hardware = model + (2 * n + attn if checkpointing else 0)
    return model, hardware


def packed_rows(tokenizer, seq: int, rows: int) -> dict[str, list[list[int]]]:
    """``rows`` rows of exactly ``seq`` tokens, samples packed back to back (the last one cut to fit)."""
    from medtune.data.template import IGNORE_INDEX, encode_messages
    from medtune.prompts import build_messages

    samples = []
    for question, answer in sample_pairs():
        enc = encode_messages(tokenizer, build_messages(question, answer))
        if enc is not None:
            samples.append(enc)
    if not samples:
        raise SystemExit(f"{SAMPLE}: no samples")
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    k = 0
    for _ in range(rows):
        ids: list[int] = []
        labels: list[int] = []
        pos: list[int] = []
        while len(ids) < seq:
            s = samples[k % len(samples)]
            k += 1
            take = min(len(s.input_ids), seq - len(ids))
            ids += s.input_ids[:take]
            # The first token of a packed sample is never a target: it would be predicted from the last sample.
            labels += [IGNORE_INDEX, *s.labels[1:take]]
            pos += list(range(take))
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["position_ids"].append(pos)
    return out


def batch_stats(batch: dict[str, list[list[int]]]) -> dict[str, float]:
    tokens = sum(len(r) for r in batch["input_ids"])
    supervised = sum(sum(1 for t in r[1:] if t != -100) for r in batch["labels"])
    # A token at position p attends to p + 1 tokens (itself and the earlier ones of its own sample).
    mean_context = sum(p + 1 for r in batch["position_ids"] for p in r) / tokens
    return {"tokens": tokens, "supervised": supervised, "mean_context": mean_context}


def require_gpu(method: str) -> None:
    import torch

    if not torch.cuda.is_available():
        # Not a failure: this benchmark does not apply here (make bench goes on with the others).
        skip(
            "no CUDA device (bench/gpu_train.py needs a CUDA GPU and a CUDA build of PyTorch; this is torch "
            f"{torch.__version__}); use --dry-run to check the plan without one"
        )
    if method == "qlora":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise SystemExit("--method qlora needs bitsandbytes for 4-bit weights: pip install bitsandbytes")
        try:
            import bitsandbytes  # noqa: F401
        except (ImportError, RuntimeError, OSError) as exc:
            raise SystemExit(f"--method qlora: bitsandbytes is installed but does not load ({exc})") from None


def random_qwen25_7b(cfg, load_kwargs: dict, tmp: Path):
    """Qwen2.5-7B's architecture with random bf16 weights built on the GPU, and the real tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from medtune.config import ModelConfig
    from medtune.model.loader import load_model
    from medtune.model.tiny import build_qwen25_tokenizer

    tokenizer = build_qwen25_tokenizer()
    config = Qwen2Config(**QWEN25_7B, attn_implementation=cfg.model.attn_implementation)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    if "quantization_config" not in load_kwargs:
        return model, tokenizer
    # bitsandbytes quantises while loading: through medtune's loader from a folder, as for a real model.
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    del model
    torch.cuda.empty_cache()
    model, tokenizer, _ = load_model(
        ModelConfig(
            name_or_path=str(tmp), dtype="bfloat16", attn_implementation=cfg.model.attn_implementation
        ),
        device_map={"": 0},
        **load_kwargs,
    )
    return model, tokenizer


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def report(results: list[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        rows.append(
            [
                r["method"],
                "on" if r["checkpointing"] else "off",
                f"{r['batch']}x{r['seq']}",
                f"{r['step_s']:.3f}",
                f"{r['tok_s']:,.0f}",
                pct(r["mfu"]),
                pct(r["hfu"]),
                f"{r['max_allocated_gb']:.2f}",
                f"{r['max_reserved_gb']:.2f}",
                f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}",
                f"{r['load_s']:.0f}",
            ]
        )
    header = ["method", "ckpt", "tokens", "step s", "tok/s", "MFU", "HFU", "max alloc GB", "reserved GB"]
    print(table(rows, [*header, "loss", "load s"]))
    r0 = results[0]
    peak = (
        f"{r0['peak_tflops']:.0f} TFLOP/s dense bf16" if r0["peak_tflops"] else "unknown: pass --peak-tflops"
    )
    print(
        f"\n{r0['model']} on {r0['device']} (peak {peak}); {r0['model_gflop_per_token']:.1f} model GFLOP per "
        f"token (4N + 3A), {100 * r0['supervised_frac']:.0f}% of tokens supervised."
    )
    for r in results:
        if r["method"] == "qlora" and r["seq"] >= 2048:
            ok = r["max_allocated_gb"] <= TARGET_QLORA_GB
            print(
                f"target QLoRA at {r['seq']} tokens within {TARGET_QLORA_GB:.0f} GB: "
                f"{r['max_allocated_gb']:.2f} GB {'MET' if ok else 'MISSED'}"
            )
        if r["mfu"] is not None:
            ok = r["mfu"] >= TARGET_MFU
            print(
                f"target MFU >= {TARGET_MFU:.0%} ({r['method']}): {100 * r['mfu']:.1f}% {'MET' if ok else 'MISSED'}"
            )
