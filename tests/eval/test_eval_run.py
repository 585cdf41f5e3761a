"""`medtune eval` end to end on the tiny model: every set and model, intervals, resume, endpoints, judge."""

import json
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, SAMPLE_THREE_PART, THREE_PART_ANSWER, write_jsonl

EXAM_ROWS = [
    {"question": f"第{i}题：下列哪项正确？", "options": {"A": "甲", "B": "乙", "C": "丙", "D": "丁"}, "answer": "ABCD"[i % 4],
     "subset": "s1" if i % 2 else "s2"}
    for i in range(6)
] + [
    {"question": "多选：哪些正确？", "options": {"A": "甲", "B": "乙", "C": "丙"}, "answer": "AC", "subset": "s1"},
    {"question": "答案字母错了", "options": {"A": "甲", "B": "乙"}, "answer": "Z"},
]  # fmt: skip


def make_config(root, tiny_model_dir, *extra):
    from medtune.config import load_config

    exam = write_jsonl(root / "sets" / "exam.jsonl", EXAM_ROWS)
    patients = root / "sets" / "patients.csv"
    patients.write_bytes(
        "title,ask,doctor\n胸痛,胸口疼出冷汗二十分钟了,立即拨打120\n咳嗽,咳嗽一周怎么办,多喝水\n".encode(
            "gb18030"
        )
    )
    overrides = [
        f"model.name_or_path={tiny_model_dir}",
        f"data.raw_file={SAMPLE_THREE_PART}",
        f"output_root={root / 'runs'}",
        "train.max_steps=2",
        "train.eval_steps=2",
        "train.save_steps=2",
        "eval.num_questions=3",
        "eval.max_new_tokens=12",
        "eval.exam_max_new_tokens=6",
        "eval.exam_scorer=both",
        f"eval.sets=[{{name: exam, kind: exam, path: '{exam}'}}, "
        f"{{name: patients, kind: open, path: '{patients}', question_fields: [title, ask], reference_fields: [doctor]}}]",
        *extra,
    ]
    return load_config(ROOT / "configs" / "tiny" / "lora_sft.yaml", overrides), overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    from medtune.data.prepare import prepare
    from medtune.train.sft import run_sft

    root = tmp_path_factory.mktemp("eval")
    cfg, overrides = make_config(root, tiny_model_dir)
    prepare(cfg)
    run_sft(cfg)
    return root, cfg, overrides


@pytest.fixture(scope="module")
def evaluated(trained):
    from medtune.eval.run import run_eval

    _, cfg, _ = trained
    return cfg, run_eval(cfg)


def test_metrics_json_has_every_set_model_and_metric_with_n_and_interval(evaluated):
    cfg, _ = evaluated
    metrics = json.loads((cfg.run_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["sets"]) == {"val", "exam", "patients"}
    for model in ("base", "tuned"):
        acc = metrics["sets"]["exam"][model]["accuracy"]
        assert acc["n"] == 7 and 0 <= acc["ci95"][0] <= acc["value"] <= acc["ci95"][1] <= 1
        assert metrics["sets"]["exam"][model]["accuracy_generate"]["n"] == 7
        assert set(metrics["sets"]["exam"][model]["accuracy_by_subset"]) == {"s1", "s2"}
        for name in ("compliance_rate", "cut_off_rate", "repetition_rate", "rouge_l", "perplexity"):
            assert "value" in metrics["sets"]["val"][model][name], name
        assert metrics["sets"]["patients"][model]["red_flag_referral_rate"]["n"] == 1
    tuned = metrics["sets"]["exam"]["tuned"]["accuracy"]
    assert {"delta_vs_base", "mcnemar_p_vs_base", "paired_n"} <= tuned.keys()
    assert metrics["set_info"]["exam"]["problems"] == 1
    assert "Z" in metrics["set_info"]["exam"]["problem_examples"][0]["reason"]
    assert (
        metrics["sets"]["val"]["tuned"]["val_loss"]["value"]
        != metrics["sets"]["val"]["base"]["val_loss"]["value"]
    )


def test_reports_and_answers_are_written(evaluated):
    cfg, _ = evaluated
    out = cfg.run_dir / "eval"
    for name in (
        "report.md",
        "report.html",
        "metrics.json",
        "answers.jsonl",
        "chart_exam.png",
        "chart_val.png",
    ):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 3 and "Accuracy per subset" in html
    assert "could not be scored" in html and "worst regressions" in html
    rows = [json.loads(x) for x in (out / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["set"] for r in rows} == {"val", "exam", "patients"}
    exam_rows = [r for r in rows if r["set"] == "exam"]
    assert all({"base", "tuned", "base_correct", "answer", "options"} <= r.keys() for r in exam_rows)


def test_a_finished_evaluation_loads_no_model(trained, evaluated, monkeypatch):
    from medtune.eval import models
    from medtune.eval.run import run_eval

    _, first = evaluated
    _, cfg, _ = trained

    def no_model(self):
        raise AssertionError("a finished evaluation must not load a model")

    monkeypatch.setattr(models.LocalModels, "engine", property(no_model))
    again = run_eval(cfg)
    for set_name in ("val", "exam", "patients"):
        assert again["sets"][set_name] == first["sets"][set_name]


def test_an_interrupted_evaluation_computes_only_what_is_missing(trained, evaluated, monkeypatch):
    from medtune.eval import run as run_module
    from medtune.eval.run import run_eval

    cfg, first = evaluated
    cache = cfg.run_dir / "eval" / "cache" / "exam" / "tuned.jsonl"
    lines = cache.read_text(encoding="utf-8").splitlines()
    # Keep 3 rows, and a half-written last line as a kill mid-write leaves it.
    cache.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20], encoding="utf-8")
    scored = []
    real = run_module.LetterScorer.score

    def counting(self, items, shots):
        scored.extend(i.id for i in items)
        return real(self, items, shots)

    monkeypatch.setattr(run_module.LetterScorer, "score", counting)
    again = run_eval(cfg)
    kept = {json.loads(line)["item"] for line in lines[:3] if json.loads(line)["scorer"] == "likelihood"}
    assert len(scored) == 7 - len(kept) and not kept & set(scored)
    assert again["sets"]["exam"]["tuned"]["accuracy"] == first["sets"]["exam"]["tuned"]["accuracy"]


def test_cli_selects_sets_models_and_limit(trained, capsys):
    from medtune.cli import main

    _, _, overrides = trained
    code = main(
        [
            "eval",
            str(ROOT / "configs" / "tiny" / "lora_sft.yaml"),
            *overrides,
            "--set",
            "exam",
            "patients",
            "--models",
            "base",
            "--limit",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "set exam (exam, 2 items" in out and "set patients (open, 2 items" in out and "set val" not in out
    assert "accuracy" in out and "tuned" not in out.split("report:")[0]
    # An adapter folder named on the command line is a model of its own (README: --models base,tuned,DIR).
    _, cfg, _ = trained
    code = main(["eval", str(ROOT / "configs" / "tiny" / "lora_sft.yaml"), *overrides, "--set", "exam", "--limit", "2",
                 "--models", f"base,{cfg.adapter_dir}"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "    adapter      " in out and "Δ" in out
    assert main(["eval", str(ROOT / "configs" / "tiny" / "lora_sft.yaml"), *overrides, "--set", "nope"]) == 2
    assert "no such evaluation set" in capsys.readouterr().err


def test_endpoint_models_and_the_judge_through_an_openai_compatible_server(trained, tmp_path, monkeypatch):
    from medtune.eval.run import run_eval
    from tests.fakes.fake_openai import FakeOpenAIServer

    root, _, _ = trained

    def responder(messages):
        text = messages[-1]["content"]
        if "【回答A】" in text:  # the judge: prefers the longer answer, whichever position it is in
            a = text.split("【回答A】")[1].split("【回答B】")[0]
            b = text.split("【回答B】")[1].split("请只输出")[0]
            return json.dumps(
                {"winner": "A" if len(a) > len(b) else "B", "reason": "更详细"}, ensure_ascii=False
            )
        if "选择题" in text:
            return "答案：B。理由略。"
        return THREE_PART_ANSWER

    monkeypatch.setenv("MEDTUNE_EVAL_API_KEY", "test-key")
    monkeypatch.setenv("MEDTUNE_JUDGE_API_KEY", "test-key")
    with FakeOpenAIServer(responder=responder) as server:
        cfg, _ = make_config(
            root,
            trained[1].model.name_or_path,
            f"output_root={root / 'runs'}",
            f"eval.models=[base, tuned, {{name: ref, endpoint: '{server.base_url}', endpoint_model: fake-teacher, price_input_per_mtok: 1.0}}]",
            "eval.judge.enabled=true",
            f"eval.judge.base_url={server.base_url}",
            "eval.judge.pairs=[ref:base, tuned:base]",
        )
        results = run_eval(cfg, sets=["exam", "patients"])
        judged = len([r for r in server.log if "【回答A】" in r["last"]])
    ref = results["sets"]["exam"]["ref"]
    assert ref["accuracy"]["n"] == 7 and ref["accuracy"]["value"] == pytest.approx(
        2 / 7
    )  # items 1 and 5 are B
    assert results["sets"]["patients"]["ref"]["compliance_rate"]["value"] == 1.0
    verdict = results["judge"]["patients"]["ref:base"]
    # The three-part answer is longer than the tiny model's 12 tokens: the judge agrees in both orders.
    assert verdict["win"]["value"] == 1.0 and verdict["n"] == 2 and verdict["invalid"] == 0
    assert judged == 8  # 2 questions x 2 pairs x both orders
    assert "Judge" in (cfg.run_dir / "eval" / "report.md").read_text(encoding="utf-8")
    usage = results["endpoint_usage"]["ref"]
    assert usage["prompt_tokens"] > 0 and usage["cost"] == pytest.approx(
        usage["prompt_tokens"] / 1e6, abs=1e-4
    )


def test_a_position_biased_judge_gives_ties(trained, monkeypatch):
    from medtune.eval.run import run_eval
    from tests.fakes.fake_openai import FakeOpenAIServer

    root, _, _ = trained
    monkeypatch.setenv("MEDTUNE_JUDGE_API_KEY", "test-key")
    with FakeOpenAIServer(responder=lambda m: '{"winner": "A", "reason": "第一个更好"}') as server:
        cfg, _ = make_config(
            root,
            trained[1].model.name_or_path,
            "eval.judge.enabled=true",
            f"eval.judge.base_url={server.base_url}",
        )
        results = run_eval(cfg, sets=["patients"])
    verdict = results["judge"]["patients"]["tuned:base"]
    assert verdict["tie"]["value"] == 1.0 and verdict["win"]["value"] == 0.0


def test_a_failing_endpoint_is_counted_not_fatal(trained, tmp_path, monkeypatch):
    from medtune.eval.run import run_eval
    from tests.fakes.fake_openai import FakeOpenAIServer

    root, _, _ = trained
    monkeypatch.setenv("MEDTUNE_EVAL_API_KEY", "wrong-key")
    with FakeOpenAIServer() as server:
        cfg, _ = make_config(
            root,
            trained[1].model.name_or_path,
            f"output_root={tmp_path}",
            f"eval.models=[{{name: broken, endpoint: '{server.base_url}'}}]",
            "eval.val_set=false",
        )
        results = run_eval(cfg, sets=["exam"])
    m = results["sets"]["exam"]["broken"]
    assert m["errors"]["value"] == 7 and m["accuracy"]["n"] == 0
    assert (cfg.run_dir / "eval" / "report.html").is_file()


def test_endpoint_key_must_come_from_the_environment(trained, tmp_path, monkeypatch):
    from medtune.eval.run import EvalModelError, run_eval

    root, _, _ = trained
    monkeypatch.delenv("MEDTUNE_EVAL_API_KEY", raising=False)
    cfg, _ = make_config(
        root, trained[1].model.name_or_path, f"output_root={tmp_path}", "eval.val_set=false",
        "eval.models=[{name: ref, endpoint: 'http://127.0.0.1:9/v1'}]",
    )  # fmt: skip
    with pytest.raises(EvalModelError, match=r"\$MEDTUNE_EVAL_API_KEY"):
        run_eval(cfg, sets=["exam"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package `chromium`)")
def test_the_report_renders_offline_in_a_real_browser(evaluated, tmp_path):
    from medtune.eval.run import run_eval

    cfg, _ = evaluated
    run_eval(cfg)  # every set again (all cached): other tests rewrote the report for a subset
    page = cfg.run_dir / "eval" / "report.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert "Summary" in dom and "Set exam" in dom and "Accuracy per subset" in dom
    shot = cfg.run_dir / "eval" / "report.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_other_adapters_and_checkpoints_are_models_too(trained, evaluated, tmp_path):
    """The run's adapter named as a folder scores like `tuned`; the base weights as a separate checkpoint
    score like `base`: both paths load what they name, nothing else."""
    from medtune.eval.run import run_eval

    root, cfg, _ = trained
    _, first = evaluated
    other, _ = make_config(
        root,
        cfg.model.name_or_path,
        f"output_root={tmp_path}",
        "eval.val_set=false",
        f"eval.models=[base, {{name: same_adapter, adapter: '{cfg.adapter_dir}'}}, "
        f"{{name: same_weights, checkpoint: '{cfg.model.name_or_path}'}}]",
    )
    results = run_eval(other, sets=["exam"])
    exam = results["sets"]["exam"]
    assert results["models"]["same_adapter"]["kind"] == "adapter"
    assert results["models"]["same_weights"]["kind"] == "checkpoint"
    for metric in ("accuracy", "accuracy_generate"):
        assert exam["same_adapter"][metric]["value"] == first["sets"]["exam"]["tuned"][metric]["value"]
        assert exam["same_weights"][metric]["value"] == first["sets"]["exam"]["base"][metric]["value"]


def test_endpoint_logprobs_pick_the_most_probable_option_letter():
    from types import SimpleNamespace as NS

    from medtune.eval.run import _from_logprobs
    from medtune.eval.sets import ExamItem

    item = ExamItem("q", "?", {"A": "a", "B": "b", "C": "c"}, frozenset("C"), "f:1")
    first = NS(
        top_logprobs=[
            NS(token="答案", logprob=-0.1),
            NS(token="B", logprob=-2.0),
            NS(token=" C", logprob=-1.0),
        ]
    )
    got = _from_logprobs(item, NS(content=[first]))
    assert got.predicted == ["C"] and got.correct and got.how == "logprobs"
    assert _from_logprobs(item, None) is None
    assert _from_logprobs(item, NS(content=[NS(top_logprobs=[NS(token="好", logprob=-0.1)])])) is None
