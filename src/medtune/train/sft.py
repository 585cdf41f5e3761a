"""``medtune train``: LoRA supervised fine-tuning, read top to bottom.

tokenizer + model -> pre-flight template check -> the training patches (LoRA and medtune's CPU speed-ups,
``medtune.train.patches``) -> encode samples with the loss mask -> TRL SFTTrainer -> checkpoints, curves,
adapter and model card. Every patch is undone when training ends, however it ends.

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
from medtune.train.checkpointing import CheckpointPlan, adapted_layers

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
    """SFTTrainer whose loss is computed by the selective LM head (see lean_loss) where it is patched in."""
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

        # Set from the training patches: per-batch checkpointing (train.gradient_checkpointing=auto), whether
        # the model runs medtune's per-sample attention, whether its forward takes medtune_labels.
        medtune_checkpoint_plan: CheckpointPlan | None = None
        medtune_varlen = False
        medtune_lean_loss = True

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
            if not self.medtune_lean_loss:  # the plain path: TRL's loss over full logits
                inputs["labels"] = labels
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
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


def training_arguments(cfg: Config, plan: CheckpointPlan, precision: str, on_cpu: bool):
    """TRL's SFTConfig for ``cfg``: schedule, precision, evaluation and saving, batches as medtune encodes them."""
    from trl import SFTConfig

    evaluate_by_steps = bool(cfg.train.eval_steps)
    if cfg.train.eval_steps == 0:
        eval_strategy = "no"
    else:
        eval_strategy = "steps" if evaluate_by_steps else "epoch"
    padding_free = cfg.train.padding_free or cfg.train.packing
    return SFTConfig(
        output_dir=str(cfg.run_dir / "checkpoints"),
        learning_rate=cfg.train.learning_rate,
        lr_scheduler_type=cfg.train.lr_scheduler,
        warmup_steps=cfg.train.warmup_ratio,  # a float below 1 is read as a fraction of the steps
        num_train_epochs=cfg.train.num_epochs,
        max_steps=cfg.train.max_steps,
        per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        gradient_checkpointing=plan.enabled,
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


def make_callbacks(cfg: Config) -> list:
    """Metrics and curves; TensorBoard and early stopping where configured."""
    from transformers import EarlyStoppingCallback

    from medtune.train.callbacks import MetricsCallback

    callbacks = [MetricsCallback(cfg.run_dir)]
    if "tensorboard" in cfg.train.report_to:
        # Given its own writer so the logs land in <run_dir>/tensorboard, not inside the checkpoints folder.
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(
            TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(cfg.run_dir / "tensorboard")))
        )
    if cfg.train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    return callbacks


def last_checkpoint(cfg: Config) -> str:
    """The newest checkpoint for ``--resume``, checked before the model loads: starting afresh instead would
    quietly drop what --resume asked for."""
    from transformers.trainer_utils import get_last_checkpoint

    ckpt_dir = cfg.run_dir / "checkpoints"
    checkpoint = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if checkpoint is None:
        raise NoCheckpointError(
            f"--resume: no checkpoint in {ckpt_dir}; run without --resume to start a new run"
        )
    return checkpoint


def start_run_dir(cfg: Config, trainer, resolved, template_check, resume: bool) -> None:
    """Config, versions and a rendered sample in the run folder; a fresh run sets older checkpoints aside."""
    from medtune.io import write_json, write_text
    from medtune.train.patches import library_versions

    if not trainer.is_world_process_zero():
        return
    run_dir, ckpt_dir = cfg.run_dir, cfg.run_dir / "checkpoints"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), allow_unicode=True, sort_keys=False))
    versions = {"python": platform.python_version(), **library_versions(), "model": resolved.path}
    write_json(run_dir / "versions.json", versions)
    write_text(run_dir / "template_sample.txt", str(template_check["rendered_sample"]))
    if not resume and ckpt_dir.is_dir() and any(ckpt_dir.glob("checkpoint-*")):
        # A fresh run must not leave older checkpoints where a later --resume would pick them up.
        previous = ckpt_dir.with_name("checkpoints.previous")
        shutil.rmtree(previous, ignore_errors=True)
        ckpt_dir.rename(previous)
        logger.warning(
            "starting a fresh run: earlier checkpoints moved to %s (use --resume to continue)", previous
        )


def final_metrics(cfg: Config, trainer, train_output, plan: CheckpointPlan, precision, data_stats) -> dict:
    """Train and validation loss (the last evaluation when it was at the last step), ranks, plan, data."""
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
    return {
        "world_size": trainer.accelerator.num_processes,
        "rank_checksums": _rank_checksums(trainer),
        "train_loss": train_output.training_loss,
        "eval_loss": eval_metrics.get("eval_loss"),
        "global_step": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        "precision": precision,
        "gradient_checkpointing": plan.summary(),
        "data": data_stats,
    }


def run_sft(cfg: Config, resume: bool = False, *, trainer_class: type | None = None) -> TrainResult:
    """Train the LoRA adapter of ``cfg``; ``resume`` continues from the newest checkpoint.

    ``trainer_class``: a subclass of ``make_trainer_class()`` to train with (the benchmark's meter).
    """
    from transformers import set_seed

    from medtune.data.template import preflight
    from medtune.io import write_json
    from medtune.model.loader import load_model
    from medtune.train.model_card import write_model_card
    from medtune.train.patches import training_patches

    checkpoint = last_checkpoint(cfg) if resume else None
    set_seed(cfg.train.seed)
    # Everything that changes the model or the process for training is undone on leaving this block,
    # an exception or Ctrl-C included; result.model is PEFT's plain model with the trained adapter.
    with training_patches(cfg) as patched:
        model, tokenizer, resolved = load_model(cfg.model, **patched.load_kwargs())
        template_check = preflight(tokenizer, cfg.system_prompt)
        model = patched.apply(model)
        train_ds, val_ds, data_stats = build_datasets(cfg, tokenizer)
        if cfg.train.max_eval_samples is not None and len(val_ds) > cfg.train.max_eval_samples:
            val_ds = val_ds.select(range(cfg.train.max_eval_samples))
        logger.info("train data: %s", data_stats)

        ctx = patched.ctx
        args = training_arguments(cfg, ctx.checkpointing, ctx.precision, on_cpu=ctx.device == "cpu")
        trainer = (trainer_class or make_trainer_class())(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            processing_class=tokenizer,
            callbacks=make_callbacks(cfg),
        )
        if patched.on("checkpointing_plan"):
            trainer.medtune_checkpoint_plan = ctx.checkpointing
        trainer.medtune_varlen = patched.per_sample_attention
        trainer.medtune_lean_loss = patched.on("lean_lm_head")
        start_run_dir(cfg, trainer, resolved, template_check, resume)
        if checkpoint is not None:
            logger.info("resuming from %s", checkpoint)
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
        metrics = final_metrics(cfg, trainer, train_output, ctx.checkpointing, ctx.precision, data_stats)
        if trainer.is_world_process_zero():
            trainer.save_model(str(cfg.adapter_dir))
            tokenizer.save_pretrained(str(cfg.adapter_dir))
            write_json(cfg.run_dir / "train_metrics.json", metrics)
            write_model_card(cfg.adapter_dir, cfg, resolved.display_name, metrics)
            logger.info("adapter saved to %s", cfg.adapter_dir)
    return TrainResult(cfg.adapter_dir, json.loads(json.dumps(metrics, default=str)), trainer.model)
