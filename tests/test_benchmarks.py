"""The benchmark commands run on the tiny config and write their figures with the machine's details (no
timing is asserted); the docs' performance page is what the committed results give."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def only(folder: Path, pattern: str) -> Path:
    (path,) = folder.glob(pattern)
    return path


def test_fps_times_every_stage_of_each_variant(tmp_path):
    result = run(
        "-m",
        "benchmarks.fps",
        "--config",
        "yolact_tiny",
        "--variants",
        "pytorch_fp32",
        "onnxruntime_fp32",
        "openvino_f32",
        "openvino_ir_f32",
        "pytorch_fp16",
        "--batch",
        "1",
        "2",
        "--iters",
        "2",
        "--rounds",
        "2",
        "--warmup",
        "1",
        "--image-size",
        "90x120",
        "--threads",
        "2",
        "--out-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(only(tmp_path, "fps_*_yolact_tiny_*.json").read_text())
    assert report["image_hw"] == [90, 120] and report["machine"]["cores"] >= 1
    assert report["machine"]["packages"]["onnxruntime"] and report["machine"]["threads"] == 2
    assert [(r["variant"], r["batch"]) for r in report["results"]] == [
        (v, b) for v in ("pytorch_fp32", "onnxruntime_fp32", "openvino_f32", "openvino_ir_f32") for b in (1, 2)
    ]
    for row in report["results"]:
        assert row["detections_per_image"] == 100  # recipe weights fill every slot
        assert row["iters"] == 2 and row["rounds"] == 2  # one timed run in each of two rounds
        assert row["ms"]["total"]["median"] > 0 and row["images_per_s"] > 0 and row["peak_rss_mib"] > 0
        assert {"decode_upload", "graph", "paste", "total"} <= set(row["ms"])
        # The bytes of one image's masks: PyTorch keeps dense planes, the runtime its compact crops.
        dense = row["mask_mib_per_image"]["dense"]
        assert dense == round(100 * 90 * 120 / 2**20, 3)
        kept = row["mask_mib_per_image"]["kept"]
        assert kept == dense if row["backend"] == "pytorch" else 0 < kept < dense / 10
    ort_row = report["results"][2]
    # The in-graph post-processing is timed alone (a real, positive time); the rest of the graph is the network.
    assert 0 < ort_row["in_graph_postprocess_ms"] < ort_row["ms"]["graph"]["median"] * 2
    assert abs(ort_row["network_ms"] + ort_row["in_graph_postprocess_ms"] - ort_row["ms"]["graph"]["median"]) < 1e-2
    share = (ort_row["in_graph_postprocess_ms"] + ort_row["ms"]["paste"]["median"]) / ort_row["ms"]["total"]["median"]
    assert abs(ort_row["postprocess_and_paste_share"] - share) < 1e-3
    assert "CUDA" in report["skipped"]["pytorch_fp16"]
    # onnxruntime's profile splits the graph's kernel time by operator type: shares of one whole.
    operators = ort_row["operator_time_share"]
    assert "Conv" in operators and abs(sum(operators.values()) - 1) < 0.01
    assert "| onnxruntime_fp32 | 2 | 100 |" in only(tmp_path, "fps_*.md").read_text()
    chart = cv2.imread(str(only(tmp_path, "fps_*.png")))
    assert chart is not None and chart.shape[1] > 600


def test_deform_conv_times_each_deformable_layer_in_every_kernel(tmp_path):
    result = run(
        "-m",
        "benchmarks.deform_conv",
        "--config",
        "yolact_plus_tiny",
        "--image-size",
        "90x120",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--out-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(only(tmp_path, "deform_conv_*_yolact_plus_tiny_*.json").read_text())
    assert [layer["name"] for layer in report["layers"]] == ["backbone.layers.3.0.conv2", "backbone.layers.3.1.conv2"]
    for layer in report["layers"]:
        assert all(ms > 0 for ms in layer["ms"].values()) and len(layer["ms"]) == 4
        # onnxruntime's DeformConv and OpenVINO's kernel compute torchvision's deformable convolution.
        assert layer["max_abs_diff_vs_torchvision"]["onnxruntime_deform_conv"] < 1e-4
        assert layer["max_abs_diff_vs_torchvision"]["openvino_ir"] < 1e-2
    assert report["machine"]["vector_isa"] in ("amx", "avx512-bf16", "avx512-vnni", "avx512", "avx2")
    assert "| all 2 |" in only(tmp_path, "deform_conv_*.md").read_text()


def test_deform_conv_refuses_a_config_without_deformable_layers(tmp_path):
    result = run("-m", "benchmarks.deform_conv", "--config", "yolact_tiny", "--out-dir", str(tmp_path))
    assert result.returncode == 2 and "--config yolact_tiny: it has no deformable convolutions" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and not list(tmp_path.iterdir())


def test_machines_of_one_model_name_are_told_apart_by_vector_extension():
    from benchmarks.machine import machine_tag, vector_isa

    assert vector_isa({"sse2", "avx2"}) == "avx2"
    assert vector_isa({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}) == "avx512-bf16"
    assert vector_isa({"sse2"}) is None
    epyc = {"cpu": "AMD EPYC", "cores": 2, "gpu": None}
    assert machine_tag({**epyc, "vector_isa": "avx2"}) == "amd-epyc-avx2-2c"
    assert machine_tag({**epyc, "vector_isa": "avx512-bf16"}) == "amd-epyc-avx512-bf16-2c"
    assert machine_tag(epyc) == "amd-epyc-2c"  # records from before the extension was recorded


def test_one_batch_size_draws_images_per_s_as_bars(tmp_path):
    """A run at one batch size: the right panel has one bar per variant, as long as its images/s."""
    import numpy as np

    from benchmarks.charts import STAGE_COLORS, fps_chart

    stages = {stage: {"median": 5.0, "p90": 6.0} for stage in ("decode_upload", "graph", "paste", "total")}
    rates = {"slow": 10.0, "fast": 40.0}
    report = {
        "config": "yolact_tiny",
        "image_hw": [90, 120],
        "where": "here",
        "results": [{"variant": name, "batch": 1, "ms": stages, "images_per_s": rate} for name, rate in rates.items()],
    }
    fps_chart(report, tmp_path / "chart.png")
    chart = cv2.imread(str(tmp_path / "chart.png"))
    right = chart[:, chart.shape[1] // 2 :]
    blue = tuple(int(STAGE_COLORS["graph"][i : i + 2], 16) for i in (5, 3, 1))  # BGR
    bar_pixels = np.all(np.abs(right.astype(int) - blue) < 8, axis=2)
    rows = np.flatnonzero(bar_pixels.any(axis=1))
    assert rows.size > 0, "no bars in the images/s panel"
    # Two bars, the second (fast) four times as long as the first.
    bars = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    assert len(bars) == 2
    lengths = [bar_pixels[bar].sum(axis=1).max() for bar in bars]
    assert abs(lengths[1] / lengths[0] - 4) < 0.3


def test_variants_that_cannot_run_a_yolact_plus_model_say_why():
    from benchmarks.variants import SPECS, skip_reason

    assert "DeformConv" in skip_reason(SPECS["openvino_f32"], "cpu", "yolact++")
    assert "DeformConv" in skip_reason(SPECS["openvino_int8"], "cpu", "yolact++")
    assert skip_reason(SPECS["openvino_ir_f32"], "cpu", "yolact++") is None
    assert skip_reason(SPECS["onnxruntime_fp32"], "cpu", "yolact++") is None
    assert skip_reason(SPECS["openvino_f32"], "cpu", "yolact") is None


def test_fps_rejects_a_bad_image_size(tmp_path):
    result = run("-m", "benchmarks.fps", "--image-size", "big", "--out-dir", str(tmp_path), timeout=120)
    assert result.returncode == 2
    assert "--image-size 'big'" in result.stderr
    assert not list(tmp_path.iterdir())


def test_masks_benchmark_rejects_a_baseline_git_cannot_show(tmp_path):
    result = run("-m", "benchmarks.masks", "--baseline-commit", "no-such-commit", "--out-dir", str(tmp_path), timeout=120)
    assert result.returncode == 2 and "--baseline-commit no-such-commit: git cannot show" in result.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())


def test_parity_of_onnxruntime_fp32_passes(tmp_path):
    result = run(
        "-m",
        "benchmarks.parity",
        "--recipe-weights",
        "--config",
        "yolact_tiny",
        "--variants",
        "pytorch_fp32",
        "onnxruntime_fp32",
        "openvino_ir_f32",
        "--max-images",
        "12",
        "--threads",
        "2",
        "--out-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(only(tmp_path, "parity_*_yolact_tiny_*.json").read_text())
    assert report["images"] == 12 and report["tolerance_ap_points"] == {"fp32": 0.1, "reduced": 0.5, "int8": 1.0}
    assert list(report["variants"]) == ["pytorch_fp32", "onnxruntime_fp32", "openvino_ir_f32"]
    for name in ("onnxruntime_fp32", "openvino_ir_f32"):
        row = report["variants"][name]
        assert row["verdict"] == "pass" and abs(row["delta_ap_points"]["mask/AP"]) <= 0.1
    assert "| onnxruntime_fp32 |" in only(tmp_path, "parity_*.md").read_text()


def test_parity_fails_beyond_its_tolerance(tmp_path):
    """A tolerance below any real difference (INT8 moves scores) must fail the run."""
    result = run(
        "-m",
        "benchmarks.parity",
        "--recipe-weights",
        "--config",
        "yolact_tiny",
        "--variants",
        "pytorch_fp32",
        "onnxruntime_int8",
        "openvino_ir_int8",
        "--max-images",
        "12",
        "--calib-images",
        "4",
        "--tol-int8",
        "0",
        "--threads",
        "2",
        "--out-dir",
        str(tmp_path),
    )
    assert result.returncode == 1 and "onnxruntime_int8, openvino_ir_int8 outside tolerance" in result.stderr
    report = json.loads(only(tmp_path, "parity_*.json").read_text())  # the report is written all the same
    assert report["variants"]["onnxruntime_int8"]["verdict"] == report["variants"]["openvino_ir_int8"]["verdict"] == "FAIL"
    recipe = report["int8_recipe"]
    assert recipe["images"] == 4 and recipe["method"] == "minmax" and "Conv, Relu, Add" in recipe["quantized"]


def test_parity_without_weights_is_one_line(tmp_path):
    result = run("-m", "benchmarks.parity", "--weights", str(tmp_path / "none.pth"), timeout=120)
    assert result.returncode == 2 and "none.pth: no such file" in result.stderr


def test_performance_page_matches_the_results():
    result = run("-m", "benchmarks.performance_page", "--check", timeout=120)
    assert result.returncode == 0, result.stderr


def test_compiled_pytorch_variant_equals_eager():
    """The GPU-only torch.compile variant's code path, run on the CPU at FP32: same detections as eager."""
    import numpy as np
    import torch

    from benchmarks.variants import VariantSpec, open_variant
    from yolact.config import get_config
    from yolact.recipe import recipe_model

    def tiny():
        return recipe_model(get_config("yolact_tiny")).eval()

    images = np.random.default_rng(0).integers(0, 256, (2, 90, 120, 3), dtype=np.uint8)
    eager = open_variant(VariantSpec("eager", "pytorch", "fp32", "fp32"), tiny, None, "cpu", 2)
    compiled = open_variant(VariantSpec("compiled", "pytorch", "fp32", "fp32", compiled=True), tiny, None, "cpu", 2)
    expected = eager.graph(eager.prepare(images))
    for _ in range(2):  # compiling run, then a cached one
        result = compiled.graph(compiled.prepare(images))
        assert result.num_dets.tolist() == expected.num_dets.tolist() == [100, 100]
        assert torch.equal(result.classes, expected.classes)
        torch.testing.assert_close(result.boxes, expected.boxes, atol=1e-5, rtol=0)
        torch.testing.assert_close(result.masks, expected.masks, atol=1e-4, rtol=0)


def test_mask_rescoring_scores_every_detection_against_its_ground_truth(tmp_path):
    """Every detection above the score floor is counted once, with the correlations of the three rankings
    with its actual IoU, a scatter plot, and a one-line refusal for a model without a mask-IoU head."""
    from yolact import get_config
    from yolact.checkpoint import load_model, save_weights
    from yolact.data import ensure_shapes_dataset
    from yolact.inference import predict
    from yolact.recipe import recipe_model

    shapes = ensure_shapes_dataset(tmp_path / "shapes", num_train=1, num_val=2)
    weights = tmp_path / "yolact_plus_tiny.pth"
    save_weights(recipe_model(get_config("yolact_plus_tiny")), weights)
    result = run(
        "-m",
        "benchmarks.mask_rescoring",
        "--weights",
        str(weights),
        "--images",
        str(shapes.val_images),
        "--annotations",
        str(shapes.val_annotations),
        "--out-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(only(tmp_path, "mask_rescoring_*_yolact_plus_tiny_*.json").read_text())
    model = load_model(weights)
    expected = sum(len(predict(model, [cv2.imread(str(p))])[0].above(0.05)) for p in sorted(shapes.val_images.iterdir()))
    summary = report["summary"]
    assert summary["detections"] == expected > 0
    assert all(-1 <= c <= 1 for c in summary["corr_actual_iou_with"].values())
    assert 0 <= summary["predicted_iou_zero_share"] <= 1
    assert only(tmp_path, "mask_rescoring_*.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    v1 = tmp_path / "yolact_tiny.pth"
    save_weights(recipe_model(get_config("yolact_tiny")), v1)
    refused = run("-m", "benchmarks.mask_rescoring", "--weights", str(v1), "--out-dir", str(tmp_path / "none"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1 and "mask-IoU head" in refused.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    refused = run(
        "-m",
        "benchmarks.mask_rescoring",
        "--weights",
        str(weights),
        "--images",
        str(shapes.val_images),
        "--annotations",
        str(broken),
        "--out-dir",
        str(tmp_path / "none"),
    )
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1 and "broken.json" in refused.stderr
    assert not (tmp_path / "none").exists()


def test_divergence_finds_the_one_changed_convolution(tmp_path):
    """A copy of the graph with one convolution's weights scaled by 1.01: every tensor before that
    convolution is equal, the first one above tolerance is its output, and the final outputs differ."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from export.onnx_export import export_onnx
    from yolact.config import get_config
    from yolact.recipe import recipe_model

    graph = tmp_path / "tiny.onnx"
    export_onnx(recipe_model(get_config("yolact_tiny")), graph)
    changed = onnx.load(str(graph))
    initializers = {tensor.name: tensor for tensor in changed.graph.initializer}
    convolutions = [node for node in changed.graph.node if node.op_type == "Conv" and node.input[1] in initializers]
    target = convolutions[3]  # in the backbone: every output depends on it
    weight = initializers[target.input[1]]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(1.01), weight.name))
    onnx.save(changed, str(tmp_path / "changed.onnx"))

    result = run(
        "-m",
        "benchmarks.divergence",
        "--model",
        str(graph),
        "--candidate-model",
        str(tmp_path / "changed.onnx"),
        "--candidate",
        "onnxruntime:cpu",
        "--out-dir",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(only(tmp_path / "out", "divergence_*_tiny_*.json").read_text())
    assert report["first_above_tolerance"]["tensor"] == target.output[0]
    assert report["first_above_tolerance"]["op"] == "Conv"
    rows = report["tensors"]
    first = next(i for i, row in enumerate(rows) if row["tensor"] == target.output[0])
    assert all(row["max_rel"] == 0 for row in rows[:first]), "nothing before the changed convolution differs"
    assert len(rows) > 200 and any(d["max_rel"] > 0 for d in report["final_outputs"].values())
    assert f"`{target.output[0]}` (Conv" in only(tmp_path / "out", "divergence_*.md").read_text()


def test_divergence_of_a_graph_with_itself_is_zero_and_bad_input_is_one_line(tmp_path):
    result = run(
        "-m", "benchmarks.divergence", "--config", "yolact_plus_tiny", "--candidate", "onnxruntime:cpu", "--out-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(only(tmp_path, "divergence_*_yolact_plus_tiny_*.json").read_text())
    assert report["first_above_tolerance"] is None and report["first_changed_selection"] is None
    assert any(row["op"] == "DeformConv" for row in report["tensors"])
    assert all(row["max_rel"] == 0 for row in report["tensors"])
    for spec, message in (
        ("cuda:1", "expected onnxruntime:"),
        ("onnxruntime:cpu,use_tf32", "is not KEY=VALUE"),
        ("openvino:f32", "OpenVINO's ONNX reader does not convert DeformConv"),
    ):
        bad = run("-m", "benchmarks.divergence", "--config", "yolact_plus_tiny", "--candidate", spec, "--out-dir", str(tmp_path / "bad"))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert bad.stderr.strip().splitlines()[-1].startswith("python -m benchmarks.divergence: error: backend")
        assert not (tmp_path / "bad").exists()
    (tmp_path / "corrupt.onnx").write_bytes(b"not a graph" * 100)
    bad = run(
        "-m",
        "benchmarks.divergence",
        "--model",
        str(tmp_path / "corrupt.onnx"),
        "--candidate",
        "onnxruntime:cpu",
        "--out-dir",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 2 and f"error: {tmp_path / 'corrupt.onnx'}: not an ONNX graph" in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()
