"""Continuous batching: many streamed requests share each pass over the model's weights.

On a CPU (and on a GPU at small batch) decoding is bound by reading the weights, not by arithmetic: one
step for eight rows costs little more than one step for one row. ``BatchScheduler`` runs one background
thread that owns the model and steps a batch of running requests one token at a time:

* a request that arrives while others generate is prefilled at the next step boundary and its KV cache is
  merged into the running batch (left padding, so every row's next token sits in the last column);
* a row leaves the batch as soon as it ends (end of turn, ``max_new_tokens``, a stop sequence, its
  ``StreamControl.cancel`` event or its consumer leaving), and columns that only padding uses any more are
  cut off the left of the cache;
* each row runs through its own LoRA adapter or around all of them (PEFT ``adapter_names``), so base and
  tuned requests share batches; each row has its own sampling settings and repetition penalty;
* every prompt starts with the same system turn, whose KV cache is computed once per adapter and reused:
  a new row prefills only its own question (on this CPU prefill is compute-bound, and the system turn is
  most of a short question's prompt). Padding then sits between the shared prefix and the question; the
  attention mask hides it and positions come from the mask, so the row sees exactly its own prompt.

Why not transformers' own continuous-batching manager (``model.generate_batch`` /
``init_continuous_batching``, transformers 5.25): it runs on CPU for a plain model, but it packs every
request into one flat sequence (batch dimension 1, paged attention), so PEFT's per-row ``adapter_names``
cannot pick an adapter per request (base and tuned in one batch, as the API's ``medtune:base`` and the
evaluation need), and it has no per-request repetition penalty or stop/cancel hook of ours. Its speed is
not the reason either: in ``bench/serve_load.py`` on the demo model (base only, 8 clients, 32 requests x
48 tokens, 2 shared CPU cores, same run) ``transformers serve --continuous-batching`` gave 26.6 tokens/s
in total against this loop's 32-33 (an earlier, noisier run had it the other way round, 23 against 17);
in-process on the 2-layer test model its first ``generate_batch`` took 11.8 s for 2 x 8 tokens (set-up).

Where a decode step's time goes (demo model, batch 8, ~120 cached positions, torch.profiler): matrix
products 74% (reading the weights: the floor), ``cat`` 6% (half of it the KV cache growing by
concatenation, now appended in place: ``roomy_cache``), element-wise ops of RoPE and RMSNorm 8%,
attention 7%, picking tokens <1%; outside the forward (masks, positions, sampling, handing out tokens)
~3%. Admitting new rows (their prefill, compute-bound here) is about a quarter of a load run's time.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from medtune.serve.engine import ChatEngine, GenerationSettings, StreamControl

logger = logging.getLogger(__name__)

BASE = "__base__"
"""The adapter name PEFT reads as 'no adapter' for a row."""


@dataclass(eq=False)
class BatchRequest:
    """One prompt in (or waiting for) the running batch; its tokens come out of ``tokens``."""

    prompt_ids: list[int]
    settings: GenerationSettings
    adapter: str
    """An adapter's name, or BASE."""
    control: StreamControl
    halt: threading.Event = field(default_factory=threading.Event)
    """Set by the consumer (a stop sequence was seen, or it stopped reading): leave the batch."""
    tokens: queue.Queue = field(default_factory=queue.Queue)
    """Generated token ids, then None once the row has left the batch (or an exception)."""
    generated: list[int] = field(default_factory=list)
    finished: bool = False
    """True when the end-of-turn token ended the row."""
    done: threading.Event = field(default_factory=threading.Event)

    def stopped(self) -> bool:
        return self.halt.is_set() or self.control.cancel.is_set()


class BatchScheduler:
    """A background thread that generates for up to ``max_batch`` requests at once on ``engine``'s model."""

    def __init__(self, engine: ChatEngine, max_batch: int = 8):
        self.engine = engine
        self.max_batch = max_batch
        self._pending: queue.Queue[BatchRequest] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._prefix_ids: list[int] | None = None
        self._prefix_kv: dict[str, Any] = {}
        """adapter -> (cache object, per-layer (keys, values)) of the shared system turn, batch of one."""
        self.prefix_hits = 0
        """Rows admitted on the shared prefix's cache."""
        self.steps = 0
        """Decode steps run so far (tests and the benchmark read it)."""
        self.peak_batch = 0
        """The most rows decoded together so far."""

    def submit(self, req: BatchRequest) -> BatchRequest:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="medtune-batcher", daemon=True)
                self._thread.start()
        self._pending.put(req)
        return req

    # -- the model thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        running: list[BatchRequest] = []
        state: dict[str, Any] = {}
        while True:
            new: list[BatchRequest] = []
            try:
                # Block only when nothing runs; otherwise take whoever has arrived and step on.
                if not running:
                    new.append(self._pending.get())
                while len(running) + len(new) < self.max_batch:
                    new.append(self._pending.get_nowait())
            except queue.Empty:
                pass
            new = [r for r in new if not self._end_if_stopped(r)]
            try:
                if new:
                    running, state = self._admit(running, state, new)
                if running:
                    running, state = self._step(running, state)
            except BaseException as exc:  # every waiting consumer hears of it; the thread lives on
                logger.exception("batched generation failed")
                for r in running + new:
                    r.tokens.put(exc)
                    r.done.set()
                running, state = [], {}

    def _end_if_stopped(self, req: BatchRequest) -> bool:
        if req.stopped():
            self._finish(req)
            return True
        return False

    def _finish(self, req: BatchRequest) -> None:
        req.control.completion_tokens = len(req.generated)
        req.tokens.put(None)
        req.done.set()

    def _forward(self, rows: list[BatchRequest], **inputs):
        import torch

        from medtune.serve.cpu_kernels import skinny_cpu_linears

        engine = self.engine
        model = engine.model
        adapters = {r.adapter for r in rows}
        extra: dict[str, Any] = {}
        ctx = engine._adapter(True)
        if engine.has_adapter:
            if adapters == {BASE}:
                ctx = engine._adapter(False)
            elif len(adapters) > 1 or adapters != {model.active_adapter}:
                extra["adapter_names"] = [r.adapter for r in rows]
        # The engine's lock: evaluation's generate() and loss() use the same weights from other threads.
        with engine._lock, ctx, skinny_cpu_linears(model), torch.inference_mode():
            return model(**inputs, **extra, use_cache=True)

    def _shared_prefix(self) -> list[int]:
        """The system turn every prompt starts with, as tokens."""
        if self._prefix_ids is None:
            from medtune.data.template import render
            from medtune.prompts import build_messages

            engine = self.engine
            system = build_messages("", None, engine.system_prompt)[:1]
            text = render(engine.tokenizer, system)
            self._prefix_ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._prefix_ids

    def _prefix_cache(self, rows: list[BatchRequest]):
        """A fresh cache holding the shared prefix for each row (under the row's adapter)."""
        import copy

        import torch

        prefix = self._shared_prefix()
        for adapter in {r.adapter for r in rows} - set(self._prefix_kv):
            dummy = BatchRequest(prefix, None, adapter, None)  # type: ignore[arg-type]
            ids = torch.tensor([prefix], device=self.engine.model.device)
            out = self._forward(
                [dummy], input_ids=ids, cache=roomy_cache(self.engine.model), logits_to_keep=1
            )
            self._prefix_kv[adapter] = out.cache
        cache = copy.deepcopy(self._prefix_kv[rows[0].adapter])
        for i, layer in enumerate(cache.layers):
            layer.keys = torch.cat([self._prefix_kv[r.adapter].layers[i].keys for r in rows])
            layer.values = torch.cat([self._prefix_kv[r.adapter].layers[i].values for r in rows])
        return cache

    def _admit(self, running, state, new):
        """Prefill the new rows together and merge their cache into the running batch's."""
        import torch

        pad = self.engine.tokenizer.pad_token_id
        device = self.engine.model.device
        prefix = self._shared_prefix()
        p = len(prefix)
        if all(len(r.prompt_ids) > p and r.prompt_ids[:p] == prefix for r in new):
            # Only the questions are prefilled, on a copy of the shared prefix's cache.
            tails = [r.prompt_ids[p:] for r in new]
            width = max(map(len, tails))
            ids = torch.tensor([[pad] * (width - len(t)) + t for t in tails])
            mask = torch.tensor([[1] * p + [0] * (width - len(t)) + [1] * len(t) for t in tails])
            extra = {
                "cache": self._prefix_cache(new),
                "cache_position": torch.arange(p, p + width, device=device),
            }
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, p:]
            self.prefix_hits += len(new)
        else:
            width = max(len(r.prompt_ids) for r in new)
            ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in new])
            mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in new])
            extra = {"cache": roomy_cache(self.engine.model)}
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(
            new,
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=1,
            **extra,
        )
        first = self._pick(new, out.logits[:, -1, :])
        cache, mask = out.cache, mask.to(device)
        if running:
            cache, mask = _merge(state["cache"], state["mask"], cache, mask)
        state = {
            "cache": cache,
            "mask": mask,
            "last": torch.cat([state["last"], first]) if running else first,
        }
        return self._keep(running + new, state, first_tokens=len(running))

    def _step(self, running, state):
        import torch

        mask = state["mask"]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        past = state["cache"].get_seq_length()
        out = self._forward(
            running,
            input_ids=state["last"],
            attention_mask=mask,
            position_ids=(mask.sum(-1, keepdim=True) - 1),
            cache=state["cache"],
            cache_position=torch.arange(past, past + 1, device=mask.device),
        )
        self.steps += 1
        self.peak_batch = max(self.peak_batch, len(running))
        last = self._pick(running, out.logits[:, -1, :])
        return self._keep(running, {"cache": out.cache, "mask": mask, "last": last})

    def _pick(self, rows: list[BatchRequest], logits: torch.Tensor) -> torch.Tensor:
        """Each row's next token under its own settings."""
        import torch

        with torch.inference_mode():  # the logits are inference tensors, changed in place below
            return self._pick_tokens(rows, logits)

    def _pick_tokens(self, rows: list[BatchRequest], logits: torch.Tensor) -> torch.Tensor:
        import torch

        # The logits are this step's own tensor, needed for nothing else: the repetition penalty is applied
        # in place. Cloning each 152k-entry row first was most of this function's time (22 of 29 ms a step
        # at batch 8 on the demo model, profiled on a loaded machine); the arithmetic is unchanged, so
        # greedy tokens are too. float() copies only for half precision.
        logits = logits.float()
        picked = torch.empty(len(rows), 1, dtype=torch.long, device=logits.device)
        greedy = []
        for i, r in enumerate(rows):
            s = r.settings
            row = logits[i]
            if s.repetition_penalty != 1.0:
                # Over the row's own prompt and answer only: left padding must not change its penalty.
                seen = torch.tensor(sorted(set(r.prompt_ids) | set(r.generated)), device=row.device)
                score = row[seen]
                row[seen] = torch.where(score < 0, score * s.repetition_penalty, score / s.repetition_penalty)
            if s.temperature > 0:
                probs = torch.softmax(row / s.temperature, dim=-1)
                sorted_p, order = probs.sort(descending=True)
                # Nucleus: keep the smallest head whose mass reaches top_p (the first token always).
                drop = sorted_p.cumsum(-1) - sorted_p > s.top_p
                sorted_p[drop] = 0.0
                picked[i] = order[torch.multinomial(sorted_p, 1)]
            else:
                greedy.append(i)
        if greedy:  # one argmax over all greedy rows (the same first maximum as row by row)
            index = torch.tensor(greedy, device=logits.device)
            picked[index] = logits[index].argmax(-1, keepdim=True)
        return picked  # (rows, 1)

    def _keep(self, rows, state, first_tokens: int = 0):
        """Hand each row its new token; drop the rows that have ended and padding no row needs."""
        stop_ids = set(self.engine.stop_ids)
        keep = []
        for i, (r, token) in enumerate(zip(rows, state["last"][:, 0].tolist())):
            if i < first_tokens:  # running rows already had this step's token handed out
                keep.append(i)
                continue
            if token in stop_ids:
                r.finished = True
            else:
                r.generated.append(token)
                r.tokens.put(token)
            if r.finished or len(r.generated) >= r.settings.max_new_tokens or r.stopped():
                self._finish(r)
            else:
                keep.append(i)
        if len(keep) == len(rows):
            return rows, state
        if not keep:
            return [], {}
        import torch

        index = torch.tensor(keep, device=state["mask"].device)
        mask = state["mask"][index]
        start = int(mask.any(0).int().argmax())  # first column some remaining row still uses
        cache = state["cache"]
        for layer in cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
        return [rows[i] for i in keep], {
            "cache": cache,
            "mask": mask[:, start:],
            "last": state["last"][index],
        }


def _merge(cache_a, mask_a, cache_b, mask_b):
    """One cache for two batches: the shorter padded on the left, then stacked along the batch."""
    import torch
    import torch.nn.functional as F

    la, lb = mask_a.shape[1], mask_b.shape[1]
    width = max(la, lb)
    for layer_a, layer_b in zip(cache_a.layers, cache_b.layers):
        for name in ("keys", "values"):
            a, b = getattr(layer_a, name), getattr(layer_b, name)
            a = F.pad(a, (0, 0, width - la, 0))
            b = F.pad(b, (0, 0, width - lb, 0))
            setattr(layer_a, name, torch.cat([a, b]))
    mask = torch.cat([F.pad(mask_a, (width - la, 0)), F.pad(mask_b, (width - lb, 0))])
    return cache_a, mask


def roomy_cache(model):
    """An empty KV cache whose layers append a step's keys and values in place (``_RoomyLayer``)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    room = _roomy_layer_class()
    cache.layers = [room() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@functools.cache
def _roomy_layer_class():
    """transformers' growing cache layer, with spare room at the end of the sequence axis.

    ``DynamicLayer.update`` concatenates each step's keys and values onto the whole cache: every decode
    step copied every row's full cache, per layer, so a step cost more the longer the answers got (on the
    demo model at batch 8 and ~120 cached positions, ``aten::cat`` was 6% of a step's CPU time, half of it
    this copy; at the default 768 new tokens the copy is ~7x larger). This layer keeps its tensors as views
    of a buffer with room to spare and writes a step's entries into the room: a copy happens only when the
    room runs out (then ~1.5x the length, so amortised once per length) or after a row joins or leaves
    (``_keep`` and ``_merge`` build new tensors, and the next update moves them into a new buffer). The
    values attention reads are the same; only where they are stored differs.
    """
    from transformers.cache_utils import DynamicLayer

    class _RoomyLayer(DynamicLayer):
        _room_keys = None
        _room_values = None

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.keys, self._room_keys = _append(self.keys, self._room_keys, key_states)
            self.values, self._room_values = _append(self.values, self._room_values, value_states)
            return self.keys, self.values

    return _RoomyLayer


def _append(held, room, new):
    """``held`` with ``new`` appended along the sequence axis (-2), and the buffer it is now a view of."""
    n = held.shape[-2] if held.numel() else 0
    need = n + new.shape[-2]
    fits = (
        room is not None
        and n > 0
        and held.data_ptr() == room.data_ptr()  # still the start of the buffer (not replaced since)
        and held.shape[:2] == room.shape[:2]
        and held.stride() == room.stride()
        and need <= room.shape[-2]
    )
    if not fits:
        room = new.new_empty(*new.shape[:2], need + max(need // 2, 64), new.shape[-1])
        if n:
            room[:, :, :n].copy_(held)
    room[:, :, n:need].copy_(new)
    return room[:, :, :need], room


def tokens_as_text(tokenizer, tokens: Iterator[int]) -> Iterator[str]:
    """Detokenise a token stream piece by piece, holding back a piece that ends inside a character."""
    ids: list[int] = []
    shown = ""
    for token in tokens:
        ids.append(token)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a multi-byte character split over tokens: wait for the rest
            continue
        if len(text) > len(shown):
            yield text[len(shown) :]
            shown = text
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if len(text) > len(shown):
        yield text[len(shown) :]
