"""``medtune export``: merge the LoRA adapter into the base weights and prove the merge is faithful.

The merged folder (safetensors, tokenizer, chat template, generation config) loads in plain transformers
and is laid out the way vLLM expects (``vllm serve <folder>``). Before it is written, the logits of the
adapter model and of the merged model are compared on sample conversations; past the tolerance the export
fails and nothing is left behind.

GGUF, for llama.cpp / Ollama: with a llama.cpp checkout, ``python convert_hf_to_gguf.py <folder> --outtype
q8_0`` converts the merged folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from medtune.config import Config
from medtune.data.template import render
from medtune.prompts import build_messages

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
    tokenizer.save_pretrained(tmp)
    (tmp / "MEDTUNE_EXPORT.md").write_text(
        f"Merged from base {resolved.display_name} ({cfg.model.name_or_path}) and adapter {cfg.adapter_dir}.\n"
        f"Max |logit difference| merged vs adapter on {len(SAMPLE_QUESTIONS)} sample prompts: {diff:.3g}.\n"
        "Serve with: vllm serve <this folder>; convert with llama.cpp's convert_hf_to_gguf.py for GGUF.\n",
        encoding="utf-8",
    )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return ExportResult(out, diff, tol)
