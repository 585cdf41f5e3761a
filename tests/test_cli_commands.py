"""Every command of the CLI's dispatch table, driven through ``medtune.cli.main`` on the tiny model.

One pipeline run (``medtune run``) is shared by the commands that need a trained adapter (eval, export,
chat, serve); ``train`` runs twice more, with validation on and off. Servers are not started: their
``launch``/``uvicorn.run`` is replaced by a recorder once the engine and the app are built.
``test_every_command_in_the_table_is_driven`` fails when a command is added without a test here.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from medtune.cli import COMMANDS, main
from tests.conftest import ROOT, SAMPLE_THREE_PART, THREE_PART_ANSWER, write_jsonl

TINY = str(ROOT / "configs" / "tiny" / "lora_sft.yaml")
DRIVEN: set[str] = set()


def drives(command: str):
    """Mark a test as the one that drives ``command``; collected at import, so the sync test sees all."""
    assert command in COMMANDS, f"{command!r} is not in the dispatch table"
    DRIVEN.add(command)
    return lambda test: test


def test_every_command_in_the_table_is_driven():
    assert sorted(set(COMMANDS) - DRIVEN) == [], "commands without a test in tests/test_cli_commands.py"


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir):
    """Output root and the overrides every command of this module shares (tiny model, 24 records)."""
    out = tmp_path_factory.mktemp("cli")
    rows = [json.loads(line) for line in SAMPLE_THREE_PART.read_text(encoding="utf-8").splitlines()[:24]]
    raw = write_jsonl(out / "raw.jsonl", rows)
    overrides = [
        f"model.name_or_path={tiny_model_dir}",
        f"data.raw_file={raw}",
        f"output_root={out / 'runs'}",
        "train.max_steps=2",
        "train.save_steps=2",
        "train.eval_steps=2",
        "eval.num_questions=2",
        "eval.max_new_tokens=8",
        "serve.max_new_tokens=4",
    ]
    return out, overrides


def run_cli(capsys, *argv: str) -> str:
    """``medtune ARGV`` in-process; asserts exit status 0 and returns what it printed."""
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.fixture(scope="module")
def pipeline(root):
    """``medtune run`` once for the module: prepare, train and evaluate the run named ``shared``."""
    out, overrides = root
    buffer = io.StringIO()  # capsys is per test: a module fixture captures by hand
    with contextlib.redirect_stdout(buffer):
        code = main(["run", TINY, *overrides, "run_name=shared"])
    assert code == 0
    return out / "runs" / "shared", [*overrides, "run_name=shared"], buffer.getvalue()


@drives("run")
def test_run_prepares_trains_and_evaluates(pipeline):
    run_dir, _, printed = pipeline
    assert "[1/3] prepare data" in printed and "[3/3] evaluate" in printed
    assert "compliance_rate" in printed
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    report = printed.split("report: ", 1)[1].split()[0]
    assert Path(report).is_file() and Path(report).is_relative_to(run_dir)


@drives("data prepare")
def test_data_prepare(root, capsys):
    out, overrides = root
    printed = run_cli(capsys, "data", "prepare", TINY, *overrides, "run_name=prepared")
    assert "train /" in printed and "val" in printed
    assert (out / "runs" / "prepared" / "data" / "train.jsonl").is_file()


@drives("train")
@pytest.mark.parametrize(
    "settings, expected",
    [
        (["train.eval_steps=2"], "validation loss "),
        # The demo's setting: validation off, so there is no validation loss to print.
        (["train.eval_steps=0", "train.load_best_at_end=false"], "validation loss off"),
    ],
    ids=["validation-on", "validation-off"],
)
def test_train_prints_the_losses_and_where_the_adapter_is(root, capsys, settings, expected):
    _, overrides = root
    name = "train-" + settings[0].rsplit("=", 1)[1]
    argv = [TINY, *overrides, f"run_name={name}", *settings]
    run_cli(capsys, "data", "prepare", *argv)
    printed = run_cli(capsys, "train", *argv)
    assert "trained 2 steps: train loss" in printed and expected in printed
    if expected == "validation loss ":
        loss = printed.split("validation loss ", 1)[1].split()[0]
        assert float(loss) > 0
    assert "adapter:" in printed


@drives("eval")
def test_eval_prints_base_vs_tuned(pipeline, capsys):
    _, overrides, _ = pipeline
    printed = run_cli(capsys, "eval", TINY, *overrides)
    assert "base" in printed and "tuned" in printed and "compliance_rate" in printed
    assert "report.html" in printed


@drives("export")
def test_export_merges_the_adapter(pipeline, capsys, tmp_path):
    _, overrides, _ = pipeline
    printed = run_cli(capsys, "export", TINY, *overrides, "--out", str(tmp_path / "merged"))
    assert "merged model written to" in printed and "max |logit difference|" in printed
    assert (tmp_path / "merged" / "config.json").is_file()


@drives("chat")
@pytest.mark.parametrize("flags, label", [([], "tuned"), (["--base"], "base")])
def test_chat_answers_from_stdin_until_an_empty_line(pipeline, capsys, monkeypatch, flags, label):
    _, overrides, _ = pipeline
    monkeypatch.setattr("sys.stdin", io.StringIO("头疼怎么办\n/reset\n咳嗽一周了\n\n"))
    printed = run_cli(capsys, "chat", TINY, *overrides, *flags)
    assert f", {label})" in printed.splitlines()[0]
    assert printed.count("医生> ") == 2


@drives("serve")
@pytest.mark.parametrize("flags", [[], ["--api"], ["--engine", "vllm"]], ids=["web-ui", "api", "vllm"])
def test_serve_builds_the_app_on_the_configured_port(pipeline, capsys, monkeypatch, flags):
    """The engine and the app are built for real; only binding the port is replaced."""
    _, overrides, _ = pipeline
    launched = {}
    if flags == ["--engine", "vllm"]:
        # vLLM is not installed here: the command is built and handed to exec, which is replaced.
        monkeypatch.setattr("shutil.which", lambda name: f"/opt/bin/{name}")
        monkeypatch.setattr("os.execve", lambda exe, cmd, env: launched.update(exe=exe, cmd=cmd, env=env))
        run_cli(capsys, "serve", TINY, *overrides, "serve.api_port=8001", *flags)
        cmd = launched["cmd"]
        assert cmd[:2] == ["/opt/bin/vllm", "serve"] and cmd[cmd.index("--port") + 1] == "8001"
        assert any(m.startswith("tuned=") and m.endswith("adapter") for m in cmd)
        return
    if flags:
        import uvicorn

        # serve_api runs a uvicorn.Server of its own (it drains on SIGTERM), not uvicorn.run.
        def record(server, sockets=None):
            launched.update(host=server.config.host, port=server.config.port, app=server.config.app)

        monkeypatch.setattr(uvicorn.Server, "run", record)
    else:
        import gradio

        monkeypatch.setattr(gradio.Blocks, "launch", lambda self, **kw: launched.update(kw, app=self))
    run_cli(capsys, "serve", TINY, *overrides, "serve.port=7861", "serve.api_port=8001", *flags)
    if flags:
        assert (launched["host"], launched["port"]) == ("127.0.0.1", 8001)
        assert any(getattr(r, "path", "") == "/v1/chat/completions" for r in launched["app"].routes)
    else:
        assert (launched["server_name"], launched["server_port"]) == ("127.0.0.1", 7861)


@drives("feedback export")
def test_feedback_export_writes_pairs_that_data_prepare_reads(root, capsys, tmp_path):
    from medtune.config import load_config
    from medtune.serve.feedback import Feedback, FeedbackStore, feedback_url

    out, overrides = root
    cfg = load_config(TINY, [*overrides, "run_name=rated"])
    store = FeedbackStore(feedback_url(cfg))
    rows = [json.loads(line) for line in SAMPLE_THREE_PART.read_text(encoding="utf-8").splitlines()[:24]]
    for row in rows:
        store.add(Feedback(row["instruction"], row["output"], 1, "tiny (tuned)", {"temperature": 0.7}))
        store.add(Feedback(row["instruction"], "多喝热水。", -1, "tiny (base)", {"temperature": 0.7}))
    store.add(Feedback("只被点过赞的问题", THREE_PART_ANSWER, 1, "tiny (tuned)", {}))
    pairs = tmp_path / "prefs.jsonl"
    printed = run_cli(capsys, "feedback", "export", TINY, *overrides, "run_name=rated", "--out", str(pairs))
    assert "24 chosen/rejected pairs" in printed and "1 single rated" in printed
    first = json.loads(pairs.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"prompt", "chosen", "rejected"} and first["rejected"] == "多喝热水。"
    # The same file is training data for `data prepare` (question + chosen answer).
    printed = run_cli(
        capsys, "data", "prepare", TINY, *overrides, f"data.raw_file={pairs}", "run_name=from_prefs"
    )
    assert "read 24 records" in printed
    train = (out / "runs" / "from_prefs" / "data" / "train.jsonl").read_text(encoding="utf-8")
    assert "多喝热水" not in train


@drives("safety check")
def test_safety_check_reads_a_jsonl_file(tmp_path, capsys):
    path = write_jsonl(
        tmp_path / "answers.jsonl",
        [
            {"question": "咳嗽一周了", "answer": THREE_PART_ANSWER},
            {"question": "胸口疼还出冷汗", "answer": "休息一下就好"},
        ],
    )
    printed = run_cli(capsys, "safety", "check", str(path))
    assert "records: 2" in printed and "chest_pain" in printed


@drives("safety train")
def test_safety_train_writes_a_model_that_check_uses(tmp_path, capsys):
    rows = [
        {"question": f"{who}突然{what}", "red_flag": "x"}
        for who in ("我爸", "孩子", "邻居")
        for what in ("嘴唇发紫喘不过气", "叫不醒")
    ] + [
        {"question": f"{who}脸上长痘{how}", "red_flag": None}
        for who in ("我", "女儿", "同学")
        for how in ("怎么办", "能挤吗")
    ]
    data = write_jsonl(tmp_path / "dev.jsonl", rows)
    model = tmp_path / "m.json.gz"
    printed = run_cli(capsys, "safety", "train", str(data), "--out", str(model))
    assert "trained on 12 questions (6 emergencies)" in printed and model.is_file()
    printed = run_cli(capsys, "safety", "check", str(data), "--model", str(model))
    assert "and the learned model" in printed and "records: 12" in printed


@drives("safety pinyin")
def test_safety_pinyin_builds_a_lexicon_that_reads_pinyin(tmp_path, capsys):
    pytest.importorskip("pypinyin")  # the builder's dependency (the dev extra)
    rows = [{"question": "我爸爸胸口很痛，出了很多汗", "answer": "马上打120"}] * 6
    data = write_jsonl(tmp_path / "dev.jsonl", rows)
    out = tmp_path / "lexicon.json.xz"
    printed = run_cli(capsys, "safety", "pinyin", str(data), "--out", str(out), "--min-count", "2")
    assert "words from 1 files" in printed and out.is_file()
    from medtune.safety.pinyin import PinyinLexicon, load_counts

    lexicon = PinyinLexicon.from_counts(load_counts(out))
    assert lexicon.read("wo ba ba xiong kou hen tong") == "我爸爸胸口很痛"


@drives("data restructure")
def test_data_restructure_offline(root, capsys):
    out, overrides = root
    raw = ROOT / "data" / "sample" / "medqa_raw.jsonl"
    printed = run_cli(
        capsys,
        "data",
        "restructure",
        TINY,
        *overrides,
        "run_name=restructured",
        "restructure.mode=offline",
        f"restructure.input_file={raw}",
        "restructure.max_records=6",
        "--no-progress",
    )
    assert "restructured 6 records" in printed
    assert (out / "runs" / "restructured" / "restructure" / "restructured.jsonl").is_file()


@drives("model fetch")
def test_model_fetch_resolves_a_local_folder(tiny_model_dir, capsys):
    printed = run_cli(capsys, "model", "fetch", TINY, "--model", str(tiny_model_dir))
    assert f"model ready: {tiny_model_dir}" in printed


@drives("config explain")
def test_config_explain_lists_every_key(capsys):
    printed = run_cli(capsys, "config", "explain")
    assert "train.eval_steps = None" in printed and "lora.top_layers" in printed


@drives("doctor")
def test_doctor_lists_every_training_patch_with_its_reason_and_the_versions(capsys):
    from medtune.train.patches import all_patches

    printed = run_cli(capsys, "doctor", TINY, "train.fused_lora=false")
    assert "transformers " in printed and "peft " in printed and "trl " in printed
    for patch in all_patches():
        assert f"  {patch.name} " in printed, patch.name
    fused = next(line for line in printed.splitlines() if line.strip().startswith("fused_lora "))
    assert " off " in fused and "train.fused_lora=False" in fused
