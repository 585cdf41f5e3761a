"""Typed configuration: dataclasses loaded from YAML, with dotted command-line overrides.

Every field has a docstring-style comment under it; ``medtune config explain`` prints them.
Validation happens in ``__post_init__`` so a bad value fails at load time with the file and key,
not an hour into training.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message names the file and the key."""


@dataclass
class ModelConfig:
    name_or_path: str = "demo"
    """A Hugging Face id, a local model folder, a ``.gguf`` file, or ``demo`` (the embedded offline model)."""
    gguf_sha256: str | None = None
    """Expected sha256 of a ``.gguf`` source; loading stops if the file does not match."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype. ``auto``: bfloat16 on a GPU that supports it, else float32 (CPU without native bf16)."""
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """Chosen explicitly; a failed flash-attention load is an error, never a silent switch."""
    cache_dir: str | None = None
    """Where converted GGUF models and the demo model live. Default: $MEDTUNE_CACHE or ~/.cache/medtune."""
    trust_remote_code: bool = False
    """Qwen2.5 is native to transformers; remote code stays off unless a model needs it."""


@dataclass
class DataConfig:
    raw_file: str = "data/sample/medqa_three_part.jsonl"
    """Raw Q&A file (JSON/JSONL in alpaca, messages/ShareGPT or question/answer form)."""
    format: Literal["auto", "alpaca", "messages", "qa"] = "auto"
    """Record layout; ``auto`` detects it from the first record."""
    val_ratio: float = 0.1
    """Fraction held out for validation (and for the base-vs-tuned evaluation)."""
    seed: int = 42
    """Seed of the deterministic split; the same seed and data give the same split on every machine."""
    min_question_chars: int = 4
    """Questions shorter than this (after cleaning) are dropped."""
    min_answer_chars: int = 10
    """Answers shorter than this (after cleaning) are dropped."""
    max_records: int | None = None
    """Keep at most this many records after cleaning (before the split); None keeps all."""
    on_error: Literal["fail", "skip"] = "fail"
    """``fail`` stops at the first malformed record with file:line; ``skip`` quarantines it and goes on."""

    def __post_init__(self) -> None:
        if not 0.0 < self.val_ratio < 0.5:
            raise ConfigError(f"data.val_ratio must be in (0, 0.5), got {self.val_ratio}")


@dataclass
class RestructureConfig:
    """Teacher-LLM rewriting into the three-part form (``medtune data restructure``)."""

    base_url: str = "https://api.deepseek.com/v1"
    """OpenAI-compatible endpoint of the teacher model (DeepSeek, Qwen API, a local vLLM, medtune serve --api)."""
    model: str = "deepseek-chat"
    """Teacher model name at that endpoint."""
    api_key_env: str = "MEDTUNE_TEACHER_API_KEY"
    """Name of the environment variable holding the key; the key itself never goes in a config or a flag."""


@dataclass
class LoraConfig:
    r: int = 16
    """LoRA rank: higher can fit more, at more memory and compute."""
    alpha: int = 32
    """Scaling numerator; alpha/r is the effective multiplier on the update."""
    dropout: float = 0.05
    """Dropout on the LoRA branch; a little helps on small medical datasets."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Modules that get adapters; all linear projections of Qwen2 by default."""
    top_layers: int | None = None
    """Adapt only the top N decoder layers (None: all). Backward then stops at the lowest adapted layer,
    which is the biggest CPU speed lever for small demo runs."""
    use_rslora: bool = False
    """Rank-stabilised scaling alpha/sqrt(r), better behaved at high ranks."""
    use_dora: bool = False
    """Weight-decomposed LoRA; slower per step, sometimes better quality."""

    def __post_init__(self) -> None:
        if self.r <= 0 or self.alpha <= 0:
            raise ConfigError(f"lora.r and lora.alpha must be positive, got r={self.r}, alpha={self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ConfigError("lora.target_modules is empty: name at least one module, e.g. q_proj")


@dataclass
class TrainConfig:
    method: Literal["lora", "qlora"] = "lora"
    """``qlora`` loads the base in 4-bit through bitsandbytes and needs CUDA."""
    learning_rate: float = 2e-4
    """Peak learning rate of the schedule."""
    lr_scheduler: str = "cosine"
    """Any transformers scheduler name: cosine, linear, constant_with_warmup, ..."""
    warmup_ratio: float = 0.05
    """Fraction of steps spent warming up."""
    num_epochs: float = 2.0
    """Passes over the training split (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps; -1 uses num_epochs."""
    batch_size: int = 4
    """Sequences per device per micro-batch."""
    grad_accum: int = 4
    """Micro-batches per optimizer step; effective batch = batch_size x grad_accum x devices."""
    cutoff_len: int = 2048
    """Maximum tokens per sample. Long enough for a full three-part answer: an answer is never cut silently."""
    overlong: Literal["drop", "truncate"] = "drop"
    """What to do with samples longer than cutoff_len; either way they are counted and reported."""
    packing: bool = False
    """Padding-free packing with per-sample position ids (no attention across samples)."""
    group_by_length: bool = True
    """Batch samples of similar length together so little compute is spent on padding."""
    lm_head_chunk: int = 1024
    """The LM head and loss run only on supervised tokens, this many at a time: with a 152k vocabulary
    the full logits of one batch would otherwise take gigabytes."""
    gradient_checkpointing: bool = True
    """Recompute activations in backward: less memory, about a third more compute."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """``auto``: bf16 where the hardware supports it natively, else fp32."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    neftune_noise_alpha: float | None = None
    """NEFTune embedding noise (e.g. 5); None turns it off."""
    logging_steps: int = 1
    """Log loss, learning rate and gradient norm every N steps."""
    save_steps: int = 50
    """Checkpoint every N steps (resume continues from the newest)."""
    save_total_limit: int = 3
    """Keep only the newest N checkpoints."""
    eval_steps: int | None = None
    """Validation loss every N steps; None evaluates once per epoch."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without a better validation loss (None: never stop early)."""
    load_best_at_end: bool = True
    """Keep the checkpoint with the lowest validation loss as the final adapter."""
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Experiment trackers (tensorboard, wandb, ...); [] for none."""
    seed: int = 42
    """Seed for LoRA init and data order."""

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("train.batch_size and train.grad_accum must be at least 1")
        if self.cutoff_len < 64:
            raise ConfigError(f"train.cutoff_len={self.cutoff_len} is too short for any three-part answer")
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_epochs <= 0):
            raise ConfigError("set train.max_steps > 0 or train.num_epochs > 0")
        if self.load_best_at_end and self.eval_steps and self.save_steps % self.eval_steps:
            raise ConfigError(
                f"train.load_best_at_end needs a checkpoint at every evaluation: train.save_steps={self.save_steps} "
                f"must be a multiple of train.eval_steps={self.eval_steps} (or set load_best_at_end: false)"
            )


@dataclass
class EvalConfig:
    num_questions: int = 32
    """Held-out validation questions answered by both base and tuned model (0: all)."""
    max_new_tokens: int = 768
    """Generation budget; large enough that the third section is never cut off."""
    batch_size: int = 8
    """Questions generated together."""
    temperature: float = 0.0
    """0 means greedy decoding, so base and tuned are compared deterministically."""
    repetition_penalty: float = 1.05
    """Mild penalty against loops in small models."""


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    """Bind address; use 0.0.0.0 only behind a firewall or proxy."""
    port: int = 7860
    """Gradio web UI port."""
    api_port: int = 8000
    """OpenAI-compatible API port."""
    max_new_tokens: int = 768
    """Default generation budget for chat."""
    temperature: float = 0.7
    """Sampling temperature for chat (0 = greedy)."""
    top_p: float = 0.9
    """Nucleus sampling for chat."""


@dataclass
class Config:
    run_name: str = "default"
    """Everything a run writes goes under <output_root>/<run_name>/."""
    output_root: str = "runs"
    """Root folder of all runs (ignored by git)."""
    system_prompt: str | None = None
    """Override the built-in medical system prompt (one source of truth for train, eval, chat, serve)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    restructure: RestructureConfig = field(default_factory=RestructureConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_root) / self.run_name

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Loading


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently coerce) ``value`` against the annotation ``tp``; raise ConfigError naming ``where``."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "2e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_where = f"{where}.{key}" if where else key
        if key not in known:
            close = [k for k in known if k.startswith(str(key)[:3])]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {key_where!r}{hint}; known: {', '.join(known)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, key_where)
        else:
            kwargs[key] = _coerce(value, tp, key_where)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{exc}") from None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(
            f"override {text!r} must look like section.key=value, e.g. train.learning_rate=2e-4"
        )
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = _parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(
                f"{p}: config file not found (ship configs live in configs/, e.g. configs/demo/lora_sft.yaml)"
            )
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{p}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections (model:, data:, train: ...)")
        data = loaded
    data = apply_overrides(data, overrides or [])
    try:
        return _build(Config, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def explain(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, doc) for every field, read from the docstrings under the fields in this file."""
    import ast
    import inspect

    src = inspect.getsource(cls)
    tree = ast.parse(src)
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:] + [None]):
        is_field = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        if is_field and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(explain(hints[f.name], key + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((key, repr(default), docs.get(f.name, "")))
    return rows
