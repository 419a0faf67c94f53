"""The front door: a README of at most 300 lines that starts with the set-up, the main job and the test
command and links only to pages that exist, and the MkDocs site, built strictly (a broken link or a page
missing from the navigation fails)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_readme_is_short_and_starts_with_what_a_new_user_runs():
    lines = README.read_text().splitlines()
    assert len(lines) <= 300
    head = "\n".join(lines[:40])
    for command in ("python3 -m venv .venv && . .venv/bin/activate", 'pip install -e ".[dev]"', "python -m train", "python -m pytest -q"):
        assert command in head, f"the README's first 40 lines lack {command!r}"


def test_readme_links_to_pages_that_exist():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local, "the README links to the docs"
    assert [link for link in local if not (REPO / link).is_file()] == []


def test_mkdocs_builds_strictly(tmp_path):
    pytest.importorskip("material", reason="mkdocs-material is in the dev extra (pip install -e '.[dev]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "performance" / "index.html").is_file()
