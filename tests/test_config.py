from pathlib import Path

import pytest

from medtune.config import Config, ConfigError, explain, load_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))
TRAINING_CONFIGS = [p for p in SHIPPED if "accelerate" not in p.parts]


def test_configs_are_shipped_for_demo_tiny_and_the_real_target():
    names = {p.relative_to(ROOT / "configs").as_posix() for p in SHIPPED}
    assert {"demo/lora_sft.yaml", "tiny/lora_sft.yaml", "qwen2.5-7b/lora_sft.yaml"} <= names


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_every_shipped_config_parses(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.train.cutoff_len >= 1024, "a full three-part answer must never be cut"


def test_real_target_config_matches_the_recipe():
    cfg = load_config(ROOT / "configs" / "qwen2.5-7b" / "lora_sft.yaml")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-7B-Instruct"
    assert (cfg.lora.r, cfg.lora.alpha) == (32, 64)
    assert set(cfg.lora.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["train.learning_rate=2e-4", "train.max_steps=7", "lora.target_modules=[q_proj]"])
    assert cfg.train.learning_rate == pytest.approx(2e-4)
    assert cfg.train.max_steps == 7
    assert cfg.lora.target_modules == ["q_proj"]


def test_unknown_key_names_the_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  learning_rat: 1e-4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.learning_rat.*did you mean 'learning_rate'"):
        load_config(path)


def test_wrong_type_is_rejected_with_the_key():
    with pytest.raises(ConfigError, match="train.batch_size: expected an integer"):
        load_config(None, ["train.batch_size=four"])


def test_invalid_choice_is_rejected():
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(None, ["train.precision=fp8"])


def test_contradictory_settings_fail_at_load():
    with pytest.raises(ConfigError, match="save_steps"):
        load_config(None, ["train.eval_steps=10", "train.save_steps=15", "train.load_best_at_end=true"])


def test_malformed_yaml_reports_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  batch_size: [1,\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+"):
        load_config(path)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_every_field_is_documented():
    rows = explain()
    missing = [key for key, _default, doc in rows if not doc]
    assert not missing, f"fields without a docstring: {missing}"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name
)
def test_accelerate_configs_are_valid_launch_configs(path):
    import yaml

    data = yaml.safe_load(path.read_text())
    assert data["distributed_type"] in {"MULTI_GPU", "DEEPSPEED", "FSDP"}
    assert data["num_processes"] >= 2
    ds = data.get("deepspeed_config")
    if ds:
        qwen = load_config(ROOT / "configs" / "qwen2.5-7b" / "lora_sft.yaml")
        assert ds["gradient_accumulation_steps"] == qwen.train.grad_accum


def test_validation_off_needs_no_best_checkpoint():
    cfg = load_config(None, ["train.eval_steps=0", "train.load_best_at_end=false"])
    assert cfg.train.eval_steps == 0
    with pytest.raises(ConfigError, match="eval_steps=0"):
        load_config(None, ["train.eval_steps=0", "train.load_best_at_end=true"])
    with pytest.raises(ConfigError, match="eval_steps"):
        load_config(None, ["train.eval_steps=-5", "train.load_best_at_end=false"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("lora.top_layers=0", "lora.top_layers"),
        ("lora.top_layers=-2", "lora.top_layers"),
        ("train.warmup_ratio=1.0", "train.warmup_ratio"),
        ("train.warmup_ratio=3", "train.warmup_ratio"),
        ("train.warmup_ratio=-0.1", "train.warmup_ratio"),
        ("train.lr_scheduler=cosine_with_min_lr", "train.lr_scheduler"),
        ("train.save_steps=0", "train.save_steps"),
        ("train.logging_steps=0", "train.logging_steps"),
        ("train.lm_head_chunk=0", "train.lm_head_chunk"),
        ("train.max_eval_samples=0", "train.max_eval_samples"),
        ("train.max_grad_norm=-1", "train.max_grad_norm"),
        ("train.neftune_noise_alpha=0", "train.neftune_noise_alpha"),
        ("eval.batch_size=0", "eval.max_new_tokens and eval.batch_size"),
        ("serve.port=70000", "serve.port"),
        ("serve.top_p=0", "serve.top_p"),
        ("model.gguf_sha256=abc", "model.gguf_sha256"),
        ("restructure.max_copy_ratio=0", "restructure.max_copy_ratio"),
    ],
)
def test_settings_checkable_from_the_config_alone_fail_at_load(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_warmup_ratio_and_top_layers_in_range_load():
    cfg = load_config(None, ["train.warmup_ratio=0", "lora.top_layers=1"])
    assert (cfg.train.warmup_ratio, cfg.lora.top_layers) == (0.0, 1)
    assert load_config(None, ["train.warmup_ratio=0.99"]).train.warmup_ratio == pytest.approx(0.99)


def test_allowed_lr_schedulers_are_transformers_schedulers():
    import typing

    from transformers.trainer_utils import SchedulerType

    from medtune.config import TrainConfig

    allowed = typing.get_args(typing.get_type_hints(TrainConfig)["lr_scheduler"])
    assert set(allowed) <= {s.value for s in SchedulerType}


def test_bad_top_layers_is_a_one_line_cli_error_before_any_model_is_loaded(capsys, monkeypatch):
    import medtune.model.loader
    from medtune.cli import main

    def no_loading(*args, **kwargs):
        raise AssertionError("the model must not be loaded for a bad config")

    monkeypatch.setattr(medtune.model.loader, "load_model", no_loading)
    assert main(["train", str(ROOT / "configs" / "tiny" / "lora_sft.yaml"), "lora.top_layers=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medtune: error:") and "lora.top_layers" in err and "Traceback" not in err
