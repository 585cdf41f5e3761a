"""Multiple-choice exam scoring on a local model: option-letter likelihood and generation.

The likelihood scorer is the standard way to measure knowledge without generation: the prompt ends with
"答案：" already written for the model, and the option whose letter the model finds most probable next is
its answer. Three things make it cheap, all exact:

- the part of the prompt that every question shares (system prompt, instruction, k-shot examples) runs
  through the model once; its key/value cache is reused by every batch;
- each batch holds only the questions' own tokens, right-padded: under causal attention a real token
  never sees the padding after it, so no mask is needed and nothing is approximated;
- the LM head runs on one position per question and on the option letters' rows only, not on a
  152k-token vocabulary for every position.

Multiple-answer items ("多选") are scored as exact sets: every non-empty combination of options is a
candidate continuation (letters then end of turn), and the most probable complete answer wins.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from medtune.eval.extract import extract_choice
from medtune.eval.sets import ExamItem

logger = logging.getLogger(__name__)

PREFILL = "答案："
_SENTINEL = "\u0000ITEM\u0000"


def format_item(item: ExamItem, with_answer: bool = False) -> str:
    kind = "多选题（可能有多个正确选项）" if item.multi else "单选题"
    lines = [f"【{kind}】{item.question}"]
    lines += [f"{k}. {v}" for k, v in item.options.items()]
    if with_answer:
        lines.append(PREFILL + "".join(sorted(item.answer)))
    return "\n".join(lines)


def user_message(item: ExamItem, shots: list[ExamItem], generate: bool = False) -> str:
    """One user turn: the instruction, the solved examples, then the question."""
    head = "以下是中国医学考试的选择题，请选出正确答案。"
    if generate:
        head += "请先写出“答案：”和选项字母，再简要说明理由。"
    parts = [head]
    if shots:
        parts.append("示例：\n\n" + "\n\n".join(format_item(s, with_answer=True) for s in shots))
        parts.append("请回答下面这道题：")
    parts.append(format_item(item))
    return "\n\n".join(parts)


@dataclass
class ExamResult:
    predicted: list[str] | None
    correct: bool
    how: str
    """likelihood | explicit | leading | option_text | standalone | refusal | empty | none | error."""
    confidence: float | None = None
    """Probability of the chosen answer among the candidates (likelihood scorer)."""
    raw: str | None = None
    """The generated text (generation scorer)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None or k == "predicted"}


def judge_choice(item: ExamItem, letters: frozenset[str] | None) -> bool:
    return letters is not None and letters == item.answer


def letter_token_ids(tokenizer, letters: str) -> dict[str, list[int]]:
    """Token ids that spell each option letter on its own ("A" and " A"), for the letter scorer."""
    out: dict[str, list[int]] = {}
    for letter in letters:
        ids = []
        for variant in (letter, " " + letter):
            toks = tokenizer.encode(variant, add_special_tokens=False)
            if len(toks) == 1:
                ids.append(toks[0])
        if not ids:
            raise ValueError(f"the tokenizer has no single token for option letter {letter!r}")
        out[letter] = sorted(set(ids))
    return out


class LetterScorer:
    """Batched letter likelihood over a causal LM (a PEFT model: the active adapter applies)."""

    def __init__(self, model, tokenizer, prompt_text: Callable[[str], str], batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.prompt_text = prompt_text
        self.batch_size = batch_size
        causal_lm = model.get_base_model() if hasattr(model, "peft_config") else model
        self.backbone = getattr(causal_lm, causal_lm.base_model_prefix)
        self.head = causal_lm.get_output_embeddings()
        self.device = causal_lm.device
        self.end_ids = tokenizer.encode("<|im_end|>", add_special_tokens=False)
        self._letter_ids: dict[str, dict[str, list[int]]] = {}
        # transformers renamed the KV-cache argument (past_key_values -> cache) within the 5.x series.
        import inspect

        self._cache_kw = (
            "cache" if "cache" in inspect.signature(self.backbone.forward).parameters else "past_key_values"
        )

    # -- prompt pieces -------------------------------------------------------------------------------
    def split_prompt(self, item: ExamItem, shots: list[ExamItem]) -> tuple[list[int], list[int]]:
        """(shared prefix ids, the item's own ids) such that their concatenation tokenises the full prompt."""
        template = self.prompt_text(user_message(item, shots).replace(format_item(item), _SENTINEL)) + PREFILL
        prefix_text = template.split(_SENTINEL)[0]
        full_text = self.prompt_text(user_message(item, shots)) + PREFILL
        full = self.tokenizer.encode(full_text, add_special_tokens=False)
        prefix = self.tokenizer.encode(prefix_text, add_special_tokens=False)
        # BPE may merge across the boundary; back off until the prefix is a true prefix of the full ids.
        while prefix and full[: len(prefix)] != prefix:
            prefix = prefix[:-1]
        return prefix, full[len(prefix) :]

    def _prefix_cache(self, prefix: list[int]):
        import torch

        ids = torch.tensor([prefix], device=self.device)
        out = self.backbone(input_ids=ids, use_cache=True)
        return getattr(out, self._cache_kw)

    def _hidden(self, cache, prefix_len: int, rows: list[list[int]]):
        """Last-layer hidden states of ``rows`` (right-padded) continuing the cached prefix."""
        import copy

        import torch

        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        kv = None
        if cache is not None:
            kv = copy.deepcopy(cache)
            kv.batch_repeat_interleave(len(rows))
        positions = torch.arange(prefix_len, prefix_len + width, device=self.device).expand(len(rows), -1)
        # No attention mask: padding sits after every real token, and causal attention never looks ahead.
        out = self.backbone(
            input_ids=ids, position_ids=positions, use_cache=kv is not None, **{self._cache_kw: kv}
        )
        return out.last_hidden_state

    @contextlib.contextmanager
    def _last_mlp_at(self, last):
        """The last layer's MLP on each row's last position only, while the block runs.

        Only that position's final hidden state is read, and nothing attends to the last layer's output, so
        the MLP at every other position (about a 24th of the model's work per token) is skipped: those
        positions carry the attention output alone, which nobody reads.
        """
        import torch

        layers = getattr(self.backbone, "layers", None)
        mlp = getattr(layers[-1], "mlp", None) if layers else None
        if mlp is None or "forward" in vars(mlp):  # another architecture, or already patched: leave it
            yield
            return
        plain = mlp.forward
        batch = torch.arange(len(last), device=last.device)

        def last_only(x):
            out = torch.zeros_like(x)
            out[batch, last] = plain(x[batch, last].unsqueeze(1)).squeeze(1)
            return out

        mlp.forward = last_only
        try:
            yield
        finally:
            del mlp.forward

    # -- scoring -------------------------------------------------------------------------------------
    def score(self, items: list[ExamItem], shots: list[ExamItem]) -> Iterator[tuple[ExamItem, ExamResult]]:
        import torch

        if not items:
            return
        from medtune.train.allocator import freed_memory_kept

        prefix, _ = self.split_prompt(items[0], shots)
        # A batch's activations are tens of MB each; glibc would hand every one back to the kernel and
        # fault it in again, zeroed, for the next layer (a penalty one question at a time barely pays).
        with torch.inference_mode(), freed_memory_kept():
            cache = self._prefix_cache(prefix) if prefix else None
            suffixes = {id(i): self._suffix(prefix, i, shots) for i in items if not i.multi}
            # Similar lengths side by side: a batch is as wide as its longest question, the rest is padding.
            # Longest first, so each later (narrower) batch fits in the memory the first one freed.
            singles = sorted((i for i in items if not i.multi), key=lambda i: -len(suffixes[id(i)]))
            for start in range(0, len(singles), self.batch_size):
                chunk = singles[start : start + self.batch_size]
                rows = [suffixes[id(i)] for i in chunk]
                yield from zip(chunk, self._score_singles(cache, prefix, chunk, rows))
            for item in (i for i in items if i.multi):
                yield item, self._score_multi(cache, prefix, item, shots)

    def _suffix(self, prefix: list[int], item: ExamItem, shots: list[ExamItem]) -> list[int]:
        own_prefix, suffix = self.split_prompt(item, shots)
        if own_prefix != prefix:  # cannot happen with one template; guard so a cache mismatch is loud
            raise RuntimeError(f"{item.where}: prompt prefix differs from the shared one")
        return suffix

    def _score_singles(self, cache, prefix, chunk: list[ExamItem], rows: list[list[int]]) -> list[ExamResult]:
        import torch

        last = torch.tensor([len(r) - 1 for r in rows], device=self.device)
        with self._last_mlp_at(last):
            hidden = self._hidden(cache, len(prefix), rows)
        h = hidden[torch.arange(len(rows), device=hidden.device), last]
        results = []
        for row, item in zip(h, chunk):
            key = "".join(item.options)
            if key not in self._letter_ids:
                self._letter_ids[key] = letter_token_ids(self.tokenizer, key)
            letters = self._letter_ids[key]
            flat = [t for ids in letters.values() for t in ids]
            logits = (self.head.weight[flat].float() @ row.float()).tolist()
            if getattr(self.head, "bias", None) is not None:
                logits = [v + float(b) for v, b in zip(logits, self.head.bias[flat].tolist())]
            # Softmax over the letters' tokens only; a letter's probability sums its spellings ("A", " A").
            top = max(logits)
            weights = dict(zip(flat, (math.exp(v - top) for v in logits)))
            total = sum(weights.values())
            probs = {k: sum(weights[t] for t in ids) / total for k, ids in letters.items()}
            best = max(probs, key=lambda k: probs[k])
            results.append(
                ExamResult([best], judge_choice(item, frozenset(best)), "likelihood", round(probs[best], 4))
            )
        return results

    def _score_multi(self, cache, prefix, item: ExamItem, shots) -> ExamResult:
        import torch

        suffix = self._suffix(prefix, item, shots)
        letters = sorted(item.options)
        combos = ["".join(c) for n in range(1, len(letters) + 1) for c in itertools.combinations(letters, n)]
        conts = [self.tokenizer.encode(c, add_special_tokens=False) + self.end_ids for c in combos]
        scores = []
        for start in range(0, len(combos), self.batch_size * 4):
            part = conts[start : start + self.batch_size * 4]
            rows = [suffix + c for c in part]
            hidden = self._hidden(cache, len(prefix), rows)
            for b, cont in enumerate(part):
                pos = torch.arange(len(suffix) - 1, len(suffix) - 1 + len(cont), device=hidden.device)
                logp = torch.log_softmax(self.head(hidden[b, pos]).float(), dim=-1)
                scores.append(float(logp[torch.arange(len(cont)), torch.tensor(cont)].sum()))
        top = max(scores)
        total = sum(math.exp(s - top) for s in scores)
        best = max(range(len(combos)), key=lambda i: scores[i])
        chosen = frozenset(combos[best])
        return ExamResult(sorted(chosen), judge_choice(item, chosen), "likelihood", round(1 / total, 4))


def score_generated(item: ExamItem, text: str) -> ExamResult:
    got = extract_choice(text, item.options)
    letters = sorted(got.letters) if got.letters else None
    return ExamResult(letters, judge_choice(item, got.letters), got.how, raw=text)
