"""Shared fixtures: the exact Qwen2.5 tokenizer and a tiny random Qwen2 model, built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_THREE_PART = ROOT / "data" / "sample" / "medqa_three_part.jsonl"

THREE_PART_ANSWER = (
    "一、病情分析\n症状评估：咳嗽一周，无发热。\n可能疾病：考虑急性支气管炎。\n\n"
    "二、原因分析\n主要病因：多为病毒感染。\n鉴别要点：需与肺炎鉴别。\n\n"
    "三、治疗建议\n就医指导：出现高热或气促请及时就诊。\n治疗与生活建议：多喝水，注意休息。"
)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("medtune-cache")


@pytest.fixture(scope="session")
def qwen_tokenizer(cache_dir):
    from medtune.model.tiny import build_qwen25_tokenizer

    return build_qwen25_tokenizer(cache_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(cache_dir, qwen_tokenizer) -> Path:
    from medtune.model.tiny import ensure_tiny_model_dir

    return ensure_tiny_model_dir(cache_dir)


@pytest.fixture(scope="session")
def tiny_peft_engine(tiny_model_dir):
    """The tiny model with a random (non-zero) LoRA adapter in a ChatEngine, built once per session."""
    import torch
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


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """24 alpaca records with three-part answers, taken from the shipped sample."""
    rows = [json.loads(line) for line in SAMPLE_THREE_PART.read_text(encoding="utf-8").splitlines()[:24]]
    return write_jsonl(tmp_path / "raw.jsonl", rows)


@pytest.fixture
def tiny_config(tmp_path, tiny_model_dir, small_dataset):
    """A config for the tiny model whose every output goes under tmp_path."""
    from medtune.config import load_config

    def make(*overrides: str):
        return load_config(
            ROOT / "configs" / "tiny" / "lora_sft.yaml",
            [
                f"model.name_or_path={tiny_model_dir}",
                f"data.raw_file={small_dataset}",
                f"output_root={tmp_path / 'runs'}",
                *overrides,
            ],
        )

    return make
