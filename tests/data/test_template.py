"""The loss mask, checked token by token with the exact Qwen2.5 tokenizer."""

import pytest

from medtune.data.template import (
    IGNORE_INDEX,
    TemplateError,
    encode_messages,
    encode_record,
    preflight,
    render,
)
from medtune.prompts import SYSTEM_PROMPT, build_messages

IM_START, IM_END, ENDOFTEXT = 151644, 151645, 151643


def test_special_token_ids_are_qwen25(qwen_tokenizer):
    assert qwen_tokenizer.convert_tokens_to_ids("<|im_start|>") == IM_START
    assert qwen_tokenizer.convert_tokens_to_ids("<|im_end|>") == IM_END
    assert qwen_tokenizer.pad_token_id == ENDOFTEXT
    assert qwen_tokenizer.convert_tokens_to_ids("<|file_sep|>") == 151664


def test_only_the_answer_and_its_im_end_are_supervised(qwen_tokenizer):
    tok = qwen_tokenizer
    answer = "一、病情分析\n考虑感冒。"
    sample = encode_messages(tok, build_messages("咳嗽三天怎么办", answer))
    supervised_positions = [i for i, lab in enumerate(sample.labels) if lab != IGNORE_INDEX]
    # Supervised tokens form one contiguous run that decodes to exactly the answer plus <|im_end|>.
    assert supervised_positions == list(range(supervised_positions[0], supervised_positions[-1] + 1))
    assert tok.decode([sample.input_ids[i] for i in supervised_positions]) == answer + "<|im_end|>"
    assert sample.input_ids[supervised_positions[-1]] == IM_END
    # What precedes is "<|im_start|>assistant\n", all masked; what follows is the template's trailing "\n".
    start = supervised_positions[0]
    assert tok.decode(sample.input_ids[start - 3 : start]) == "<|im_start|>assistant\n"
    assert sample.labels[start - 3 : start] == [IGNORE_INDEX] * 3
    assert tok.decode(sample.input_ids[supervised_positions[-1] + 1 :]) == "\n"
    assert sample.labels[supervised_positions[-1] + 1 :] == [IGNORE_INDEX]


def test_labels_equal_input_ids_where_supervised(qwen_tokenizer):
    sample = encode_messages(qwen_tokenizer, build_messages("头疼", "多休息。"))
    for token, label in zip(sample.input_ids, sample.labels):
        assert label in (IGNORE_INDEX, token)


def test_system_and_user_tokens_are_never_supervised(qwen_tokenizer):
    tok = qwen_tokenizer
    sample = encode_messages(tok, build_messages("我发烧了", "请多喝水。"))
    text_upto_answer = render(tok, build_messages("我发烧了"), add_generation_prompt=True)
    n_prompt = len(tok(text_upto_answer, add_special_tokens=False)["input_ids"])
    assert sample.input_ids[:n_prompt] == tok(text_upto_answer, add_special_tokens=False)["input_ids"]
    assert all(lab == IGNORE_INDEX for lab in sample.labels[:n_prompt])
    assert SYSTEM_PROMPT in tok.decode(sample.input_ids[:n_prompt])


def test_every_assistant_turn_of_a_conversation_is_supervised(qwen_tokenizer):
    tok = qwen_tokenizer
    history = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好，请讲。"}]
    sample = encode_messages(tok, build_messages("胃疼", "建议就医。", history=history))
    supervised = tok.decode([t for t, lab in zip(sample.input_ids, sample.labels) if lab != IGNORE_INDEX])
    assert supervised == "您好，请讲。<|im_end|>建议就医。<|im_end|>"
    assert sum(1 for t, lab in zip(sample.input_ids, sample.labels) if lab == IM_END) == 2


def test_training_tokens_match_inference_prompt_tokens(qwen_tokenizer):
    """The prompt the model sees at inference is a token-exact prefix of the training sample."""
    tok = qwen_tokenizer
    question, answer = "孩子拉肚子两天，还能喝奶吗", "一、病情分析\n症状评估：腹泻。"
    sample = encode_messages(tok, build_messages(question, answer))
    prompt_ids = tok(
        render(tok, build_messages(question), add_generation_prompt=True), add_special_tokens=False
    )["input_ids"]
    assert sample.input_ids[: len(prompt_ids)] == prompt_ids


def test_overlong_samples_are_dropped_by_default(qwen_tokenizer):
    messages = build_messages("问题", "很长的回答。" * 400)
    assert encode_messages(qwen_tokenizer, messages, cutoff_len=128, overlong="drop") is None


def test_truncation_is_flagged_and_loses_the_end_of_turn(qwen_tokenizer):
    sample = encode_messages(qwen_tokenizer, build_messages("问题", "很长的回答。" * 400), 128, "truncate")
    assert sample.truncated and len(sample.input_ids) == 128
    assert IM_END not in [lab for lab in sample.labels if lab != IGNORE_INDEX]


def test_encode_record_uses_history_and_system_prompt(qwen_tokenizer):
    from medtune.data.schema import QARecord

    rec = QARecord(
        "x",
        "第二个问题",
        "第二个回答",
        history=[{"role": "user", "content": "一"}, {"role": "assistant", "content": "二"}],
    )
    sample = encode_record(qwen_tokenizer, rec, system_prompt="自定义系统提示")
    text = qwen_tokenizer.decode(sample.input_ids)
    assert "自定义系统提示" in text and text.count("<|im_start|>assistant") == 2


def test_preflight_passes_for_qwen25(qwen_tokenizer):
    info = preflight(qwen_tokenizer)
    assert info["num_supervised"] > 0 and "<|im_start|>system" in info["rendered_sample"]


def test_preflight_rejects_pad_equal_to_end_of_turn(qwen_tokenizer):
    import copy

    tok = copy.deepcopy(qwen_tokenizer)
    tok.pad_token = "<|im_end|>"
    with pytest.raises(TemplateError, match="pad token equals <\\|im_end\\|>"):
        preflight(tok)


def test_preflight_rejects_a_template_without_chatml(qwen_tokenizer):
    import copy

    tok = copy.deepcopy(qwen_tokenizer)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(TemplateError):
        preflight(tok)
