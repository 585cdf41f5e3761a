import subprocess
import sys

import pytest

from medtune.cli import COMMANDS, build_parser, main


def test_every_command_in_the_table_parses():
    parser = build_parser()
    for name, (func, _help, kind) in COMMANDS.items():
        argv = name.split() + (["x.yaml"] if kind == "config" else [])
        args = parser.parse_args(argv)
        assert args.func is func


def test_readme_commands_exist_in_the_table():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for name in ("data prepare", "train", "eval", "chat", "serve", "safety check"):
        assert f"medtune {name}" in readme, name
        assert name in COMMANDS


def test_help_is_fast_and_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "medtune.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    for word in ("data", "train", "eval", "chat", "serve", "safety"):
        assert word in out.stdout


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    code = main(["data", "prepare", "--model", "x", str(tmp_path / "missing.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("medtune: error:") and "missing.yaml" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_data_file_names_the_file(tmp_path, capsys):
    code = main(["data", "prepare", f"data.raw_file={tmp_path / 'nope.jsonl'}", f"output_root={tmp_path}"])
    assert code == 2
    assert "nope.jsonl: data file not found" in capsys.readouterr().err


def test_unknown_override_key_is_reported(capsys):
    assert main(["data", "prepare", "train.lr=1"]) == 2
    assert "unknown config key 'train.lr'" in capsys.readouterr().err


def test_nonexistent_model_path_is_reported(tmp_path, capsys):
    assert main(["model", "fetch", "--model", str(tmp_path / "no-model")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_data_prepare_runs_from_the_cli(small_dataset, tmp_path, capsys):
    assert main(["data", "prepare", f"data.raw_file={small_dataset}", f"output_root={tmp_path}"]) == 0
    assert "train /" in capsys.readouterr().out
    assert (tmp_path / "default" / "data" / "train.jsonl").is_file()


@pytest.mark.parametrize("argv", [["config", "explain"]])
def test_config_explain_prints_documented_keys(argv, capsys):
    assert main(argv) == 0
    assert "train.learning_rate" in capsys.readouterr().out


@pytest.mark.parametrize("words", [["data", "restructure"], ["safety", "check"]])
def test_pass_through_commands_show_their_own_help(words, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*words, "--help"])
    assert exc.value.code == 0
    assert f"usage: medtune {' '.join(words)}" in capsys.readouterr().out


def test_overrides_are_taken_after_flags_too():
    from medtune.cli import _parse

    parser = build_parser()
    args = _parse(parser, ["serve", "c.yaml", "--api", "serve.api_port=9", "serve.host=::1"])
    assert args.api and args.config == "c.yaml" and args.overrides == ["serve.api_port=9", "serve.host=::1"]
    args = _parse(parser, ["serve", "c.yaml", "serve.port=1", "--api", "serve.api_port=9"])
    assert args.overrides == ["serve.port=1", "serve.api_port=9"]
    with pytest.raises(SystemExit):
        _parse(parser, ["serve", "c.yaml", "--api", "--bogus"])
    with pytest.raises(SystemExit):
        _parse(parser, ["serve", "c.yaml", "--api", "stray-word"])


def test_serving_the_api_off_loopback_without_keys_is_refused_at_once(monkeypatch, capsys):
    from medtune.serve.engine import ChatEngine
    from tests.conftest import ROOT

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the exposure check")

    monkeypatch.setattr(ChatEngine, "from_config", no_loading)
    monkeypatch.delenv("MEDTUNE_API_KEYS", raising=False)
    assert main(["serve", str(ROOT / "configs/tiny/lora_sft.yaml"), "--api", "serve.host=0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medtune: error: serve.host=0.0.0.0") and "MEDTUNE_API_KEYS" in err
