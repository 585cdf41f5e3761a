"""Whole runs against the loopback teacher: outputs, the reject path, cost, resumption and the CLI."""

from __future__ import annotations

import json
import logging

import pytest

from medtune.data.readers import iter_records
from medtune.data.restructure.cli import main
from medtune.data.restructure.prompt import PromptTemplate
from medtune.data.restructure.runner import output_dir, run_restructure
from medtune.data.schema import DataError, QARecord
from tests.data.restructure.conftest import SECRET, sample_rows


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_a_teacher_run_writes_outputs_that_prepare_can_read(fake_server, raw_file, teacher_config):
    server = fake_server()
    cfg = teacher_config(server, raw_file(12))
    summary = run_restructure(cfg)
    assert (summary.ok, summary.rejected, summary.failed) == (12, 0, 0)
    out = output_dir(cfg)
    records = list(iter_records(out / "restructured.jsonl"))
    assert not any(isinstance(r, DataError) for r in records)
    assert [r.id for r in records] == [row["id"] for row in sample_rows(12)]
    assert all(r.answer.startswith("一、病情分析\n") for r in records)
    meta = _rows(out / "restructured.jsonl")[0]["meta"]
    assert meta["prompt_hash"] == PromptTemplate.load().hash
    assert meta["teacher"] == f"fake-teacher@{server.base_url}"
    assert _rows(out / "rejects.jsonl") == []
    assert json.loads((out / "summary.json").read_text())["ok_total"] == 12


def test_failing_rewrites_are_retried_with_the_reasons_then_rejected_never_replaced(
    fake_server, raw_file, teacher_config
):
    server = fake_server()
    target = sample_rows(6)[2]
    server.script("noncompliant", "noncompliant", "noncompliant", match=target["instruction"])
    cfg = teacher_config(server, raw_file(6), "restructure.gate_retries=2")
    summary = run_restructure(cfg)
    assert (summary.ok, summary.rejected, summary.gate_retries) == (5, 1, 2)
    tries = server.requests_for(target["instruction"])
    assert [t["turns"] for t in tries] == [2, 4, 6]  # each retry carries the rewrite and the feedback
    assert "missing section 病情分析" in tries[1]["last"]
    out = output_dir(cfg)
    (reject,) = _rows(out / "rejects.jsonl")
    assert reject["id"] == target["id"] and reject["status"] == "rejected" and reject["attempts"] == 3
    assert "missing section" in reject["reason"]
    assert reject["rewrite"] != target["output"]
    assert target["id"] not in {r["id"] for r in _rows(out / "restructured.jsonl")}


def test_a_rewrite_that_recovers_on_retry_is_kept(fake_server, raw_file, teacher_config):
    server = fake_server()
    target = sample_rows(3)[0]
    server.script("cutoff", match=target["instruction"])
    summary = run_restructure(teacher_config(server, raw_file(3)))
    assert (summary.ok, summary.rejected, summary.gate_retries) == (3, 0, 1)
    assert "cut off" in server.requests_for(target["instruction"])[1]["last"]


@pytest.mark.parametrize(("policy", "ok"), [("reject", 2), ("mark", 3)])
def test_invented_facts_are_rejected_or_marked_by_policy(fake_server, raw_file, teacher_config, policy, ok):
    server = fake_server()
    target = sample_rows(3)[1]
    server.script("unfaithful", "unfaithful", match=target["instruction"])
    cfg = teacher_config(
        server, raw_file(3), f"restructure.faithfulness={policy}", "restructure.gate_retries=1"
    )
    summary = run_restructure(cfg)
    assert summary.ok == ok
    out = output_dir(cfg)
    if policy == "reject":
        (reject,) = _rows(out / "rejects.jsonl")
        assert "drug: 阿莫西林" in reject["reason"] and "measure: 500mg" in reject["reason"]
    else:
        kept = {r["id"]: r for r in _rows(out / "restructured.jsonl")}[target["id"]]
        assert "drug: 阿莫西林" in kept["meta"]["flags"]
        assert summary.flags["drug"] == 1


def test_cost_accounting_matches_the_usage_the_server_billed(fake_server, raw_file, teacher_config):
    server = fake_server()
    server.script("empty", "malformed", "429", "noncompliant")
    cfg = teacher_config(
        server, raw_file(8), "restructure.price_input_per_mtok=2.0", "restructure.price_output_per_mtok=8.0"
    )
    summary = run_restructure(cfg)
    billed_in = sum(r["prompt_tokens"] for r in server.log)
    billed_out = sum(r["completion_tokens"] for r in server.log)
    assert billed_in > 0 and billed_out > 0
    assert (summary.prompt_tokens, summary.completion_tokens) == (billed_in, billed_out)
    assert summary.cost == pytest.approx((billed_in * 2.0 + billed_out * 8.0) / 1e6)
    assert summary.cost_total == pytest.approx(summary.cost)  # per-record journal usage adds up to the same
    assert summary.requests == len(server.log)


def test_failed_requests_are_reported_and_only_they_are_asked_again(
    fake_server, raw_file, teacher_overrides, capsys
):
    server = fake_server()
    target = sample_rows(5)[3]
    server.script("503", "503", "503", match=target["instruction"])
    args = ["--no-progress", *teacher_overrides(server, raw_file(5), "restructure.max_retries=2")]
    assert main(args) == 1
    assert "1 records failed after retries" in capsys.readouterr().err
    first = len(server.log)
    assert main(args) == 0
    again = server.log[first:]
    assert [r["question"] for r in again] == [target["instruction"]]
    cfg_out = [a for a in args if a.startswith("output_root=")][0].split("=", 1)[1]
    assert len(_rows(next(iter(__import__("pathlib").Path(cfg_out).rglob("restructured.jsonl"))))) == 5


def test_finished_work_does_nothing_and_says_so(fake_server, raw_file, teacher_overrides, capsys):
    server = fake_server()
    args = ["--no-progress", *teacher_overrides(server, raw_file(4))]
    assert main(args) == 0
    requests = len(server.log)
    out = [a for a in args if a.startswith("output_root=")][0].split("=", 1)[1]
    files = sorted(__import__("pathlib").Path(out).rglob("*.json*"))
    before = {p: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert main(args) == 0
    assert len(server.log) == requests
    assert capsys.readouterr().out.startswith("nothing to do: all 4 records")
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_a_new_prompt_version_asks_again(fake_server, raw_file, teacher_config, tmp_path):
    server = fake_server()
    raw = raw_file(3)
    run_restructure(teacher_config(server, raw))
    prompt = tmp_path / "prompt_v2.md"
    default = PromptTemplate.load()
    prompt.write_text(
        f"[[system]]\n{default.system}\n再简洁一些。\n[[user]]\n{default.user}\n[[retry]]\n{default.retry}\n"
    )
    summary = run_restructure(teacher_config(server, raw, f"restructure.prompt_file={prompt}"))
    assert (summary.already_done, summary.ok) == (0, 3)
    assert len(server.log) == 6


def test_a_refused_key_stops_the_run_with_one_line(
    fake_server, raw_file, teacher_overrides, monkeypatch, capsys
):
    server = fake_server()
    args = ["--no-progress", *teacher_overrides(server, raw_file(20))]
    monkeypatch.setenv("MEDTUNE_TEACHER_API_KEY", "sk-wrong-key-000111222333")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medtune: error: the teacher at") and "$MEDTUNE_TEACHER_API_KEY" in err
    assert len(err.splitlines()) == 1 and "sk-wrong" not in err
    assert len(server.log) <= 4, "stopped at once: at most the first wave of concurrent requests"


def test_exhausted_quota_stops_the_run(fake_server, raw_file, teacher_overrides, capsys):
    server = fake_server()
    server.script("quota")
    assert main(["--no-progress", *teacher_overrides(server, raw_file(20), "restructure.concurrency=1")]) == 2
    assert "no quota or credit left" in capsys.readouterr().err
    assert len(server.log) == 1


def test_a_missing_key_is_a_user_error(raw_file, teacher_overrides, fake_server, monkeypatch, capsys):
    server = fake_server()
    args = [*teacher_overrides(server, raw_file(2)), "--no-progress"]
    monkeypatch.delenv("MEDTUNE_TEACHER_API_KEY")
    assert main(args) == 2
    assert "environment variable MEDTUNE_TEACHER_API_KEY is not set" in capsys.readouterr().err
    assert server.log == []


def test_the_key_never_reaches_output_files_or_logs(fake_server, raw_file, teacher_overrides, capsys, caplog):
    server = fake_server()
    server.script("429", "noncompliant")
    caplog.set_level(logging.DEBUG)
    args = ["--no-progress", *teacher_overrides(server, raw_file(3))]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text
    out = [a for a in args if a.startswith("output_root=")][0].split("=", 1)[1]
    for path in __import__("pathlib").Path(out).rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(encoding="utf-8"), path


def test_a_key_pasted_into_the_config_is_refused_without_echoing_it(capsys):
    assert main(["restructure.api_key_env=sk-live-abc123"]) == 2
    err = capsys.readouterr().err
    assert "NAME of an environment variable" in err and "sk-live-abc123" not in err


def test_offline_mode_needs_no_endpoint_and_passes_the_same_gate(tmp_path, raw_file, capsys):
    args = [f"output_root={tmp_path}", "restructure.mode=offline", f"restructure.input_file={raw_file(40)}"]
    assert main(["--no-progress", *args]) == 0
    out = capsys.readouterr().out
    assert "with offline-rules-v1" in out and "pass rate" in out
    rows = _rows(tmp_path / "default" / "restructure" / "restructured.jsonl")
    rejects = _rows(tmp_path / "default" / "restructure" / "rejects.jsonl")
    assert len(rows) + len(rejects) == 40 and rows
    assert all(r["reason"] for r in rejects)


def test_unreadable_input_stops_with_file_and_line_or_is_listed(tmp_path, raw_file, capsys):
    rows = sample_rows(3)
    path = raw_file(3, rows=rows)
    path.write_text(
        path.read_text(encoding="utf-8") + '{"instruction": "only a question"}\n', encoding="utf-8"
    )
    base = [f"output_root={tmp_path}", "restructure.mode=offline", f"restructure.input_file={path}"]
    assert main(["--no-progress", *base]) == 2
    assert f"{path}:4" in capsys.readouterr().err
    assert main(["--no-progress", *base, "restructure.on_error=skip"]) == 0
    rejects = _rows(tmp_path / "default" / "restructure" / "rejects.jsonl")
    assert any(r["status"] == "unreadable" and f"{path}:4" in r["reason"] for r in rejects)


def test_a_missing_input_file_is_a_user_error(tmp_path, capsys):
    assert (
        main([f"output_root={tmp_path}", "restructure.mode=offline", "restructure.input_file=nope.jsonl"])
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        "medtune: error: nope.jsonl: data file not found; check restructure.input_file"
    )


def test_multi_turn_records_keep_their_history(fake_server, tmp_path, teacher_config):
    server = fake_server()
    row = sample_rows(1)[0]
    convo = {
        "id": "mt-1",
        "messages": [
            {"role": "user", "content": "医生你好"},
            {"role": "assistant", "content": "你好，请描述症状"},
            {"role": "user", "content": row["instruction"]},
            {"role": "assistant", "content": row["output"]},
        ],
    }
    path = tmp_path / "mt.jsonl"
    path.write_text(json.dumps(convo, ensure_ascii=False) + "\n", encoding="utf-8")
    cfg = teacher_config(server, path)
    assert run_restructure(cfg).ok == 1
    (record,) = list(iter_records(output_dir(cfg) / "restructured.jsonl"))
    assert isinstance(record, QARecord)
    assert [t["content"] for t in record.history] == ["医生你好", "你好，请描述症状"]
    assert record.answer.startswith("一、病情分析")
    assert "患者：医生你好" in server.log[0]["last"] or server.log[0]["turns"] == 2


def test_the_progress_bar_shows_tokens_and_cost(fake_server, raw_file, teacher_config, capsys):
    server = fake_server()
    cfg = teacher_config(
        server, raw_file(5), "restructure.price_input_per_mtok=1", "restructure.price_output_per_mtok=1"
    )
    summary = run_restructure(cfg, progress=True)
    err = capsys.readouterr().err
    assert "restructure: 100%" in err and "5/5" in err
    assert f"{summary.cost:.4f} USD" in err and "ok 5 rej 0 fail 0" in err


def test_a_section_that_repeats_the_question_is_asked_again_with_the_reason(
    fake_server, raw_file, teacher_config
):
    from medtune.data.structure import parse_answer
    from tests.fakes.fake_openai import default_responder, prompt_parts

    def parrot_first(messages):
        """First answer: 病情分析 only repeats the question; the retry gets a proper rewrite."""
        good = default_responder(messages)
        if len(messages) > 2:
            return good
        question, _ = prompt_parts(messages)
        sections = parse_answer(good).sections
        return f"一、病情分析\n{question}\n\n二、原因分析\n{sections['原因分析']}\n\n三、治疗建议\n{sections['治疗建议']}"

    server = fake_server(responder=parrot_first)
    summary = run_restructure(teacher_config(server, raw_file(2)))
    assert (summary.ok, summary.rejected, summary.gate_retries) == (2, 0, 2)
    for row in sample_rows(2):
        first, retry = server.requests_for(row["instruction"])
        assert "copied section: 病情分析 repeats the question" in retry["last"]
