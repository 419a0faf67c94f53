"""``python -m export --to triton``: the model repository, its config checked against Triton's own schema
(the ModelConfig protobuf that tritonclient ships), its outputs those of the graph file, atomic writes
and the refusal of a non-empty target. One export per module (yolact_tiny)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
from google.protobuf import text_format

from export.__main__ import main
from export.triton_repo import RepositoryOptions, write_repository
from runtime import Segmenter
from yolact import Yolact, get_config, save_weights

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient (pip install -e '.[dev]')")

ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32,
    onnx.TensorProto.INT32: model_config_pb2.TYPE_INT32,
    onnx.TensorProto.UINT8: model_config_pb2.TYPE_UINT8,
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("triton-export") / "tiny.pth"
    save_weights(Yolact(get_config("yolact_tiny")), path)
    return path


@pytest.fixture(scope="module")
def repository(weights):
    repo = weights.with_name("repo")
    args = [
        "--weights",
        str(weights),
        "--to",
        "triton",
        "--out",
        str(repo),
        "--no-check",
        "--max-batch",
        "4",
        "--preferred-batch",
        "2",
        "4",
        "--queue-delay-us",
        "500",
        "--instances",
        "2",
    ]
    assert main(args) == 0
    return repo


def parsed(config_file) -> model_config_pb2.ModelConfig:
    """Strict: an unknown field or a bad enum value is a ParseError."""
    return text_format.Parse(config_file.read_text(), model_config_pb2.ModelConfig())


def test_layout_and_config_follow_triton_schema(repository):
    assert sorted(p.relative_to(repository).as_posix() for p in repository.rglob("*")) == [
        "yolact",
        "yolact/1",
        "yolact/1/model.onnx",
        "yolact/config.pbtxt",
    ]
    config = parsed(repository / "yolact" / "config.pbtxt")
    assert config.name == "yolact" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 4
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("images", model_config_pb2.TYPE_UINT8, [-1, -1, 3])]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    assert json.loads(config.parameters["yolact.class_names"].string_value) == list(get_config("yolact_tiny").class_names)
    assert json.loads(config.parameters["yolact.input_size"].string_value) == [128, 128]


def test_outputs_are_the_graph_files_own(repository):
    config = parsed(repository / "yolact" / "config.pbtxt")
    graph = onnx.load(str(repository / "yolact" / "1" / "model.onnx"), load_external_data=False)
    expected = []
    for output in graph.graph.output:
        dims = [d.dim_value for d in output.type.tensor_type.shape.dim][1:]
        expected.append((output.name, ONNX_TO_TRITON[output.type.tensor_type.elem_type], dims or [1]))
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == expected
    # The per-image count is [B] in the graph: served as [B, 1] through an empty reshape.
    reshaped = [o.name for o in config.output if o.HasField("reshape")]
    assert reshaped == ["num_dets"] and list(config.output[0].reshape.shape) == []


def test_a_misspelt_field_fails_the_schema(repository):
    text = (repository / "yolact" / "config.pbtxt").read_text()
    for broken in (text.replace("max_batch_size", "max_batch"), text.replace("KIND_CPU", "KIND_CPUS")):
        with pytest.raises(text_format.ParseError):
            text_format.Parse(broken, model_config_pb2.ModelConfig())


def test_repository_graph_runs_in_the_runtime(repository):
    with Segmenter(repository / "yolact" / "1" / "model.onnx", threads=1) as segmenter:
        assert segmenter.class_names == list(get_config("yolact_tiny").class_names)
        assert len(segmenter.infer(np.zeros((2, 64, 80, 3), np.uint8)).scores) == 2


def test_non_empty_target_is_refused_unless_forced(repository, weights, tmp_path, capsys):
    before = (repository / "yolact" / "config.pbtxt").read_text()
    assert main(["--weights", str(weights), "--to", "triton", "--out", str(repository), "--no-check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"python -m export: error: --out {repository}: not empty (--force replaces it)"
    assert (repository / "yolact" / "config.pbtxt").read_text() == before
    # --force: the new repository replaces the old one whole, with nothing left beside it.
    graph = tmp_path / "model.onnx"
    graph.write_bytes((repository / "yolact" / "1" / "model.onnx").read_bytes())
    write_repository(graph, repository, RepositoryOptions(name="renamed"), force=True)
    assert sorted(p.name for p in repository.iterdir()) == ["renamed"]
    assert parsed(repository / "renamed" / "config.pbtxt").max_batch_size == 8
    assert sorted(p.name for p in repository.parent.iterdir() if p.name.startswith(".")) == []
    # An existing empty folder is not refused.
    empty = tmp_path / "empty"
    empty.mkdir()
    write_repository(graph, empty, RepositoryOptions())
    assert (empty / "yolact" / "1" / "model.onnx").is_file()


def test_plan_without_tensorrt_fails_in_one_line_and_writes_nothing(weights, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed: the plan would be built")
    out = tmp_path / "repo"
    assert main(["--weights", str(weights), "--to", "triton", "--plan", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m export: error: ") and "\n" not in err and "TensorRT" in err
    assert not out.exists()


def test_int8_graph_goes_in(weights, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        cv2.imwrite(str(calib / f"{index}.png"), rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    out = tmp_path / "repo"
    assert main(["--weights", str(weights), "--to", "triton", "--int8", "--calib", str(calib), "--out", str(out), "--no-check"]) == 0
    graph = onnx.load(str(out / "yolact" / "1" / "model.onnx"))
    assert "QuantizeLinear" in {node.op_type for node in graph.graph.node}
    config = parsed(out / "yolact" / "config.pbtxt")
    assert config.parameters["yolact.precision"].string_value.startswith("int8")
