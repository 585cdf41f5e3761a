"""Chat template rendering and the loss mask.

The model's own chat template (ChatML for Qwen2.5) renders every conversation, for training and for
inference alike. Labels are derived from character spans of the rendered text: a token is supervised
only if it lies inside an assistant turn, which runs from just after ``<|im_start|>assistant\\n`` up to and
including the closing ``<|im_end|>``. The newline the template writes after ``<|im_end|>`` is not
supervised (the model stops at ``<|im_end|>`` and never generates it). Using the tokenizer's offsets of the
whole rendered text, rather than tokenising pieces separately, guarantees the training tokens are exactly
the tokens the model sees at inference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medtune.prompts import build_messages

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from medtune.data.schema import QARecord

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"


class TemplateError(RuntimeError):
    """The tokenizer's chat template, EOS or pad token cannot train this model correctly."""


@dataclass
class EncodedSample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def num_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def render(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict], add_generation_prompt: bool = False
) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(
            "the tokenizer has no chat template; use an Instruct model (e.g. Qwen2.5-*-Instruct)"
        )
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
    )


def assistant_spans(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the [start, end) character span of every assistant turn, end-of-turn included."""
    full = render(tokenizer, messages)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prefix = render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = render(tokenizer, messages[: i + 1])
        if not (full.startswith(upto) and upto.startswith(prefix)):
            raise TemplateError(
                "the chat template does not render conversations incrementally (a turn changes earlier text); "
                "the loss mask cannot be derived safely for this template"
            )
        end = upto.rfind(END_OF_TURN)
        if end < len(prefix):
            raise TemplateError(f"the chat template does not close assistant turns with {END_OF_TURN}")
        spans.append((len(prefix), end + len(END_OF_TURN)))
    return full, spans


def encode_messages(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[dict],
    cutoff_len: int | None = None,
    overlong: str = "drop",
) -> EncodedSample | None:
    """Token ids and labels for one conversation; None when it is over ``cutoff_len`` and policy is drop."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE_INDEX] * len(ids)
    for j, (start, end) in enumerate(enc["offset_mapping"]):
        if end > start and any(s <= start and end <= e for s, e in spans):
            labels[j] = ids[j]
    truncated = False
    if cutoff_len is not None and len(ids) > cutoff_len:
        if overlong == "drop":
            return None
        # Truncation keeps the start; the answer's end (and its <|im_end|>) is lost, which the caller counts
        # and warns about, because such samples teach the model not to stop.
        ids, labels, truncated = ids[:cutoff_len], labels[:cutoff_len], True
    return EncodedSample(ids, labels, truncated)


def encode_record(
    tokenizer: PreTrainedTokenizerBase,
    record: QARecord,
    system_prompt: str | None = None,
    cutoff_len: int | None = None,
    overlong: str = "drop",
) -> EncodedSample | None:
    messages = build_messages(record.question, record.answer, system_prompt, record.history)
    return encode_messages(tokenizer, messages, cutoff_len, overlong)


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int:
    tid = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if tid is None or tid == tokenizer.unk_token_id:
        raise TemplateError(
            f"the tokenizer has no {END_OF_TURN} token; medtune supports ChatML models (Qwen2.5)"
        )
    return int(tid)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Tokens that end generation: the end of turn, plus the tokenizer's EOS if it differs."""
    ids = [end_of_turn_id(tokenizer)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def preflight(tokenizer: PreTrainedTokenizerBase, system_prompt: str | None = None) -> dict[str, object]:
    """Render and encode one sample and fail loudly if training would silently go wrong.

    Checks: the template is ChatML with our system prompt in it; the assistant answer is supervised and
    its last supervised token is <|im_end|> (else the model never learns to stop); nothing of the system
    or user turns is supervised; the pad token exists and differs from <|im_end|> (a collator that masks
    pad tokens would otherwise also mask every EOS).
    """
    eot = end_of_turn_id(tokenizer)
    question, answer = "头疼两天了怎么办", "一、病情分析\n测试"
    messages = build_messages(question, answer, system_prompt)
    sample = encode_messages(tokenizer, messages)
    assert sample is not None
    text = render(tokenizer, messages)
    problems = []
    if "<|im_start|>system" not in text or (system_prompt or messages[0]["content"]) not in text:
        problems.append(
            "the rendered sample does not carry the medtune system prompt in a ChatML system turn"
        )
    supervised = [t for t in sample.labels if t != IGNORE_INDEX]
    if not supervised or supervised[-1] != eot:
        problems.append(
            f"the last supervised token is not {END_OF_TURN}: the model would never learn to stop"
        )
    decoded = tokenizer.decode(supervised)
    if decoded != answer + END_OF_TURN:
        problems.append(f"supervised text is {decoded!r}, expected only the answer and {END_OF_TURN}")
    if tokenizer.pad_token_id is None:
        problems.append(
            "the tokenizer has no pad token; set one that is not <|im_end|> (Qwen2.5: <|endoftext|>)"
        )
    elif tokenizer.pad_token_id == eot:
        problems.append("pad token equals <|im_end|>: padding masks would also mask every end of turn")
    if problems:
        raise TemplateError("pre-flight check failed:\n  - " + "\n  - ".join(problems))
    return {"rendered_sample": text, "num_tokens": len(sample.input_ids), "num_supervised": len(supervised)}
