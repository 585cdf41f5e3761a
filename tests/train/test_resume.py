"""A training process killed with SIGKILL and resumed ends with the adapter of an uninterrupted run.

Tolerance: max |difference| of every LoRA weight <= 1e-5 (data order, optimizer, scheduler and RNG
state are all restored from the checkpoint, so in practice the runs agree to float rounding).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]

# The child trains through medtune's real entry point; a callback slows each step a little so the test
# can kill it reliably between the first checkpoint and the end.
DRIVER = """
import sys, time
from medtune.cli import main
from medtune.train import callbacks

callbacks.MetricsCallback.on_step_end = lambda self, args, state, control, **kw: time.sleep(0.4)
sys.exit(main(sys.argv[1:]))
"""


def _train(tmp_path, out, overrides, resume=False):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    cmd = [sys.executable, str(driver), "train", str(ROOT / "configs" / "tiny" / "lora_sft.yaml"), *overrides]
    if resume:
        cmd.append("--resume")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, small_dataset):
    from medtune.config import load_config
    from medtune.data.prepare import prepare

    def overrides(root):
        return [
            f"model.name_or_path={tiny_model_dir}",
            f"data.raw_file={small_dataset}",
            f"output_root={root}",
            "train.max_steps=8",
            "train.save_steps=2",
            "train.eval_steps=null",
            "train.load_best_at_end=false",
            "lora.dropout=0.1",  # dropout draws random numbers: the RNG state must be restored too
        ]

    runs = {}
    for name in ("straight", "killed"):
        root = tmp_path / name
        cfg = load_config(ROOT / "configs" / "tiny" / "lora_sft.yaml", overrides(root))
        prepare(cfg)
        runs[name] = cfg

    straight = _train(tmp_path, runs["straight"], overrides(tmp_path / "straight"))
    killed = _train(tmp_path, runs["killed"], overrides(tmp_path / "killed"))
    ckpt = runs["killed"].run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    deadline = time.time() + 180
    while not ckpt.is_file() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    assert ckpt.is_file(), "the run never reached its step-4 checkpoint"
    time.sleep(0.3)  # let it get into step 5
    assert killed.poll() is None, "the run finished before it could be killed"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (runs["killed"].adapter_dir / "adapter_model.safetensors").exists()

    resumed = _train(tmp_path, runs["killed"], overrides(tmp_path / "killed"), resume=True)
    for proc in (straight, resumed):
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            pytest.fail(err[-3000:])

    a = load_file(str(runs["straight"].adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(runs["killed"].adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-5, f"resumed adapter differs by {worst}"
    assert any(float(v.abs().sum()) > 0 for k, v in a.items() if "lora_B" in k)
    metrics = json.loads((runs["killed"].run_dir / "train_metrics.json").read_text())
    assert metrics["global_step"] == 8
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))


def test_resume_without_a_checkpoint_is_an_error_not_a_fresh_run(tmp_path, monkeypatch, capsys):
    import medtune.model.loader
    from medtune.cli import main

    def no_loading(*args, **kwargs):
        raise AssertionError("--resume without a checkpoint must stop before the model is loaded")

    monkeypatch.setattr(medtune.model.loader, "load_model", no_loading)
    config = str(ROOT / "configs" / "tiny" / "lora_sft.yaml")
    assert main(["train", config, f"output_root={tmp_path}", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medtune: error:") and len(err.strip().splitlines()) == 1
    assert f"no checkpoint in {tmp_path / 'tiny' / 'checkpoints'}" in err
    assert "run without --resume to start a new run" in err
    assert not (tmp_path / "tiny").exists(), "nothing is written"
