"""Two-process data-parallel training (gloo, CPU) through `torchrun`, unchanged medtune code.

(`accelerate launch` runs the same entry point on GPUs; on CPU it needs MPI, so the test uses torchrun.)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_ddp_ranks_end_with_identical_adapters(tmp_path, tiny_model_dir, small_dataset):
    from medtune.config import load_config
    from medtune.data.prepare import prepare

    overrides = [
        f"model.name_or_path={tiny_model_dir}",
        f"data.raw_file={small_dataset}",
        f"output_root={tmp_path}",
        "train.max_steps=2",
        "train.eval_steps=2",
        "train.save_steps=2",
    ]
    cfg = load_config(ROOT / "configs" / "tiny" / "lora_sft.yaml", overrides)
    prepare(cfg)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun), "--nproc_per_node", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", "127.0.0.1:0",
        "-m", "medtune.cli", "train", str(ROOT / "configs" / "tiny" / "lora_sft.yaml"), *overrides,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    if result.returncode != 0:
        pytest.fail(f"accelerate launch failed:\n{result.stderr[-3000:]}")
    metrics = json.loads((cfg.run_dir / "train_metrics.json").read_text())
    assert metrics["world_size"] == 2
    a, b = metrics["rank_checksums"]
    assert a == pytest.approx(b, rel=1e-9) and a != 0.0
    assert (cfg.adapter_dir / "adapter_model.safetensors").is_file()
