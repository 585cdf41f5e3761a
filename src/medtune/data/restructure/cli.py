"""``medtune data restructure CONFIG [section.key=value ...]``: rewrite answers into the three-part form.

    export MEDTUNE_TEACHER_API_KEY=...      # the key lives only in the environment
    medtune data restructure configs/demo/lora_sft.yaml restructure.input_file=my_raw.jsonl
    medtune data restructure configs/demo/lora_sft.yaml restructure.mode=offline     # no endpoint at all
    medtune data prepare configs/demo/lora_sft.yaml data.raw_file=runs/demo/restructure/restructured.jsonl

A killed run resumes where it stopped when started again with the same command; on finished work the
command does nothing and says so. Exit status: 0 done, 1 some requests failed (run again to retry them),
2 a problem to fix first (missing key or file, refused key, no quota, bad config).
"""

from __future__ import annotations

import argparse
import sys

from medtune.config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medtune data restructure",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="YAML config (default: built-in defaults)")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. restructure.concurrency=32")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    return parser


def _error(message: str) -> int:
    print(f"medtune: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    from medtune.data.restructure.client import FatalTeacherError
    from medtune.data.restructure.journal import JournalError
    from medtune.data.restructure.runner import RestructureError, run_restructure

    args = _parser().parse_args(argv)
    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not config.endswith((".yaml", ".yml")):
        config, overrides = None, [config, *overrides]
    try:
        cfg = load_config(config, overrides)
        summary = run_restructure(cfg, progress=not args.no_progress and sys.stderr.isatty())
    except (ConfigError, RestructureError, FatalTeacherError, JournalError) as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print(
            "interrupted: finished records are in the journal; run the same command to continue",
            file=sys.stderr,
        )
        return 130

    s = summary
    out = s.out_dir
    if s.nothing_to_do:
        print(
            f"nothing to do: all {s.already_done} records in {cfg.restructure.input_file} were already restructured "
            f"({s.ok_total} ok, {s.rejected_total} rejected) with this prompt and teacher; "
            f"outputs in {out}/ {'rewritten' if s.outputs_written else 'unchanged'}"
        )
        return 0
    print(
        f"restructured {s.processed} records with {s.teacher} (prompt {s.prompt_hash}) in {s.wall_s:.1f} s: "
        f"{s.ok} ok, {s.rejected} rejected, {s.failed} failed"
        + (f"; {s.already_done} were done by earlier runs" if s.already_done else "")
    )
    if s.mode == "teacher":
        retries = ", ".join(f"{k} {v}" for k, v in sorted(s.retries.items())) or "none"
        print(f"requests {s.requests} (retried: {retries}); gate retries {s.gate_retries}")
        print(
            f"tokens {s.prompt_tokens:,} in / {s.completion_tokens:,} out; cost {s.cost:.4f} {s.currency} "
            f"(all runs {s.cost_total:.4f} {s.currency})"
        )
    total = s.ok_total + s.rejected_total
    print(f"pass rate {s.pass_rate:.1%} ({s.ok_total}/{total}); unreadable input {s.unreadable}")
    if s.reject_reasons:
        top = "; ".join(f"{r} ({n})" for r, n in list(s.reject_reasons.items())[:4])
        print(f"rejects by reason: {top}")
    if s.flags:
        print("kept with flags (faithfulness=mark): " + ", ".join(f"{k} {v}" for k, v in s.flags.items()))
    print(f"outputs: {out}/restructured.jsonl, rejects.jsonl, summary.json")
    print(
        f"train on it: medtune data prepare {config or ''} data.raw_file={out}/restructured.jsonl".replace(
            "  ", " "
        )
    )
    if s.failed_total:
        print(
            f"medtune: {s.failed_total} records failed after retries (see rejects.jsonl, status 'failed'); "
            "run the same command again to retry only those",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
