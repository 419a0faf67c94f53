"""The Python example of the docs' Python runtime page (docs/python-runtime.md), run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "python-runtime.md"


def readme_example() -> str:
    """The page's first ```python block."""
    return re.search(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL).group(1)


def test_readme_example_runs_as_written(onnx_model, images, tmp_path):
    example = readme_example()
    # The files it names, made here.
    shutil.copy(onnx_model, tmp_path / "model.onnx")
    cv2.imwrite(str(tmp_path / "street.jpg"), images[0])
    cv2.imwrite(str(tmp_path / "park.jpg"), images[1])
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("onnxruntime CPUExecutionProvider fp32 ['circle', 'square'")
    assert re.fullmatch(r"\w+ 0\.\d\d \[\d+, \d+, \d+, \d+\]", lines[1])
    assert sum(line.startswith("(100, ") for line in lines) == 2  # the two images' mask arrays
