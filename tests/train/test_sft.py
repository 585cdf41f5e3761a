"""A few real LoRA steps on the tiny model through `run_sft` (TRL SFTTrainer + PEFT)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from medtune.data.prepare import prepare


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """Train once for the module: prepare -> run_sft with 4 steps."""
    from medtune.config import load_config
    from medtune.train.sft import run_sft
    from tests.conftest import ROOT, SAMPLE_THREE_PART

    out = tmp_path_factory.mktemp("sft")
    cfg = load_config(
        ROOT / "configs" / "tiny" / "lora_sft.yaml",
        [
            f"model.name_or_path={tiny_model_dir}",
            f"data.raw_file={SAMPLE_THREE_PART}",
            f"output_root={out}",
            "train.report_to=[tensorboard]",
        ],
    )
    prepare(cfg)
    result = run_sft(cfg)
    return cfg, result


def test_training_writes_adapter_curves_config_and_model_card(trained):
    cfg, result = trained
    run = cfg.run_dir
    for name in ("metrics.csv", "loss_curve.png", "config.yaml", "versions.json", "train_metrics.json"):
        assert (run / name).is_file(), name
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    card = (result.adapter_dir / "README.md").read_text(encoding="utf-8")
    assert "validation loss" in card and "assistant tokens only" in card
    assert any((run / "tensorboard").iterdir())
    assert result.metrics["global_step"] == cfg.train.max_steps
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) > 2


def test_only_lora_weights_change(trained, tiny_model_dir):
    _, result = trained
    original = load_file(str(tiny_model_dir / "model.safetensors"))
    changed_lora, checked_base = 0, 0
    for name, param in result.model.named_parameters():
        if "lora_" in name:
            assert param.requires_grad
            if "lora_B" in name and param.detach().abs().sum() > 0:
                changed_lora += 1  # B starts at zero, so any non-zero B was trained
            continue
        assert not param.requires_grad, name
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        torch.testing.assert_close(param.detach(), original[key], rtol=0, atol=0)
        checked_base += 1
    assert changed_lora > 0 and checked_base == len(original)
    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)


def test_adapter_round_trip_gives_identical_logits(trained, tiny_model_dir):
    cfg, result = trained
    from medtune.config import ModelConfig
    from medtune.model.adapters import load_adapter
    from medtune.model.loader import load_model

    ids = torch.tensor([[151644, 872, 198, 100, 200, 151645, 198, 151644, 77091, 198]])
    logits = []
    for _ in range(2):
        model, _, _ = load_model(ModelConfig(name_or_path=str(tiny_model_dir)))
        peft_model = load_adapter(model, str(result.adapter_dir)).eval()
        with torch.no_grad():
            logits.append(peft_model(input_ids=ids).logits)
        with torch.no_grad(), peft_model.disable_adapter():
            base_logits = peft_model(input_ids=ids).logits
    assert torch.equal(logits[0], logits[1])
    assert not torch.allclose(logits[0], base_logits), "the adapter must change the output"


def test_train_metrics_report_the_data(trained):
    cfg, _ = trained
    metrics = json.loads((cfg.run_dir / "train_metrics.json").read_text())
    assert metrics["data"]["train"]["samples"] > 0
    assert metrics["data"]["train"]["supervised_tokens"] < metrics["data"]["train"]["tokens"]
    assert metrics["eval_loss"] is not None
    # load_best_at_end with evaluation every 2 steps: the best checkpoint by validation loss is kept.
    assert metrics["best_checkpoint"] and "checkpoint-" in metrics["best_checkpoint"]


def test_overlong_samples_are_counted_and_warned_about(tiny_config, qwen_tokenizer, small_dataset, caplog):
    import logging

    from medtune.train.sft import build_datasets

    with small_dataset.open("a", encoding="utf-8") as f:
        for i in range(3):
            long_answer = f"一、病情分析\n第{i}个很长的回答。" + "多喝水，注意休息，观察病情变化。" * 150
            f.write(
                json.dumps({"instruction": f"很长的问题{i}", "output": long_answer}, ensure_ascii=False)
                + "\n"
            )
    cfg = tiny_config("train.cutoff_len=1024")
    prepare(cfg)
    with caplog.at_level(logging.WARNING, logger="medtune.train.sft"):
        train_ds, val_ds, stats = build_datasets(cfg, qwen_tokenizer)
    assert stats["train"]["dropped_overlong"] + stats["val"]["dropped_overlong"] == 3
    assert max(len(x) for ds in (train_ds, val_ds) for x in ds["input_ids"]) <= 1024
    assert any("over cutoff_len=1024 were dropped" in r.message for r in caplog.records)


def test_resume_continues_from_the_last_checkpoint(trained):
    from medtune.train.sft import run_sft

    cfg, _ = trained
    checkpoints = sorted((cfg.run_dir / "checkpoints").glob("checkpoint-*"))
    assert checkpoints, "periodic checkpoints are written"
    from medtune.config import load_config

    longer = load_config(cfg.run_dir / "config.yaml", ["train.max_steps=6"])
    result = run_sft(longer, resume=True)
    assert result.metrics["global_step"] == 6
    state = json.loads(
        (
            sorted(
                (cfg.run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])
            )[-1]
            / "trainer_state.json"
        ).read_text()
    )
    assert state["global_step"] == 6


def test_packed_training_runs_through_the_padding_free_path(tmp_path, tiny_model_dir, small_dataset):
    from medtune.config import load_config
    from medtune.train.sft import run_sft
    from tests.conftest import ROOT

    cfg = load_config(
        ROOT / "configs" / "tiny" / "lora_sft.yaml",
        [
            f"model.name_or_path={tiny_model_dir}",
            f"data.raw_file={small_dataset}",
            f"output_root={tmp_path}",
            "train.packing=true",
            "train.max_steps=2",
            "train.eval_steps=2",
            "train.save_steps=2",
        ],
    )
    prepare(cfg)
    result = run_sft(cfg)
    assert result.metrics["global_step"] == 2
    assert result.metrics["train_loss"] > 0 and result.metrics["eval_loss"] > 0


def test_validation_off_runs_no_evaluation(tiny_config):
    from medtune.train.sft import run_sft

    cfg = tiny_config("train.eval_steps=0", "train.load_best_at_end=false", "train.max_steps=2")
    prepare(cfg)
    result = run_sft(cfg)
    assert result.metrics["eval_loss"] is None
    state = next((cfg.run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    assert not any("eval_loss" in h for h in json.loads(state.read_text())["log_history"])
    assert "not measured during training" in (cfg.adapter_dir / "README.md").read_text(encoding="utf-8")


def test_the_returned_model_has_peft_modules_and_its_own_attention_back(trained):
    _, result = trained
    assert result.model.config._attn_implementation == "sdpa"
    assert not any("forward" in vars(m) for m in result.model.modules() if hasattr(m, "lora_A"))
    assert not any("forward" in vars(m) for m in result.model.modules() if hasattr(m, "gate_proj"))
