"""``medtune train``: LoRA supervised fine-tuning, read top to bottom.

tokenizer + model -> pre-flight template check -> encode samples with the loss mask -> LoRA ->
TRL SFTTrainer (with a lean supervised-only loss) -> checkpoints, curves, adapter and model card.

Run it through ``accelerate launch`` or ``torchrun`` for data-parallel training; nothing changes here.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medtune.config import Config, ConfigError
from medtune.train.checkpointing import adapted_layers, resolve_checkpointing, weight_bytes

logger = logging.getLogger(__name__)


class NoCheckpointError(FileNotFoundError):
    """``--resume`` found no checkpoint to continue from (the CLI reports it as a one-line error)."""


@dataclass
class TrainResult:
    adapter_dir: Path
    metrics: dict[str, Any]
    model: Any = None
    """The trained PEFT model, for callers in the same process (tests, notebooks)."""


def build_datasets(cfg: Config, tokenizer) -> tuple[Any, Any, dict[str, Any]]:
    """Encode train and validation splits; count over-long samples and warn about them."""
    from datasets import Dataset

    from medtune.data.prepare import load_split
    from medtune.data.template import encode_record

    stats: dict[str, Any] = {}
    out = []
    for split in ("train", "val"):
        rows, dropped, truncated = [], 0, 0
        for rec in load_split(cfg, split):
            enc = encode_record(tokenizer, rec, cfg.system_prompt, cfg.train.cutoff_len, cfg.train.overlong)
            if enc is None:
                dropped += 1
                continue
            truncated += enc.truncated
            rows.append({"input_ids": enc.input_ids, "labels": enc.labels})
        if dropped or truncated:
            logger.warning(
                "%s: %d samples over cutoff_len=%d were %s; raise train.cutoff_len to keep them whole",
                split, dropped or truncated, cfg.train.cutoff_len, "dropped" if dropped else "truncated",
            )  # fmt: skip
        if not rows:
            raise ConfigError(f"{split} split has no samples within train.cutoff_len={cfg.train.cutoff_len}")
        lengths = [len(r["input_ids"]) for r in rows]
        stats[split] = {
            "samples": len(rows),
            "dropped_overlong": dropped,
            "truncated": truncated,
            "tokens": sum(lengths),
            "supervised_tokens": sum(sum(1 for x in r["labels"] if x != -100) for r in rows),
            "max_len": max(lengths),
        }
        out.append(Dataset.from_list(rows))
    return out[0], out[1], stats


def _library_versions() -> dict[str, str]:
    import accelerate
    import peft
    import torch
    import transformers
    import trl

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "trl": trl.__version__,
        "accelerate": accelerate.__version__,
    }


def _rank_checksums(trainer) -> list[float]:
    """A checksum of the trainable weights from every process: data-parallel ranks must end identical.

    A custom loss that bypassed DDP's gradient synchronisation would let ranks drift apart silently;
    this makes such a bug fail the run instead.
    """
    import torch

    total = torch.zeros(1, dtype=torch.float64, device=trainer.accelerator.device)
    for p in trainer.model.parameters():
        if p.requires_grad:
            total += p.detach().double().abs().sum() + p.detach().double().sum()
    gathered = trainer.accelerator.gather(total).tolist()
    if max(gathered) - min(gathered) > 1e-6 * max(1.0, abs(gathered[0])):
        raise RuntimeError(f"data-parallel ranks ended with different adapters (checksums {gathered})")
    return gathered


def make_trainer_class():
    """SFTTrainer whose loss is computed by the selective LM head (see lean_loss)."""
    from trl import SFTTrainer

    class MedtuneSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length" or "input_ids" not in getattr(
                dataset, "column_names", ()
            ):
                return super()._get_train_sampler(train_dataset)
            from medtune.train.sampler import LengthBucketSampler

            # Tighter length buckets than transformers' mega-batches: see medtune.train.sampler.
            lengths = [len(ids) for ids in dataset["input_ids"]]
            return LengthBucketSampler(lengths, self.args.train_batch_size, seed=self.args.seed)

        medtune_checkpoint_plan = (
            None  # set by run_sft; per-batch checkpointing under train.gradient_checkpointing=auto
        )
        medtune_varlen = False  # set by run_sft when the model runs medtune's per-sample attention

        def training_step(self, model, inputs, num_items_in_batch=None):
            plan = self.medtune_checkpoint_plan
            if plan is not None and plan.mode == "budget":
                if not hasattr(self, "_medtune_layers"):
                    self._medtune_layers = adapted_layers(model)
                plan.apply(self._medtune_layers, int(inputs["input_ids"].numel()))
            return super().training_step(model, inputs, num_items_in_batch)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            # Varlen hints from TRL's padding-free collator: medtune's attention reads the sample boundaries;
            # plain SDPA or eager read packing from position_ids instead.
            drop = ["cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx"]
            if not self.medtune_varlen:
                drop.append("cu_seq_lens_q")
            for key in drop:
                inputs.pop(key, None)
            outputs = model(**inputs, medtune_labels=labels, num_items_in_batch=num_items_in_batch)
            loss = outputs.loss
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            mode = "train" if model.training else "eval"
            n = self.accelerator.gather_for_metrics(outputs.num_tokens.detach()).sum()
            hits = self.accelerator.gather_for_metrics(outputs.num_correct.detach()).sum()
            self._metrics[mode]["mean_token_accuracy"].append((hits / n.clamp(min=1)).item())
            return (loss, outputs) if return_outputs else loss

    return MedtuneSFTTrainer


def run_sft(cfg: Config, resume: bool = False) -> TrainResult:
    import torch
    from transformers import EarlyStoppingCallback, set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig

    from medtune.data.template import preflight
    from medtune.io import write_json, write_text
    from medtune.model.adapters import attach_lora
    from medtune.model.loader import load_model, resolve_dtype, resolve_precision
    from medtune.train.allocator import keep_freed_memory, release_freed_memory
    from medtune.train.callbacks import MetricsCallback
    from medtune.train.compact_weights import (
        COMPACT_DTYPES,
        adapters_in_fp32,
        compact_frozen_weights,
        widen_frozen_weights,
    )
    from medtune.train.fused_lora import fuse_lora_linears, unfuse_lora_linears
    from medtune.train.lean_loss import add_selective_lm_head
    from medtune.train.model_card import write_model_card
    from medtune.train.varlen import register as register_varlen

    run_dir = cfg.run_dir
    ckpt_dir = run_dir / "checkpoints"
    checkpoint = None
    if resume:
        # Checked before the model loads. Starting afresh instead would quietly drop what --resume asked for.
        checkpoint = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
        if checkpoint is None:
            raise NoCheckpointError(
                f"--resume: no checkpoint in {ckpt_dir}; run without --resume to start a new run"
            )
    set_seed(cfg.train.seed)
    precision = resolve_precision(cfg.train.precision)
    on_cpu = not torch.cuda.is_available()
    if on_cpu and cfg.train.reuse_freed_memory:
        keep_freed_memory()

    quantization_config = None
    if cfg.train.method == "qlora":
        if not torch.cuda.is_available():
            raise ConfigError(
                "train.method=qlora needs a CUDA GPU (bitsandbytes 4-bit); use method=lora on CPU"
            )
        from transformers import BitsAndBytesConfig

        quantization_config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
        )
    as_stored = (
        on_cpu
        and precision == "fp32"
        and cfg.train.fused_lora
        and cfg.train.compact_frozen_weights
        and resolve_dtype(cfg.model.dtype) == torch.float32
    )
    # Loaded as stored: a bf16/fp16 checkpoint keeps the fused projections' frozen weights in 16 bits
    # (everything else is widened below); an fp32 one loads as before.
    model, tokenizer, resolved = load_model(
        cfg.model, quantization_config=quantization_config, dtype="auto" if as_stored else None
    )
    compact_dtype = model.dtype if model.dtype in COMPACT_DTYPES else None
    template_check = preflight(tokenizer, cfg.system_prompt)
    # The budget follows the weights' size at the compute precision, however they are held.
    checkpoint_plan = resolve_checkpointing(
        cfg, model.config, precision, weight_bytes(model, bytes_per_value=4 if compact_dtype else None)
    )
    checkpointing = checkpoint_plan.enabled
    train_ds, val_ds, data_stats = build_datasets(cfg, tokenizer)
    if cfg.train.max_eval_samples is not None and len(val_ds) > cfg.train.max_eval_samples:
        val_ds = val_ds.select(range(cfg.train.max_eval_samples))
    logger.info("train data: %s", data_stats)

    if quantization_config is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    add_selective_lm_head(model, cfg.train.lm_head_chunk)
    padding_free = cfg.train.padding_free or cfg.train.packing
    attn_before = model.config._attn_implementation
    if padding_free and attn_before == "sdpa":
        model.set_attn_implementation(register_varlen())
    if compact_dtype is not None:
        adapters_in_fp32(model)
    model = attach_lora(model, cfg.lora)
    if cfg.train.fused_lora:
        fuse_lora_linears(model)
    if compact_dtype is not None:
        compact_frozen_weights(model)
    if checkpointing:
        # LoRA freezes the embeddings; checkpointed blocks need an input that requires grad.
        model.enable_input_require_grads()

    evaluate_by_steps = bool(cfg.train.eval_steps)
    if cfg.train.eval_steps == 0:
        eval_strategy = "no"
    else:
        eval_strategy = "steps" if evaluate_by_steps else "epoch"
    args = SFTConfig(
        output_dir=str(ckpt_dir),
        learning_rate=cfg.train.learning_rate,
        lr_scheduler_type=cfg.train.lr_scheduler,
        warmup_steps=cfg.train.warmup_ratio,  # a float below 1 is read as a fraction of the steps
        num_train_epochs=cfg.train.num_epochs,
        max_steps=cfg.train.max_steps,
        per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm,
        neftune_noise_alpha=cfg.train.neftune_noise_alpha,
        logging_steps=cfg.train.logging_steps,
        # Best-checkpoint selection needs a checkpoint at every evaluation, so saving follows evaluation then.
        save_strategy="steps" if evaluate_by_steps or not cfg.train.load_best_at_end else "epoch",
        save_steps=cfg.train.save_steps,
        eval_strategy=eval_strategy,
        eval_steps=cfg.train.eval_steps or None,
        save_total_limit=cfg.train.save_total_limit,
        load_best_model_at_end=cfg.train.load_best_at_end,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        report_to=[r for r in cfg.train.report_to if r != "tensorboard"] or "none",
        seed=cfg.train.seed,
        data_seed=cfg.train.seed,
        # Samples are encoded (and cut) by medtune; TRL must not re-tokenise or truncate them.
        max_length=cfg.train.cutoff_len if cfg.train.packing else None,
        packing=cfg.train.packing,
        packing_strategy="bfd",
        padding_free=padding_free,
        train_sampling_strategy="group_by_length"
        if cfg.train.group_by_length and not padding_free
        else "random",
        dataset_num_proc=None,
        use_cpu=on_cpu,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=False,
    )
    trainer_cls = make_trainer_class()
    callbacks = [MetricsCallback(run_dir)]
    if "tensorboard" in cfg.train.report_to:
        # Given its own writer so the logs land in <run_dir>/tensorboard, not inside the checkpoints folder.
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / "tensorboard"))))
    if cfg.train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.medtune_checkpoint_plan = checkpoint_plan
    trainer.medtune_varlen = model.config._attn_implementation != attn_before

    if trainer.is_world_process_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(
            run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), allow_unicode=True, sort_keys=False)
        )
        write_json(run_dir / "versions.json", _library_versions() | {"model": resolved.path})
        write_text(run_dir / "template_sample.txt", str(template_check["rendered_sample"]))

    if (
        not resume
        and ckpt_dir.is_dir()
        and any(ckpt_dir.glob("checkpoint-*"))
        and trainer.is_world_process_zero()
    ):
        # A fresh run must not leave older checkpoints where a later --resume would pick them up.
        previous = ckpt_dir.with_name("checkpoints.previous")
        shutil.rmtree(previous, ignore_errors=True)
        ckpt_dir.rename(previous)
        logger.warning(
            "starting a fresh run: earlier checkpoints moved to %s (use --resume to continue)", previous
        )
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    final_eval = [
        h
        for h in trainer.state.log_history
        if "eval_loss" in h and h.get("step") == trainer.state.global_step
    ]
    if cfg.train.eval_steps == 0:
        eval_metrics: dict = {}  # validation is off: the eval stage scores the held-out questions instead
    elif final_eval and not cfg.train.load_best_at_end:
        eval_metrics = final_eval[-1]
    else:
        eval_metrics = trainer.evaluate()

    rank_checksums = _rank_checksums(trainer)
    metrics = {
        "world_size": trainer.accelerator.num_processes,
        "rank_checksums": rank_checksums,
        "train_loss": train_output.training_loss,
        "eval_loss": eval_metrics.get("eval_loss"),
        "global_step": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        "precision": precision,
        "gradient_checkpointing": checkpoint_plan.summary(),
        "data": data_stats,
    }
    adapter_dir = cfg.adapter_dir
    if trainer.is_world_process_zero():
        trainer.save_model(str(adapter_dir))
        tokenizer.save_pretrained(str(adapter_dir))
        write_json(run_dir / "train_metrics.json", metrics)
        write_model_card(adapter_dir, cfg, resolved.display_name, metrics)
        logger.info("adapter saved to %s", adapter_dir)
    # The final evaluation above ran as training did; callers (eval, notebooks) get PEFT's modules and
    # the model's own attention back.
    unfuse_lora_linears(trainer.model)
    widen_frozen_weights(trainer.model)
    if trainer.medtune_varlen:
        model.set_attn_implementation(attn_before)
    if on_cpu and cfg.train.reuse_freed_memory:
        release_freed_memory()
    return TrainResult(adapter_dir, json.loads(json.dumps(metrics, default=str)), trainer.model)
