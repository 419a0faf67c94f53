"""The runtime needs no torch: it runs a model where ``import torch`` fails, and ``pip install ./runtime``
into a fresh virtual environment gives a working ``python -m runtime``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]

# Installed as sitecustomize: every later import of these packages fails, as on a machine without them.
IMPORT_BLOCKER = """
import importlib.abc
import sys

BLOCKED = {"torch", "torchvision", "yolact", "export"}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the runtime must run without it")


sys.meta_path.insert(0, Blocker())
"""

API_RUN = """
import sys
import runtime
seg = runtime.Segmenter(sys.argv[1], threads=1)
dets = seg(sys.argv[2])[0]
print(seg.backend_name, len(dets), dets.masks.shape)
assert not {"torch", "yolact"} & set(sys.modules), "the runtime imported torch or yolact"
"""


def test_runs_where_torch_cannot_be_imported(onnx_model, images, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(IMPORT_BLOCKER)
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), images[0])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)])}

    def python(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert "torch is blocked" in python("-c", "import torch").stderr
    api = python("-c", API_RUN, str(onnx_model), str(image))
    assert api.returncode == 0, api.stderr
    assert api.stdout.split()[:2] == ["onnxruntime", "100"]
    cli = python("-m", "runtime", "--model", str(onnx_model), str(image), "--out", str(tmp_path / "out"), "--threads", "1")
    assert cli.returncode == 0, cli.stderr
    assert len(json.loads((tmp_path / "out" / "scene.json").read_text())["detections"]) == 100


def test_pip_install_into_a_fresh_venv_without_torch(onnx_model, images, tmp_path):
    """``pip install ./runtime`` (its dependencies from pip's cache or the index), then a run from outside
    the repository so that only the installed package can be imported."""
    started = time.monotonic()
    # A copy of the package, so that the build's build/ and *.egg-info stay out of the working tree.
    source = tmp_path / "runtime"
    shutil.copytree(REPO / "runtime", source, ignore=shutil.ignore_patterns("cpp", "build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    work = tmp_path / "work"
    work.mkdir()
    cv2.imwrite(str(work / "scene.jpg"), images[1])

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, *args], cwd=work, capture_output=True, text=True, timeout=120)

    assert run("-c", "import torch").returncode != 0
    located = run("-c", "import runtime; print(runtime.__file__)")
    assert located.stdout.startswith(str(venv)), located
    cli = run("-m", "runtime", "--model", str(onnx_model), "scene.jpg", "--out", "out", "--threads", "1")
    assert cli.returncode == 0, cli.stderr
    assert "backend onnxruntime" in cli.stdout
    assert json.loads((work / "out" / "scene.json").read_text())["detections"]
    # The serving command ships too, with the command-line helpers it shares with the toolkit; the server
    # itself is the [serve] extra (not installed here).
    served = run("-m", "runtime.serve", "--help")
    assert served.returncode == 0 and "--queue-delay-us" in served.stdout, served.stderr
    bad = run("-m", "runtime.serve", "--model", "m.onnx", "--instances", "0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--instances" in bad.stderr
    # The package's own command (no torch): yolact-run run|serve.
    command = subprocess.run([str(venv / "bin" / "yolact-run"), "run", "--help"], cwd=work, capture_output=True, text=True, timeout=60)
    assert command.returncode == 0 and command.stdout.startswith("usage: yolact-run run "), command.stderr
    print(f"fresh venv, install and run: {time.monotonic() - started:.0f} s")
