"""The ``medtune`` command: a dispatch table of plain functions.

    medtune data prepare configs/demo/lora_sft.yaml
    medtune train configs/demo/lora_sft.yaml train.learning_rate=2e-4 [--resume]
    medtune eval configs/demo/lora_sft.yaml
    medtune chat configs/demo/lora_sft.yaml [--base]
    medtune serve configs/demo/lora_sft.yaml [--api]
    medtune run configs/demo/lora_sft.yaml          # prepare -> train -> eval
    medtune safety check answers.jsonl
    medtune config explain
    medtune doctor configs/demo/lora_sft.yaml       # which training patches apply here, and why

Every command takes a YAML config and dotted ``section.key=value`` overrides; ``--model`` is a shortcut for
``model.name_or_path=...``. Heavy libraries are imported inside the commands so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medtune.config import Config, ConfigError, explain, load_config

logger = logging.getLogger("medtune")


def _config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides or [])
    config = args.config or None
    if config and "=" in config and not config.endswith((".yaml", ".yml")):
        overrides.insert(0, config)  # no config file given: the first word is already an override
        config = None
    if getattr(args, "model", None):
        overrides.append(f"model.name_or_path={args.model}")
    return load_config(config, overrides)


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from medtune.data.prepare import prepare

    cfg = _config(args)
    result = prepare(cfg)
    counts = result.stats["counts"]
    print(
        f"read {counts.get('read', 0)} records, kept {counts['kept']}: {counts['train']} train / {counts['val']} val"
    )
    dropped = {k: v for k, v in counts.items() if k.startswith("dropped_") or k == "quarantined"}
    if dropped:
        print("dropped: " + ", ".join(f"{k.removeprefix('dropped_')}={v}" for k, v in dropped.items()))
    print(f"written to {result.out_dir} (train.jsonl, val.jsonl, stats.json)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from medtune.train.sft import run_sft

    cfg = _config(args)
    result = run_sft(cfg, resume=args.resume)
    m = result.metrics
    # No validation loss when train.eval_steps is 0 (validation off, as in the demo config).
    validation = "off" if m["eval_loss"] is None else f"{m['eval_loss']:.4f}"
    print(f"trained {m['global_step']} steps: train loss {m['train_loss']:.4f}, validation loss {validation}")
    print(f"adapter: {result.adapter_dir}")
    print(f"curves:  {cfg.run_dir / 'loss_curve.png'} and {cfg.run_dir / 'metrics.csv'}")
    return 0


# Headline metrics printed per set; the report has all of them with intervals.
_HEADLINE = {
    "exam": ("accuracy", "accuracy_generate"),
    "open": (
        "compliance_rate",
        "full_form_rate",
        "cut_off_rate",
        "perplexity",
        "rouge_l",
        "red_flag_referral_rate",
    ),
}


def _print_eval(results: dict[str, Any]) -> None:
    from medtune.eval.report import cell

    models = list(results["models"])
    for set_name, info in results["set_info"].items():
        metrics = results["sets"][set_name]
        extra = f", {info['problems']} unscorable" if info["problems"] else ""
        print(f"set {set_name} ({info['kind']}, {info['items']} items{extra})")
        for key in _HEADLINE[info["kind"]]:
            if not any(key in metrics[m] for m in models):
                continue
            pct = key.endswith("rate") or key.startswith("accuracy")
            print(f"  {key}")
            for m in models:
                print(f"    {m:<12} {cell(metrics[m].get(key), pct)}")
    for set_name, pairs in results.get("judge", {}).items():
        for pair, s in pairs.items():
            print(
                f"judge {set_name} {pair}: win {cell(s['win'], True)}, tie {cell(s['tie'], True)}, loss {cell(s['loss'], True)}"
            )
    print(f"report: {results['report_dir']}/report.html (and report.md, metrics.json)")


def cmd_eval(args: argparse.Namespace) -> int:
    from medtune.eval.run import run_eval

    models = [m for m in (args.models or "").split(",") if m] or None
    _print_eval(run_eval(_config(args), sets=args.sets, models=models, limit=args.limit))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The whole pipeline for one config: prepare, train, evaluate."""
    from medtune.data.prepare import prepare
    from medtune.eval.run import run_eval
    from medtune.train.sft import run_sft

    cfg = _config(args)
    t0 = time.time()
    steps = (("prepare data", lambda: prepare(cfg)), ("train", lambda: run_sft(cfg, resume=args.resume)))
    for i, (name, step) in enumerate(steps, start=1):
        print(f"[{i}/3] {name} ...", flush=True)
        step()
    print("[3/3] evaluate ...", flush=True)
    results = run_eval(cfg)
    _print_eval(results)
    print(f"done in {time.time() - t0:.0f} s; everything is under {cfg.run_dir}/")
    config_path = args.config or "<config>"
    print(f"chat in the terminal:  medtune chat {config_path}")
    print(f"web UI on port {cfg.serve.port}: medtune serve {config_path}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from medtune.serve.chat import chat_loop

    cfg = _config(args)
    return chat_loop(cfg, use_adapter=not args.base)


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.engine == "vllm":
        from medtune.serve.vllm import exec_vllm

        return exec_vllm(cfg)
    if args.api:
        from medtune.serve.api import serve_api

        serve_api(cfg)
    else:
        from medtune.serve.webui import serve_webui

        serve_webui(cfg)
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from medtune.serve.feedback import FeedbackStore, export_preferences, feedback_url, unpaired_path

    cfg = _config(args)
    out = Path(args.out) if args.out else cfg.run_dir / "feedback" / "preferences.jsonl"
    counts = export_preferences(FeedbackStore(feedback_url(cfg)), out)
    print(f"{counts['pairs']} chosen/rejected pairs -> {out}")
    print(f"{counts['unpaired']} single rated answers -> {unpaired_path(out)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from medtune.model.export import export_merged

    cfg = _config(args)
    result = export_merged(cfg, args.out)
    print(f"merged model written to {result.out_dir}")
    print(
        f"max |logit difference| merged vs adapter: {result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g})"
    )
    print(f"load it with transformers or serve it with: vllm serve {result.out_dir}")
    return 0


def cmd_safety_check(args: argparse.Namespace) -> int:
    from medtune.safety.cli import main as safety_main

    return safety_main(args.rest)


def cmd_safety_train(args: argparse.Namespace) -> int:
    from medtune.safety.cli import train_main

    return train_main(args.rest)


def cmd_safety_pinyin(args: argparse.Namespace) -> int:
    from medtune.safety.pinyin import main as pinyin_main

    return pinyin_main(args.rest)


def cmd_data_restructure(args: argparse.Namespace) -> int:
    from medtune.data.restructure.cli import main as restructure_main

    return restructure_main(args.rest)


def cmd_model_fetch(args: argparse.Namespace) -> int:
    from medtune.model.loader import resolve_model_source

    cfg = _config(args)
    resolved = resolve_model_source(cfg.model)
    print(f"model ready: {resolved.path}")
    return 0


def cmd_config_explain(args: argparse.Namespace) -> int:
    for key, default, doc in explain():
        print(f"{key} = {default}\n    {doc}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Library versions and, for each training patch, whether it applies on this machine and why."""
    import platform

    from medtune.train.patches import VERIFIED, doctor_rows, library_versions

    cfg = _config(args)
    print(f"python {platform.python_version()}")
    for name, version in library_versions().items():
        verified = (
            f"   (patches verified on >={VERIFIED[name][0]},<{VERIFIED[name][1]})" if name in VERIFIED else ""
        )
        print(f"{name} {version}{verified}")
    rows = doctor_rows(cfg)
    width = max(len(name) for name, *_ in rows)
    print(f"\ntraining patches for {args.config or 'the default config'} (in the order they apply):")
    for name, state, reason, libraries, what in rows:
        print(f"  {name:<{width}}  {state:<3}  {reason}")
        print(f"  {'':<{width}}       {what}; relies on: {libraries}")
    return 0


# name -> (function, help, arguments). Arguments: "config" (config + overrides), "rest" (passed through).
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, str]] = {
    "data prepare": (cmd_data_prepare, "read, clean, deduplicate and split the raw data", "config"),
    "data restructure": (
        cmd_data_restructure,
        "rewrite answers into the three-part form with a teacher LLM",
        "rest",
    ),
    "train": (cmd_train, "LoRA supervised fine-tuning", "config"),
    "eval": (cmd_eval, "base vs tuned on held-out questions; writes report.html", "config"),
    "run": (cmd_run, "the whole pipeline: prepare, train, eval", "config"),
    "chat": (cmd_chat, "terminal chat with streaming", "config"),
    "serve": (cmd_serve, "Gradio web chat on port 7860 (or --api for the OpenAI-compatible API)", "config"),
    "feedback export": (
        cmd_feedback_export,
        "web UI ratings as preference pairs (prompt/chosen/rejected JSONL) for DPO and data prepare",
        "config",
    ),
    "export": (cmd_export, "merge the adapter into the base weights and verify the logits", "config"),
    "safety check": (cmd_safety_check, "run the safety checks on a JSONL file", "rest"),
    "safety train": (cmd_safety_train, "train the learned safety layer on labelled development data", "rest"),
    "safety pinyin": (cmd_safety_pinyin, "build the lexicon that reads questions typed in pinyin", "rest"),
    "model fetch": (cmd_model_fetch, "fetch/convert the configured model into the cache", "config"),
    "config explain": (cmd_config_explain, "every config key with its default and meaning", "none"),
    "doctor": (cmd_doctor, "library versions and which training patches apply here, and why", "config"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medtune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, Any] = {}
    for name, (func, help_text, kind) in COMMANDS.items():
        words = name.split()
        target = sub
        if len(words) == 2:
            if words[0] not in groups:
                group = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(dest="subcommand", required=True)
            target = groups[words[0]]
        p = target.add_parser(words[-1], help=help_text, description=help_text)
        p.set_defaults(func=func)
        if kind == "config":
            p.add_argument("config", nargs="?", help="YAML config (default: built-in defaults)")
            p.add_argument("overrides", nargs="*", help="section.key=value overrides")
            p.add_argument("--model", help="shortcut for model.name_or_path=...")
        elif kind == "rest":
            p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the command (see its --help)")
        if name in ("train", "run"):
            p.add_argument(
                "--resume", action="store_true", help="continue from the newest checkpoint (an error if none)"
            )
        if name == "export":
            p.add_argument("--out", help="output folder (default: <run_dir>/merged)")
        if name == "feedback export":
            p.add_argument("--out", help="pairs file (default: <run_dir>/feedback/preferences.jsonl)")
        if name == "eval":
            p.add_argument("--set", dest="sets", nargs="+", action="extend", help="evaluate only these sets")
            p.add_argument("--models", help="comma-separated models, e.g. base,tuned or an adapter folder")
            p.add_argument("--limit", type=int, help="at most N items per set")
        if name == "chat":
            p.add_argument("--base", action="store_true", help="chat with the base model (adapter off)")
        if name == "serve":
            p.add_argument(
                "--api", action="store_true", help="serve the OpenAI-compatible API instead of the web UI"
            )
            p.add_argument(
                "--engine",
                choices=("medtune", "vllm"),
                default="medtune",
                help="vllm: exec vLLM's OpenAI server on the base model with this run's adapter (optional extra)",
            )
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _user_errors() -> tuple[type[BaseException], ...]:
    from medtune.data.schema import DataError
    from medtune.eval.run import EvalModelError, EvalSetError
    from medtune.model.demo_model import ModelSourceError
    from medtune.model.export import ExportError

    errors: list[type[BaseException]] = [
        ConfigError,
        DataError,
        ModelSourceError,
        FileNotFoundError,
        ExportError,
        EvalSetError,
        EvalModelError,
    ]
    try:
        from medtune.data.template import TemplateError

        errors.append(TemplateError)
    except ImportError:
        pass
    return tuple(errors)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    # argparse fills the positional overrides only before the first flag; `serve CONFIG --api key=value`
    # leaves key=value over, so words that look like overrides are taken up wherever they stand.
    args, extra = parser.parse_known_args(argv)
    unknown = [word for word in extra if word.startswith("-") or "=" not in word]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*(args.overrides or []), *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Pass-through commands get every word after their name untouched (argparse would eat --help).
    for name, (_func, _help, kind) in COMMANDS.items():
        words = name.split()
        if kind == "rest" and argv[: len(words)] == words:
            args = parser.parse_args([*words])
            args.rest = argv[len(words) :]
            break
    else:
        args = _parse(parser, argv)
    _setup_logging(args.verbose)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        if args.verbose:
            logger.exception("failed")
        print(f"medtune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medtune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
