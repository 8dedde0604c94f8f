"""ruff's lint and format checks over the code (configured in pyproject.toml), as part of the suite."""

import subprocess
import sys

import pytest
from conftest import ROOT

PATHS = ["gplinker", "tasks", "tests", "bench", "run.py"]


def ruff(*args):
    pytest.importorskip("ruff")
    return subprocess.run([sys.executable, "-m", "ruff", *args, *PATHS], capture_output=True, text=True, cwd=ROOT)


def test_ruff_lint_is_clean():
    r = ruff("check", "--no-cache")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


def test_ruff_format_is_clean():
    r = ruff("format", "--check", "--no-cache")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


def test_the_check_can_fail(tmp_path):
    """An unused import is found: the lint test is not vacuous."""
    pytest.importorskip("ruff")
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F", str(bad)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "F401" in r.stdout
