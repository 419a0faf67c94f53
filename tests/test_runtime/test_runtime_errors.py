"""Every way to hand ``python -m runtime`` a model or option it cannot use ends in one line naming the
culprit, with exit status 2, and nothing written."""

from __future__ import annotations

import importlib.util
import re

import cv2
import numpy as np
import onnx
import pytest

from runtime import ModelError, Segmenter
from runtime.__main__ import main

TENSORRT_INSTALLED = importlib.util.find_spec("tensorrt") is not None
needs_no_tensorrt = pytest.mark.skipif(TENSORRT_INSTALLED, reason="TensorRT is installed here: it is not a missing backend")


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, onnx_model):
    """A corrupt file (ONNX and IR), our graph with its metadata stripped, our graph at an opset this
    onnxruntime does not implement, our graph without its mask_scores output (as exported before it), and
    a file TensorRT would take."""
    folder = tmp_path_factory.mktemp("bad-models")
    (folder / "corrupt.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "corrupt.xml").write_bytes(np.random.default_rng(0).bytes(4096))
    foreign = onnx.load(str(onnx_model))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(folder / "foreign.onnx"))
    future = onnx.load(str(onnx_model))
    next(o for o in future.opset_import if o.domain in ("", "ai.onnx")).version = 99
    onnx.save(future, str(folder / "future_opset.onnx"))
    older = onnx.load(str(onnx_model))
    older.graph.output.remove(next(o for o in older.graph.output if o.name == "mask_scores"))
    onnx.save(older, str(folder / "before_mask_scores.onnx"))
    (folder / "model.engine").write_bytes(b"serialized engine")
    return folder


@pytest.fixture(scope="module")
def image_file(tmp_path_factory, images):
    path = tmp_path_factory.mktemp("inputs") / "scene.png"
    cv2.imwrite(str(path), images[0])
    return path


CASES = [
    pytest.param(["--model", "{bad}/absent.onnx"], r"{bad}/absent.onnx: no such model file", id="missing model"),
    pytest.param(["--model", "{bad}/corrupt.onnx"], r"{bad}/corrupt.onnx: onnxruntime cannot load it: .*", id="corrupt model"),
    pytest.param(
        ["--model", "{bad}/corrupt.onnx", "--backend", "openvino"],
        r"{bad}/corrupt.onnx: OpenVINO cannot load it: not a valid ONNX file",
        id="corrupt model, openvino",
    ),
    pytest.param(
        ["--model", "{bad}/corrupt.xml"],
        r"{bad}/corrupt.xml: OpenVINO cannot load it: .*",
        id="corrupt IR",
    ),
    pytest.param(
        ["--model", "{bad}/corrupt.xml", "--backend", "onnxruntime"],
        r"{bad}/corrupt.xml: backend onnxruntime cannot read a .xml file \(backend openvino does; auto picks it\)",
        id="IR to onnxruntime",
    ),
    pytest.param(
        ["--backend", "tensorrt"],
        r".*\.onnx: backend tensorrt cannot read a .onnx file \(backend onnxruntime or openvino does; auto picks it\)",
        id="graph to tensorrt",
    ),
    pytest.param(
        ["--model", "{bad}/future_opset.onnx"],
        r"{bad}/future_opset.onnx: onnxruntime [\d.]+ cannot run it \(the graph is ai.onnx opset 99, it implements up to "
        r"opset \d+\); graphs of python -m export need onnxruntime >= 1.25 \(YOLACT\+\+: DeformConv\): pip install --upgrade onnxruntime",
        id="opset newer than onnxruntime",
    ),
    pytest.param(
        ["--model", "{bad}/before_mask_scores.onnx"],
        r"{bad}/before_mask_scores.onnx: no 'mask_scores' output: exported by an older python -m export; export it again",
        id="graph without mask_scores",
    ),
    pytest.param(
        ["--model", "{bad}/foreign.onnx"],
        r"{bad}/foreign.onnx: no YOLACT metadata \(yolact.class_names missing\): not a model written by python -m export",
        id="foreign model",
    ),
    pytest.param(
        ["--model", "{fixed}", "--batch-size", "3"], r"batch size 3: {fixed} takes at most 2 images per batch", id="batch over the limit"
    ),
    pytest.param(
        ["--backend", "tflite"], r"backend 'tflite': unknown \(choose auto, onnxruntime, openvino, tensorrt\)", id="unknown backend"
    ),
    pytest.param(["--precision", "int4"], r"precision 'int4': unknown \(choose fp32, fp16, bf16\)", id="unknown precision"),
    pytest.param(["--precision", "bf16"], r"precision bf16: onnxruntime runs the graph in fp32 here .*", id="precision the backend lacks"),
    pytest.param(["--backend", "openvino", "--device", "npu"], r"device 'npu': OpenVINO sees CPU.* here .*", id="unknown device"),
    pytest.param(["--device", "cuda"], r"device cuda: this onnxruntime has no CUDA or TensorRT provider .*", id="device not installed"),
    pytest.param(["--threads", "0"], r"argument --threads: must be a positive integer, not 0", id="zero threads"),
    pytest.param(["--score-threshold", "1.5"], r"score threshold 1.5: must be in \[0, 1\)", id="threshold out of range"),
    pytest.param(
        ["--model", "{bad}/model.engine", "--backend", "tensorrt"],
        r"backend tensorrt: tensorrt is not installed \(.*\)",
        id="backend not installed",
        marks=needs_no_tensorrt,
    ),
    pytest.param(
        ["--model", "{bad}/model.engine"],
        r"backend tensorrt: tensorrt is not installed \(.*\)",
        id="engine without TensorRT",
        marks=needs_no_tensorrt,
    ),
    pytest.param(["{bad}/absent.jpg"], r"{bad}/absent.jpg: no such file or folder", id="missing input"),
]


@pytest.mark.parametrize("arguments, message", CASES)
def test_one_line_and_status_2(arguments, message, bad_models, onnx_model, fixed_size_model, image_file, tmp_path, capsys):
    paths = {"bad": str(bad_models), "fixed": str(fixed_size_model)}
    arguments = [a.format(**paths) for a in arguments]
    if "--model" not in arguments:
        arguments += ["--model", str(onnx_model)]
    if not any(a.endswith(".jpg") for a in arguments):
        arguments.append(str(image_file))
    out = tmp_path / "out"

    try:
        status = main([*arguments, "--out", str(out)])
    except SystemExit as refused:  # the options argparse itself checks
        status = refused.code

    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert re.fullmatch("python -m runtime: error: " + message.format(**{k: re.escape(v) for k, v in paths.items()}) + "\n", captured.err)
    assert not out.exists()


def test_the_python_api_raises_the_same_errors(bad_models, onnx_model):
    with pytest.raises(ModelError, match="foreign.onnx: no YOLACT metadata"):
        Segmenter(bad_models / "foreign.onnx")
    with pytest.raises(ModelError, match="backend 'tflite': unknown"):
        Segmenter(bad_models / "foreign.onnx", backend="tflite")
    with pytest.raises(ModelError, match="threads 0: must be a whole number of at least 1"):  # the CLI's argparse refuses it first
        Segmenter(onnx_model, threads=0)
