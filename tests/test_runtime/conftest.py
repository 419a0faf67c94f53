"""Models and images shared by the runtime tests, made once per session.

The model is yolact_tiny with the authors' fixture weight recipe (yolact.recipe) applied to its
own state dict: every one of the generated scenes gets all 100 detections, scores 0.45-0.94, three
classes, so the paste, the score filter and the batching all have work to do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.onnx_export import export_onnx
from export.openvino_export import export_openvino
from yolact import Yolact, get_config
from yolact.data.shapes import render_image
from yolact.recipe import recipe_model


def scenes(count: int, seed: int = 0) -> list[np.ndarray]:
    """Scenes of the embedded shapes dataset (its val images are made the same way), 256-400 px a side."""
    rng = np.random.default_rng(seed)
    return [render_image(rng)[0] for _ in range(count)]


def fixed_shape_copy(model: Path, out: Path, *args: str) -> Path:
    """``model`` with dynamic input dimensions fixed by onnxruntime's own tool."""
    subprocess.run(
        [sys.executable, "-m", "onnxruntime.tools.make_dynamic_shape_fixed", *args, str(model), str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="session")
def pytorch_model() -> Yolact:
    return recipe_model(get_config("yolact_tiny"))


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory, pytorch_model) -> Path:
    path = tmp_path_factory.mktemp("runtime-model") / "tiny.onnx"
    export_onnx(pytorch_model, path)
    return path


@pytest.fixture(scope="session")
def ir_model(onnx_model, pytorch_model) -> Path:
    """The OpenVINO IR of the same model (python -m export --to openvino)."""
    return export_openvino(pytorch_model, onnx_model.with_name("tiny.xml"))


@pytest.fixture(scope="session")
def fixed_size_model(onnx_model) -> Path:
    """A graph that takes exactly 2 images of 128x128 (its resize still inside), as a user makes for an
    accelerator that wants static shapes: the runtime must resize images and fill short batches."""
    return fixed_shape_copy(onnx_model, onnx_model.with_name("fixed128.onnx"), "--input_name", "images", "--input_shape", "2,128,128,3")


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    return scenes(4)
