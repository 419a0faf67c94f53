"""ruff, as CI runs it (the suite is CI's one command): the lint rules of pyproject.toml and ``ruff format
--check`` over the whole tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ruff", reason="ruff is in the dev extra (pip install -e '.[dev]')")

REPO = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_ruff_check_passes():
    done = ruff("check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_leaves_the_tree_alone():
    done = ruff("format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr
