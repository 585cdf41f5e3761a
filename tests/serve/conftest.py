"""The serving tests' engine: the tiny model with a random (non-zero) LoRA adapter, built once per session."""

import pytest
import torch


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from medtune.config import ModelConfig
    from medtune.model.loader import load_model
    from medtune.serve.engine import ChatEngine

    model, tok, _ = load_model(ModelConfig(name_or_path=str(tiny_model_dir)))
    torch.manual_seed(0)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    return ChatEngine(peft_model, tok, name="tiny")
