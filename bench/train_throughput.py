"""Training throughput, side by side: the original project's recipe (a) against ``medtune train`` (b).

    .venv/bin/python bench/train_throughput.py                        # demo 0.5B model, 32 samples
    .venv/bin/python bench/train_throughput.py --model tiny --samples 64
    .venv/bin/python bench/train_throughput.py --variant nockpt:train.gradient_checkpointing=false \\
        --variant pack:train.packing=true,train.gradient_checkpointing=false

Both arms train the same model, with the same LoRA adapters (medtune's ``lora`` defaults), on the same
samples for one pass, at the same batch size and maximum length:

(a) the baseline recipe: transformers ``Trainer``, ``train_sampling_strategy="group_by_length"``,
    ``DataCollatorForSeq2Seq`` padding to the longest in the batch, labels equal to the input ids (loss on
    every real token, prompt included), gradient checkpointing, fp32, full logits over the vocabulary;
(b) ``medtune train`` with its defaults: ``prepare(cfg)`` then ``run_sft(cfg, trainer_class=...)`` with the
    meter's subclass of its trainer, which counts the tokens of every training batch and times the loop. Its
    batches are padding-free (each batch's samples end to end in one row, per-sample attention:
    ``medtune.train.varlen``), its LoRA linears and MLPs fused (``medtune.train.fused_lora``), so the two
    arms train on the same samples, grouped into batches differently.

The arms and the report are in ``bench/_train_arms.py``, the data in ``bench/_train_data.py``: synthetic
Chinese Q&A records, seeded, long-tailed (log-normal lengths: questions 20-300
characters, answers 100-1500, in the three-part form), assembled from clauses of the shipped sample data.
They go through the real ``medtune data prepare``; its ``train.jsonl`` is then cut to the first ``--samples``
records within ``--max-len`` tokens, and ``val.jsonl`` to the first ``--val-samples``, so both arms see the
very same samples and the same held-out set.

Every arm runs in its own child process (``--arm``), one after the other; the load average is printed
because this machine is shared. Only the training loop is timed (first ``on_train_begin`` to the last
``on_step_end``: model loading, evaluation and saving are outside). Tokens are counted from the batches
the trainer actually trained on: computed (batch x padded width), real (attention mask) and supervised
(positions whose next-token label is not -100). Memory: the child's peak RSS over its whole life
(``wait4``) and its peak during the training loop alone (VmHWM reset at ``on_train_begin``).

MFU counts model FLOPs per *real* token as 4N: forward 2N plus backward 2N (input gradients only: the base
weights are frozen, so LoRA needs no weight gradients), N = the weights every token is multiplied through
(all linear layers and the LM head). Attention scores, recomputation (checkpointing) and padding are not
model FLOPs, so this MFU is directly comparable between arms. The peak is this machine's best fp32 matmul,
measured before and after the arms (the larger is used).

Validation loss: after training, both arms are scored with medtune's loss on the assistant tokens (the
selective LM head of ``medtune.train.lean_loss``), one held-out sample at a time in fp32; the loss is the
sum over all supervised tokens divided by their number. ``--base-val`` also scores the untrained model.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_summary, loadavg, log_tail, matmul_gflops, run_child

# ---------------------------------------------------------------------------------------------
# Child process: one arm


def child_main(args: argparse.Namespace) -> None:
    import logging

    from medtune.config import load_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    cfg = load_config(None, spec["overrides"])
    from _train_arms import run_arm_a, run_arm_b

    result = (run_arm_a if args.arm == "a" else run_arm_b)(cfg, spec)
    from medtune.io import write_json

    write_json(args.result, result)


def run_arm(
    arm: str, label: str, overrides: list[str], args: argparse.Namespace, work: Path, round_: int = 0
) -> dict:
    """One arm in its own child process; a finished arm of a kept work folder is reused."""
    spec_path = work / f"spec_{label}.json"
    result_path = work / f"result_{label}_{round_}.json"
    log_path = work / f"arm_{label}_{round_}.log"
    done_path = work / f"done_{label}_{round_}.json"
    if done_path.is_file():
        done = json.loads(done_path.read_text(encoding="utf-8"))
        if done.get("overrides") == overrides and done.get("base_val") == (args.base_val and arm == "a"):
            print(f"arm {label}: reusing the finished run in {done_path}")
            return done
    spec = {"overrides": overrides, "work": str(work), "base_val": args.base_val and arm == "a"}
    spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--arm", arm]
    cmd += ["--spec", str(spec_path), "--result", str(result_path)]
    load_before = loadavg()
    t0 = time.perf_counter()
    code, usage = run_child(cmd, log_path)
    if code != 0:
        raise SystemExit(f"arm {label} failed (exit {code}); last lines of {log_path}:\n{log_tail(log_path)}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result.update(
        label=label,
        rss_process_peak_mb=usage.ru_maxrss / 1024,
        wall_s=time.perf_counter() - t0,
        load_before=load_before,
        load_after=loadavg(),
        overrides=overrides,
        base_val=spec["base_val"],
    )
    done_path.write_text(json.dumps(result), encoding="utf-8")
    return result


def parse_variant(text: str) -> tuple[str, list[str]]:
    label, sep, rest = text.partition(":")
    if not sep or not label or not re.fullmatch(r"[A-Za-z0-9_+-]+", label) or not rest:
        raise argparse.ArgumentTypeError(
            f"--variant {text!r}: expected LABEL:key=value[,key=value...], e.g. nockpt:train.gradient_checkpointing=false"
        )
    overrides = [o.strip() for o in rest.split(",") if o.strip()]
    for o in overrides:
        if "=" not in o:
            raise argparse.ArgumentTypeError(f"--variant {text!r}: {o!r} is not key=value")
    return label, overrides


def parent_main(args: argparse.Namespace) -> None:
    import torch

    if args.samples < args.batch:
        raise SystemExit(f"--samples {args.samples} must be at least --batch {args.batch}")
    if args.repeat < 1 or args.val_samples < 1:
        raise SystemExit("--repeat and --val-samples must be at least 1")
    if args.work:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
        args.keep = True
    else:
        work = Path(tempfile.mkdtemp(prefix="medtune-bench-train-"))
    steps = math.ceil(args.samples / args.batch)
    base = [
        f"model.name_or_path={args.model}",
        f"data.raw_file={work / 'synthetic_qa.jsonl'}",
        f"output_root={work}",
        "run_name=bench",
        f"data.seed={args.seed}",
        f"train.cutoff_len={args.max_len}",
        f"train.batch_size={args.batch}",
        "train.grad_accum=1",
        f"train.max_steps={steps}",
        "train.report_to=[]",
        f"train.seed={args.seed}",
        # The bench scores validation itself (same loss, same samples for both arms); the trainer's own
        # end-of-epoch evaluation runs on one sample and no checkpoint is written inside the timed loop.
        "train.max_eval_samples=1",
        "train.load_best_at_end=false",
        "train.save_steps=1000000",
    ]
    try:
        print(f"machine: {cpu_summary()}; torch threads {torch.get_num_threads()}; load avg {loadavg()}")
        t0 = time.perf_counter()
        data_key = {
            k: getattr(args, k) for k in ("model", "samples", "max_len", "batch", "val_samples", "seed")
        }
        info_path = work / "data_info.json"
        if info_path.is_file() and json.loads(info_path.read_text(encoding="utf-8"))["key"] == data_key:
            data = json.loads(info_path.read_text(encoding="utf-8"))["info"]
            print(f"data: reused from {work}")
        else:
            from _train_data import prepare_data

            data = prepare_data(args, work, base)
            info_path.write_text(json.dumps({"key": data_key, "info": data}), encoding="utf-8")
        tr, va = data["train"], data["val"]
        print(
            f"data: {data['generated']} synthetic records -> medtune data prepare -> {tr['samples']} train "
            f"samples, {tr['tokens']} tokens (min {tr['min']}, median {tr['median']}, p90 {tr['p90']}, max "
            f"{tr['max']}; {tr['set_aside_overlong']} over {args.max_len} set aside) and {va['samples']} "
            f"validation samples ({va['tokens']} tokens) [{time.perf_counter() - t0:.0f} s]"
        )
        peaks = {"fp32_before": matmul_gflops("float32"), "bf16": matmul_gflops("bfloat16", repeat=2)}
        print(f"matmul peak: fp32 {peaks['fp32_before']:.1f} GFLOP/s, bf16 {peaks['bf16']:.2f} GFLOP/s")
        arms = [("a", "a", base), ("b", "b", base)]
        from medtune.config import load_config

        for label, extra in args.variant:
            overrides = base + extra
            if load_config(None, overrides).train.packing:
                # Packed rows hold several samples: one epoch, not a step count, gives the same samples.
                overrides = [*overrides, "train.max_steps=-1", "train.num_epochs=1"]
            load_config(None, overrides)  # a bad override fails here, before any arm runs
            arms.append(("b", f"b+{label}", overrides))
        # Rounds of all arms, one after the other, so a burst of load from other tenants hits every arm
        # alike; each arm keeps its fastest round.
        best: dict[str, dict] = {}
        for round_ in range(args.repeat):
            for arm, label, overrides in arms:
                print(f"arm {label}: training {args.samples} samples (load avg {loadavg()}) ...", flush=True)
                r = run_arm(arm, label, overrides, args, work, round_)
                print(
                    f"arm {label}: {r['train_s']:.1f} s in the loop ({r['train_cpu_s']:.1f} CPU s), "
                    f"{r['real'] / r['train_s']:.1f} real tok/s [{r['wall_s']:.0f} s with loading and scoring]",
                    flush=True,
                )
                r["rounds_s"] = [*best.get(label, {}).get("rounds_s", []), round(r["train_s"], 1)]
                if label not in best or r["train_s"] < best[label]["train_s"]:
                    best[label] = r
                else:
                    best[label]["rounds_s"] = r["rounds_s"]
        results = [best[label] for _, label, _ in arms]
        peaks["fp32_after"] = matmul_gflops("float32")
        print(f"\nmodel {args.model}, {args.samples} samples, batch {args.batch}, max length {args.max_len}:")
        from _train_arms import report

        report(results, peaks)
        if args.json:
            from medtune.io import write_json

            write_json(args.json, {"data": data, "peaks": peaks, "arms": results})
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="demo", help="tiny, demo or a model folder/.gguf (default: demo)")
    parser.add_argument("--samples", type=int, default=32, help="training samples, one pass (default: 32)")
    parser.add_argument("--max-len", type=int, default=1024, help="maximum tokens per sample (default: 1024)")
    parser.add_argument("--batch", type=int, default=4, help="sequences per step in both arms (default: 4)")
    parser.add_argument("--val-samples", type=int, default=8, help="held-out samples scored (default: 8)")
    parser.add_argument("--seed", type=int, default=42, help="data, split, LoRA init and order (default: 42)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        type=parse_variant,
        metavar="LABEL:OVERRIDES",
        help="an extra medtune arm with config overrides, e.g. nockpt:train.gradient_checkpointing=false "
        "(repeatable)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of all arms; each arm keeps its fastest (default: 1)"
    )
    parser.add_argument("--base-val", action="store_true", help="also score the untrained model")
    parser.add_argument("--json", help="also write every number to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, logs, adapters)")
    parser.add_argument(
        "--work",
        help="work folder, kept; a rerun with the same settings reuses its data and every finished arm "
        "(an interrupted run resumes)",
    )
    parser.add_argument("--arm", choices=["a", "b"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
