"""``medtune chat``: a terminal chat that streams tokens as they are generated."""

from __future__ import annotations

import sys

from medtune.config import Config
from medtune.serve.engine import ChatEngine, GenerationSettings


def chat_loop(cfg: Config, use_adapter: bool = True, engine: ChatEngine | None = None) -> int:
    engine = engine or ChatEngine.from_config(cfg, adapter="auto" if use_adapter else None)
    settings = GenerationSettings(cfg.serve.max_new_tokens, cfg.serve.temperature, cfg.serve.top_p)
    history: list[dict[str, str]] = []
    label = "tuned" if use_adapter and engine.has_adapter else "base"
    print(f"medtune chat ({engine.name}, {label}). Empty line or Ctrl-D quits; /reset clears the history.")
    while True:
        try:
            question = input("\n你> ").strip()
        except EOFError:
            print()
            return 0
        if not question:
            return 0
        if question == "/reset":
            history.clear()
            continue
        print("医生> ", end="", flush=True)
        parts = []
        for piece in engine.reply_stream(question, history, settings, use_adapter=use_adapter):
            parts.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        print()
        answer = "".join(parts).strip()
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
