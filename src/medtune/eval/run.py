"""``medtune eval``: every configured model on every evaluation set, side by side, with error bars.

    medtune eval CONFIG [--set NAME ...] [--models base,tuned,...] [--limit N]

Sets are the run's own validation split (``val``) and any files in ``eval.sets``: open questions (answered
in free text, scored for form, overlap with a reference, safety) and multiple-choice exams (scored by
option-letter likelihood and/or generation). Models are ``base``, ``tuned`` (this run's adapter), other
adapters, other checkpoints and OpenAI-compatible endpoints. Every answer and score is stored per item as
it is made (``eval/cache/``), so an interrupted evaluation resumes and a finished one only rewrites the
report: ``report.html``, ``report.md`` and ``metrics.json`` (``sets.<set>.<model>.<metric>``, each rate
with ``n`` and ``ci95``) under ``<run_dir>/eval/``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from medtune.config import Config, ConfigError, EvalModelConfig
from medtune.data.schema import QARecord
from medtune.eval import judge as judging
from medtune.eval.exam import ExamResult, LetterScorer, score_generated, user_message
from medtune.eval.models import EndpointModel, EvalModelError, LocalModels, model_identity
from medtune.eval.scoring import add_paired, exam_metrics, open_metrics
from medtune.eval.sets import EvalSet, EvalSetError, OpenItem, load_set
from medtune.eval.store import ResultStore, stable_hash
from medtune.io import write_json, write_jsonl
from medtune.prompts import SYSTEM_PROMPT, build_messages
from medtune.serve.engine import GenerationSettings

logger = logging.getLogger(__name__)

__all__ = ["EvalModelError", "EvalSetError", "run_eval"]


# ---------------------------------------------------------------------------------------------
# What to evaluate


def resolve_sets(cfg: Config, names: list[str] | None, limit: int | None) -> list[EvalSet]:
    known = (["val"] if cfg.eval.val_set else []) + [s.name for s in cfg.eval.sets]
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise ConfigError(
            f"--set {', '.join(unknown)}: no such evaluation set; configured: {', '.join(known)}"
        )
    wanted = names or known
    sets: list[EvalSet] = []
    if "val" in wanted:
        from medtune.data.prepare import load_split

        records = load_split(cfg, "val")
        cap = [c for c in (cfg.eval.num_questions, limit) if c]
        records = records[: min(cap)] if cap else records
        items = [OpenItem(r.id, r.question, r.answer, r.source, r.department) for r in records]
        sets.append(EvalSet("val", "open", str(cfg.data_dir / "val.jsonl"), items, has_references=True))
    for spec in cfg.eval.sets:
        if spec.name in wanted:
            sets.append(load_set(spec, limit, cfg.eval.exam_shots))
    return sets


def resolve_models(cfg: Config, names: list[str] | None) -> list[EvalModelConfig]:
    from medtune.config import model_spec

    specs: list[EvalModelConfig] = list(cfg.eval.models)  # type: ignore[arg-type]
    if not names:
        return specs
    by_name = {s.name: s for s in specs}
    out = []
    for name in names:
        if name in by_name:
            out.append(by_name[name])
        else:  # a folder named on the command line
            spec = model_spec(name)
            if spec.kind not in ("base", "tuned") and not Path(name).exists():
                raise ConfigError(
                    f"--models {name}: not a configured model ({', '.join(by_name)}) nor a folder"
                )
            out.append(spec)
    return out


# ---------------------------------------------------------------------------------------------
# Producing answers and scores (each stored per item as soon as it exists)


class Evaluator:
    def __init__(self, cfg: Config, store: ResultStore) -> None:
        self.cfg = cfg
        self.store = store
        ev = cfg.eval
        self.settings = GenerationSettings(
            max_new_tokens=ev.max_new_tokens,
            temperature=ev.temperature,
            repetition_penalty=ev.repetition_penalty,
        )
        self.exam_settings = dataclasses.replace(self.settings, max_new_tokens=ev.exam_max_new_tokens)
        self.system_prompt = cfg.system_prompt or SYSTEM_PROMPT
        self.usage: dict[str, dict[str, int]] = {}

    # -- keys --------------------------------------------------------------------------------------
    def open_key(self, identity: str, item: OpenItem) -> str:
        return stable_hash(
            ["open", identity, self.system_prompt, item.question, dataclasses.asdict(self.settings)]
        )

    def exam_key(self, identity: str, es: EvalSet, item, scorer: str) -> str:
        settings = dataclasses.asdict(self.exam_settings) if scorer != "likelihood" else None
        prompt = user_message(item, es.dev, generate=scorer != "likelihood")
        return stable_hash(
            ["exam", identity, scorer, self.system_prompt, prompt, sorted(item.answer), settings]
        )

    def scorers(self, spec: EvalModelConfig) -> list[str]:
        if spec.kind == "endpoint":
            return ["generate"]
        return {"likelihood": ["likelihood"], "generate": ["generate"], "both": ["likelihood", "generate"]}[
            self.cfg.eval.exam_scorer
        ]

    def key(self, es: EvalSet, item, identity: str, scorer: str | None) -> str:
        return (
            self.open_key(identity, item) if es.kind == "open" else self.exam_key(identity, es, item, scorer)
        )

    def pending(self, es: EvalSet, spec: EvalModelConfig, identity: str, scorer: str | None = None) -> list:
        cached = self.store.load(es.name, spec.name)
        out = []
        for item in es.items:
            key = self.key(es, item, identity, scorer)
            row = cached.get(key)
            if row is None or row.get("error"):  # failed requests are asked again
                out.append((key, item))
        return out

    def stored(self, es: EvalSet, spec: EvalModelConfig, identity: str, scorer: str | None = None) -> dict:
        """item id -> its stored row, for what has been computed with the current settings."""
        cached = self.store.load(es.name, spec.name)
        keys = {item.id: self.key(es, item, identity, scorer) for item in es.items}
        return {i: cached[k] for i, k in keys.items() if k in cached}

    # -- local models ------------------------------------------------------------------------------
    def run_local(
        self, local: LocalModels, specs: list[EvalModelConfig], sets: list[EvalSet], ids: dict[str, str]
    ):
        for es in sets:
            if es.kind == "open":
                self._local_open(local, specs, es, ids)
            else:
                for spec in specs:
                    for scorer in self.scorers(spec):
                        self._local_exam(local, spec, es, ids[spec.name], scorer)

    def _local_open(self, local: LocalModels, specs, es: EvalSet, ids) -> None:
        from tqdm.auto import tqdm

        per_model = {s.name: self.pending(es, s, ids[s.name]) for s in specs}
        # Interleave models per question: a batch then holds the same questions for every model (similar
        # lengths, little padding), and PEFT serves all of them in one pass over the weights.
        jobs = []
        for i in range(max((len(v) for v in per_model.values()), default=0)):
            for spec in specs:
                if i < len(per_model[spec.name]):
                    jobs.append((spec, *per_model[spec.name][i]))
        if not jobs:
            return
        logger.info(
            "set %s: %d answers to generate (%s)", es.name, len(jobs), ", ".join(s.name for s in specs)
        )
        engine = local.engine
        bs = self.cfg.eval.batch_size
        with tqdm(total=len(jobs), desc=f"{es.name}: answering", unit="answer") as bar:
            for start in range(0, len(jobs), bs):
                chunk = jobs[start : start + bs]
                answers = engine.generate_jobs(
                    [(item.question, local.ref(spec)) for spec, _, item in chunk], self.settings, bs
                )
                by_model = defaultdict(list)
                for (spec, key, item), ans in zip(chunk, answers):
                    by_model[spec.name].append(
                        {
                            "key": key,
                            "item": item.id,
                            "answer": ans.text,
                            "finished": ans.finished,
                            "tokens": ans.num_tokens,
                        }
                    )
                for name, rows in by_model.items():
                    self.store.put_many(es.name, name, rows)
                bar.update(len(chunk))

    def _local_exam(self, local: LocalModels, spec, es: EvalSet, identity: str, scorer: str) -> None:
        from tqdm.auto import tqdm

        todo = self.pending(es, spec, identity, scorer)
        if not todo:
            return
        keys = {id(item): key for key, item in todo}
        items = [item for _, item in todo]
        desc = f"{es.name}: {spec.name} ({scorer})"
        with tqdm(total=len(items), desc=desc, unit="question") as bar:
            if scorer == "likelihood":
                with local.using(spec) as model:
                    engine = local.engine
                    letters = LetterScorer(
                        model, engine.tokenizer, engine.prompt_text, self.cfg.eval.exam_batch_size
                    )
                    buffer = []
                    for item, result in letters.score(items, es.dev):
                        buffer.append(self._exam_row(keys[id(item)], item, scorer, result))
                        if len(buffer) >= self.cfg.eval.exam_batch_size:
                            self.store.put_many(es.name, spec.name, buffer)
                            bar.update(len(buffer))
                            buffer = []
                    self.store.put_many(es.name, spec.name, buffer)
                    bar.update(len(buffer))
                return
            engine = local.engine
            bs = self.cfg.eval.batch_size
            for start in range(0, len(items), bs):
                chunk = items[start : start + bs]
                answers = engine.generate_jobs(
                    [(user_message(i, es.dev, generate=True), local.ref(spec)) for i in chunk],
                    self.exam_settings,
                    bs,
                )
                rows = [
                    self._exam_row(keys[id(i)], i, scorer, score_generated(i, a.text))
                    for i, a in zip(chunk, answers)
                ]
                self.store.put_many(es.name, spec.name, rows)
                bar.update(len(chunk))

    @staticmethod
    def _exam_row(key: str, item, scorer: str, result: ExamResult) -> dict[str, Any]:
        return {"key": key, "item": item.id, "scorer": scorer, **result.as_dict()}

    # -- perplexity --------------------------------------------------------------------------------
    def perplexity(self, local: LocalModels, spec, es: EvalSet, identity: str) -> float | None:
        if es.kind != "open" or not es.has_references:
            return None
        refs = [(i.id, i.question, i.reference) for i in es.items if i.reference]
        key = stable_hash(["ppl", identity, self.system_prompt, refs, self.cfg.train.cutoff_len])
        row = self.store.get(es.name, spec.name, key)
        if row is None:
            records = [QARecord(id=i, question=q, answer=a) for i, q, a in refs]
            with local.using(spec):
                # Small batches of length-sorted samples: little padding, hundreds of rows per matmul anyway.
                loss = local.engine.loss(
                    records, local.ref(spec) is not False, self.cfg.train.cutoff_len, batch_size=4
                )
            row = {"key": key, "item": "__perplexity__", "loss": loss}
            self.store.put_many(es.name, spec.name, [row])
        return row["loss"]

    # -- endpoints -----------------------------------------------------------------------------------
    def run_endpoint(self, spec: EvalModelConfig, sets: list[EvalSet], identity: str) -> None:
        remote = None
        for es in sets:
            todo = self.pending(es, spec, identity, "generate")
            if not todo:
                continue
            remote = remote or EndpointModel.for_eval(self.cfg, spec)
            rows: list[dict[str, Any]] = []

            def done(tag, completion, es=es, rows=rows):
                key, item = tag
                if isinstance(completion, Exception):
                    row = {"key": key, "item": item.id, "error": str(completion)[:300]}
                elif es.kind == "open":
                    row = {
                        "key": key,
                        "item": item.id,
                        "answer": completion.text,
                        "finished": completion.finish_reason != "length",
                        "tokens": completion.completion_tokens,
                    }
                else:
                    result = _from_logprobs(item, completion.logprobs) or score_generated(
                        item, completion.text
                    )
                    row = self._exam_row(key, item, "generate", result)
                rows.append(row)
                if len(rows) >= 8:
                    self.store.put_many(es.name, spec.name, rows)
                    rows.clear()

            if es.kind == "open":
                jobs = [((k, i), build_messages(i.question, None, self.system_prompt)) for k, i in todo]
                budget, params = self.cfg.eval.max_new_tokens, None
            else:
                jobs = [
                    ((k, i), build_messages(user_message(i, es.dev, generate=True), None, self.system_prompt))
                    for k, i in todo
                ]
                budget = self.cfg.eval.exam_max_new_tokens
                params = {"logprobs": True, "top_logprobs": 20} if spec.logprobs else None
            logger.info("set %s: %d requests to %s", es.name, len(jobs), spec.endpoint)
            usage = remote.run(jobs, budget, done, params)
            self.store.put_many(es.name, spec.name, rows)
            total = self.usage.setdefault(spec.name, {"prompt_tokens": 0, "completion_tokens": 0})
            for k, v in usage.items():
                total[k] += v


def _from_logprobs(item, logprobs) -> ExamResult | None:
    """The best option letter among the first generated token's top log-probabilities, if any is there."""
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    for position in content[:4]:  # the letter may follow "答案：" by a token or two
        best = None
        for cand in getattr(position, "top_logprobs", None) or []:
            letter = str(cand.token).strip().upper()
            if letter in item.options and (best is None or cand.logprob > best[1]):
                best = (letter, cand.logprob)
        if best:
            return ExamResult(
                [best[0]], frozenset(best[0]) == item.answer, "logprobs", round(math.exp(best[1]), 4)
            )
    return None


# ---------------------------------------------------------------------------------------------
# The command


def run_eval(
    cfg: Config,
    engine=None,
    sets: list[str] | None = None,
    models: list[str] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    out_dir = cfg.run_dir / "eval"
    store = ResultStore(out_dir / "cache")
    eval_sets = resolve_sets(cfg, sets, limit)
    specs = resolve_models(cfg, models)
    for spec in specs:
        if (
            spec.kind == "tuned"
            and not (cfg.adapter_dir / "adapter_config.json").is_file()
            and engine is None
        ):
            raise EvalModelError(f"{cfg.adapter_dir}: no trained adapter; run `medtune train` first")
    ids = {s.name: model_identity(cfg, s) for s in specs}
    ev = Evaluator(cfg, store)

    local_specs = [s for s in specs if s.kind in ("base", "tuned", "adapter")]
    runtimes: dict[str, LocalModels] = {}
    if local_specs:
        local = LocalModels(cfg, local_specs, engine)
        if any(
            ev.pending(es, s, ids[s.name], sc)
            for es in eval_sets
            for s in local_specs
            for sc in ev.scorers(s)
        ):
            ev.run_local(local, local_specs, eval_sets, ids)
        runtimes.update({s.name: local for s in local_specs})
    losses: dict[tuple[str, str], float | None] = {}
    for spec in local_specs:
        for es in eval_sets:
            losses[(es.name, spec.name)] = ev.perplexity(runtimes[spec.name], spec, es, ids[spec.name])
    for spec in (s for s in specs if s.kind == "checkpoint"):
        runtime = LocalModels(cfg, [spec], checkpoint=spec.checkpoint)
        ev.run_local(runtime, [spec], eval_sets, ids)
        for es in eval_sets:
            losses[(es.name, spec.name)] = ev.perplexity(runtime, spec, es, ids[spec.name])
        runtime.close()  # a full second model: free it before the next one
    for spec in (s for s in specs if s.kind == "endpoint"):
        ev.run_endpoint(spec, eval_sets, ids[spec.name])

    for spec in specs:
        if spec.name in ev.usage:
            u = ev.usage[spec.name]
            u["cost"] = round(
                u["prompt_tokens"] / 1e6 * spec.price_input_per_mtok
                + u["completion_tokens"] / 1e6 * spec.price_output_per_mtok,
                4,
            )
    return summarise(cfg, ev, eval_sets, specs, ids, losses, out_dir)


def summarise(cfg, ev: Evaluator, eval_sets, specs, ids, losses, out_dir: Path) -> dict[str, Any]:
    from medtune.eval.report import write_reports

    safety = None
    try:
        from medtune.safety import default_engine

        safety = default_engine()
    except ImportError:  # the safety layer is optional at this stage of the pipeline
        pass
    base = "base" if any(s.name == "base" for s in specs) else specs[0].name
    results: dict[str, Any] = {
        "models": {s.name: {"kind": s.kind, "identity": ids[s.name]} for s in specs},
        "baseline": base,
        "sets": {},
        "set_info": {},
        "judge": {},
        "settings": {
            "max_new_tokens": ev.settings.max_new_tokens,
            "temperature": ev.settings.temperature,
            "exam_scorer": cfg.eval.exam_scorer,
            "exam_shots": cfg.eval.exam_shots,
        },
        "endpoint_usage": ev.usage,
    }
    answers: dict[str, dict[str, dict]] = {}
    per_item_by_set: dict[str, dict] = {}
    for es in eval_sets:
        metrics: dict[str, dict] = {}
        per_item: dict[str, dict] = {}
        answers[es.name] = {}
        for spec in specs:
            if es.kind == "open":
                rows = ev.stored(es, spec, ids[spec.name])
                metrics[spec.name], per_item[spec.name] = open_metrics(es, rows, safety)
                loss = losses.get((es.name, spec.name))
                if loss is not None:
                    metrics[spec.name]["val_loss"] = {
                        "value": loss,
                        "n": sum(1 for i in es.items if i.reference),
                    }
                    metrics[spec.name]["perplexity"] = {
                        "value": math.exp(min(loss, 50)),
                        "n": metrics[spec.name]["val_loss"]["n"],
                    }
            else:
                metrics[spec.name], per_item[spec.name] = {}, {}
                for i, scorer in enumerate(ev.scorers(spec)):
                    suffix = "" if i == 0 else "_generate"
                    rows = ev.stored(es, spec, ids[spec.name], scorer)
                    m, p = exam_metrics(es, rows, suffix)
                    metrics[spec.name].update(m)
                    for k, v in p.items():
                        per_item[spec.name].setdefault(k, {})[
                            "correct" if not suffix else "correct_generate"
                        ] = v["correct"]
                    metrics[spec.name].setdefault("scorer", scorer)
            answers[es.name][spec.name] = rows
        add_paired(metrics, per_item, base)
        results["sets"][es.name] = metrics
        results["set_info"][es.name] = {
            "kind": es.kind,
            "path": es.path,
            "items": len(es.items),
            "problems": len(es.problems),
            "problem_examples": [dataclasses.asdict(p) for p in es.problems[:20]],
            "shots": es.shots,
            "has_references": es.has_references,
        }
        per_item_by_set[es.name] = per_item
    if cfg.eval.judge.enabled:
        results["judge"] = judging.run_judge(cfg, ev, eval_sets, answers)
    rows_out = answer_rows(eval_sets, specs, answers, per_item_by_set)
    write_jsonl(out_dir / "answers.jsonl", rows_out)
    write_json(out_dir / "metrics.json", results)
    write_reports(out_dir, results, rows_out)
    results["report_dir"] = str(out_dir)
    return results


def answer_rows(eval_sets, specs, answers, per_item) -> list[dict[str, Any]]:
    rows = []
    for es in eval_sets:
        for item in es.items:
            row: dict[str, Any] = {"set": es.name, "kind": es.kind, "id": item.id, "question": item.question}
            if es.kind == "open":
                row["reference"] = item.reference
                for spec in specs:
                    got = answers[es.name][spec.name].get(item.id) or {}
                    row[spec.name] = got.get("answer", got.get("error"))
                    row[f"{spec.name}_scores"] = per_item[es.name][spec.name].get(item.id)
            else:
                row["options"] = item.options
                row["answer"] = "".join(sorted(item.answer))
                row["subset"] = item.subset
                for spec in specs:
                    got = answers[es.name][spec.name].get(item.id) or {}
                    row[spec.name] = "".join(got.get("predicted") or []) or None
                    row[f"{spec.name}_correct"] = got.get("correct")
            rows.append(row)
    return rows
