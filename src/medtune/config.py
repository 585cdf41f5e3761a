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
    """Weights dtype. ``auto``: bfloat16 on a GPU with native bf16, else float32, as ``train.precision: auto``."""
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """Chosen explicitly; a failed flash-attention load is an error, never a silent switch."""
    cache_dir: str | None = None
    """Where converted GGUF models and the demo model live. Default: $MEDTUNE_CACHE or ~/.cache/medtune."""
    trust_remote_code: bool = False
    """Qwen2.5 is native to transformers; remote code stays off unless a model needs it."""

    def __post_init__(self) -> None:
        import re

        if self.gguf_sha256 is not None:
            if not re.fullmatch(r"[0-9a-fA-F]{64}", self.gguf_sha256):
                raise ConfigError(f"model.gguf_sha256 must be 64 hex digits, got {self.gguf_sha256!r}")
            self.gguf_sha256 = self.gguf_sha256.lower()  # compared with hashlib's lower-case hexdigest


@dataclass
class DataConfig:
    raw_file: str = "data/sample/medqa_three_part.jsonl"
    """Raw Q&A source: a JSON/JSONL/CSV/TSV/Parquet/Arrow file, a Hugging Face ``datasets`` folder
    (``save_to_disk``), a folder of such files, or a glob such as ``dumps/*.csv``."""
    extra_files: list[str] = field(default_factory=list)
    """More sources, read after raw_file (same forms); every record keeps its own file:line."""
    format: Literal["auto", "alpaca", "messages", "qa"] = "auto"
    """Record layout; ``auto`` detects it per record (alpaca, messages/ShareGPT, question/answer)."""
    question_fields: list[str] = field(default_factory=list)
    """Columns (or JSON keys) joined line by line into the question, e.g. [title, ask]; empty: by layout."""
    answer_fields: list[str] = field(default_factory=list)
    """Columns (or JSON keys) joined into the answer, e.g. [answer]; needed when question_fields is set."""
    department_field: str | None = None
    """Column holding the department; None: ``department`` when the record has one."""
    id_field: str | None = None
    """Column holding a stable record id; None: ``id`` when present, else derived from file and line."""
    encoding: str = "auto"
    """Text encoding of CSV/TSV/JSON sources; ``auto`` detects UTF-8 (with or without BOM) and GB18030/GBK."""
    csv_delimiter: str | None = None
    """Field separator of CSV files; None: tab for .tsv/.tab, comma otherwise."""
    val_ratio: float = 0.1
    """Fraction held out for validation (and for the base-vs-tuned evaluation)."""
    seed: int = 42
    """Seed of the deterministic split; the same seed and data give the same split on every machine."""
    min_question_chars: int = 4
    """Questions shorter than this (after cleaning) are dropped."""
    min_answer_chars: int = 10
    """Answers shorter than this (after cleaning) are dropped."""
    max_question_chars: int | None = 2000
    """Questions longer than this are dropped (scraped dumps hold pasted pages); None: no limit."""
    max_answer_chars: int | None = 6000
    """Answers longer than this are dropped; None: no limit. Training still reports over-long samples."""
    min_chinese_ratio_question: float = 0.3
    """Questions whose share of Chinese characters among letters (Chinese and other scripts; digits and
    punctuation don't count) is lower are dropped; 0: off."""
    min_chinese_ratio_answer: float = 0.3
    """The same for answers; 0 turns the rule off."""
    normalize_whitespace: bool = True
    """Unify spaces and line breaks (NFC, no blank-line runs, trimmed lines)."""
    normalize_unicode: bool = True
    """NFKC (full-width letters and digits to ASCII) while Chinese full-width punctuation stays full-width."""
    strip_html: bool = True
    """Remove HTML tags and decode entities (&nbsp; &lt; ...) left by scrapers."""
    strip_urls: bool = True
    """Remove URLs; when off, the personal-data scrubber replaces them with <URL> (if ``url`` is a pii kind)."""
    strip_boilerplate: bool = True
    """Remove Q&A-site formulas from answers (感谢您的咨询, 希望我的回答对您有帮助, 祝您身体健康 ...)."""
    boilerplate_patterns: list[str] | None = None
    """Regexes removed by strip_boilerplate; None: the built-in list (medtune.data.clean.BOILERPLATE_PATTERNS)."""
    drop_mojibake: bool = True
    """Drop records with garbled text (U+FFFD, 锟斤拷, or text decoded with the wrong encoding)."""
    mojibake_ratio: float = 0.3
    """A text is garbled when this share of its non-ASCII characters lies outside common Chinese (GB2312)."""
    drop_referral_only: bool = True
    """Drop answers that only refer the patient on (建议去医院就诊) with nothing else to learn from."""
    referral_patterns: list[str] | None = None
    """Regexes of referral phrases; None: the built-in list (medtune.data.clean.REFERRAL_PATTERNS)."""
    referral_min_content_chars: int = 5
    """An answer is referral-only when fewer Chinese characters than this remain without those phrases."""
    scrub_pii: bool = True
    """Replace personal data with typed placeholders (<PHONE>, <ID>, <EMAIL>, <QQ>, <WECHAT>, <URL>, <NAME>)."""
    pii_kinds: list[str] = field(
        default_factory=lambda: ["phone", "id_card", "email", "qq", "wechat", "url", "name"]
    )
    """Kinds of personal data scrubbed; each is counted in the report."""
    dedup_exact: bool = True
    """Drop records whose normalised text repeats an earlier record exactly."""
    dedup_near: bool = True
    """Drop near-duplicates found with MinHash LSH over character n-grams (clusters listed in the report)."""
    dedup_on: Literal["question_answer", "question"] = "question_answer"
    """Text compared by both dedup rules: question and answer together, or the question alone."""
    near_dup_threshold: float = 0.8
    """Character n-gram Jaccard similarity at or above which two records are near-duplicates."""
    minhash_ngram: int = 3
    """Character n-gram size of the MinHash shingles (punctuation and spaces ignored)."""
    minhash_num_perm: int = 128
    """MinHash signature length: more is more exact and costs memory (4 bytes per record each)."""
    leakage_threshold: float | None = 0.8
    """Questions at least this similar stay on one side of the split, so no validation question is a
    near-duplicate of a training question; None: plain per-record split."""
    eval_sets: list[str] = field(default_factory=list)
    """Evaluation files (e.g. exam questions, JSON/JSONL/CSV with a question field) that no kept record may
    near-duplicate: matching records are dropped as contamination."""
    contamination_threshold: float = 0.8
    """Question similarity at or above which a record counts as contaminated by an evaluation question."""
    max_records: int | None = None
    """Keep at most this many records after cleaning (before the split); None keeps all."""
    safety_screen: Literal["off", "count", "exclude"] = "count"
    """Check every training answer with the safety rules: ``count`` reports flagged answers per finding kind;
    ``exclude`` also drops answers with a blocking finding (e.g. aspirin for a child) so the model is not
    taught them."""
    on_error: Literal["fail", "skip"] = "fail"
    """``fail`` stops at the first malformed record with file:line; ``skip`` quarantines it and goes on."""
    workers: int | None = None
    """Processes running the cleaning rules and the safety screen (the costly part of reading); None: one
    per CPU core, 1: all in this process. The output is the same either way."""
    report_examples: int = 5
    """Examples kept per rule in data_report.json and the summary (every drop is in dropped.jsonl)."""

    def __post_init__(self) -> None:
        import re

        if not 0.0 < self.val_ratio < 0.5:
            raise ConfigError(f"data.val_ratio must be in (0, 0.5), got {self.val_ratio}")
        if bool(self.question_fields) != bool(self.answer_fields):
            raise ConfigError("data.question_fields and data.answer_fields must be set together")
        for name in ("near_dup_threshold", "contamination_threshold", "leakage_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ConfigError(f"data.{name} must be in (0, 1], got {value}")
        for name in ("min_chinese_ratio_question", "min_chinese_ratio_answer", "mojibake_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"data.{name} must be in [0, 1], got {getattr(self, name)}")
        for lo, hi in (
            ("min_question_chars", "max_question_chars"),
            ("min_answer_chars", "max_answer_chars"),
        ):
            if getattr(self, hi) is not None and getattr(self, hi) < getattr(self, lo):
                raise ConfigError(f"data.{hi}={getattr(self, hi)} is below data.{lo}={getattr(self, lo)}")
        if not 1 <= self.minhash_ngram <= 16:
            raise ConfigError(f"data.minhash_ngram must be in [1, 16], got {self.minhash_ngram}")
        if not 16 <= self.minhash_num_perm <= 1024:
            raise ConfigError(f"data.minhash_num_perm must be in [16, 1024], got {self.minhash_num_perm}")
        unknown = set(self.pii_kinds) - {"phone", "id_card", "email", "qq", "wechat", "url", "name"}
        if unknown:
            raise ConfigError(
                f"data.pii_kinds: unknown {sorted(unknown)}; known: phone, id_card, email, qq, wechat, url, name"
            )
        if self.csv_delimiter is not None and len(self.csv_delimiter) != 1:
            raise ConfigError(f"data.csv_delimiter must be one character, got {self.csv_delimiter!r}")
        if self.encoding != "auto":
            import codecs

            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ConfigError(f"data.encoding: unknown encoding {self.encoding!r}") from None
        for name in ("boilerplate_patterns", "referral_patterns"):
            for i, pattern in enumerate(getattr(self, name) or []):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(f"data.{name}[{i}]: invalid regex {pattern!r} ({exc})") from None
        if self.report_examples < 0:
            raise ConfigError(f"data.report_examples must be >= 0, got {self.report_examples}")


@dataclass
class RestructureConfig:
    """Teacher-LLM rewriting into the three-part form (``medtune data restructure``)."""

    mode: Literal["teacher", "offline"] = "teacher"
    """``teacher``: rewrite with the LLM at base_url; ``offline``: rule-based rewrite without any endpoint."""
    base_url: str = "https://api.deepseek.com/v1"
    """OpenAI-compatible endpoint of the teacher model (DeepSeek, Qwen API, a local vLLM, medtune serve --api)."""
    model: str = "deepseek-chat"
    """Teacher model name at that endpoint."""
    api_key_env: str = "MEDTUNE_TEACHER_API_KEY"
    """Name of the environment variable holding the key; the key itself never goes in a config or a flag."""
    input_file: str = "data/sample/medqa_raw.jsonl"
    """Records to rewrite: JSON/JSONL in any form ``data prepare`` reads (alpaca, messages, question/answer)."""
    input_format: Literal["auto", "alpaca", "messages", "qa"] = "auto"
    """Record layout of input_file; ``auto`` detects it per record."""
    output_dir: str | None = None
    """Where restructured.jsonl, rejects.jsonl, journal.jsonl and summary.json go; None: <run_dir>/restructure."""
    max_records: int | None = None
    """Rewrite only the first N input records (a cheap trial run); None: all."""
    on_error: Literal["fail", "skip"] = "fail"
    """An unreadable input record: ``fail`` stops with file:line; ``skip`` lists it in rejects.jsonl."""
    prompt_file: str | None = None
    """Prompt template with [[system]], [[user]] and [[retry]] sections; None: the packaged prompt_v1.md.
    Its hash is recorded with every output, and changing it re-requests every record."""
    temperature: float = 0.3
    """Teacher sampling temperature; low keeps rewrites close to the source answer."""
    max_tokens: int = 1536
    """Teacher output budget per request; an answer that hits it counts as cut off and is asked again."""
    concurrency: int = 16
    """Requests in flight at once."""
    requests_per_minute: int | None = None
    """Client-side request rate limit (your plan's RPM); None: no limit."""
    tokens_per_minute: int | None = None
    """Client-side token rate limit (prompt + max_tokens up front, settled with real usage); None: no limit."""
    timeout_s: float = 120.0
    """Per-request timeout; a request past it is retried."""
    max_retries: int = 6
    """Retries of one request on 429, 5xx, timeouts, dropped connections and malformed responses."""
    backoff_initial_s: float = 1.0
    """First retry delay; it doubles on every retry, with jitter, up to backoff_max_s. Retry-After wins."""
    backoff_max_s: float = 60.0
    """Longest computed delay between retries (a longer Retry-After from the server is still honoured)."""
    gate_retries: int = 2
    """Times a record is asked again when its rewrite fails the quality gate, with the reasons fed back."""
    min_score: float = 0.85
    """Lowest structure score (0-1, medtune.data.structure) a rewrite needs, besides being compliant."""
    # Measured on the shipped sample (328 teacher rewrites, data/sample/medqa_three_part.jsonl against
    # medqa_raw.jsonl; 984 sections): share of a section copied from the question max 0.48, p99 0.13,
    # median 0; share of the source answer in one section max 0.29, p99 0.21. The offline rewrites of the
    # same answers (723 sections) reach 0.32 and 0.81 (p99 0.75): they regroup the source's own sentences.
    # A section that only repeats the question, or the whole source pasted into one section, scores ~1.0.
    max_copy_ratio: float = 0.85
    """Largest share of a section copied word for word from the question, and of the source answer copied
    into one section (runs of 8+ characters: medtune.data.restructure.gate.copy_ratio); above it the rewrite
    fails the gate as a ``copied section``. 1 turns the check off."""
    faithfulness: Literal["reject", "mark"] = "reject"
    """Drugs, numbers with units or diagnoses in a rewrite but in neither question nor source answer:
    ``reject`` fails the gate (asked again, then rejects.jsonl); ``mark`` keeps it and lists them in meta.flags."""
    faithfulness_checks: list[str] = field(default_factory=lambda: ["drug", "measure", "diagnosis"])
    """What the faithfulness check looks for: ``drug``, ``measure`` (numbers with units), ``diagnosis``."""
    price_input_per_mtok: float = 0.0
    """Price per million prompt tokens, for the cost shown live and in summary.json (0: cost not tracked)."""
    price_output_per_mtok: float = 0.0
    """Price per million completion tokens."""
    currency: str = "USD"
    """Currency of the prices, for display only."""

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError("restructure.base_url must start with https:// (or http:// for a local server)")
        name = self.api_key_env
        if not name or not name.isascii() or not name.replace("_", "").isalnum() or name[0].isdigit():
            # The value is deliberately not echoed: it may be a pasted key.
            raise ConfigError(
                "restructure.api_key_env must be the NAME of an environment variable (letters, digits, _), "
                "not the key itself"
            )
        positive = ("concurrency", "timeout_s", "max_tokens", "backoff_initial_s", "max_records")
        for key in (*positive, "requests_per_minute", "tokens_per_minute"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"restructure.{key} must be positive, got {value}")
        for key in ("max_retries", "gate_retries", "price_input_per_mtok", "price_output_per_mtok"):
            if getattr(self, key) < 0:
                raise ConfigError(f"restructure.{key} must not be negative, got {getattr(self, key)}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError("restructure.backoff_max_s must be at least restructure.backoff_initial_s")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"restructure.min_score must be in [0, 1], got {self.min_score}")
        if not 0.0 < self.max_copy_ratio <= 1.0:
            raise ConfigError(f"restructure.max_copy_ratio must be in (0, 1], got {self.max_copy_ratio}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"restructure.temperature must be in [0, 2], got {self.temperature}")
        unknown = sorted(set(self.faithfulness_checks) - {"drug", "measure", "diagnosis"})
        if unknown:
            raise ConfigError(
                f"restructure.faithfulness_checks: unknown {unknown}; choose from drug, measure, diagnosis"
            )


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
        # The upper bound is the model's layer count, known only once it is loaded (medtune.model.adapters).
        if self.top_layers is not None and self.top_layers < 1:
            raise ConfigError(
                f"lora.top_layers must be at least 1 (or null for all layers), got {self.top_layers}"
            )


@dataclass
class TrainConfig:
    method: Literal["lora", "qlora"] = "lora"
    """``qlora`` loads the base in 4-bit through bitsandbytes and needs CUDA."""
    learning_rate: float = 2e-4
    """Peak learning rate of the schedule."""
    lr_scheduler: Literal[
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
        "constant",
        "constant_with_warmup",
        "inverse_sqrt",
    ] = "cosine"
    """A transformers scheduler that needs no extra arguments (the others need settings medtune does not pass)."""
    warmup_ratio: float = 0.05
    """Fraction of steps spent warming up, in [0, 1)."""
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
    """Pack samples into rows of cutoff_len tokens (best-fit), padding-free, with per-sample position ids (no
    attention across samples). Changes how many samples make a step; padding_free keeps batch_size samples."""
    padding_free: bool = True
    """Lay each batch's samples end to end in one row: no compute on padding. Attention stays per sample
    (flash-attention varlen kernels on GPU, medtune's per-sample SDPA otherwise: medtune.train.varlen)."""
    group_by_length: bool = True
    """Padded batches only: batch samples of similar length together (sorted buckets of 64 batches, batch
    order shuffled) so little compute is spent on padding; the order depends only on train.seed and the
    epoch. Padding-free batches have no padding to save: they are drawn at random, which keeps their sizes,
    and so their memory, even."""
    lm_head_chunk: int = 512
    """The LM head and loss run only on supervised tokens, this many at a time: with a 152k vocabulary
    the full logits of one batch would otherwise take gigabytes (512 x 152k fp32 logits: 311 MB, as fast
    per token on a CPU as 1024; 256 was 15% slower)."""
    fused_lora: bool = True
    """Compute LoRA linears and gated MLPs as fused autograd functions (medtune.train.fused_lora): PEFT's
    arithmetic and adapter files, a one-byte dropout mask, no extra passes; for Qwen2.5-0.5B on CPU 72 KB
    of activations per token and layer instead of 156, and (with the LM head's in-pass gradient) 1.3x
    faster steps. Steps aside under autocast. false: PEFT's modules as they are."""
    compact_frozen_weights: bool = True
    """CPU training in fp32 from a bf16/fp16 checkpoint: keep the frozen base weights as stored and widen
    each to fp32 right before its matmul (exact; needs fused_lora). Half the weights' memory (Qwen2.5-7B:
    ~16 GB instead of 30; its LM head stays fp32) for ~1% of step time; see medtune.train.compact_weights."""
    reuse_freed_memory: bool = True
    """CPU training on Linux: keep memory freed by one step for the next (glibc malloc settings) instead of
    returning it to the kernel and faulting it in again; faster steps, and the process keeps its peak
    until training ends (see medtune.train.allocator)."""
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    """Recompute activations in backward: less memory, about a third more compute. ``auto`` decides per
    batch and layer: short batches keep all activations, wide ones checkpoint just enough adapted layers to
    stay within ``activation_budget_gb`` (see medtune.train.checkpointing)."""
    activation_budget_gb: float | None = None
    """Memory for kept activations under ``gradient_checkpointing: auto``; None: the smaller of 40% of the
    free memory and 1.5x the size of the model's weights (at the compute precision)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """``auto``: bf16 on a GPU with native bf16 (Ampere or newer), else fp32; ``model.dtype: auto`` follows
    the same decision (medtune.model.loader.resolve_precision). fp16 is never chosen for you."""
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
    """Validation loss every N steps; None evaluates once per epoch (and at the end); 0 never during training."""
    max_eval_samples: int | None = None
    """Compute the validation loss during training on at most this many validation samples (None: all)."""
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
        # run_sft passes the ratio as transformers' warmup_steps, which reads a float below 1 as a fraction
        # of the steps and anything from 1 up as a step count: a ratio of 1.0 would mean one step.
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for key in ("save_steps", "save_total_limit", "logging_steps", "lm_head_chunk"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be at least 1, got {getattr(self, key)}")
        for key in ("max_eval_samples", "early_stopping_patience"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"train.{key} must be at least 1 or null, got {value}")
        if self.neftune_noise_alpha is not None and self.neftune_noise_alpha <= 0:
            raise ConfigError(
                f"train.neftune_noise_alpha must be positive or null, got {self.neftune_noise_alpha}"
            )
        for key in ("weight_decay", "max_grad_norm"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must not be negative, got {getattr(self, key)}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("train.batch_size and train.grad_accum must be at least 1")
        if self.cutoff_len < 64:
            raise ConfigError(f"train.cutoff_len={self.cutoff_len} is too short for any three-part answer")
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_epochs <= 0):
            raise ConfigError("set train.max_steps > 0 or train.num_epochs > 0")
        if self.activation_budget_gb is not None and self.activation_budget_gb < 0:
            raise ConfigError(f"train.activation_budget_gb must be >= 0, got {self.activation_budget_gb}")
        if self.eval_steps is not None and self.eval_steps < 0:
            raise ConfigError(
                f"train.eval_steps must be positive, 0 (no evaluation) or null, got {self.eval_steps}"
            )
        if self.eval_steps == 0 and (self.load_best_at_end or self.early_stopping_patience):
            raise ConfigError(
                "train.eval_steps=0 turns validation off, but train.load_best_at_end and "
                "train.early_stopping_patience need it: set load_best_at_end: false and early_stopping_patience: null"
            )
        if self.load_best_at_end and self.eval_steps and self.save_steps % self.eval_steps:
            raise ConfigError(
                f"train.load_best_at_end needs a checkpoint at every evaluation: train.save_steps={self.save_steps} "
                f"must be a multiple of train.eval_steps={self.eval_steps} (or set load_best_at_end: false)"
            )


@dataclass
class EvalSetConfig:
    name: str = ""
    """Short name used in reports, ``metrics.json`` (``sets.<name>``) and ``medtune eval --set NAME``."""
    kind: Literal["open", "exam"] = "open"
    """``open``: questions answered in free text (a reference answer optional); ``exam``: multiple choice."""
    path: str = ""
    """The set's file: JSON/JSONL/CSV/TSV (UTF-8 or GB18030)/Parquet/Arrow, read like ``data prepare``'s."""
    question_fields: list[str] = field(default_factory=list)
    """Columns joined into the question, e.g. [title, ask]; empty: question/ask/query/prompt/instruction."""
    reference_fields: list[str] = field(default_factory=list)
    """Open sets: columns joined into the reference answer; empty: answer/response/output/reply if present."""
    answer_field: str | None = None
    """Exam sets: the column holding the correct letter(s); None: answer/Answer/label/answer_idx/cop."""
    subset_field: str | None = "subset"
    """Column whose value splits the accuracy by subset (e.g. the source exam); None: no subsets."""
    dev_path: str | None = None
    """Exam sets: a file of solved items (same forms) from which the k-shot examples are taken."""
    shots: int | None = None
    """Exam sets: examples shown before each question; None: ``eval.exam_shots``."""
    limit: int | None = None
    """Use only the first N valid items (after ``--limit``, whichever is smaller); None: all."""
    encoding: str = "auto"
    """Text encoding of the file; ``auto`` detects UTF-8 (with or without BOM) and GB18030."""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "_").isidentifier():
            raise ConfigError(
                f"eval.sets: name {self.name!r} must be a short identifier (letters, digits, _ or -)"
            )
        if not self.path:
            raise ConfigError(f"eval.sets.{self.name}: path is required")
        if self.shots is not None and not 0 <= self.shots <= 10:
            raise ConfigError(f"eval.sets.{self.name}.shots={self.shots} must be between 0 and 10")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"eval.sets.{self.name}.limit={self.limit} must be at least 1")


@dataclass
class EvalModelConfig:
    name: str = ""
    """Label in reports; ``base`` and ``tuned`` are the run's base model and its adapter."""
    adapter: str | None = None
    """A LoRA adapter folder, loaded onto the same base model as ``tuned`` (one copy of the weights)."""
    checkpoint: str | None = None
    """A different full model (folder, hub id or .gguf), loaded on its own after the others."""
    endpoint: str | None = None
    """Base URL of an OpenAI-compatible server (vLLM, ``medtune serve --api``, an API model)."""
    endpoint_model: str | None = None
    """Model name sent to the endpoint; None: ``name``."""
    api_key_env: str = "MEDTUNE_EVAL_API_KEY"
    """Environment variable holding the endpoint's key (keys never go in configs or on the command line)."""
    logprobs: bool = False
    """Endpoints: score exams from the first token's top log-probabilities when the server returns them."""
    price_input_per_mtok: float = 0.0
    """Endpoints: price per million prompt tokens, for the cost line in ``metrics.json``."""
    price_output_per_mtok: float = 0.0
    """Endpoints: price per million completion tokens."""

    def __post_init__(self) -> None:
        given = [k for k in ("adapter", "checkpoint", "endpoint") if getattr(self, k)]
        if len(given) > 1:
            raise ConfigError(
                f"eval.models.{self.name}: give one of adapter, checkpoint, endpoint, not {given}"
            )
        if not self.name:
            raise ConfigError("eval.models: every model needs a name")
        if not given and self.name not in ("base", "tuned"):
            raise ConfigError(
                f"eval.models.{self.name}: only 'base' and 'tuned' need no adapter, checkpoint or endpoint"
            )

    @property
    def kind(self) -> str:
        if self.endpoint:
            return "endpoint"
        if self.checkpoint:
            return "checkpoint"
        return "adapter" if self.adapter else self.name


@dataclass
class JudgeConfig:
    enabled: bool = False
    """Ask an LLM judge which of two answers is better, on every open set (both orders)."""
    base_url: str = "https://api.deepseek.com/v1"
    """OpenAI-compatible endpoint of the judge."""
    model: str = "deepseek-chat"
    """Judge model name."""
    api_key_env: str = "MEDTUNE_JUDGE_API_KEY"
    """Environment variable holding the judge's key."""
    prompt_file: str | None = None
    """Judge prompt (Markdown with {question}, {answer_a}, {answer_b}, {reference}); None: the packaged one."""
    pairs: list[str] = field(default_factory=lambda: ["tuned:base"])
    """Model pairs to judge, ``challenger:baseline``."""
    concurrency: int = 8
    """Judge requests in flight."""
    max_tokens: int = 400
    """Judge reply budget (a verdict and a short reason)."""
    timeout_s: float = 120.0
    """Per-request timeout."""
    max_retries: int = 4
    """Retries of transient failures (429, 5xx, timeouts), with backoff."""
    price_input_per_mtok: float = 0.0
    """Price per million prompt tokens, for the cost line in the report."""
    price_output_per_mtok: float = 0.0
    """Price per million completion tokens."""


@dataclass
class EvalConfig:
    num_questions: int = 32
    """Held-out validation questions answered in the ``val`` set (0: all)."""
    val_set: bool = True
    """Evaluate on the run's own validation split (set ``val``: open, with reference answers)."""
    sets: list[EvalSetConfig] = field(default_factory=list)
    """More evaluation sets: ``[{name: cnmle, kind: exam, path: exams/cnmle.jsonl}, ...]``."""
    models: list[EvalModelConfig | str] = field(default_factory=lambda: ["base", "tuned"])
    """Models compared: ``base``, ``tuned``, an adapter/model folder, or ``{name, adapter|checkpoint|endpoint}``."""
    max_new_tokens: int = 768
    """Generation budget; large enough that the third section is never cut off."""
    batch_size: int = 8
    """Questions generated together."""
    temperature: float = 0.0
    """0 means greedy decoding, so base and tuned are compared deterministically."""
    repetition_penalty: float = 1.05
    """Mild penalty against loops in small models."""
    exam_scorer: Literal["likelihood", "generate", "both"] = "likelihood"
    """``likelihood``: the option letter the model finds most probable (one forward pass per question, the
    standard way); ``generate``: the letters read out of a generated answer; ``both``: report both."""
    exam_shots: int = 0
    """Solved examples (from the set's ``dev_path``) shown before each exam question."""
    exam_batch_size: int = 8
    """Exam questions scored in one forward pass."""
    exam_max_new_tokens: int = 48
    """Generation budget of the ``generate`` exam scorer (the answer letter and a short reason)."""
    endpoint_concurrency: int = 8
    """Requests in flight per endpoint model."""
    endpoint_timeout_s: float = 120.0
    """Per-request timeout of endpoint models."""
    endpoint_max_retries: int = 4
    """Retries of an endpoint's transient failures (429, 5xx, timeouts), with backoff."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """Pairwise LLM judge on open sets (off by default)."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.sets]
        if "val" in names and self.val_set:
            raise ConfigError("eval.sets: the name 'val' is the run's validation split (eval.val_set)")
        if len(set(names)) != len(names):
            raise ConfigError(f"eval.sets: set names must be unique, got {names}")
        if not 0 <= self.exam_shots <= 10:
            raise ConfigError(f"eval.exam_shots={self.exam_shots} must be between 0 and 10")
        if self.num_questions < 0:
            raise ConfigError(f"eval.num_questions must be >= 0 (0: all), got {self.num_questions}")
        if min(self.max_new_tokens, self.batch_size, self.exam_batch_size, self.exam_max_new_tokens) < 1:
            raise ConfigError(
                "eval.max_new_tokens and eval.batch_size (and exam_batch_size, exam_max_new_tokens) must be >= 1"
            )
        if self.temperature < 0:
            raise ConfigError(f"eval.temperature must not be negative, got {self.temperature}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"eval.repetition_penalty must be positive, got {self.repetition_penalty}")
        self.models = [model_spec(m) for m in self.models]
        labels = [m.name for m in self.models]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"eval.models: model names must be unique, got {labels}")
        for pair in self.judge.pairs if self.judge.enabled else []:
            a, sep, b = pair.partition(":")
            if not sep or a not in labels or b not in labels:
                raise ConfigError(
                    f"eval.judge.pairs: {pair!r} must be 'challenger:baseline' of eval.models {labels}"
                )


def model_spec(value: EvalModelConfig | str) -> EvalModelConfig:
    """``base``, ``tuned``, or a folder: an adapter folder (adapter_config.json) or a full model."""
    if isinstance(value, EvalModelConfig):
        return value
    if value in ("base", "tuned"):
        return EvalModelConfig(name=value)
    path = Path(value)
    name = path.name or str(value)
    if (path / "adapter_config.json").is_file():
        return EvalModelConfig(name=name, adapter=str(path))
    return EvalModelConfig(name=name, checkpoint=str(value))


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
    safety: bool = True
    """Emergency banner for red-flag questions, safety notes on answers and the disclaimer (chat, UI, API)."""
    safety_policy: Literal["annotate", "block"] = "annotate"
    """``annotate`` adds a warning under a flagged answer; ``block`` replaces an answer with a blocking finding."""
    api_keys_file: str | None = None
    """API keys, one per line (# comments allowed), besides the comma-separated $MEDTUNE_API_KEYS. With no
    key at all the API is open, which is allowed only on a loopback host."""
    rate_limit_per_minute: int | None = 60
    """Chat requests per minute per API key (token bucket, bursts up to the same number; without keys one
    bucket for all); past it 429 with Retry-After. None: no limit."""
    max_concurrent: int = 8
    """Requests generating at once: the engine's batch size (continuous batching, requests join and leave
    the running batch at each token step). 1 serves one request at a time. Each row costs its KV cache in
    memory; decoding speed grows little with it while reading the weights dominates."""
    max_queue: int = 8
    """Requests waiting for a generation slot; past it 429 with Retry-After instead of a growing backlog."""
    max_body_bytes: int = 262_144
    """Largest request body; a bigger one is refused with 413 before it is parsed."""
    max_messages: int = 64
    """Most messages in one request (400 past it)."""
    max_message_chars: int = 16_000
    """Longest message in characters (400 past it); checked before anything is tokenised."""
    max_input_tokens: int = 4096
    """Longest prompt in tokens (system prompt, history and question as rendered); 400 past it."""
    max_output_tokens: int = 2048
    """Largest ``max_tokens`` a request may ask for (400 past it)."""
    cors_origins: list[str] = field(default_factory=list)
    """Browser origins allowed to call the API (e.g. https://app.example.org); [] sends no CORS headers."""
    shutdown_grace_s: float = 5.0
    """On SIGTERM, answers still generating get this long to finish before they are cut off."""
    triage_second_opinion: bool = False
    """Ask a language model (``triage_base_url``) about questions the safety rules do not flag; it can only add
    an emergency banner, never remove one (``medtune.safety.second_opinion``)."""
    triage_base_url: str | None = None
    """OpenAI-compatible endpoint for the triage second opinion (e.g. http://127.0.0.1:8001/v1). Not this
    server's own API when it runs one generation at a time: the triage call would wait behind the request
    that made it, until the timeout."""
    triage_model: str = "medtune"
    """Model name sent to the triage endpoint."""
    triage_api_key_env: str | None = "MEDTUNE_TRIAGE_API_KEY"
    """Environment variable holding the triage endpoint's key (never the key itself); None sends no key."""
    triage_timeout_s: float = 5.0
    """Seconds to wait for a triage verdict; a late one adds nothing."""
    triage_cache_dir: str | None = "runs/triage_cache"
    """Verdicts cached on disk by the hash of prompt, model and question; None keeps no cache."""
    feedback_url: str | None = None
    """Where the web UI stores thumbs up/down and comments: any SQLAlchemy URL (e.g.
    ``postgresql+psycopg://user@host/db``); None is SQLite at ``<run_dir>/feedback.db``."""
    remote_url: str | None = None
    """The web UI answers from this OpenAI-compatible endpoint (e.g. a vLLM server's
    ``http://host:8000/v1``) instead of loading the model; its key comes from $MEDTUNE_REMOTE_API_KEY."""
    remote_model: str = "tuned"
    """The model name sent to ``remote_url`` (``medtune serve --engine vllm`` serves the adapter as ``tuned``)."""

    def __post_init__(self) -> None:
        positive = (
            "max_concurrent",
            "max_body_bytes",
            "max_messages",
            "max_message_chars",
            "max_input_tokens",
            "max_output_tokens",
            "max_new_tokens",
        )
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"serve.{key} must be at least 1, got {getattr(self, key)}")
        if self.max_queue < 0 or self.shutdown_grace_s < 0:
            raise ConfigError("serve.max_queue and serve.shutdown_grace_s must not be negative")
        if self.rate_limit_per_minute is not None and self.rate_limit_per_minute < 1:
            raise ConfigError(
                f"serve.rate_limit_per_minute must be at least 1 (or null: no limit), got {self.rate_limit_per_minute}"
            )
        if self.max_new_tokens > self.max_output_tokens:
            raise ConfigError(
                f"serve.max_new_tokens={self.max_new_tokens} is above serve.max_output_tokens={self.max_output_tokens}"
            )
        if not 0.0 <= self.temperature <= 2.0 or not 0.0 < self.top_p <= 1.0:
            raise ConfigError("serve.temperature must be in [0, 2] and serve.top_p in (0, 1]")
        for key in ("port", "api_port"):
            if not 1 <= getattr(self, key) <= 65535:
                raise ConfigError(f"serve.{key} must be in [1, 65535], got {getattr(self, key)}")
        if self.triage_timeout_s <= 0:
            raise ConfigError(f"serve.triage_timeout_s must be positive, got {self.triage_timeout_s}")
        if self.triage_second_opinion and not self.triage_base_url:
            raise ConfigError("serve.triage_second_opinion needs serve.triage_base_url")


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
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
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
