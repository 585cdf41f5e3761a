"""`medtune export`: the merged model reproduces the adapter model and loads in plain transformers."""

import pytest
import torch


@pytest.fixture
def trained_config(tiny_config, tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from medtune.model.loader import load_tokenizer

    cfg = tiny_config()
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    peft_model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(str(cfg.adapter_dir))
    load_tokenizer(str(tiny_model_dir)).save_pretrained(str(cfg.adapter_dir))
    return cfg


def test_export_merges_verifies_and_loads_in_plain_transformers(trained_config, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medtune.model.export import SAMPLE_QUESTIONS, _sample_inputs, export_merged

    result = export_merged(trained_config, tmp_path / "merged")
    assert result.max_abs_diff <= result.tolerance
    out = result.out_dir
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    assert not any("lora" in k for k in merged.state_dict())
    assert 151645 in merged.generation_config.eos_token_id
    # The merged weights differ from the base: the adapter was folded in.
    base = AutoModelForCausalLM.from_pretrained(str(trained_config.model.name_or_path))
    inputs = _sample_inputs(tok, None)
    with torch.no_grad():
        assert not torch.allclose(merged(**inputs).logits, base(**inputs).logits)
    assert len(SAMPLE_QUESTIONS) == 2


def test_export_fails_past_the_tolerance_and_writes_nothing(trained_config, tmp_path):
    from medtune.model.export import ExportError, export_merged

    with pytest.raises(ExportError, match="differ"):
        export_merged(trained_config, tmp_path / "merged", tolerance=-1.0)
    assert not (tmp_path / "merged").exists()
