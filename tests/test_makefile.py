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
