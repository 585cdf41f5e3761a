"""Attach, load and merge LoRA adapters (PEFT)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from medtune.config import ConfigError, LoraConfig

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)


def peft_lora_config(cfg: LoraConfig, num_layers: int):
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType

    layers = None
    if cfg.top_layers is not None:
        # The lower bound is checked at config load; the upper one needs the model's layer count.
        if not 0 < cfg.top_layers <= num_layers:
            raise ConfigError(
                f"lora.top_layers={cfg.top_layers} must be between 1 and {num_layers} (this model's layers)"
            )
        layers = list(range(num_layers - cfg.top_layers, num_layers))
    return PeftLoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        layers_to_transform=layers,
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
        bias="none",
    )


def attach_lora(model: PreTrainedModel, cfg: LoraConfig) -> PeftModel:
    from peft import get_peft_model

    peft_cfg = peft_lora_config(cfg, model.config.num_hidden_layers)
    model = get_peft_model(model, peft_cfg)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info(
        "LoRA: %s trainable of %s parameters (%.2f%%)",
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )
    return model


def load_adapter(
    model: PreTrainedModel, adapter_dir: str, trainable: bool = False, name: str = "default"
) -> PeftModel:
    from pathlib import Path

    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{adapter_dir}: no LoRA adapter here (adapter_config.json missing); train first"
        )
    if isinstance(model, PeftModel):  # another adapter on the same base weights
        model.load_adapter(adapter_dir, adapter_name=name, is_trainable=trainable)
        return model
    return PeftModel.from_pretrained(model, adapter_dir, adapter_name=name, is_trainable=trainable)
