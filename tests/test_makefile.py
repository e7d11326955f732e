"""`make app` installs only what the app runs on and serves on $(PORT); `make test` adds the test tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dry_run(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -B: print every step as on a fresh machine (nothing installed yet), without running any of them
    return subprocess.run(["make", "-n", "-B", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_make_app_installs_no_test_tools_and_takes_a_port():
    plan = dry_run("app", "PORT=8599")
    assert "--server.port 8599" in plan
    assert "pip install -q -e ." in plan and ".[test]" not in plan


def test_make_test_installs_the_test_tools():
    assert ".[test]" in dry_run("test")


def test_pytorch_comes_from_the_cpu_only_index_when_it_can_and_says_which():
    """A 6 GB venv of CUDA libraries for an app that runs on the CPU: the CPU-only wheels are tried first,
    PyPI's wheel is the fallback, and the line after the install names the one that came."""
    plan = dry_run("install-app")
    cpu = plan.index("--index-url https://download.pytorch.org/whl/cpu")
    assert "|| .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1" in plan[cpu:]
    assert "CPU-only wheel" in plan and "no CPU-only wheel was reachable" in plan
    assert "--index-url https://example.org/cu" in dry_run("install-app", "TORCH_INDEX=https://example.org/cu")
