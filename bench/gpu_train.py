"""LoRA and QLoRA training throughput of a 7B model on one GPU: tokens/s, MFU, peak GPU memory.

    .venv/bin/python bench/gpu_train.py --model /models/Qwen2.5-7B-Instruct          # LoRA, then QLoRA
    .venv/bin/python bench/gpu_train.py --model Qwen/Qwen2.5-7B-Instruct --method qlora --seq 2048 --steps 10
    .venv/bin/python bench/gpu_train.py --model qwen2.5-7b-random                    # no download needed
    .venv/bin/python bench/gpu_train.py --model demo --dry-run                       # the plan, no GPU needed

Each method runs in its own child process (a clean CUDA context, so one method's cached memory cannot
inflate the other's peak). The model is set up exactly as ``run_sft`` sets it up: medtune's loader (bf16,
SDPA) inside ``medtune.train.patches.training_patches``, whose patches decide the rest (QLoRA: NF4 with
double quantisation and bf16 compute, then PEFT's ``prepare_model_for_kbit_training``; LoRA r=16 on every
linear projection). On CUDA that is plain PEFT: the patches verified on CPU only (lean LM head, per-sample
attention, fused LoRA, ...) are off, so the loss is transformers' own over full logits and packed rows
get transformers' block-diagonal SDPA mask. ``--model qwen2.5-7b-random`` builds the published
Qwen2.5-7B architecture with random bf16 weights directly on the GPU and the real tokenizer (QLoRA
quantises while loading, so that model is first written to a temporary folder and loaded back).
Batches are rows of exactly ``--seq`` tokens packed padding-free from the shipped sample Q&A, encoded
with medtune's chat template and loss mask (labels only on answers; position ids restart per sample, so
no sample attends to another), as ``train.packing: true`` gives.

The loop is plain PyTorch (AdamW on the LoRA weights, bf16 autocast as the Trainer's ``bf16=True``):
``--warmup`` steps untimed, then ``--steps`` timed between CUDA synchronisations. Peak memory is
``torch.cuda.max_memory_allocated`` over the whole child: weights, optimizer state and activations.

FLOPs per token, MFU and HFU: see ``_gpu.flops_per_token``. Targets (issue 6): QLoRA at 2048 tokens within 10 GB of GPU memory; MFU at least 40%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import matmul_params_from_config, run_child
from _gpu import (
    QWEN25_7B,
    RANDOM_7B,
    TARGET_MFU,
    batch_stats,
    flops_per_token,
    packed_rows,
    peak_tflops,
    random_qwen25_7b,
    report,
    require_gpu,
)


def resolve_checkpointing(args: argparse.Namespace, method: str) -> bool:
    if args.gradient_checkpointing == "auto":
        # QLoRA is chosen to save memory; bf16 LoRA on a large GPU is faster without recomputation.
        return method == "qlora"
    return args.gradient_checkpointing == "on"


def bench_config(args: argparse.Namespace, method: str):
    """The medtune config this bench trains with: bf16, LoRA r (alpha 2r, no dropout) on every projection."""
    from medtune.config import load_config

    ckpt = str(resolve_checkpointing(args, method)).lower()
    return load_config(
        None,
        [
            f"model.name_or_path={args.model}",
            "model.dtype=bfloat16",
            f"model.attn_implementation={args.attn}",
            f"train.method={method}",
            "train.precision=bf16",
            f"train.gradient_checkpointing={ckpt}",
            f"train.lm_head_chunk={args.head_chunk}",
            f"lora.r={args.lora_r}",
            f"lora.alpha={2 * args.lora_r}",
            "lora.dropout=0.0",
        ],
    )


def run_method(args: argparse.Namespace, method: str) -> dict[str, Any]:
    import torch

    from medtune.model.loader import load_model
    from medtune.train.patches import training_patches

    require_gpu(method)
    cfg = bench_config(args, method)
    torch.manual_seed(args.seed)
    torch.cuda.reset_peak_memory_stats()
    t_load = time.perf_counter()
    with training_patches(cfg) as patched, tempfile.TemporaryDirectory(prefix="medtune-7b-") as tmp:
        if args.model == RANDOM_7B:
            model, tokenizer = random_qwen25_7b(cfg, patched.load_kwargs(), Path(tmp))
            display = f"{RANDOM_7B} (random weights)"
        else:
            model, tokenizer, resolved = load_model(cfg.model, device_map={"": 0}, **patched.load_kwargs())
            display = resolved.display_name
        model = patched.apply(model)
        checkpointing = patched.ctx.checkpointing.enabled
        if checkpointing:  # what the Trainer does for run_sft
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lean = patched.on("lean_lm_head")
        model.train()
        load_s = time.perf_counter() - t_load
        return train_loop(args, method, model, tokenizer, lean, checkpointing) | {
            "model": display,
            "load_s": load_s,
            "patches": [p.name for p in patched.applied],
        }


def train_loop(args, method: str, model, tokenizer, lean: bool, checkpointing: bool) -> dict[str, Any]:
    """Warm-up steps, then timed steps of AdamW on the LoRA weights under bf16 autocast."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    rows = packed_rows(tokenizer, args.seq, args.batch)
    stats = batch_stats(rows)
    batch = {k: torch.tensor(v, device="cuda") for k, v in rows.items()}

    # The lean LM head takes medtune_labels; the plain path is transformers' loss over full logits.
    label_key = "medtune_labels" if lean else "labels"

    def step() -> float:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(
                input_ids=batch["input_ids"],
                position_ids=batch["position_ids"],
                **{label_key: batch["labels"]},
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
        "device": name,
        "peak_tflops": peak,
        "checkpointing": checkpointing,
        "seq": args.seq,
        "batch": args.batch,
        "steps": args.steps,
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
    from transformers import AutoConfig, Qwen2Config

    from medtune.config import ModelConfig
    from medtune.model.loader import load_tokenizer, resolve_model_source
    from medtune.model.tiny import build_qwen25_tokenizer
    from medtune.train.patches import doctor_rows

    if args.model == RANDOM_7B:
        name, config, tokenizer = RANDOM_7B, Qwen2Config(**QWEN25_7B), build_qwen25_tokenizer()
    else:
        resolved = resolve_model_source(ModelConfig(name_or_path=args.model))
        name, config = resolved.display_name, AutoConfig.from_pretrained(resolved.path)
        tokenizer = load_tokenizer(resolved.path)
    stats = batch_stats(packed_rows(tokenizer, args.seq, args.batch))
    n = matmul_params_from_config(config)
    print(f"model {name}: N = {n / 1e9:.3f}B weights per token (linear layers + LM head)")
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
        rows = doctor_rows(bench_config(args, method), device="cuda")
        print("  patches on CUDA: " + ", ".join(n for n, state, *_ in rows if state == "on"))
        for gpu in ("NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"):
            peak = args.peak_tflops or peak_tflops(gpu)
            assert peak is not None
            need = TARGET_MFU * peak * 1e12 / model_f
            print(f"  {gpu} ({peak:.0f} TFLOP/s bf16): {TARGET_MFU:.0%} MFU = {need:,.0f} tokens/s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="Qwen/Qwen2.5-7B-Instruct",
        help=f"hub id, local folder, .gguf, demo/tiny, or {RANDOM_7B} (the 7B architecture, random weights)",
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
        "--attn",
        choices=["sdpa", "flash_attention_2", "eager"],
        default="sdpa",
        help="model.attn_implementation (default: sdpa)",
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
            code, _ = run_child(cmd)
            if code != 0:
                raise SystemExit(f"{method} failed (exit {code}); see the output above")
            results.append(json.loads(out.read_text(encoding="utf-8")))
    report(results)
    if args.json:
        from medtune.io import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
