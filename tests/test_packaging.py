"""What the installed package holds: the library, not the test doubles."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_ships_no_test_doubles():
    assert importlib.util.find_spec("medtune.testing") is None
    modules = [p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "medtune").rglob("*.py")]
    assert not [m for m in modules if "fake" in m or "/testing/" in m]


def test_the_restructure_bench_starts_the_fake_teacher_from_the_tests_folder():
    spec = importlib.util.spec_from_file_location("bench_restructure", ROOT / "bench" / "restructure.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    proc, url = bench.start_server(latency=0.0, fault_rate=0.0, faults="429", seed=0)
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert sys.modules.get("medtune.testing") is None


def test_peft_is_capped_at_a_range_the_installed_version_satisfies():
    """medtune reaches into PEFT's LoRA layers: a new PEFT is let in only after `make test-latest` passes."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    (peft,) = [Requirement(d) for d in deps if Requirement(d).name == "peft"]
    assert any(s.operator == "<" for s in peft.specifier), f"{peft}: no upper bound"
    assert peft.specifier.contains(version("peft")), f"installed peft {version('peft')} is outside {peft}"
