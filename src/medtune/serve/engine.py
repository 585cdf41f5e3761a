"""ChatEngine: the one inference engine behind terminal chat, the web UI, the API and evaluation.

It owns the model, the tokenizer and the system prompt, so every surface renders conversations the way
training did. A LoRA adapter, when loaded, can be switched off per call: base and tuned answers come from
the same weights in memory, which is how the UI and the evaluation compare them.

Streamed answers (``stream``, ``reply_stream``, ``reply``: chat, UI, API) go through one background
scheduler that batches concurrent requests token step by token step (``medtune.serve.batching``);
evaluation's ``generate``/``generate_jobs``/``generate_compare`` batch a known list of questions with
``model.generate``; both take the engine's lock for each pass over the weights.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtune.data.structure import NOTICE_MARKERS
from medtune.data.template import render, stop_token_ids
from medtune.prompts import build_messages
from medtune.serve.cpu_kernels import skinny_cpu_linears

if TYPE_CHECKING:
    from medtune.config import Config
    from medtune.safety import SafetyEngine
    from medtune.safety.second_opinion import SecondOpinion
    from medtune.serve.batching import BatchScheduler

logger = logging.getLogger(__name__)


@dataclass
class GenerationSettings:
    max_new_tokens: int = 768
    temperature: float = 0.0
    top_p: float = 0.9
    repetition_penalty: float = 1.05
    stop: tuple[str, ...] = ()
    """Stop sequences: a streamed answer ends before the first of them (stream and reply; the batched
    generate() used by evaluation does not look at them)."""

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw


def strip_safety_text(message: dict) -> dict:
    """An earlier assistant turn without the banner, notes and disclaimer that serving added to it.

    The model never produced (or trained on) those paragraphs; feeding them back as its own words would
    be a prompt it has never seen.
    """
    if message.get("role") != "assistant":
        return message
    paragraphs = [p for p in message["content"].split("\n\n") if not p.lstrip().startswith(NOTICE_MARKERS)]
    return {**message, "content": "\n\n".join(paragraphs).strip()}


@dataclass
class Answer:
    text: str
    finished: bool
    """False when generation hit max_new_tokens before the end-of-turn token (the answer is cut off)."""
    num_tokens: int


@dataclass(eq=False)  # compared and hashed by identity: the API keeps the running ones in a set
class StreamControl:
    """A caller's handle on one streamed generation: stop it from any thread, then read how it ended."""

    cancel: threading.Event = field(default_factory=threading.Event)
    """Set it to stop generating after the current token (the client went away, the server is stopping)."""
    completion_tokens: int = 0
    """Tokens the model generated for the answer, the end-of-turn token not counted."""
    finish_reason: str | None = None
    """``stop`` (end of turn or a stop sequence), ``length`` (max_new_tokens reached) or ``cancelled``."""


def _until_stop(pieces: Iterable[str], stops: Sequence[str], on_stop: Callable[[], None]) -> Iterator[str]:
    """The streamed text up to the first stop sequence.

    A stop sequence can arrive split over several pieces, so the last ``len(longest stop) - 1`` characters
    are held back until they can no longer be the start of one.
    """
    if not stops:
        yield from pieces
        return
    keep = max(map(len, stops)) - 1
    held = ""
    for piece in pieces:
        held += piece
        found = [i for i in (held.find(s) for s in stops) if i >= 0]
        if found:
            on_stop()
            if min(found):
                yield held[: min(found)]
            return
        if len(held) > keep:
            yield held[: len(held) - keep]
            held = held[len(held) - keep :]
    if held:
        yield held


class ChatEngine:
    def __init__(
        self,
        model,
        tokenizer,
        system_prompt: str | None = None,
        name: str = "model",
        safety: SafetyEngine | None = None,
        safety_policy: str = "annotate",
        second_opinion: SecondOpinion | None = None,
        max_batch: int = 8,
    ):
        self.model = model.eval()
        self.safety = safety
        """Applied to what users see (chat, UI, API); evaluation reads the raw model output instead."""
        self.safety_policy = safety_policy
        self.second_opinion = second_opinion
        """Asked about questions the rules leave unflagged; it can only add the emergency banner."""
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.system_prompt = system_prompt
        self.name = name
        self.stop_ids = stop_token_ids(tokenizer)
        # One model in memory serves every request; generate() is not safe to run concurrently on it.
        self._lock = threading.Lock()
        self.max_batch = max_batch
        """Streamed requests generated together (continuous batching); 1 serves one at a time."""
        self._scheduler: BatchScheduler | None = None

    @property
    def scheduler(self) -> BatchScheduler:
        """The background batcher behind stream(), started on first use (evaluation never needs it)."""
        if self._scheduler is None:
            from medtune.serve.batching import BatchScheduler

            self._scheduler = BatchScheduler(self, self.max_batch)
        return self._scheduler

    def warm_up(self) -> float:
        """Run the streamed path once before serving; returns the seconds it took.

        The first requests after start-up pay a one-off cost on top of their own prefill (once seen as
        13.2 s vs 1.4 s for the next identical burst of 8 streams on the demo model, on a machine shared
        with other jobs; not reproduced alone, where the whole warm-up takes ~1.3 s). What the first pass
        does once: the chat template is
        compiled (Jinja), the shared system turn's KV cache is computed per adapter, PyTorch/oneDNN pick
        and lay out kernels for the prefill, decode and joined-batch shapes, and PEFT sets up per-row
        adapter routing. Here a few short greedy requests go through the scheduler the way users' will:
        one alone, then base and tuned rows joining it (prefill of a multi-row batch, merge into the
        running cache, mixed adapters, rows leaving). Servers call it before they report ready.
        """
        import time

        from medtune.serve.batching import BASE, BatchRequest

        started = time.perf_counter()
        adapters = [BASE, self.model.active_adapter] if self.has_adapter else ["default"]
        questions = ["头疼怎么办", "孩子发烧38.5度一天了，需要马上去医院吗？", "胃反酸烧心"]

        def request(question: str, adapter: str, tokens: int) -> BatchRequest:
            ids = self.tokenizer(self.prompt_text(question), add_special_tokens=False)["input_ids"]
            settings = GenerationSettings(max_new_tokens=tokens, temperature=0.0)
            return self.scheduler.submit(BatchRequest(list(ids), settings, adapter, StreamControl()))

        def next_token(req: BatchRequest) -> None:
            if isinstance(item := req.tokens.get(), BaseException):  # the model thread failed
                raise item

        # The first row runs until the others have joined it (then it is told to leave), so the join path
        # is taken however fast the steps are.
        first = request(questions[0], adapters[-1], 64)
        next_token(first)
        joined = [request(q, adapters[i % len(adapters)], 4) for i, q in enumerate(questions[1:])]
        for req in joined:
            next_token(req)
        first.halt.set()
        for req in [first, *joined]:
            req.done.wait()
            while not req.tokens.empty():
                next_token(req)
        seconds = time.perf_counter() - started
        logger.info("warmed up in %.1f s", seconds)
        return seconds

    @property
    def has_adapter(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")

    @classmethod
    def from_config(cls, cfg: Config, adapter: str | Path | None = "auto") -> ChatEngine:
        """Load the base model and, with ``adapter='auto'``, the run's adapter if it has been trained."""
        from medtune.model.adapters import load_adapter
        from medtune.model.loader import load_model

        model, tokenizer, resolved = load_model(cfg.model)
        name = resolved.display_name
        if adapter == "auto":
            adapter = cfg.adapter_dir if (cfg.adapter_dir / "adapter_config.json").is_file() else None
            if adapter is None:
                logger.warning("no trained adapter in %s: serving the base model only", cfg.adapter_dir)
        if adapter is not None:
            model = load_adapter(model, str(adapter))
            name = f"{name} + {Path(adapter).name}"
        safety = None
        if cfg.serve.safety:
            from medtune.safety import default_engine

            safety = default_engine()
        second_opinion = None
        if safety is not None and cfg.serve.triage_second_opinion:
            from medtune.safety.second_opinion import SecondOpinion

            second_opinion = SecondOpinion.from_config(cfg.serve, safety)
        return cls(
            model,
            tokenizer,
            cfg.system_prompt,
            name,
            safety,
            cfg.serve.safety_policy,
            second_opinion,
            cfg.serve.max_concurrent,
        )

    @contextmanager
    def _adapter(self, enabled: bool):
        if self.has_adapter and not enabled:
            with self.model.disable_adapter():
                yield
        else:
            yield

    def prompt_text(self, question: str, history: list[dict] | None = None) -> str:
        history = [strip_safety_text(m) for m in history] if history else history
        return render(
            self.tokenizer,
            build_messages(question, None, self.system_prompt, history),
            add_generation_prompt=True,
        )

    def generate(
        self,
        questions: list[str],
        settings: GenerationSettings | None = None,
        use_adapter: bool = True,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Answer]:
        """Answer each question (single turn), batched with left padding."""
        return self._generate([(q, use_adapter) for q in questions], settings, batch_size, progress)

    def generate_jobs(
        self,
        jobs: list[tuple[str, bool | str]],
        settings: GenerationSettings | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Answer]:
        """Answer (question, adapter) jobs: False for the base model, True for the active adapter, or an
        adapter's name. Rows for different adapters share batches, one pass over the weights for all."""
        return self._generate(jobs, settings, batch_size, progress)

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Load another LoRA adapter onto the same base weights (evaluation compares several)."""
        from medtune.model.adapters import load_adapter

        active = self.model.active_adapter if self.has_adapter else None
        self.model = load_adapter(self.model, str(path), name=name).eval()
        if active is not None:
            self.model.set_adapter(active)  # loading must not change what the other surfaces serve

    def generate_compare(
        self,
        questions: list[str],
        settings: GenerationSettings | None = None,
        batch_size: int = 16,
        progress: bool = False,
    ) -> tuple[list[Answer], list[Answer]]:
        """Base and tuned answers to the same questions, generated together in mixed batches.

        PEFT routes each row of a batch through the adapter or around it, so one pass over the weights
        serves both models: on a memory-bound CPU that costs little more than generating one of them.
        """
        if not self.has_adapter:
            raise ValueError("generate_compare needs a model with a LoRA adapter loaded")
        # Interleaved: every batch holds base and tuned rows of the same questions (similar lengths).
        answers = self.generate_jobs(
            [(q, use) for q in questions for use in (False, True)], settings, batch_size, progress
        )
        return answers[0::2], answers[1::2]

    def _generate(
        self,
        jobs: list[tuple[str, bool | str]],
        settings: GenerationSettings | None,
        batch_size: int,
        progress: bool,
    ) -> list[Answer]:
        import torch

        settings = settings or GenerationSettings()
        answers: list[Answer] = []
        batches = range(0, len(jobs), batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="generating", unit="batch")
        for start in batches:
            chunk = jobs[start : start + batch_size]
            prompts = [self.prompt_text(q) for q, _ in chunk]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(self.model.device) for k, v in enc.items()}
            extra: dict[str, Any] = {}
            flags = {use for _, use in chunk}
            if self.has_adapter and (len(flags) > 1 or any(isinstance(f, str) for f in flags)):
                # PEFT routes each row through its own adapter (or around all of them) in one pass.
                active = self.model.active_adapter
                extra["adapter_names"] = [
                    (use if isinstance(use, str) else active) if use else "__base__" for _, use in chunk
                ]
                ctx = self._adapter(True)
            else:
                ctx = self._adapter(flags.pop())
            with self._lock, ctx, skinny_cpu_linears(self.model), torch.inference_mode():
                out = self.model.generate(
                    **enc,
                    **settings.kwargs(),
                    **extra,
                    eos_token_id=self.stop_ids,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            for row in out[:, enc["input_ids"].shape[1] :].tolist():
                finished = any(t in self.stop_ids for t in row)
                if finished:
                    row = row[: min(row.index(t) for t in self.stop_ids if t in row)]
                text = self.tokenizer.decode(row, skip_special_tokens=True).strip()
                answers.append(Answer(text, finished, len(row)))
        return answers

    def stream(
        self,
        question: str,
        history: list[dict] | None = None,
        settings: GenerationSettings | None = None,
        use_adapter: bool | str = True,
        control: StreamControl | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text piece by piece as the model produces it.

        The request joins the scheduler's running batch at its next step (continuous batching, up to
        ``max_batch`` rows). Generation stops at the end of turn, at max_new_tokens, at a stop sequence,
        when ``control.cancel`` is set, or when the consumer stops iterating; the row then leaves the batch
        at once and ``control`` tells how it ended. ``use_adapter``: False for the base model, True for the
        active adapter, or an adapter's name.
        """
        from medtune.serve.batching import BASE, BatchRequest, tokens_as_text

        settings = settings or GenerationSettings()
        control = control or StreamControl()
        ids = self.tokenizer(self.prompt_text(question, history), add_special_tokens=False)["input_ids"]
        if not self.has_adapter or use_adapter is False:
            adapter = BASE if self.has_adapter else "default"
        else:
            adapter = use_adapter if isinstance(use_adapter, str) else self.model.active_adapter
        req = self.scheduler.submit(BatchRequest(list(ids), settings, adapter, control))
        stopped = {"at_stop": False}

        def at_stop_sequence() -> None:
            stopped["at_stop"] = True
            req.halt.set()

        def tokens() -> Iterator[int]:
            while (item := req.tokens.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item

        try:
            yield from _until_stop(tokens_as_text(self.tokenizer, tokens()), settings.stop, at_stop_sequence)
        finally:
            req.halt.set()
            req.done.wait()  # the slot is free once the row has left the batch, not before
            if req.finished or stopped["at_stop"]:
                control.finish_reason = "stop"
            elif control.completion_tokens >= settings.max_new_tokens:
                control.finish_reason = "length"
            else:
                control.finish_reason = "cancelled"

    def reply_stream(
        self,
        question: str,
        history: list[dict] | None = None,
        settings: GenerationSettings | None = None,
        use_adapter: bool = True,
        control: StreamControl | None = None,
    ) -> Iterator[str]:
        """The reply as a user sees it, piece by piece.

        A red-flag question gets the emergency banner before the model says anything; the answer streams;
        then come the safety notes on the answer and the disclaimer. Under the ``block`` policy the answer
        is held back until it has been checked, since streamed text cannot be taken back.
        """
        if self.safety is None:
            yield from self.stream(question, history, settings, use_adapter, control)
            return
        flags = self.safety.triage(question)
        added = False  # a banner from the second opinion, which the rules' guard below does not know of
        if not flags and self.second_opinion is not None:
            flags = self.second_opinion.triage(question, flags)
            added = bool(flags)
        banner = self.safety.emergency_banner(flags)
        shown = f"{banner}\n\n" if banner else ""
        if shown:
            yield shown
        hold = self.safety_policy == "block"
        answer = ""
        for piece in self.stream(question, history, settings, use_adapter, control):
            answer += piece
            if not hold:
                yield piece
        guarded = self.safety.guard(question, answer, self.safety_policy)
        text = f"{banner}\n\n{guarded.text}" if added else guarded.text
        already = shown if hold else (shown + answer).rstrip()
        if text.startswith(already):
            yield text[len(already) :]
        else:  # the guard rewrote what was shown (cannot happen under annotate); show its full verdict
            yield "\n\n" + text

    def reply(
        self,
        question: str,
        history: list[dict] | None = None,
        settings: GenerationSettings | None = None,
        use_adapter: bool = True,
        control: StreamControl | None = None,
    ) -> str:
        return "".join(self.reply_stream(question, history, settings, use_adapter, control))

    def loss(
        self, records, use_adapter: bool = True, cutoff_len: int | None = None, batch_size: int = 4
    ) -> float:
        """Mean per-token loss of the reference answers (assistant tokens only); exp() gives perplexity."""
        import torch

        from medtune.data.template import IGNORE_INDEX, encode_record
        from medtune.train.lean_loss import selective_loss

        causal_lm = self.model.get_base_model() if self.has_adapter else self.model
        backbone = getattr(causal_lm, causal_lm.base_model_prefix)  # LoRA layers live inside it
        samples = [encode_record(self.tokenizer, r, self.system_prompt, cutoff_len, "drop") for r in records]
        # Similar lengths side by side: right padding then costs little.
        samples = sorted((s for s in samples if s is not None), key=lambda s: len(s.input_ids))
        total, count = 0.0, 0
        with self._lock, self._adapter(use_adapter), torch.inference_mode():
            for start in range(0, len(samples), batch_size):
                chunk = samples[start : start + batch_size]
                width = max(len(s.input_ids) for s in chunk)
                pad = self.tokenizer.pad_token_id
                # Right padding here: positions then match training, and padded labels are ignored.
                ids = torch.tensor([s.input_ids + [pad] * (width - len(s.input_ids)) for s in chunk])
                labels = torch.tensor([s.labels + [IGNORE_INDEX] * (width - len(s.labels)) for s in chunk])
                mask = torch.tensor(
                    [[1] * len(s.input_ids) + [0] * (width - len(s.input_ids)) for s in chunk]
                )
                hidden = backbone(
                    input_ids=ids.to(causal_lm.device), attention_mask=mask.to(causal_lm.device)
                )
                loss_sum, n, _ = selective_loss(
                    hidden.last_hidden_state,
                    labels.to(causal_lm.device),
                    causal_lm.get_output_embeddings(),
                    1024,
                )
                total += float(loss_sum)
                count += int(n)
        return total / max(count, 1)
