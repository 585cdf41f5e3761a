"""`run_eval` end to end on the tiny model: both models answer, the report carries compliance numbers."""

import json

import pytest


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model_dir):
    from medtune.config import load_config
    from medtune.data.prepare import prepare
    from medtune.eval.run import run_eval
    from medtune.train.sft import run_sft
    from tests.conftest import ROOT, SAMPLE_THREE_PART

    out = tmp_path_factory.mktemp("eval")
    cfg = load_config(
        ROOT / "configs" / "tiny" / "lora_sft.yaml",
        [
            f"model.name_or_path={tiny_model_dir}",
            f"data.raw_file={SAMPLE_THREE_PART}",
            f"output_root={out}",
            "train.max_steps=2",
            "train.eval_steps=2",
            "train.save_steps=2",
            "eval.num_questions=3",
        ],
    )
    prepare(cfg)
    run_sft(cfg)
    return cfg, run_eval(cfg)


def test_eval_writes_reports_with_compliance_for_both_models(evaluated):
    cfg, results = evaluated
    out = cfg.run_dir / "eval"
    for name in ("report.md", "report.html", "metrics.json", "answers.jsonl", "compliance.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for label in ("base", "tuned"):
        m = metrics["models"][label]
        assert 0.0 <= m["compliance_rate"] <= 1.0
        assert m["perplexity"] > 1.0
        assert 0.0 <= m["cut_off_rate"] <= 1.0
    assert metrics["num_questions"] == 3
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Three-part structure compliance" in md and "| metric | base | tuned |" in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<table>" in html and "data:image/png;base64," in html


def test_answers_file_has_both_answers_per_question(evaluated):
    cfg, _ = evaluated
    rows = [
        json.loads(x)
        for x in (cfg.run_dir / "eval" / "answers.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(rows) == 3
    assert all({"question", "reference", "base", "tuned"} <= row.keys() for row in rows)


def test_tuned_and_base_perplexities_differ(evaluated):
    _, results = evaluated
    assert results["models"]["base"]["val_loss"] != results["models"]["tuned"]["val_loss"]
