"""The models an evaluation compares, behind one small interface.

- ``LocalModels``: the base model and every LoRA adapter (``tuned`` and any other) on one copy of the base
  weights, loaded only when something is left to compute. Generation mixes rows of different adapters in
  one batch (PEFT routes each row), so comparing models costs little more than running one.
- a ``checkpoint`` model is a different full model: loaded on its own, after the others, then freed.
- ``EndpointModel``: any OpenAI-compatible server, through the restructure stage's client (its rate
  limits, retries, error policy and token accounting); its key comes from an environment variable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medtune.config import Config, EvalModelConfig
from medtune.eval.store import file_digest, stable_hash

logger = logging.getLogger(__name__)


class EvalModelError(RuntimeError):
    """A model that cannot be evaluated (no adapter trained, endpoint key missing ...)."""


def _folder_identity(path: Path) -> dict[str, Any]:
    """What identifies a model folder cheaply: its config and the size and time of each weight file."""
    if not path.is_dir():
        return {"path": str(path)}
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf", ".json"))
    return {
        "path": str(path.resolve()),
        "files": [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files],
    }


def model_identity(cfg: Config, spec: EvalModelConfig) -> str:
    """A hash that changes whenever the model's answers may change (keys the resumable cache)."""
    base = {"model": cfg.model.name_or_path, "dtype": cfg.model.dtype, "gguf": cfg.model.gguf_sha256}
    if Path(cfg.model.name_or_path).exists():
        base.update(_folder_identity(Path(cfg.model.name_or_path)))
    if spec.kind == "base":
        return stable_hash(base)
    if spec.kind in ("tuned", "adapter"):
        folder = Path(spec.adapter) if spec.adapter else cfg.adapter_dir
        weights = folder / "adapter_model.safetensors"
        digest = file_digest(weights) if weights.is_file() else "missing"
        return stable_hash({**base, "adapter": digest})
    if spec.kind == "checkpoint":
        return stable_hash({"checkpoint": spec.checkpoint, **_folder_identity(Path(spec.checkpoint))})
    return stable_hash({"endpoint": spec.endpoint, "model": spec.endpoint_model or spec.name})


class LocalModels:
    """Base + adapters sharing one engine; ``ref(spec)`` is what ``ChatEngine.generate_jobs`` takes."""

    def __init__(self, cfg: Config, specs: list[EvalModelConfig], engine=None, checkpoint: str | None = None):
        self.cfg = cfg
        self.specs = specs
        self._engine = engine
        self.checkpoint = checkpoint
        self._refs: dict[str, bool | str] = {}

    @property
    def engine(self):
        if self._engine is None:
            from medtune.serve.engine import ChatEngine

            cfg = self.cfg
            if self.checkpoint:
                cfg = dataclasses.replace(
                    cfg, model=dataclasses.replace(cfg.model, name_or_path=self.checkpoint)
                )
            logger.info("loading %s for evaluation", cfg.model.name_or_path)
            self._engine = ChatEngine.from_config(cfg, adapter=None)
        self._attach()
        return self._engine

    def _attach(self) -> None:
        engine = self._engine
        for spec in self.specs:
            if spec.name in self._refs:
                continue
            if spec.kind == "base" or spec.kind == "checkpoint":
                self._refs[spec.name] = False
                continue
            folder = Path(spec.adapter) if spec.adapter else self.cfg.adapter_dir
            if spec.kind == "tuned" and engine.has_adapter and spec.adapter is None and not self._refs:
                # An engine handed in with the run's adapter already loaded (chat, tests): that is "tuned".
                self._refs[spec.name] = engine.model.active_adapter
                continue
            if not (folder / "adapter_config.json").is_file():
                raise EvalModelError(
                    f"{folder}: no trained adapter for model {spec.name!r}; run `medtune train` first"
                )
            engine.add_adapter(spec.name, folder)
            self._refs[spec.name] = spec.name

    def ref(self, spec: EvalModelConfig) -> bool | str:
        self.engine  # noqa: B018 - loads and attaches on first use
        return self._refs[spec.name]

    @contextmanager
    def using(self, spec: EvalModelConfig) -> Iterator[Any]:
        """The PEFT model with ``spec``'s adapter active (or every adapter off for the base)."""
        engine = self.engine
        ref = self._refs[spec.name]
        if not engine.has_adapter:
            yield engine.model
            return
        if ref is False:
            with engine.model.disable_adapter():
                yield engine.model
            return
        previous = engine.model.active_adapter
        engine.model.set_adapter(ref)
        try:
            yield engine.model
        finally:
            engine.model.set_adapter(previous)

    def close(self) -> None:
        self._engine = None


class EndpointModel:
    """An OpenAI-compatible endpoint answering through the teacher client (retries, limits, tokens)."""

    def __init__(
        self,
        spec: EvalModelConfig,
        *,
        timeout_s: float,
        max_retries: int,
        concurrency: int,
        temperature: float,
    ) -> None:
        key = os.environ.get(spec.api_key_env, "")
        if not key:
            raise EvalModelError(
                f"model {spec.name!r}: set the endpoint's key in ${spec.api_key_env} (keys are read from the environment only)"
            )
        self.spec = spec
        self.key = key
        self.settings = {
            "timeout_s": timeout_s,
            "max_retries": max_retries,
            "concurrency": concurrency,
            "temperature": temperature,
        }

    @classmethod
    def for_eval(cls, cfg: Config, spec: EvalModelConfig) -> EndpointModel:
        ev = cfg.eval
        return cls(
            spec,
            timeout_s=ev.endpoint_timeout_s,
            max_retries=ev.endpoint_max_retries,
            concurrency=ev.endpoint_concurrency,
            temperature=ev.temperature,
        )

    def client(self, max_tokens: int):
        from medtune.data.restructure.client import TeacherClient

        return TeacherClient(
            base_url=self.spec.endpoint,
            model=self.spec.endpoint_model or self.spec.name,
            api_key=self.key,
            api_key_env=self.spec.api_key_env,
            max_tokens=max_tokens,
            **self.settings,
        )

    def run(
        self,
        jobs: list[tuple[Any, list[dict[str, str]]]],
        max_tokens: int,
        on_done,
        params: dict | None = None,
    ):
        """Send every (tag, messages) job; ``on_done(tag, completion_or_exception)`` as each finishes."""
        from medtune.data.restructure.client import FatalTeacherError, RequestFailed

        async def main() -> dict[str, int]:
            client = self.client(max_tokens)

            async def one(tag, messages):
                try:
                    on_done(tag, await client.complete(messages, **(params or {})))
                except (RequestFailed, FatalTeacherError) as exc:
                    on_done(tag, exc)

            try:
                await asyncio.gather(*(one(t, m) for t, m in jobs))
            finally:
                await client.aclose()
            return {
                "prompt_tokens": client.stats.prompt_tokens,
                "completion_tokens": client.stats.completion_tokens,
            }

        return asyncio.run(main())
