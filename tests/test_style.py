"""ruff, as CI runs it (the suite is CI's one command): the lint rules of pyproject.toml over the whole tree,
and ``ruff format --check`` over the modules formatted so far (FORMATTED; a module joins the list when it is
reformatted as a whole, so that the formatting does not churn code that other work is changing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ruff", reason="ruff is in the dev extra (pip install -e '.[dev]')")

REPO = Path(__file__).resolve().parents[1]
FORMATTED = [
    "contract",
    "command_line",
    "yolact_cli",
    "runtime/cli.py",
    "runtime/pytriton_adapter.py",
    "benchmarks/triton_harness.py",
    "export/__main__.py",
    "tests/test_cli.py",
    "tests/test_docs.py",
    "tests/test_fileio.py",
    "tests/test_style.py",
]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_ruff_check_passes():
    done = ruff("check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_leaves_the_formatted_modules_alone():
    done = ruff("format", "--check", *FORMATTED)
    assert done.returncode == 0, done.stdout + done.stderr
