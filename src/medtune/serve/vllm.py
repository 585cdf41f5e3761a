"""``medtune serve CONFIG --engine vllm``: vLLM's OpenAI-compatible server on this run's model, for scale.

vLLM (an optional extra: ``pip install 'medtune[vllm]'``, GPU) serves the base weights with the run's LoRA
adapter as the model ``tuned`` (and the base under its own name), with continuous batching and paged
attention. The chat template is the model's own with medtune's system prompt as the default, exactly as
``medtune export`` writes it, so a client that sends no system message gets the prompt the model was tuned
under. Host and port come from ``serve.host`` / ``serve.api_port``; the API key from $MEDTUNE_API_KEYS or
``serve.api_keys_file`` (the first key), handed to vLLM in $VLLM_API_KEY rather than on the command line,
where other users of the machine could read it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medtune.config import Config

logger = logging.getLogger(__name__)

TUNED = "tuned"
"""The name clients use for the adapter's model (the web UI's ``serve.remote_model`` default)."""


class VllmMissing(FileNotFoundError):
    """The ``vllm`` command is not installed."""


def write_chat_template(cfg: Config, base_path: str, out: Path) -> Path:
    """The base model's chat template with the training system prompt as the default, written to ``out``."""
    from medtune.model.export import with_default_system_prompt
    from medtune.model.loader import load_tokenizer
    from medtune.prompts import SYSTEM_PROMPT

    tokenizer = load_tokenizer(base_path, cfg.model.trust_remote_code)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(with_default_system_prompt(tokenizer.chat_template, cfg.system_prompt or SYSTEM_PROMPT))
    return out


def vllm_command(
    cfg: Config, base_path: str, template: Path, adapters: dict[str, Path], exe: str = "vllm"
) -> list[str]:
    """The ``vllm serve`` command line (no secrets in it)."""
    serve = cfg.serve
    cmd = [
        exe, "serve", base_path,
        "--host", serve.host,
        "--port", str(serve.api_port),
        "--served-model-name", "base",
        "--chat-template", str(template),
        "--max-model-len", str(serve.max_input_tokens + serve.max_output_tokens),
        "--max-num-seqs", str(serve.max_concurrent),
    ]  # fmt: skip
    if cfg.model.dtype not in ("auto", None):
        cmd += ["--dtype", str(cfg.model.dtype)]
    if adapters:
        ranks = [_lora_rank(path) for path in adapters.values()]
        cmd += ["--enable-lora", "--max-lora-rank", str(max(ranks)), "--max-loras", str(len(adapters))]
        cmd += ["--lora-modules", *(f"{name}={path}" for name, path in adapters.items())]
    return cmd


def _lora_rank(adapter_dir: Path) -> int:
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    rank = int(config.get("r", 16))
    # vLLM accepts only these maximum ranks; the smallest that holds the adapter.
    return next((r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank), rank)


def exec_vllm(cfg: Config) -> int:
    """Replace this process with vLLM's server (returns only on an error before the exec)."""
    from medtune.model.loader import resolve_model_source
    from medtune.serve.auth import check_exposure, load_api_keys

    keys = load_api_keys(cfg.serve)
    check_exposure(cfg.serve.host, keys)
    exe = shutil.which("vllm")
    if exe is None:
        raise VllmMissing("the `vllm` command is not installed: pip install 'medtune[vllm]' (needs a GPU)")
    base = resolve_model_source(cfg.model).path
    adapters = {TUNED: cfg.adapter_dir} if (cfg.adapter_dir / "adapter_config.json").is_file() else {}
    if not adapters:
        logger.warning("no trained adapter in %s: vLLM serves the base model only", cfg.adapter_dir)
    template = write_chat_template(cfg, base, cfg.run_dir / "vllm" / "chat_template.jinja")
    cmd = vllm_command(cfg, base, template, adapters, exe)
    env = dict(os.environ)
    if keys:
        env["VLLM_API_KEY"] = keys[0]
    logger.info("exec: %s", " ".join(cmd))
    os.execve(exe, cmd, env)
    return 0  # not reached
