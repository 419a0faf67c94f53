"""The runtime against the toolkit's PyTorch pipeline: the paste against ``yolact.to_image`` on the same
graph outputs, and whole runs on onnxruntime and OpenVINO f32 (the ONNX graph and the IR) against
``yolact.predict``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO
import pytest
import torch

from runtime import Detections, ImageError, ModelError, RawOutputs, Segmenter, paste_detections
from yolact import BatchResult, ImageDetections, predict, to_image
from yolact.predict import detections_json

from mask_equality import assert_exact_masks

# Sizes beside the generated scenes: smaller than the 32x32 prototypes (the upsampling becomes a
# downsampling that can step over a mask's support), a thin strip, the network size, larger than it.
ODD_SIZES = [(20, 30), (7, 300), (128, 128), (700, 500)]


def assert_same_detections(found: Detections, expected: ImageDetections, score_atol: float) -> None:
    assert len(found) == len(expected)
    np.testing.assert_array_equal(found.class_ids, expected.class_ids)
    # Whole pixels, truncated: float noise of 1e-6 in the graph moves a box side that lies on a pixel boundary
    # by one pixel.
    assert np.abs(found.boxes - expected.boxes).max(initial=0) <= 1
    np.testing.assert_allclose(found.scores, expected.scores, atol=score_atol, rtol=0)
    np.testing.assert_allclose(found.mask_scores, expected.mask_scores, atol=score_atol, rtol=0)
    assert found.masks.shape == expected.masks.shape
    assert (found.masks == expected.masks).mean() >= 0.999


def torch_result(raw: RawOutputs) -> BatchResult:
    return BatchResult(*(torch.from_numpy(output) for output in raw))


@pytest.fixture(scope="module")
def onnxruntime_segmenter(onnx_model) -> Segmenter:
    return Segmenter(onnx_model, backend="onnxruntime", device="cpu", score_threshold=0.3, threads=1)


def test_paste_gives_the_numbers_of_to_image(onnxruntime_segmenter, images):
    """Same graph outputs, two final-image steps: the region-limited numpy paste and PyTorch's, mask pixels
    and COCO RLE exactly."""
    rng = np.random.default_rng(3)
    inputs = images + [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in ODD_SIZES]
    pasted = 0
    for image in inputs:
        raw = onnxruntime_segmenter.infer(image[None])
        height, width = image.shape[:2]
        reference = to_image(torch_result(raw), 0, height, width).above(0.5)
        found = paste_detections(raw, 0, height, width, 0.5, onnxruntime_segmenter.class_names)
        assert_same_detections(found, reference, score_atol=0)
        assert_exact_masks(found, reference.masks)
        assert found.class_names == [onnxruntime_segmenter.class_names[c] for c in reference.class_ids]
        pasted += len(found)
    assert pasted > 300  # the threshold keeps many detections, and drops some


def test_score_threshold_keeps_scores_above_it(onnxruntime_segmenter, images):
    raw = onnxruntime_segmenter.infer(images[1][None])
    scores = raw.scores[0, : raw.num_dets[0]]
    threshold = float(np.median(scores))
    found = paste_detections(raw, 0, *images[1].shape[:2], threshold)
    np.testing.assert_array_equal(found.scores, scores[scores > threshold])
    assert found.class_names == [str(c) for c in found.class_ids]  # no names given: the ids


@pytest.mark.parametrize("backend, model", [("onnxruntime", "onnx"), ("openvino", "onnx"), ("auto", "ir")])
def test_segmenter_matches_pytorch(backend, model, onnx_model, ir_model, pytorch_model, images):
    segmenter = Segmenter(onnx_model if model == "onnx" else ir_model, backend=backend, precision="fp32", score_threshold=0.3, threads=1)
    backend = "openvino" if backend == "auto" else backend  # auto takes an IR to OpenVINO
    assert segmenter.backend_name == backend
    assert segmenter.executed_on == {"onnxruntime": "CPUExecutionProvider", "openvino": "CPU"}[backend]
    assert segmenter.precision == "fp32"
    found = segmenter(images)
    expected = [dets.above(0.3) for dets in predict(pytorch_model, images)]
    assert [len(d) for d in found] == [len(d) for d in expected] and sum(map(len, found)) >= 300
    for found_one, expected_one in zip(found, expected):
        assert_same_detections(found_one, expected_one, score_atol=1e-4)


@pytest.mark.parametrize("model", ["onnx", "ir"])
def test_openvino_f32_is_onnxruntime(model, onnx_model, ir_model, onnxruntime_segmenter, images):
    openvino = Segmenter(onnx_model if model == "onnx" else ir_model, backend="openvino", threads=1)
    batch = np.stack([images[0], images[0][::-1].copy()])
    expected = onnxruntime_segmenter.infer(batch)
    found = openvino.infer(batch)
    np.testing.assert_array_equal(found.num_dets, expected.num_dets)
    np.testing.assert_array_equal(found.classes, expected.classes)
    for name in ("boxes", "scores", "masks", "mask_scores"):
        np.testing.assert_allclose(getattr(found, name), getattr(expected, name), atol=1e-5, rtol=0, err_msg=name)
    assert openvino.metadata == {**onnxruntime_segmenter.metadata, "yolact.exporter": openvino.metadata["yolact.exporter"]}


def test_mixed_sizes_batch_by_size_and_come_back_in_order(onnxruntime_segmenter, images, tmp_path):
    """Same-size images share runs; a file path and an array of the same image give the same result."""
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), images[2])
    inputs = [images[0], images[1], images[0], str(path), images[1], images[2]]
    together = onnxruntime_segmenter(inputs)
    alone = [onnxruntime_segmenter(image)[0] for image in (images[0], images[1], images[0], images[2], images[1], images[2])]
    for batched, single in zip(together, alone):
        assert (batched.height, batched.width) == (single.height, single.width)
        np.testing.assert_array_equal(batched.class_ids, single.class_ids)
        np.testing.assert_array_equal(batched.boxes, single.boxes)
        np.testing.assert_allclose(batched.scores, single.scores, atol=1e-5, rtol=0)
        assert (batched.masks == single.masks).mean() >= 0.999


def test_fixed_size_graph_gets_resized_images_and_filled_batches(fixed_size_model, onnxruntime_segmenter, images):
    fixed = Segmenter(fixed_size_model, backend="onnxruntime", threads=1)
    assert (fixed.max_batch, fixed.input_size, fixed.batch_size) == (2, (128, 128), 2)
    found = fixed(images[:3])  # one full batch and one filled up with a blank image
    for image, dets in zip(images[:3], found):
        height, width = image.shape[:2]
        raw = onnxruntime_segmenter.infer(cv2.resize(image, (128, 128), interpolation=cv2.INTER_LINEAR)[None])
        expected = paste_detections(raw, 0, height, width, 0.3, fixed.class_names)
        assert (dets.height, dets.width) == (height, width) and len(dets) == len(expected) > 0
        np.testing.assert_array_equal(dets.boxes, expected.boxes)
        assert (dets.masks == expected.masks).mean() >= 0.999


def test_a_batch_over_the_limit_is_refused(fixed_size_model):
    fixed = Segmenter(fixed_size_model, backend="onnxruntime")
    with pytest.raises(ModelError, match=r"batch of 3 images: .*fixed128.onnx takes at most 2"):
        fixed.infer(np.zeros((3, 128, 128, 3), np.uint8))
    with pytest.raises(ModelError, match=r"batch size 3: .*fixed128.onnx takes at most 2"):
        Segmenter(fixed_size_model, batch_size=3)


def test_bad_images_are_named(onnxruntime_segmenter, tmp_path):
    with pytest.raises(ImageError, match=r"image 1: expected an HxWx3 uint8 BGR array, got shape \[4, 4\] uint8"):
        onnxruntime_segmenter([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)])
    with pytest.raises(ImageError, match="missing.jpg: No such file or directory"):
        onnxruntime_segmenter(tmp_path / "missing.jpg")


def test_json_record_is_the_format_of_yolact_predict(onnxruntime_segmenter, images):
    dets = onnxruntime_segmenter(images[0])[0]
    as_predict = ImageDetections(dets.boxes, dets.scores, dets.class_ids, dets.masks, dets.mask_scores)
    expected = detections_json(Path("scene.jpg"), images[0], as_predict, onnxruntime_segmenter.class_names)
    record = dets.to_json("scene.jpg")
    assert [detection.pop("track_id") for detection in record["detections"]] == [None] * len(dets)  # not tracked
    assert record == expected


# pycocotools' decode trips numpy 2's __array__ copy-keyword deprecation inside pycocotools itself.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_coco_entries_and_rle_describe_the_masks(onnxruntime_segmenter, images):
    """Boxes scored by the box score, masks by the mask score, each a result set pycocotools loads."""
    dets = onnxruntime_segmenter(images[3])[0]
    # Different mask scores, as a YOLACT++ graph gives them, so that the test tells the two scores apart.
    dets.mask_scores = dets.scores * np.linspace(0.5, 1.0, len(dets), dtype=np.float32)
    boxes, masks = dets.to_coco(7, "bbox"), dets.to_coco(7, "segm")
    assert len(boxes) == len(masks) == len(dets) > 0
    for i, (box, mask) in enumerate(zip(boxes, masks)):
        x1, y1, x2, y2 = dets.boxes[i]
        assert box["image_id"] == mask["image_id"] == 7 and box["category_id"] == mask["category_id"] == dets.class_ids[i] + 1
        assert box["bbox"] == [x1, y1, x2 - x1, y2 - y1] and "segmentation" not in box
        assert box["score"] == dets.scores[i] and mask["score"] == dets.mask_scores[i] and "bbox" not in mask
    rles = [{"size": e["segmentation"]["size"], "counts": e["segmentation"]["counts"].encode()} for e in masks]
    np.testing.assert_array_equal(mask_utils.decode(rles).transpose(2, 0, 1).astype(bool), dets.masks)
    assert [rle["size"] for rle in dets.rle()] == [[dets.height, dets.width]] * len(dets)
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": 7, "height": dets.height, "width": dets.width}],
        "categories": [{"id": c + 1} for c in range(len(onnxruntime_segmenter.class_names))],
        "annotations": [],
    }
    ground_truth.createIndex()
    for entries in (boxes, masks):
        loaded = ground_truth.loadRes(json.loads(json.dumps(entries)))
        assert sorted(a["score"] for a in loaded.dataset["annotations"]) == sorted(e["score"] for e in entries)
    with pytest.raises(ValueError, match="COCO task 'keypoints'"):
        dets.to_coco(7, "keypoints")
