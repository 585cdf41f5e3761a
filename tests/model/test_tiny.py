from medtune.model.tiny import FIRST_SPECIAL_ID, QWEN25_SPECIAL_TOKENS


def test_rebuilt_tokenizer_has_qwen25_ids(qwen_tokenizer):
    for i, token in enumerate(QWEN25_SPECIAL_TOKENS):
        assert qwen_tokenizer.convert_tokens_to_ids(token) == FIRST_SPECIAL_ID + i
    # Known Qwen2.5 ids: "Hello" and " world" are single BPE tokens.
    assert qwen_tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]


def test_rebuilt_tokenizer_normalises_to_nfc(qwen_tokenizer):
    decomposed = "e\u0301"  # e + combining acute accent
    assert qwen_tokenizer(decomposed)["input_ids"] == qwen_tokenizer("\u00e9")["input_ids"]


def test_tokenizer_round_trips_chinese(qwen_tokenizer):
    text = "女，32岁，咳嗽一周了，夜里更厉害。"
    assert qwen_tokenizer.decode(qwen_tokenizer(text)["input_ids"]) == text
