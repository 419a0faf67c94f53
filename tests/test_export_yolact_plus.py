"""YOLACT++ deployed as one standard ONNX graph: the authors' yolact_plus_resnet50 (recipe weights under their
key names, in a file named as they name theirs) exported with ``python -m export``, then run in onnxruntime
on the fixture's image and compared with what their code computed (tests/data/yolact_plus_resnet50.npz):
Fast NMS detections, final boxes and masks, and the re-scored mask scores."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from authors_fixture import assert_close, load_fixture, match_detections, recipe_state_dict
from export.__main__ import main
from mask_equality import assert_exact_masks
from export.onnx_export import OUTPUT_NAMES, read_metadata
from export.trt_check import check_model
from yolact import BatchResult, to_image


def _onnxruntime_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    fixture = load_fixture("yolact_plus_resnet50")
    folder = tmp_path_factory.mktemp("plus")
    weights = folder / "yolact_plus_resnet50_54_800000.pth"  # a bare state dict, as the authors release them
    torch.save(recipe_state_dict(fixture.meta), weights)
    assert main(["--weights", str(weights), "--out", str(folder / "plus.onnx")]) == 0  # config from the name
    return fixture, folder / "plus.onnx"


CUDA = pytest.mark.skipif(not _onnxruntime_has_cuda(), reason="this onnxruntime has no CUDA provider (onnxruntime-gpu)")


# Measured on an H200 (onnxruntime-gpu 1.31.1, CUDA 13, use_tf32 off; benchmarks/gpu_checks.sh): the same 100
# detections and boxes, but scores up to 1.45e-3 and mask scores up to 9.3e-5 from the authors' (the CPU provider:
# within 2e-5). Cause not established; at the AP level the CUDA provider equals PyTorch (benchmarks.parity).
CUDA_SCORES = pytest.mark.xfail(reason="onnxruntime's CUDA provider: scores within 1.45e-3 of the authors', not 2e-5")


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=[CUDA, CUDA_SCORES])])
def exported(request, graph):
    """The graph's outputs on the fixture's image, on onnxruntime's CPU provider or its CUDA one (its
    DeformConv CUDA kernel; strict FP32, no TF32)."""
    from runtime import Segmenter

    fixture, path = graph
    segmenter = Segmenter(path, backend="onnxruntime", device=request.param, precision="fp32", score_threshold=0.0)
    outputs = segmenter.infer(fixture["image_bgr"][None])._asdict()
    return fixture, path, outputs


def test_graph_is_standard_onnx_with_deform_conv_at_opset_19(exported):
    _, path, _ = exported
    model = onnx.load(str(path))
    assert [(o.domain or "ai.onnx", o.version) for o in model.opset_import] == [("ai.onnx", 19)]
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("DeformConv") == 13  # every bottleneck of stages 3-5 of ResNet-50
    assert all(node.domain in ("", "ai.onnx") for node in model.graph.node), "no custom domain or op"
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    assert check_model(path).passed, check_model(path).verdict()
    metadata = read_metadata(path)
    assert metadata["yolact.config_name"] == "yolact_plus_resnet50"


def test_detections_match_the_authors(exported):
    fixture, _, out = exported
    n = int(out["num_dets"][0])
    assert n == fixture.meta["num_detections"]
    classes, boxes, scores = out["classes"][0, :n], out["boxes"][0, :n], out["scores"][0, :n]
    matched = match_detections(fixture, classes, boxes, scores, 1e-4)
    ok = matched >= 0
    assert ok.sum() >= len(matched) - 2
    assert_close(scores[matched[ok]], fixture["det_score"][ok], 2e-5, "scores")
    assert_close(boxes[matched[ok]], fixture["det_box"][ok], 1e-4, "boxes")


def test_final_masks_and_mask_scores_match_the_authors(exported):
    fixture, _, out = exported
    height, width = fixture.meta["image_hw"]
    final = to_image(BatchResult(*(torch.from_numpy(out[name]) for name in OUTPUT_NAMES)), 0, height, width)
    n = len(final)
    matched = match_detections(fixture, final.classes, out["boxes"][0, :n], final.scores, 1e-4)
    ok = matched >= 0
    assert_close(final.boxes[matched[ok]], fixture["final_box"][ok], 1, "final boxes (pixels)")
    assert_close(final.mask_scores[matched[ok]], fixture["final_mask_score"][ok], 2e-5, "mask scores")
    theirs_masks = np.unpackbits(fixture["final_masks"], axis=-1)[..., :width].astype(bool)
    agreement = (final.masks[matched[ok]] == theirs_masks[ok]).mean()
    assert agreement >= 0.999, f"final masks agree on {agreement:.5f} of pixels"
    assert (fixture["final_mask_score"][ok] > 0).sum() >= 10


def test_runtime_on_the_yolact_plus_graph_gives_the_final_image_step(exported):
    """The torch-free runtime (onnxruntime, its numpy/OpenCV paste) on the YOLACT++ graph: the detections,
    mask scores and masks of ``yolact.to_image`` on the same graph outputs."""
    from runtime import RawOutputs, Segmenter, paste_detections

    fixture, path, out = exported
    height, width = fixture.meta["image_hw"]
    reference = to_image(BatchResult(*(torch.from_numpy(out[name]) for name in OUTPUT_NAMES)), 0, height, width)
    (dets,) = Segmenter(path, backend="onnxruntime", score_threshold=0.0)([fixture["image_bgr"]])
    keep = reference.scores > 0.0
    np.testing.assert_array_equal(dets.class_ids, reference.classes[keep])
    assert_close(dets.scores, reference.scores[keep], 1e-6, "scores")
    assert_close(dets.mask_scores, reference.mask_scores[keep], 1e-6, "mask scores")
    assert_close(dets.boxes, reference.boxes[keep], 1, "boxes (pixels)")
    assert (dets.masks == reference.masks[keep]).mean() >= 0.999
    # The paste alone, on the same outputs as the reference: the compact masks are its masks exactly.
    pasted = paste_detections(RawOutputs(**{name: out[name] for name in RawOutputs._fields}), 0, height, width)
    assert_exact_masks(pasted, reference.masks[keep])


@pytest.mark.parametrize("name", ["yolact_plus_resnet50", "yolact_resnet50"])
def test_openvino_ir_matches_the_authors(tmp_path, name):
    """``--to openvino`` (the OpenVINO path for YOLACT++, whose DeformConv OpenVINO's ONNX reader rejects; a
    second path for v1) run by the runtime's OpenVINO backend on the fixture's image."""
    from runtime import Segmenter

    fixture = load_fixture(name)
    weights = tmp_path / f"{name}_54_800000.pth"
    torch.save(recipe_state_dict(fixture.meta), weights)
    assert main(["--weights", str(weights), "--to", "openvino", "--out", str(tmp_path / "model.xml")]) == 0
    seg = Segmenter(tmp_path / "model.xml", backend="openvino", score_threshold=0.0)
    raw = seg.infer(fixture["image_bgr"][None])
    n = int(raw.num_dets[0])
    assert n == fixture.meta["num_detections"]
    matched = match_detections(fixture, raw.classes[0, :n], raw.boxes[0, :n], raw.scores[0, :n], 1e-4)
    ok = matched >= 0
    assert_close(raw.scores[0, :n][matched[ok]], fixture["det_score"][ok], 2e-5, "scores")
    (dets,) = seg([fixture["image_bgr"]])
    theirs_mask_scores = fixture.arrays.get("final_mask_score", fixture["final_score"])
    matched = match_detections(fixture, dets.class_ids, raw.boxes[0, : len(dets)], dets.scores, 1e-4)
    ok = matched >= 0
    assert_close(dets.mask_scores[matched[ok]], theirs_mask_scores[ok], 2e-5, "mask scores")
    height, width = fixture.meta["image_hw"]
    theirs_masks = np.unpackbits(fixture["final_masks"], axis=-1)[..., :width].astype(bool)
    assert (dets.masks[matched[ok]] == theirs_masks[ok]).mean() >= 0.999
