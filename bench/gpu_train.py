"""LoRA and QLoRA training throughput of a 7B model on one GPU: tokens/s, MFU, peak GPU memory.

    .venv/bin/python bench/gpu_train.py --model /models/Qwen2.5-7B-Instruct          # LoRA, then QLoRA
    .venv/bin/python bench/gpu_train.py --model Qwen/Qwen2.5-7B-Instruct --method qlora --seq 2048 --steps 10
    .venv/bin/python bench/gpu_train.py --model demo --dry-run                       # the plan, no GPU needed

Each method runs in its own child process (a clean CUDA context, so one method's cached memory cannot
inflate the other's peak). The model is loaded by medtune's loader (bf16, SDPA; QLoRA: NF4 with double
quantisation and bf16 compute, then PEFT's ``prepare_model_for_kbit_training`` exactly as ``run_sft``
does), gets medtune's selective LM head (``lean_loss``) and medtune's LoRA adapters (``lora`` defaults:
r=16 on every linear projection). Batches are rows of exactly ``--seq`` tokens packed padding-free from
the shipped sample Q&A, encoded with medtune's chat template and loss mask (labels only on answers;
position ids restart per sample, so no sample attends to another), as ``train.packing: true`` gives;
attention runs per sample (``medtune_varlen``, as ``medtune train`` sets up for padding-free batches;
``--attn sdpa`` gives transformers' block-diagonal SDPA mask instead).

The loop is plain PyTorch (AdamW on the LoRA weights, bf16 autocast as the Trainer's ``bf16=True``):
``--warmup`` steps untimed, then ``--steps`` timed between CUDA synchronisations. Peak memory is
``torch.cuda.max_memory_allocated`` over the whole child: weights, optimizer state and activations.

FLOPs per token: N = weights every token is multiplied through (linear layers + LM head, from the config).
Model FLOPs (MFU) = 4N + 3A: forward 2N and backward 2N (input gradients only; the base is frozen), and
attention A = 4 x layers x heads x head_dim x mean context per token, forward once and backward twice.
Hardware FLOPs (HFU) add the recomputation of gradient checkpointing (2N + A). Peaks are dense bf16
tensor-core TFLOP/s from the vendors' data sheets (``--peak-tflops`` for any other GPU).

Targets (issue 6): QLoRA at 2048 tokens within 10 GB of GPU memory; MFU at least 40%.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import SAMPLE, matmul_params_from_config, sample_pairs, skip, table

ROOT = Path(__file__).resolve().parents[1]
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


def peak_tflops(device_name: str) -> float | None:
    for pattern, tflops in GPU_PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops
    return None


def flops_per_token(config: Any, mean_context: float, checkpointing: bool) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) per trained token of a LoRA step; see the module docstring."""
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


def resolve_checkpointing(args: argparse.Namespace, method: str) -> bool:
    if args.gradient_checkpointing == "auto":
        # QLoRA is chosen to save memory; bf16 LoRA on a large GPU is faster without recomputation.
        return method == "qlora"
    return args.gradient_checkpointing == "on"


def run_method(args: argparse.Namespace, method: str) -> dict[str, Any]:
    import torch

    from medtune.config import LoraConfig, ModelConfig
    from medtune.model.adapters import attach_lora
    from medtune.model.loader import load_model
    from medtune.train.lean_loss import add_selective_lm_head

    require_gpu(method)
    checkpointing = resolve_checkpointing(args, method)
    torch.manual_seed(args.seed)
    torch.cuda.reset_peak_memory_stats()
    quantization_config = None
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        quantization_config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    t_load = time.perf_counter()
    model, tokenizer, resolved = load_model(
        ModelConfig(
            name_or_path=args.model,
            dtype="bfloat16",
            attn_implementation="sdpa" if args.attn == "medtune_varlen" else args.attn,
        ),
        quantization_config=quantization_config,
        device_map={"": 0},
    )
    if method == "qlora":
        if args.kbit_prep == "peft":
            from peft import prepare_model_for_kbit_training

            # As run_sft: freezes the base and upcasts every non-4-bit weight (norms, embeddings, LM head)
            # to fp32.
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
        else:
            # Freeze, upcast only the norms; embeddings and LM head stay bf16 (2 x 1.1 GB less for 7B).
            for name, p in model.named_parameters():
                p.requires_grad = False
                if p.dtype == torch.bfloat16 and "norm" in name:
                    p.data = p.data.float()
    if args.attn == "medtune_varlen":
        from medtune.train.varlen import register

        model.set_attn_implementation(register())
    add_selective_lm_head(model, args.head_chunk)
    model = attach_lora(model, LoraConfig(r=args.lora_r, alpha=2 * args.lora_r, dropout=0.0))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    load_s = time.perf_counter() - t_load
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    rows = packed_rows(tokenizer, args.seq, args.batch)
    stats = batch_stats(rows)
    batch = {k: torch.tensor(v, device="cuda") for k, v in rows.items()}

    def step() -> float:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(
                input_ids=batch["input_ids"],
                position_ids=batch["position_ids"],
                medtune_labels=batch["labels"],
            )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss.detach()

    losses = [float(step()) for _ in range(args.warmup)]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    timed = [step() for _ in range(args.steps)]
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    losses += [float(x) for x in timed]
    base = model.get_base_model()
    model_f, hw_f = flops_per_token(base.config, stats["mean_context"], checkpointing)
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or peak_tflops(name)
    tok_s = stats["tokens"] * args.steps / elapsed
    return {
        "method": method,
        "model": resolved.display_name,
        "device": name,
        "peak_tflops": peak,
        "checkpointing": checkpointing,
        "kbit_prep": args.kbit_prep if method == "qlora" else None,
        "seq": args.seq,
        "batch": args.batch,
        "steps": args.steps,
        "load_s": load_s,
        "step_s": elapsed / args.steps,
        "tok_s": tok_s,
        "supervised_frac": stats["supervised"] / stats["tokens"],
        "mean_context": stats["mean_context"],
        "model_gflop_per_token": model_f / 1e9,
        "mfu": model_f * tok_s / (peak * 1e12) if peak else None,
        "hfu": hw_f * tok_s / (peak * 1e12) if peak else None,
        "max_allocated_gb": torch.cuda.max_memory_allocated() / 2**30,
        "max_reserved_gb": torch.cuda.max_memory_reserved() / 2**30,
        "trainable_params": sum(p.numel() for p in params),
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }


def dry_run(args: argparse.Namespace) -> None:
    """Everything but the GPU: model config, tokenizer, packed batch, FLOPs per token, peak lookup."""
    from transformers import AutoConfig

    from medtune.config import ModelConfig
    from medtune.model.loader import load_tokenizer, resolve_model_source

    resolved = resolve_model_source(ModelConfig(name_or_path=args.model))
    config = AutoConfig.from_pretrained(resolved.path)
    tokenizer = load_tokenizer(resolved.path)
    stats = batch_stats(packed_rows(tokenizer, args.seq, args.batch))
    n = matmul_params_from_config(config)
    print(f"model {resolved.display_name}: N = {n / 1e9:.3f}B weights per token (linear layers + LM head)")
    print(
        f"batch {args.batch} x {args.seq} packed tokens: {100 * stats['supervised'] / stats['tokens']:.1f}% "
        f"supervised, mean attention context {stats['mean_context']:.0f} tokens"
    )
    for method in args.method:
        ckpt = resolve_checkpointing(args, method)
        model_f, hw_f = flops_per_token(config, stats["mean_context"], ckpt)
        print(
            f"{method}: checkpointing {'on' if ckpt else 'off'}; {model_f / 1e9:.2f} model GFLOP and "
            f"{hw_f / 1e9:.2f} hardware GFLOP per token"
        )
        for gpu in ("NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"):
            peak = args.peak_tflops or peak_tflops(gpu)
            assert peak is not None
            need = TARGET_MFU * peak * 1e12 / model_f
            print(f"  {gpu} ({peak:.0f} TFLOP/s bf16): {TARGET_MFU:.0%} MFU = {need:,.0f} tokens/s")


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def report(results: list[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        rows.append(
            [
                r["method"] + ("" if r["kbit_prep"] in (None, "peft") else f" ({r['kbit_prep']})"),
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="Qwen/Qwen2.5-7B-Instruct", help="hub id, local folder, .gguf or demo/tiny"
    )
    parser.add_argument(
        "--method", nargs="+", choices=["lora", "qlora"], default=["lora", "qlora"], help="default: both"
    )
    parser.add_argument("--seq", type=int, default=2048, help="tokens per row (default: 2048)")
    parser.add_argument("--batch", type=int, default=1, help="rows per step (default: 1)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default: 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank, alpha = 2r (default: 16)")
    parser.add_argument("--head-chunk", type=int, default=512, help="train.lm_head_chunk (default: 512)")
    parser.add_argument(
        "--gradient-checkpointing",
        choices=["auto", "on", "off"],
        default="auto",
        help="auto: on for qlora (memory), off for lora (speed)",
    )
    parser.add_argument(
        "--kbit-prep",
        choices=["peft", "lean"],
        default="peft",
        help="qlora: peft = prepare_model_for_kbit_training as run_sft (fp32 embeddings/LM head); "
        "lean = bf16 embeddings/LM head, fp32 norms",
    )
    parser.add_argument(
        "--attn",
        choices=["medtune_varlen", "sdpa", "flash_attention_2", "eager"],
        default="medtune_varlen",
        help="default: medtune_varlen (per-sample SDPA)",
    )
    parser.add_argument("--peak-tflops", type=float, help="bf16 peak of this GPU when not in the table")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--dry-run", action="store_true", help="print the plan without a GPU")
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.seq, args.batch, args.steps) < 1 or args.warmup < 0 or args.head_chunk < 1:
        parser.error("--seq, --batch, --steps and --head-chunk must be positive, --warmup not negative")
    if args.dry_run:
        dry_run(args)
        return
    if args.result:  # child: one method
        from medtune.io import write_json

        write_json(args.result, run_method(args, args.method[0]))
        return
    for method in args.method:
        require_gpu(method)  # fail before any model is loaded
    results = []
    with tempfile.TemporaryDirectory(prefix="medtune-gpu-bench-") as tmp:
        for method in args.method:
            out = Path(tmp) / f"{method}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), *(argv or sys.argv[1:])]
            cmd += ["--method", method, "--result", str(out)]
            print(
                f"{method}: loading {args.model} and training {args.warmup}+{args.steps} steps ...",
                flush=True,
            )
            proc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy())
            if proc.returncode != 0:
                raise SystemExit(f"{method} failed (exit {proc.returncode}); see the output above")
            results.append(json.loads(out.read_text(encoding="utf-8")))
    report(results)
    if args.json:
        from medtune.io import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
