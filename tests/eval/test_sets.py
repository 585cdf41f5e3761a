"""Exam and open sets in the common forms, read without conversion; bad rows counted, bad files named."""

import json

import pytest

from medtune.config import ConfigError, EvalSetConfig, load_config
from medtune.eval.sets import EvalSetError, load_set
from tests.conftest import write_jsonl


def exam(path, **kw):
    return load_set(EvalSetConfig(name="x", kind="exam", path=str(path), **kw))


def test_options_dict_single_and_multiple_answers(tmp_path):
    p = write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"question": "q1", "options": {"A": "a", "B": "b", "C": "c"}, "answer": "B", "subset": "s1"},
            {"question": "q2", "options": {"A": "a", "B": "b", "C": "c"}, "answer": "A、C", "subset": "s2"},
            {"question": "q3", "options": ["x", "y"], "answer": ["B"]},
        ],
    )
    s = exam(p)
    assert [sorted(i.answer) for i in s.items] == [["B"], ["A", "C"], ["B"]]
    assert s.items[1].multi and not s.items[0].multi
    assert [i.subset for i in s.items] == ["s1", "s2", None]
    assert s.items[2].options == {"A": "x", "B": "y"}


def test_cmmlu_csv_in_gb18030(tmp_path):
    p = tmp_path / "cmmlu.csv"
    p.write_bytes(
        "Question,A,B,C,D,Answer\n高血压的诊断标准是,140/90,120/80,160/100,130/85,A\n".encode("gb18030")
    )
    s = exam(p)
    assert len(s.items) == 1 and s.items[0].question == "高血压的诊断标准是"
    assert s.items[0].options["C"] == "160/100" and s.items[0].answer == frozenset("A")


def test_cnmleqa_op_columns(tmp_path):
    p = write_jsonl(
        tmp_path / "c.jsonl", [{"question": "q", "opa": "1", "opb": "2", "opc": "3", "answer": "opb"}]
    )
    item = exam(p).items[0]
    assert item.options == {"A": "1", "B": "2", "C": "3"} and item.answer == frozenset("B")


def test_options_embedded_in_the_question(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [{"question": "哪项正确？\n(A) 甲\n(B) 乙\n(C) 丙", "answer": "C"}])
    item = exam(p).items[0]
    assert item.question == "哪项正确？" and item.options == {"A": "甲", "B": "乙", "C": "丙"}


def test_unscorable_items_are_counted_with_their_line(tmp_path):
    p = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"question": "ok", "options": {"A": "a", "B": "b"}, "answer": "A"},
            {"options": {"A": "a", "B": "b"}, "answer": "A"},
            {"question": "q", "options": {"A": "a", "B": "b"}, "answer": "F"},
            {"question": "q", "answer": "A"},
            {"question": "q", "options": {"A": "a", "B": "b"}, "answer": ""},
            {"question": "q", "options": {"A": "a", "B": "b"}},
        ],
    )
    s = exam(p)
    assert len(s.items) == 1
    reasons = {p.where.rsplit(":", 1)[1]: p.reason for p in s.problems}
    assert reasons["2"] == "missing question"
    assert "F" in reasons["3"] and "no option" in reasons["3"]
    assert "options missing" in reasons["4"]
    assert reasons["5"] == "empty answer"
    assert "missing answer field" in reasons["6"]


def test_a_malformed_file_is_one_line_naming_file_and_line(tmp_path):
    p = tmp_path / "broken.jsonl"
    p.write_text(json.dumps({"question": "q", "options": {"A": "a", "B": "b"}, "answer": "A"}) + "\n{oops\n")
    with pytest.raises(EvalSetError, match=r"broken\.jsonl:2: malformed JSON"):
        exam(p)
    with pytest.raises(EvalSetError, match="not found"):
        exam(tmp_path / "missing.jsonl")


def test_open_set_with_mapped_columns_and_limit(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text("title,ask,answer\n头痛,三天了怎么办,多休息\n咳嗽,一周了,多喝水\n", encoding="utf-8")
    spec = EvalSetConfig(name="p", kind="open", path=str(p), question_fields=["title", "ask"])
    s = load_set(spec, limit=1)
    assert (
        len(s.items) == 1 and s.items[0].question == "头痛\n三天了怎么办" and s.items[0].reference == "多休息"
    )
    assert s.has_references


def test_k_shot_needs_dev_examples(tmp_path):
    item = {"question": "q", "options": {"A": "a", "B": "b"}, "answer": "A"}
    p = write_jsonl(tmp_path / "e.jsonl", [item])
    with pytest.raises(EvalSetError, match="dev_path"):
        exam(p, shots=2)
    dev = write_jsonl(tmp_path / "dev.jsonl", [item, {**item, "answer": "B"}])
    assert len(exam(p, shots=2, dev_path=str(dev)).dev) == 2


def test_sets_and_models_are_configured_as_lists():
    cfg = load_config(
        None,
        [
            "eval.sets=[{name: cnmle, kind: exam, path: a.jsonl}, {name: patients, kind: open, path: q.csv, question_fields: [title, ask]}]",
            "eval.models=[base, tuned, {name: ref, endpoint: 'http://127.0.0.1:9/v1'}]",
        ],
    )
    assert [s.name for s in cfg.eval.sets] == ["cnmle", "patients"]
    assert [m.kind for m in cfg.eval.models] == ["base", "tuned", "endpoint"]
    with pytest.raises(ConfigError, match="unique"):
        load_config(None, ["eval.sets=[{name: a, path: x}, {name: a, path: y}]"])
    with pytest.raises(ConfigError, match="kind"):
        load_config(None, ["eval.sets=[{name: a, kind: quiz, path: x}]"])
    with pytest.raises(ConfigError, match="challenger:baseline"):
        load_config(None, ["eval.judge.enabled=true", "eval.judge.pairs=[tuned:other]"])


def test_every_set_named_by_a_shipped_config_is_there_and_scorable():
    from tests.conftest import ROOT

    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        if "accelerate" in path.parts:
            continue
        for spec in load_config(path).eval.sets:
            s = load_set(spec)
            assert s.items and not s.problems, f"{path}: set {spec.name}"
            assert len(s.dev) == (spec.shots or 0)
