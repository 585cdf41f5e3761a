"""``medtune export``: merge the LoRA adapter into the base weights and prove the merge is faithful.

The merged folder (safetensors, tokenizer, chat template, generation config) loads in plain transformers
and is laid out the way vLLM expects (``vllm serve <folder>``). Its chat template falls back to the
training system prompt when a conversation has none, so a client that sends only the user's question gets
the tuned behaviour, as from ``medtune serve``; MEDTUNE_EXPORT.md in the folder names that prompt. Before it is written, the logits of the
adapter model and of the merged model are compared on sample conversations; past the tolerance the export
fails and nothing is left behind.

GGUF, for llama.cpp / Ollama: with a llama.cpp checkout, ``python convert_hf_to_gguf.py <folder> --outtype
q8_0`` converts the merged folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from medtune.config import Config
from medtune.data.template import render
from medtune.prompts import SYSTEM_PROMPT, build_messages

logger = logging.getLogger(__name__)

SAMPLE_QUESTIONS = (
    "孩子3岁，发烧38.5度一天了，精神还可以，需要马上去医院吗？",
    "女，35岁，最近胃老是反酸烧心，晚上躺下更明显，怎么办",
)


class ExportError(RuntimeError):
    """The merged model does not reproduce the adapter model within tolerance."""


@dataclass
class ExportResult:
    out_dir: Path
    max_abs_diff: float
    tolerance: float


def _sample_inputs(tokenizer, system_prompt: str | None):
    texts = [
        render(tokenizer, build_messages(q, None, system_prompt), add_generation_prompt=True)
        for q in SAMPLE_QUESTIONS
    ]
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def with_default_system_prompt(template: str, system_prompt: str) -> str:
    """``template``, rendering a conversation that has no system message as if it began with ``system_prompt``.

    Qwen's own template falls back to "You are Qwen ..."; the model was tuned under medtune's prompt, and an
    exported model answered without it is not the model that was evaluated.
    """
    # A Jinja string literal: JSON's escapes are Python's, and braces, % and # are escaped as well so that
    # no prompt text can ever read as template syntax.
    literal = json.dumps(system_prompt, ensure_ascii=False)
    for char in "{}%#":
        literal = literal.replace(char, f"\\u{ord(char):04x}")
    return (
        "{%- if not messages or messages[0]['role'] != 'system' %}\n"
        f"    {{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages %}}\n"
        "{%- endif %}\n" + template
    )


def export_merged(
    cfg: Config, out_dir: str | Path | None = None, tolerance: float | None = None
) -> ExportResult:
    import torch

    from medtune.data.template import stop_token_ids
    from medtune.model.adapters import load_adapter
    from medtune.model.loader import load_model

    out = Path(out_dir) if out_dir else cfg.run_dir / "merged"
    model, tokenizer, resolved = load_model(cfg.model)
    peft_model = load_adapter(model, str(cfg.adapter_dir)).eval()
    inputs = _sample_inputs(tokenizer, cfg.system_prompt)
    with torch.inference_mode():
        adapter_logits = peft_model(**inputs).logits.float()
    merged = peft_model.merge_and_unload().eval()
    with torch.inference_mode():
        merged_logits = merged(**inputs).logits.float()
    mask = inputs["attention_mask"].bool()
    diff = float((adapter_logits - merged_logits).abs()[mask].max())
    # fp32 merges agree to ~1e-4; bf16 weights round the merged sum, so allow more there.
    tol = tolerance if tolerance is not None else (1e-3 if merged.dtype == torch.float32 else 5e-2)
    logger.info("merged vs adapter logits: max |diff| = %.3g (tolerance %.3g)", diff, tol)
    if not diff <= tol:
        raise ExportError(
            f"merged logits differ from the adapter model by {diff:.3g} > {tol:.3g}; not exported"
        )

    merged.generation_config.eos_token_id = stop_token_ids(tokenizer)
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.padding_side = "left"
    system_prompt = cfg.system_prompt or SYSTEM_PROMPT
    tokenizer.chat_template = with_default_system_prompt(tokenizer.chat_template, system_prompt)
    tokenizer.save_pretrained(tmp)
    source = "the config's system_prompt" if cfg.system_prompt else "medtune.prompts.SYSTEM_PROMPT"
    (tmp / "MEDTUNE_EXPORT.md").write_text(
        f"Merged from base {resolved.display_name} ({cfg.model.name_or_path}) and adapter {cfg.adapter_dir}.\n"
        f"Max |logit difference| merged vs adapter on {len(SAMPLE_QUESTIONS)} sample prompts: {diff:.3g}.\n"
        "Serve with: vllm serve <this folder>; convert with llama.cpp's convert_hf_to_gguf.py for GGUF.\n\n"
        "## System prompt baked into the chat template\n\n"
        f"A conversation without a system message is rendered with the prompt the model was trained under "
        f"({source}), as `medtune chat` and `medtune serve` do; a system message sent by a client "
        f"replaces it.\n\n```text\n{system_prompt}\n```\n",
        encoding="utf-8",
    )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return ExportResult(out, diff, tol)
