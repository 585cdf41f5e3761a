"""``make bench``: a benchmark that does not apply here is skipped, failures still fail, helpers never run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = 77  # bench/_common.py SKIPPED, BENCH_SKIPPED in the Makefile

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make not installed")


def test_the_gpu_bench_without_cuda_says_skipped_and_exits_with_the_skip_status():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "bench/gpu_train.py", "--method", "lora"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == SKIPPED, out.stderr
    assert out.stdout.startswith("skipped: no CUDA device"), out.stdout


def _make_bench(folder: Path, *benches: str) -> subprocess.CompletedProcess:
    """``make bench`` with the repository's Makefile in ``folder`` (whose bench/ holds stand-ins)."""
    shutil.copy(ROOT / "Makefile", folder / "Makefile")
    (folder / "pyproject.toml").touch()
    # -o setup: the loop alone, without bootstrapping a virtual environment.
    cmd = ["make", "-s", "-o", "setup", "bench", f"PY={sys.executable}"]
    if benches:
        cmd.append("BENCHES=" + " ".join(f"bench/{b}" for b in benches))
    return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=60)


@needs_make
def test_make_bench_skips_goes_on_after_a_failure_and_never_runs_helpers(tmp_path):
    scripts = {
        "_helper.py": "print('helper ran')",
        "a_ok.py": "print('ok ran')",
        "b_skip.py": f"print('skipped: not here'); raise SystemExit({SKIPPED})",
        "c_fail.py": "raise SystemExit('broken')",
        "d_after.py": "print('after ran')",
    }
    (tmp_path / "bench").mkdir()
    for name, code in scripts.items():
        (tmp_path / "bench" / name).write_text(code)
    out = _make_bench(tmp_path)
    assert out.returncode != 0, "a failed bench fails make bench"
    assert "ok ran" in out.stdout and "after ran" in out.stdout
    assert "helper ran" not in out.stdout
    assert "skipped: bench/b_skip.py" in out.stdout
    assert "failed: bench/c_fail.py" in out.stdout
    assert _make_bench(tmp_path, "a_ok.py", "b_skip.py").returncode == 0, "skipped is not failed"


@needs_make
def test_make_bench_runs_every_bench_but_the_helpers():
    out = subprocess.run(
        ["make", "-n", "-o", "setup", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "bench/gpu_train.py" in out.stdout and "bench/safety.py" in out.stdout
    assert "bench/_common.py" not in out.stdout


def test_the_gpu_check_dry_run_prints_every_command_and_runs_none():
    """``bench/gpu_check.sh --dry-run``: the CUDA wheel, the extras, both 7B benches at 2048 tokens and the
    training tests on CUDA, each under a time limit; PY points nowhere, so a command that ran would fail."""
    env = {**os.environ, "PY": "/nonexistent/python"}
    out = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    commands = [line[2:] for line in out.stdout.splitlines() if line.startswith("+ ")]
    text = "\n".join(commands)
    assert "--index-url https://download.pytorch.org/whl/cu" in text and "torch==" in text
    assert "pip install --quiet -e .[gpu]" in text
    assert "bench/gpu_train.py --model qwen2.5-7b-random --method lora qlora --seq 2048" in text
    assert "pytest -q -m gpu tests" in text and "pytest -q -x tests/train" in text
    # The last step (tests/train) gets the seconds the others left of 590 (10 minutes less a margin).
    limits = [int(c.split()[1]) for c in commands if c.startswith("timeout ")]
    assert sum(limits[:-1]) <= 420 and limits[-1] <= 590, limits  # tests/train: at least 170 s


def test_the_gpu_bench_dry_run_plans_the_random_7b_on_plain_peft():
    out = subprocess.run(
        [sys.executable, "bench/gpu_train.py", "--model", "qwen2.5-7b-random", "--dry-run", "--method", "lora"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "model qwen2.5-7b-random: N = 7.070B" in out.stdout
    assert "patches on CUDA: lora\n" in out.stdout


def _bench(script: str, *args: str, env: dict | None = None) -> str:
    out = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_the_exam_scoring_bench_runs_end_to_end_on_the_tiny_model(cache_dir, tiny_model_dir):
    printed = _bench("eval_exam.py", "--model", "tiny", "--n", "6", "--per-option-n", "2",
                     env={"MEDTUNE_CACHE": str(cache_dir)})  # fmt: skip
    # The three arms compute the same probabilities: they must agree on every item.
    assert "batched" in printed and "6/6" in printed and "2/2" in printed


def test_the_data_pipeline_bench_runs_its_arms_side_by_side_on_a_small_size():
    printed = _bench("data_pipeline.py", "--sizes", "400", "--baseline-n", "400", "--serial-n", "400")
    rows = [line.split() for line in printed.splitlines() if line.strip().startswith("400 ")]
    assert [r[1] for r in rows] == ["medtune", "serial", "baseline"]
    medtune, serial = rows[0], rows[1]
    assert medtune[5:] == serial[5:]  # workers change the speed, never the precision and recall columns


def test_the_training_workload_does_not_change_when_the_sample_grows(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import _train_data

    pairs = _train_data.sample_pairs()
    assert len(pairs) >= _train_data.POOL_RECORDS
    before = _train_data.synth_records(40, seed=0)
    grown = pairs + [("新加的问题，很长很长的一句话", "一、病情分析\n新加的回答句子在这里。")] * 50
    monkeypatch.setattr(_train_data, "sample_pairs", lambda: grown)
    assert _train_data.synth_records(40, seed=0) == before
    monkeypatch.setattr(_train_data, "sample_pairs", lambda: pairs[1:] + pairs[:1])
    assert _train_data.synth_records(40, seed=0) != before  # the check can fail: the pools do matter


def test_the_serve_load_bench_runs_end_to_end_on_the_tiny_model(cache_dir, tiny_model_dir):
    """Both our arms, live API servers on the tiny model: every bad request (each kind once) is a 4xx, no 5xx,
    every good answer complete; the bench itself exits 1 otherwise."""
    printed = _bench(
        "serve_load.py", "--config", "configs/tiny/lora_sft.yaml", "--override",
        f"model.name_or_path={tiny_model_dir}", "--arms", "batched,single", "--clients", "4",
        "--requests", "25", "--bad-share", "0.2", "--max-tokens", "4",
        env={"MEDTUNE_CACHE": str(cache_dir)},
    )  # fmt: skip
    rows = {
        line.split()[0]: line.split()
        for line in printed.splitlines()
        if line.split()[:1] in (["batched"], ["single"])
    }
    for arm in ("batched", "single"):
        assert rows[arm][1:4] == ["20/20", "5/5", "0"], printed
    assert "checks: no 5xx, every bad request a 4xx, every answer complete" in printed
    assert "total tokens/s, batched / single" in printed
