"""The two arms of bench/train_throughput.py, each run in its own child process, and their meter.

(a) the original project's recipe (transformers ``Trainer``, labels = input ids, full logits, gradient
checkpointing, padding to the longest); (b) ``medtune train``: ``run_sft(cfg)`` as the CLI runs it, with the
meter's trainer class. Both are scored with medtune's validation loss; ``report`` prints the tables and the
ratios against (a). Not a benchmark itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from _common import matmul_params, peak_rss_mb, reset_peak_rss, table

TARGET_SPEEDUP = 2.5
TARGET_MEMORY = 0.6
TARGET_VAL_DRIFT = 0.02


class Meter:
    """Token counts of the training batches, the training-loop time and its peak RSS."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        meter = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                meter.rss_reset = reset_peak_rss()
                meter.t_begin, meter.cpu_begin = time.perf_counter(), time.process_time()

            def on_step_end(self, args, state, control, **kwargs):
                meter.t_end, meter.cpu_end = time.perf_counter(), time.process_time()

        self.callback = _Callback()
        self.t_begin = self.t_end = self.cpu_begin = self.cpu_end = 0.0
        self.rss_reset = False
        self.batches: list[dict[str, int]] = []

    def count(self, inputs: dict[str, Any]) -> None:
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        labels = inputs["labels"]
        self.batches.append(
            {
                "rows": int(ids.shape[0]),
                "width": int(ids.shape[-1]),
                "computed": int(ids.numel()),
                # Padding-free batches (packing) carry no attention mask: every token in them is real.
                "real": int(mask.sum()) if mask is not None else int(ids.numel()),
                "supervised": int((labels[..., 1:] != -100).sum()),
            }
        )

    def counting(self, trainer_cls: type) -> type:
        meter = self

        class Counting(trainer_cls):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.add_callback(meter.callback)

            def training_step(self, model, inputs, num_items_in_batch=None):
                meter.count(inputs)
                return super().training_step(model, inputs, num_items_in_batch)

        return Counting

    def summary(self) -> dict[str, Any]:
        totals = {k: sum(b[k] for b in self.batches) for k in ("computed", "real", "supervised")}
        return {
            "train_s": self.t_end - self.t_begin,
            # CPU seconds of this process in the loop: less sensitive than wall time to other tenants.
            "train_cpu_s": self.cpu_end - self.cpu_begin,
            "steps": len(self.batches),
            **totals,
            "batches": self.batches,
            "rss_train_peak_mb": peak_rss_mb() if self.rss_reset else None,
        }


def medtune_val_loss(model, tokenizer, cfg, records) -> tuple[float, int]:
    """Mean next-token loss over the assistant tokens of ``records``: medtune's loss, one sample at a time."""
    import torch

    from medtune.data.template import encode_record
    from medtune.train.lean_loss import selective_loss

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(base, base.base_model_prefix)
    was_training = base.training
    base.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for rec in records:
            enc = encode_record(tokenizer, rec, cfg.system_prompt, cfg.train.cutoff_len, "drop")
            if enc is None:
                raise SystemExit(
                    f"validation record {rec.id} is over train.cutoff_len (the bench selects them)"
                )
            hidden = backbone(input_ids=torch.tensor([enc.input_ids]), use_cache=False).last_hidden_state
            loss_sum, n, _ = selective_loss(
                hidden, torch.tensor([enc.labels]), base.get_output_embeddings(), cfg.train.lm_head_chunk
            )
            total += float(loss_sum)
            count += int(n)
    base.train(was_training)
    return total / max(count, 1), count


def run_arm_a(cfg, spec: dict[str, Any]) -> dict[str, Any]:
    """The original project's recipe on the same samples."""
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    from medtune.data.prepare import load_split
    from medtune.data.template import encode_record
    from medtune.model.adapters import attach_lora
    from medtune.model.loader import load_model

    set_seed(cfg.train.seed)
    model, tokenizer, _ = load_model(cfg.model)
    tokenizer.padding_side = "right"  # the training-time convention of the original recipe
    val = load_split(cfg, "val")
    out: dict[str, Any] = {"matmul_params": matmul_params(model)}
    if spec["base_val"]:
        out["base_val_loss"], _ = medtune_val_loss(model, tokenizer, cfg, val)
    rows = []
    for rec in load_split(cfg, "train"):
        enc = encode_record(tokenizer, rec, cfg.system_prompt, cfg.train.cutoff_len, "drop")
        if enc is None:
            raise SystemExit(f"train record {rec.id} is over train.cutoff_len (the bench selects them)")
        rows.append({"input_ids": enc.input_ids, "labels": list(enc.input_ids)})
    model = attach_lora(model, cfg.lora)
    model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    args = TrainingArguments(
        output_dir=str(Path(spec["work"]) / "arm_a"),
        per_device_train_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=1,
        max_steps=cfg.train.max_steps,
        learning_rate=cfg.train.learning_rate,
        lr_scheduler_type=cfg.train.lr_scheduler,
        warmup_steps=cfg.train.warmup_ratio,
        weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm,
        gradient_checkpointing=True,
        train_sampling_strategy="group_by_length",
        bf16=False,
        fp16=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=cfg.train.seed,
        data_seed=cfg.train.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    meter = Meter()
    trainer = meter.counting(Trainer)(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
    )
    train_output = trainer.train()
    out.update(meter.summary())
    out["train_loss"] = train_output.training_loss
    out["val_loss"], out["val_tokens"] = medtune_val_loss(model, tokenizer, cfg, val)
    out["trainable_params"] = model.get_nb_trainable_parameters()[0]
    out["precision"] = "fp32"
    return out


def run_arm_b(cfg, spec: dict[str, Any]) -> dict[str, Any]:
    """``medtune train``: ``run_sft(cfg)`` as the CLI runs it, training with the meter's trainer class."""
    import medtune.train.sft as sft
    from medtune.data.prepare import load_split
    from medtune.model.loader import load_tokenizer, resolve_model_source

    meter = Meter()
    result = sft.run_sft(cfg, trainer_class=meter.counting(sft.make_trainer_class()))
    out: dict[str, Any] = meter.summary()
    model = result.model
    tokenizer = load_tokenizer(resolve_model_source(cfg.model).path, cfg.model.trust_remote_code)
    out["train_loss"] = result.metrics["train_loss"]
    out["val_loss"], out["val_tokens"] = medtune_val_loss(model, tokenizer, cfg, load_split(cfg, "val"))
    out["matmul_params"] = matmul_params(model)
    out["trainable_params"] = model.get_nb_trainable_parameters()[0]
    out["precision"] = result.metrics["precision"]
    return out


def report(results: list[dict], peaks: dict[str, float]) -> None:
    peak = max(peaks["fp32_before"], peaks["fp32_after"])
    n_params = results[0]["matmul_params"]
    flops_per_token = 4 * n_params
    rows = []
    for r in results:
        t = r["train_s"]
        r["tok_s"] = r["computed"] / t
        r["real_tok_s"] = r["real"] / t
        r["sup_tok_s"] = r["supervised"] / t
        r["real_tok_cpu_s"] = r["real"] / r["train_cpu_s"]
        r["pad"] = 1 - r["real"] / r["computed"]
        r["mfu"] = flops_per_token * r["real"] / t / (peak * 1e9)
        r["mem"] = r["rss_process_peak_mb"]
        rows.append(
            [
                r["label"],
                r["precision"],
                f"{t:.1f}",
                f"{r['train_cpu_s']:.1f}",
                r["steps"],
                f"{r['tok_s']:.1f}",
                f"{r['real_tok_s']:.1f}",
                f"{r['sup_tok_s']:.1f}",
                f"{100 * r['pad']:.1f}%",
                f"{r['mem'] / 1024:.2f}",
                "n/a" if r["rss_train_peak_mb"] is None else f"{r['rss_train_peak_mb'] / 1024:.2f}",
                f"{100 * r['mfu']:.1f}%",
                f"{r['train_loss']:.4f}",
                f"{r['val_loss']:.4f}",
                f"{r['load_before']} -> {r['load_after']}",
            ]
        )
    header = ["arm", "prec", "loop s", "CPU s", "steps", "tok/s", "real tok/s", "sup tok/s", "padding"]
    header += ["peak GB", "loop GB", "MFU", "train loss", "val loss", "load avg (1/5/15 min)"]
    print()
    print(table(rows, header))
    a, b = results[0], results[1]
    print()
    ratio_rows = []
    for r in results[1:]:
        ratio_rows.append(
            [
                f"{r['label']}/a",
                f"{r['tok_s'] / a['tok_s']:.2f}x",
                f"{r['real_tok_s'] / a['real_tok_s']:.2f}x",
                f"{r['real_tok_cpu_s'] / a['real_tok_cpu_s']:.2f}x",
                f"{r['sup_tok_s'] / a['sup_tok_s']:.2f}x",
                f"{r['mem'] / a['mem']:.2f}x",
                f"{r['mfu'] / a['mfu']:.2f}x",
                f"{r['val_loss'] / a['val_loss']:.3f}",
            ]
        )
    ratio_header = ["ratio", "tok/s", "real tok/s", "real tok/CPU s", "sup tok/s", "peak mem", "MFU"]
    print(table(ratio_rows, [*ratio_header, "val loss"]))
    print()
    if len(results[0].get("rounds_s", [])) > 1:
        print("loop seconds of every round (the fastest is reported): ", end="")
        print("; ".join(f"{r['label']} {r['rounds_s']}" for r in results))
    same = sorted(x["real"] for x in a["batches"]) == sorted(x["real"] for x in b["batches"])
    print(
        f"a and b trained on the same samples: {a['real']} vs {b['real']} real tokens "
        f"({'same' if a['real'] == b['real'] else 'DIFFERENT'}); same batches: {'yes' if same else 'no'} "
        "(b groups samples into batches by length more tightly)"
    )
    speed = b["real_tok_s"] / a["real_tok_s"]
    mem = b["mem"] / a["mem"]
    print(
        f"targets (b = medtune defaults vs a): real tok/s >= {TARGET_SPEEDUP}x: {speed:.2f}x "
        f"{'MET' if speed >= TARGET_SPEEDUP else 'MISSED'}; peak memory <= {TARGET_MEMORY}x: {mem:.2f}x "
        f"{'MET' if mem <= TARGET_MEMORY else 'MISSED'}"
    )
    for r in results[2:]:
        drift = r["val_loss"] / b["val_loss"] - 1
        print(
            f"  {r['label']}: val loss {r['val_loss']:.4f} vs b {b['val_loss']:.4f} ({100 * drift:+.2f}%, "
            f"{'within' if abs(drift) <= TARGET_VAL_DRIFT else 'OUTSIDE'} {100 * TARGET_VAL_DRIFT:.0f}%)"
        )
    if "base_val_loss" in a:
        print(f"untrained model val loss: {a['base_val_loss']:.4f} (same held-out samples, same loss)")
    print()
    print(
        f"MFU = 4N x real tokens / loop s / peak; N = {n_params / 1e6:.1f}M weights per token (linear layers + "
        f"LM head), 4N = {flops_per_token / 1e9:.3f} GFLOP per real token (forward 2N + backward 2N input "
        "gradients; frozen base weights need no weight gradients; attention scores, checkpoint recompute and "
        f"padding not counted). Peak = best fp32 matmul here: {peaks['fp32_before']:.1f} GFLOP/s before, "
        f"{peaks['fp32_after']:.1f} after the arms (bf16 matmul: {peaks['bf16']:.2f} GFLOP/s)."
    )
    print(
        f"ceiling at 100% MFU: {peak * 1e9 / flops_per_token:.1f} real tok/s. "
        "a supervises every real token (labels = input ids, prompt included); b only the answer and <|im_end|>."
    )
    print(
        "peak GB: the arm's child process over its whole life (wait4 ru_maxrss); loop GB: its peak RSS "
        "during the training loop (VmHWM reset at on_train_begin). CPU s: the child's CPU time in the loop."
    )
