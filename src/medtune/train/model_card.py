"""A model card (README.md) in the adapter folder: what it is, how it was trained, how well it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medtune.config import Config
from medtune.io import write_text


def write_model_card(adapter_dir: Path, cfg: Config, base_name: str, metrics: dict[str, Any]) -> Path:
    data = metrics.get("data", {})
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {cfg.model.name_or_path if cfg.model.name_or_path != 'demo' else base_name}",
        "language: [zh]",
        "tags: [medtune, lora, medical, chinese]",
        "---",
        f"# medtune LoRA adapter: {cfg.run_name}",
        "",
        f"A LoRA adapter for **{base_name}** that answers Chinese medical questions in three parts "
        "(病情分析 / 原因分析 / 治疗建议). Health information only; it is not a doctor.",
        "",
        "## Training",
        f"- method: {cfg.train.method}, rank {cfg.lora.r}, alpha {cfg.lora.alpha}, dropout {cfg.lora.dropout}, "
        f"modules {', '.join(cfg.lora.target_modules)}"
        + (f", top {cfg.lora.top_layers} layers" if cfg.lora.top_layers else ""),
        f"- learning rate {cfg.train.learning_rate} ({cfg.train.lr_scheduler}), epochs {cfg.train.num_epochs}, "
        f"max steps {cfg.train.max_steps}, batch {cfg.train.batch_size} x accumulation {cfg.train.grad_accum}",
        f"- cutoff {cfg.train.cutoff_len} tokens, packing {cfg.train.packing}, precision {metrics.get('precision')}",
        "- loss on assistant tokens only (including the closing <|im_end|>)",
        f"- data: {json.dumps(data, ensure_ascii=False)}",
        "",
        "## Metrics",
        f"- final train loss: {metrics.get('train_loss')}",
        "- validation loss: "
        + (
            f"{metrics['eval_loss']}"
            if metrics.get("eval_loss") is not None
            else "not measured during training (train.eval_steps=0); see the eval report"
        ),
        f"- optimizer steps: {metrics.get('global_step')}",
        "",
        "## Use",
        "```bash",
        f"medtune chat {cfg.run_dir / 'config.yaml'}",
        f"medtune serve {cfg.run_dir / 'config.yaml'}",
        "```",
        "",
    ]
    path = Path(adapter_dir) / "README.md"
    write_text(path, "\n".join(lines))
    return path
