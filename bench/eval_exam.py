"""Benchmark exam scoring by option-letter likelihood: medtune's batched scorer vs one question at a time.

    .venv/bin/python bench/eval_exam.py                     # demo model, 200 shipped exam items, zero-shot
    .venv/bin/python bench/eval_exam.py --shots 3 --n 100   # 3-shot (examples from the shipped dev file)
    .venv/bin/python bench/eval_exam.py --model tiny        # plumbing check in seconds

Arms, on the same items and the same prompts (the run's system prompt, the question, "答案：" prefilled):

- ``batched``: ``medtune.eval.exam.LetterScorer`` as ``medtune eval`` runs it: the shared prompt prefix
  computed once and its KV cache reused, questions right-padded in batches, the LM head on one position
  and the option letters only;
- ``one-at-a-time``: the straightforward loop: each question's full prompt through the model, full logits,
  the letters read at the last position;
- ``per-option``: what evaluation harnesses do for multiple choice: one sequence per option (the prompt
  followed by that option's letter), the continuation's log-likelihood compared across options.

It prints questions/s, the ratios against one-at-a-time, and whether the three arms predict the same
letters (they compute the same probabilities, so they must). Run it alone: other work on this 2-core
machine slows it 2-4x.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_summary, loadavg, table  # noqa: E402

EXAMS = ROOT / "data" / "exams" / "medexam_zh.jsonl"
DEV = ROOT / "data" / "exams" / "medexam_zh_dev.jsonl"


def load_engine(name: str):
    from medtune.config import ModelConfig
    from medtune.model.loader import load_model
    from medtune.serve.engine import ChatEngine

    if name == "tiny":
        from medtune.model.tiny import build_qwen25_tokenizer, ensure_tiny_model_dir

        cache = Path(os.environ.get("MEDTUNE_CACHE", Path.home() / ".cache" / "medtune"))
        build_qwen25_tokenizer(cache)
        name = str(ensure_tiny_model_dir(cache))
    model, tok, resolved = load_model(ModelConfig(name_or_path=name, dtype="float32"))
    return ChatEngine(model, tok, name=resolved.display_name)


def one_at_a_time(engine, items, shots):
    import torch

    from medtune.eval.exam import PREFILL, letter_token_ids, user_message

    preds = []
    with torch.inference_mode():
        for item in items:
            text = engine.prompt_text(user_message(item, shots)) + PREFILL
            ids = torch.tensor([engine.tokenizer.encode(text, add_special_tokens=False)])
            probs = torch.softmax(engine.model(input_ids=ids).logits[0, -1].float(), -1)
            # A letter may be spelled "A" or " A": its probability is that of either spelling.
            letters = letter_token_ids(engine.tokenizer, "".join(item.options))
            preds.append(max(letters, key=lambda k: sum(float(probs[t]) for t in letters[k])))
    return preds


def per_option(engine, items, shots):
    import torch

    from medtune.eval.exam import PREFILL, letter_token_ids, user_message

    preds = []
    with torch.inference_mode():
        for item in items:
            text = engine.prompt_text(user_message(item, shots)) + PREFILL
            prompt = engine.tokenizer.encode(text, add_special_tokens=False)
            scores = {}
            for letter, spellings in letter_token_ids(engine.tokenizer, "".join(item.options)).items():
                # One sequence per continuation (each spelling of each option), as harnesses do.
                logps = []
                for token in spellings:
                    ids = torch.tensor([[*prompt, token]])
                    logp = torch.log_softmax(engine.model(input_ids=ids).logits[0, -2].float(), -1)
                    logps.append(logp[token])
                scores[letter] = float(torch.logsumexp(torch.stack(logps), 0))
            preds.append(max(scores, key=scores.get))
    return preds


def batched(engine, items, shots, batch_size):
    from medtune.eval.exam import LetterScorer

    scorer = LetterScorer(engine.model, engine.tokenizer, engine.prompt_text, batch_size)
    got = {it.id: r.predicted[0] for it, r in scorer.score(items, shots)}
    return [got[it.id] for it in items]


def main(argv: list[str] | None = None) -> int:
    import torch

    from medtune.config import EvalSetConfig
    from medtune.eval.sets import load_set

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="demo (the embedded model), tiny, or a model folder")
    ap.add_argument("--n", type=int, default=200, help="exam items (single-answer ones are used)")
    ap.add_argument("--shots", type=int, default=0, help="solved examples before each question")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--per-option-n", type=int, default=50, help="items for the slow per-option arm (scaled)")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    spec = EvalSetConfig(name="bench", kind="exam", path=str(EXAMS), dev_path=str(DEV), shots=args.shots)
    exam = load_set(spec)
    items = [i for i in exam.items if not i.multi][: args.n]
    engine = load_engine(args.model)
    print(
        f"{engine.name}; {len(items)} single-answer items, {args.shots}-shot; {cpu_summary()}; load {loadavg()}"
    )
    batched(engine, items[:2], exam.dev, args.batch_size)  # warm-up: first-call allocations and kernels

    rows, timings, preds = [], {}, {}
    arms = [
        ("batched", lambda its: batched(engine, its, exam.dev, args.batch_size), len(items)),
        ("one-at-a-time", lambda its: one_at_a_time(engine, its, exam.dev), len(items)),
        ("per-option", lambda its: per_option(engine, its, exam.dev), min(len(items), args.per_option_n)),
    ]
    for name, fn, n in arms:
        t0 = time.perf_counter()
        preds[name] = fn(items[:n])
        timings[name] = (time.perf_counter() - t0, n)
    base_qps = timings["one-at-a-time"][1] / timings["one-at-a-time"][0]
    for name, (secs, n) in timings.items():
        qps = n / secs
        agree = sum(a == b for a, b in zip(preds[name], preds["one-at-a-time"]))
        acc = sum(p in it.answer for p, it in zip(preds[name], items)) / n
        rows.append(
            [
                name,
                str(n),
                f"{secs:.1f}",
                f"{qps:.2f}",
                f"{qps / base_qps:.2f}x",
                f"{agree}/{n}",
                f"{acc:.3f}",
            ]
        )
    print(
        table(rows, ["arm", "items", "seconds", "questions/s", "vs one-at-a-time", "same letter", "accuracy"])
    )
    ok = (
        timings["batched"][1] / timings["batched"][0] >= 3 * base_qps
        and rows[0][5] == f"{len(items)}/{len(items)}"
    )
    print(f"target (batched >= 3x one-at-a-time, identical predictions): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
