"""The triage second opinion against the project's fake OpenAI server: it only adds, caches, times out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtune.config import ServeConfig
from medtune.safety import default_engine
from medtune.safety.second_opinion import RULE_ID, SecondOpinion, parse_verdict
from tests.fakes.fake_openai import FakeOpenAIServer

EMERGENCY = '{"emergency": true, "row": "acute_abdomen", "action": "emergency_department"}'


def responder_for(reply: str):
    def respond(messages: list[dict]) -> str:
        return reply

    return respond


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key="k", responder=responder_for(EMERGENCY), slow_s=2.0) as srv:
        yield srv


def opinion(server: FakeOpenAIServer, tmp_path: Path, **kw) -> SecondOpinion:
    return SecondOpinion(server.base_url, "fake", api_key="k", cache_dir=tmp_path / "cache", **kw)


def test_an_unflagged_question_gets_a_banner_when_the_model_sees_an_emergency(server, tmp_path) -> None:
    engine = default_engine()
    # Not 说不上来 ("can't say"): the learned model reads it as 说不上话 ("can't speak") and flags it.
    question = "肚子有点不舒服，也不知道怎么回事"
    assert engine.triage(question) == []
    flags = opinion(server, tmp_path).triage(question, engine.triage(question))
    assert [f.rule_id for f in flags] == [RULE_ID]
    assert flags[0].action == "emergency_department"
    assert "急诊" in engine.emergency_banner(flags)
    # the question travels in the user turn after the instructions (medtune's API drops system messages)
    assert server.log[-1]["last"].endswith("问题：" + question) and '"emergency"' in server.log[-1]["last"]
    assert server.log[-1]["turns"] == 2


def test_a_flagged_question_is_not_sent_and_its_flags_are_kept(server, tmp_path) -> None:
    engine = default_engine()
    flags = engine.triage("我爸突然胸口疼，满头大汗")
    assert opinion(server, tmp_path).triage("我爸突然胸口疼，满头大汗", flags) == flags
    assert server.log == []


def test_a_no_never_removes_anything_and_adds_nothing(tmp_path) -> None:
    with FakeOpenAIServer(api_key="k", responder=responder_for('{"emergency": false, "row": null}')) as srv:
        assert opinion(srv, tmp_path).triage("如果有人胸痛怎么办", []) == []


def test_verdicts_are_cached_on_disk_by_question(server, tmp_path) -> None:
    second = opinion(server, tmp_path)
    second.triage("嗓子有点怪", [])
    second.triage("嗓子有点怪", [])
    assert len(server.log) == 1
    files = list((tmp_path / "cache").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text(encoding="utf-8"))["emergency"] is True
    # A fresh instance reads the same cache.
    opinion(server, tmp_path).triage("嗓子有点怪", [])
    assert len(server.log) == 1


@pytest.mark.parametrize("fault", ["timeout", "malformed", "500", "auth", "empty"])
def test_a_failed_call_adds_nothing(server, tmp_path, fault: str) -> None:
    server.script(fault)
    assert opinion(server, tmp_path, timeout_s=0.5).triage("头有点怪怪的", []) == []
    assert not list((tmp_path / "cache").glob("*.json"))


def test_a_reply_outside_the_agreed_form_adds_nothing(tmp_path) -> None:
    with FakeOpenAIServer(api_key="k", responder=responder_for("是的，这是急症，请马上去医院。")) as srv:
        assert opinion(srv, tmp_path).triage("头有点怪怪的", []) == []


def test_parse_verdict_is_strict() -> None:
    assert parse_verdict('```json\n{"emergency": true, "row": "stroke_fast"}\n```').row == "stroke_fast"
    assert parse_verdict('{"emergency": "yes"}') is None
    assert parse_verdict("emergency: true") is None
    assert parse_verdict('{"emergency": false}').emergency is False


def test_config_switch_is_off_by_default_and_reads_the_key_from_the_environment(monkeypatch) -> None:
    assert SecondOpinion.from_config(ServeConfig()) is None
    monkeypatch.setenv("MY_TRIAGE_KEY", "secret")
    cfg = ServeConfig(
        triage_second_opinion=True,
        triage_base_url="http://127.0.0.1:9/v1",
        triage_api_key_env="MY_TRIAGE_KEY",
        triage_cache_dir=None,
    )
    second = SecondOpinion.from_config(cfg)
    assert second is not None and second._client.headers["authorization"] == "Bearer secret"
    second.close()


def test_switching_it_on_without_an_endpoint_is_refused() -> None:
    from medtune.config import ConfigError

    with pytest.raises(ConfigError, match="triage_base_url"):
        ServeConfig(triage_second_opinion=True)


def test_safety_check_measures_the_second_opinion_on_unflagged_questions(
    tmp_path, monkeypatch, capsys
) -> None:
    from medtune.safety.cli import main as check_main

    def respond(messages: list[dict]) -> str:
        # "emergency" only for the question about a stomach that feels odd; a plain no otherwise
        return EMERGENCY if "肚子" in messages[-1]["content"] else '{"emergency": false, "row": null}'

    rows = [
        {
            "question": "我爸突然胸口疼，满头大汗",
            "answer": "请立即拨打120。",
            "red_flag": "chest_pain",
            "split": "frozen-rx",
        },
        {
            "question": "肚子有点不舒服，也不知道怎么回事",
            "answer": "请立即去急诊。",
            "red_flag": "acute_abdomen",
            "split": "frozen-rx",
        },
        {"question": "脸上长痘怎么办", "answer": "注意清洁。", "red_flag": None, "split": "frozen-rx"},
    ]
    data = tmp_path / "f.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    monkeypatch.setenv("MEDTUNE_TRIAGE_API_KEY", "k")
    with FakeOpenAIServer(api_key="k", responder=respond) as srv:
        argv = [str(data), "--second-opinion", srv.base_url, "--second-opinion-cache", str(tmp_path / "c")]
        assert check_main(argv) == 0
        out = capsys.readouterr().out
        # the flagged chest pain is never sent; the two others are, one comes back an emergency
        assert len(srv.log) == 2 and all("胸口疼" not in e["last"] for e in srv.log)
    assert "asked about 2 unflagged questions, 1 said emergency, 0 gave no usable verdict" in out
    assert "[frozen-rx] 3 records   red flags: recall 1.000 precision 1.000" in out
