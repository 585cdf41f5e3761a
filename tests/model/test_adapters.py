import pytest
import torch

from medtune.config import LoraConfig
from medtune.model.adapters import attach_lora, peft_lora_config


@pytest.fixture
def tiny(qwen_tokenizer):
    from medtune.model.tiny import build_tiny_model

    return build_tiny_model(qwen_tokenizer, layers=4)


def test_top_layers_adapts_only_the_last_layers(tiny):
    model = attach_lora(tiny, LoraConfig(r=4, alpha=8, top_layers=2))
    layers = {int(n.split(".layers.")[1].split(".")[0]) for n, _ in model.named_parameters() if "lora_A" in n}
    assert layers == {2, 3}


def test_all_linear_projections_get_adapters_by_default(tiny):
    model = attach_lora(tiny, LoraConfig(r=4, alpha=8))
    names = {n.split(".lora_A")[0].split(".")[-1] for n, _ in model.named_parameters() if "lora_A" in n}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_rslora_and_dora_reach_peft():
    cfg = peft_lora_config(LoraConfig(r=8, alpha=16, use_rslora=True, use_dora=True), num_layers=4)
    assert cfg.use_rslora and cfg.use_dora
    assert cfg.layers_to_transform is None


def test_dora_model_trains_a_step(tiny):
    model = attach_lora(tiny, LoraConfig(r=4, alpha=8, use_dora=True, target_modules=["q_proj"]))
    ids = torch.randint(0, 1000, (1, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    assert any(p.grad is not None for n, p in model.named_parameters() if "lora_magnitude" in n)


def test_top_layers_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="top_layers"):
        peft_lora_config(LoraConfig(top_layers=9), num_layers=4)


def test_qlora_on_cpu_is_a_clear_error(tiny_config):
    from medtune.config import ConfigError
    from medtune.train.sft import run_sft

    if torch.cuda.is_available():
        pytest.skip("CPU-only behaviour")
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        run_sft(tiny_config("train.method=qlora"))


def test_precision_auto_is_fp32_on_cpu_and_fp16_needs_cuda():
    from medtune.config import ConfigError
    from medtune.model.loader import resolve_precision

    if torch.cuda.is_available():
        pytest.skip("CPU-only behaviour")
    assert resolve_precision("auto") == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16")
