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


def test_the_default_system_prompt_renders_like_training_and_a_client_one_still_wins(qwen_tokenizer):
    from medtune.data.template import render
    from medtune.model.export import with_default_system_prompt
    from medtune.prompts import SYSTEM_PROMPT, build_messages

    tok = qwen_tokenizer
    original = tok.chat_template
    try:
        tricky = SYSTEM_PROMPT + ' {{ raise }} {% endif %} {# x #} "quoted" \\ back\nslash 🩺'
        for prompt in (SYSTEM_PROMPT, tricky):
            tok.chat_template = with_default_system_prompt(original, prompt)
            question = [{"role": "user", "content": "头疼怎么办"}]
            assert render(tok, question, add_generation_prompt=True) == render(
                tok, build_messages("头疼怎么办", None, prompt), add_generation_prompt=True
            )
        mine = [{"role": "system", "content": "你是助手"}, *question]
        assert "你是助手" in render(tok, mine) and SYSTEM_PROMPT not in render(tok, mine)
    finally:
        tok.chat_template = original


def test_the_export_answers_like_the_served_model_without_a_system_message(trained_config, tmp_path):
    """Plain transformers on the export, no system message, greedy: the tokens `medtune chat` produces."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medtune.model.export import export_merged
    from medtune.prompts import SYSTEM_PROMPT
    from medtune.serve.engine import ChatEngine, GenerationSettings

    out = export_merged(trained_config, tmp_path / "merged").out_dir
    notes = (out / "MEDTUNE_EXPORT.md").read_text(encoding="utf-8")
    assert SYSTEM_PROMPT in notes and "medtune.prompts.SYSTEM_PROMPT" in notes

    question = "孩子咳嗽三天了怎么办"
    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    text = tok.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        generated = model.generate(**ids, max_new_tokens=8, do_sample=False, repetition_penalty=1.0)
    exported = generated[0, ids["input_ids"].shape[1] :].tolist()

    engine = ChatEngine.from_config(trained_config)
    assert engine.has_adapter
    served_ids = engine.tokenizer(engine.prompt_text(question), add_special_tokens=False)["input_ids"]
    assert ids["input_ids"][0].tolist() == served_ids, "the export renders the question differently"
    served = engine.generate(
        [question], GenerationSettings(max_new_tokens=8, temperature=0.0, repetition_penalty=1.0)
    )
    stop = [i for i, t in enumerate(exported) if t in engine.stop_ids]
    exported = exported[: stop[0]] if stop else exported
    assert served[0].num_tokens == len(exported)
    assert served[0].text == tok.decode(exported, skip_special_tokens=True).strip()
