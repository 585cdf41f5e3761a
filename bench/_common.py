"""Helpers shared by the benchmarks: sample pairs, matmul peak, FLOP counts, peak memory, load, child
processes, tables, skip.

Not a benchmark itself (``make bench`` leaves out files starting with ``_``): ``python bench/_common.py``
only prints this machine's matmul peak.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, NoReturn

SKIPPED = 77
"""Exit status of a benchmark that does not apply on this machine (automake's skip status): ``make bench``
counts it as skipped and goes on; any other non-zero status is a failure. The Makefile repeats the number."""

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "medqa_three_part.jsonl"

# Shapes of the 0.5B model's MLP at batch 4 x 1024 tokens: (tokens x hidden) @ (hidden x intermediate)
# and back. A square matmul is added because some BLAS kernels prefer it; the best of all is the peak.
PEAK_SHAPES_FP32 = ((4096, 896, 4864), (4096, 4864, 896), (2048, 2048, 2048))
# bf16 is measured small: without AVX-512 BF16/AMX the CPU path is a slow fallback (seconds per GFLOP).
PEAK_SHAPES_BF16 = ((512, 512, 512),)


def skip(reason: str) -> NoReturn:
    """Say why this benchmark cannot run here and exit with :data:`SKIPPED`."""
    print(f"skipped: {reason}", flush=True)
    raise SystemExit(SKIPPED)


def sample_pairs() -> list[tuple[str, str]]:
    """(question, three-part answer) of every record of the shipped sample, or exit naming the bad line."""
    pairs = []
    for n, line in enumerate(SAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs.append((row["instruction"], row["output"]))
        except (json.JSONDecodeError, KeyError) as exc:
            raise SystemExit(f"{SAMPLE}:{n}: not a sample record with instruction/output ({exc})") from None
    return pairs


def matmul_gflops(dtype_name: str = "float32", repeat: int = 5, shapes=None) -> float:
    """Best observed GFLOP/s of ``a @ b`` in ``dtype_name`` on the current device (CPU unless CUDA tensors)."""
    import torch

    dtype = getattr(torch, dtype_name)
    shapes = shapes or (PEAK_SHAPES_FP32 if dtype == torch.float32 else PEAK_SHAPES_BF16)
    best = 0.0
    gen = torch.Generator().manual_seed(0)
    for m, k, n in shapes:
        a = torch.randn(m, k, generator=gen).to(dtype)
        b = torch.randn(k, n, generator=gen).to(dtype)
        a @ b  # warm-up: thread pool, packing buffers
        for _ in range(repeat):
            t0 = time.perf_counter()
            a @ b
            dt = time.perf_counter() - t0
            best = max(best, 2 * m * k * n / dt / 1e9)
    return best


def matmul_params(model: Any) -> int:
    """Weights every token is multiplied through: all ``nn.Linear`` layers, the LM head included (even when
    it is tied to the embedding, which is a lookup and costs no FLOPs). LoRA wrappers count their base layer.
    """
    import torch

    total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lora_" not in name:
            total += module.weight.numel()
    return total


def matmul_params_from_config(config: Any) -> int:
    """The same count from a transformers Qwen2/Llama-style config (before any 4-bit packing)."""
    d = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    attn = d * heads * head_dim * 2 + d * kv * head_dim * 2  # q, o and k, v
    mlp = 3 * d * config.intermediate_size  # gate, up, down
    return config.num_hidden_layers * (attn + mlp) + d * config.vocab_size


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_summary() -> str:
    flags = cpu_flags()
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    bf16 = "native bf16 (avx512_bf16/amx)" if flags & {"avx512_bf16", "amx_bf16"} else "no native bf16"
    return f"{model}, {os.cpu_count()} cores visible, {isa}, {bf16}"


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak RSS in MB since start or since the last ``reset_peak_rss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run_child(cmd: list[str], log_path: Path | None = None) -> tuple[int, Any]:
    """Run one benchmark arm as its own process: a fresh allocator, CUDA context and peak RSS per arm.

    Returns the exit status and the child's resource usage (``wait4``: this child's own peak RSS, where
    RUSAGE_CHILDREN would be the maximum over every arm run so far). Output goes to ``log_path`` if given.
    """
    with open(log_path, "w", encoding="utf-8") if log_path else contextlib.nullcontext() as log:
        out = {"stdout": log, "stderr": subprocess.STDOUT} if log else {}
        proc = subprocess.Popen(cmd, cwd=ROOT, **out)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*map(str, r)) for r in rows]
    return "\n".join(out)


def free_port() -> int:
    """A TCP port free on loopback now (a server started right after will almost surely get it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float, alive=lambda: True) -> bool:
    """True once ``url`` answers 200, False after ``timeout_s`` or when ``alive()`` turns false."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


if __name__ == "__main__":
    print(cpu_summary())
    print(f"fp32 matmul peak: {matmul_gflops('float32'):.1f} GFLOP/s")
    print(f"bf16 matmul peak: {matmul_gflops('bfloat16', repeat=2):.1f} GFLOP/s")
