"""The static TensorRT compatibility check flags what the TensorRT ONNX parser rejects (or our policy
forbids), and passes a plain graph. Our exported graph passing is in test_export.py."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.__main__ import main
from export.trt_check import check_model, load_support


def graph_of(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def tensor(name, elem_type=TensorProto.FLOAT, shape=("batch", 8)):
    return helper.make_tensor_value_info(name, elem_type, list(shape))


def topk_graph(k: int, k_constant: bool = True) -> onnx.ModelProto:
    inputs = [tensor("x", shape=("batch", 5000))]
    initializers = [("k", np.array([k], np.int64))] if k_constant else []
    if not k_constant:
        inputs.append(tensor("k", TensorProto.INT64, (1,)))
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1)
    return graph_of([node], inputs, [tensor("v", shape=("batch", k)), tensor("i", TensorProto.INT32, ("batch", k))], initializers)


def test_plain_graph_passes():
    model = graph_of([helper.make_node("Relu", ["x"], ["y"])], [tensor("x")], [tensor("y")])
    result = check_model(model)
    assert result.passed and "PASS" in result.verdict()


@pytest.mark.parametrize(
    "model, expected",
    [
        (topk_graph(5000), "exceeds the parser's limit 3839"),
        (topk_graph(100, k_constant=False), "K must be an initializer"),
        (
            graph_of([helper.make_node("NonZero", ["x"], ["y"])], [tensor("x")], [tensor("y", TensorProto.INT32, (2, "n"))]),
            "NonZero not allowed",
        ),
        (graph_of([helper.make_node("Mystery", ["x"], ["y"], domain="custom.ops")], [tensor("x")], [tensor("y")]), "custom domain"),
        (
            graph_of(
                [helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic")],
                [tensor("x", shape=(1, 3, 8, 8))],
                [tensor("y", shape=(1, 3, 16, 16))],
                [("s", np.array([1, 1, 2, 2], np.float32))],
            ),
            "mode='cubic' unsupported",
        ),
        (
            graph_of([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64)], [tensor("x")], [tensor("y", TensorProto.INT64)]),
            "INT64 network outputs",
        ),
        (
            graph_of([helper.make_node("Relu", ["x"], ["y"])], [tensor("x")], [tensor("y", shape=("batch", "n"))]),
            "not determined by the input shapes",
        ),
        (graph_of([helper.make_node("Relu", ["x"], ["y"])], [tensor("x")], [tensor("y")], opset=7), "outside the parser's"),
    ],
    ids=[
        "topk-k-too-large",
        "topk-k-not-constant",
        "nonzero",
        "custom-op",
        "resize-cubic",
        "int64-output",
        "data-dependent-output",
        "old-opset",
    ],
)
def test_unsupported_graphs_are_flagged(model, expected):
    result = check_model(model)
    assert not result.passed
    assert expected in result.verdict()


def test_data_file_names_its_tensorrt_version():
    support = load_support()
    assert support["tensorrt_version"].startswith("10.")
    assert "TopK" in support["restrictions"] and "NonZero" in support["policy"]["forbidden_ops"]


def test_cli_check_fails_on_a_bad_graph(tmp_path, capsys):
    path = tmp_path / "bad.onnx"
    onnx.save(topk_graph(5000), str(path))
    assert main(["--check", str(path)]) == 1
    assert "FAIL" in capsys.readouterr().out
