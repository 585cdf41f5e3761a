"""Serving at scale: the vLLM command line, and the web UI on a remote OpenAI-compatible server."""

import json

import pytest

from medtune.config import load_config
from tests.conftest import ROOT


def test_vllm_command_serves_the_adapter_with_the_training_system_prompt(tmp_path, tiny_model_dir):
    from medtune.prompts import SYSTEM_PROMPT
    from medtune.serve.vllm import vllm_command, write_chat_template

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 12}))
    cfg = load_config(
        str(ROOT / "configs" / "tiny" / "lora_sft.yaml"),
        ["serve.host=0.0.0.0", "serve.api_port=9000", "serve.max_concurrent=16"],
    )
    template = write_chat_template(cfg, str(tiny_model_dir), tmp_path / "t.jinja")
    cmd = vllm_command(cfg, str(tiny_model_dir), template, {"tuned": adapter})
    assert cmd[:3] == ["vllm", "serve", str(tiny_model_dir)]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags["--host"] == "0.0.0.0" and flags["--port"] == "9000" and flags["--max-num-seqs"] == "16"
    assert "--enable-lora" in cmd and f"tuned={adapter}" in cmd
    assert cmd[cmd.index("--max-lora-rank") + 1] == "16"  # the smallest rank vLLM accepts that holds 12
    assert not any("sk-" in word for word in cmd)
    # The template renders a conversation without a system message under the training prompt.
    from medtune.model.loader import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    tok.chat_template = template.read_text()
    text = tok.apply_chat_template([{"role": "user", "content": "头疼"}], tokenize=False)
    assert SYSTEM_PROMPT in text


def test_exec_vllm_refuses_an_open_port_without_keys_and_a_missing_vllm(monkeypatch):
    from medtune.config import ConfigError
    from medtune.serve.vllm import VllmMissing, exec_vllm

    monkeypatch.delenv("MEDTUNE_API_KEYS", raising=False)
    with pytest.raises(ConfigError):
        exec_vllm(load_config(None, ["serve.host=0.0.0.0"]))
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(VllmMissing):
        exec_vllm(load_config(None, []))


def test_the_web_ui_streams_from_a_remote_openai_server(monkeypatch):
    from medtune.safety import DISCLAIMER
    from medtune.serve.engine import GenerationSettings, StreamControl
    from medtune.serve.remote import REMOTE_KEY_ENV, RemoteEngine
    from medtune.serve.webui import chat_handler
    from tests.fakes.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(api_key="remote-key", responder=lambda m: "一、病情分析\n远程回答" * 3) as server:
        monkeypatch.setenv(REMOTE_KEY_ENV, "remote-key")
        cfg = load_config(None, [f"serve.remote_url={server.base_url}", "serve.remote_model=tuned"])
        engine = RemoteEngine.from_config(cfg)
        control = StreamControl()
        pieces = list(engine.stream("头疼", settings=GenerationSettings(max_new_tokens=50), control=control))
        assert len(pieces) > 1 and "".join(pieces) == "一、病情分析\n远程回答" * 3
        assert control.finish_reason == "stop"
        shown = list(chat_handler(engine, GenerationSettings())("头疼", [], True))
        assert "#### 一、病情分析" in shown[-1] and DISCLAIMER in shown[-1]
        request = server.log[-1]
        assert request.get("model", "tuned") == "tuned"
