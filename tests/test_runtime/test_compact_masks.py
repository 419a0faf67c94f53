"""Compact masks in ``runtime.Detections``: COCO RLE made from the crops on edge cases, subsets that keep
every field aligned, the overlay drawn crop by crop, and supervision (its CompactMask, its annotators)
taking our results. The pixels themselves are checked against ``yolact.to_image`` in
test_runtime_parity.py and test_export_yolact_plus.py."""

from __future__ import annotations

import dataclasses
import sys

import cv2
import numpy as np
import pytest
import supervision as sv

from mask_equality import assert_exact_masks
from runtime import Detections, Segmenter
from runtime.detections import pack_crops
from runtime.overlay import MASK_OPACITY, draw_overlay, instance_colors


def detections_of(dense: np.ndarray, boxes: np.ndarray | None = None) -> Detections:
    """Detections holding the bool masks ``dense`` [N, H, W], each cropped to its pixels' bounding box."""
    count, height, width = dense.shape
    crops, offsets = [], []
    for mask in dense:
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        crops.append(mask[y : y + h, x : x + w])
        offsets.append((x, y))
    packed, regions = pack_crops(crops, np.array(offsets))
    scores = np.linspace(0.9, 0.5, count, dtype=np.float32)
    return Detections(
        boxes=regions.copy() if boxes is None else boxes,
        scores=scores,
        class_ids=np.arange(count) % 2,
        class_names=[f"class{c % 2}" for c in range(count)],
        packed_masks=packed,
        mask_regions=regions,
        mask_scores=scores * np.float32(0.5),
        height=height,
        width=width,
    )


@pytest.fixture(scope="module")
def scene_detections(onnx_model, images) -> Detections:
    (dets,) = Segmenter(onnx_model, backend="onnxruntime", threads=1, score_threshold=0.3)(images[0])
    assert len(dets) >= 20
    return dets


def edge_case_masks() -> list[np.ndarray]:
    """Mask stacks [N, H, W] where run-length arithmetic goes wrong first."""
    rng = np.random.default_rng(0)
    cases = [np.ones((1, 1, 1), bool), np.zeros((1, 1, 1), bool), np.zeros((2, 5, 7), bool), np.ones((1, 6, 4), bool)]
    borders = np.zeros((5, 9, 11), bool)
    borders[0, :, 0] = borders[1, :, -1] = borders[2, 0, :] = borders[3, -1, :] = True
    borders[4, 3:, 8:] = True  # the bottom-right corner: the image's last pixel
    full_columns = np.zeros((2, 6, 5), bool)
    full_columns[0, :, 1:4] = True  # runs that continue from one column into the next
    full_columns[1, :, 2] = full_columns[1, 0, 3] = True
    cases += [borders, full_columns, np.ones((1, 1, 9), bool), np.ones((1, 9, 1), bool)]
    cases += [rng.random((4, *rng.integers(1, 24, 2))) < rng.random() for _ in range(40)]
    return cases


def test_rle_from_crops_is_pycocotools_encoding_on_edge_cases():
    """Empty masks, masks on every border, filling the image, 1-pixel images, runs across columns."""
    for dense in edge_case_masks():
        assert_exact_masks(detections_of(dense), dense)


def test_mask_bytes_are_the_packed_crops(scene_detections):
    dets = scene_detections
    crop_pixels = sum(dets.crop(i).mask.size for i in range(len(dets)))
    assert crop_pixels / 8 <= dets.mask_nbytes <= crop_pixels / 8 + len(dets) * (dets.height + 32)
    assert dets.mask_nbytes < dets.masks.nbytes / 10


@pytest.mark.parametrize("pick", ["int array", "bool mask", "slice", "int"])
def test_a_subset_keeps_every_field_aligned(scene_detections, pick):
    """What a tracker's filtering and reordering does: each field of a picked detection is that of the same
    detection in the whole set, masks, RLE and track ids included."""
    dets = scene_detections[np.arange(len(scene_detections))]  # a copy, to track
    dets.track_ids = np.arange(100, 100 + len(dets))
    dets.rle()
    index = {"int array": np.array([5, 0, 3, 3]), "bool mask": np.arange(len(dets)) % 3 == 1, "slice": slice(None, None, -2), "int": 4}[
        pick
    ]
    chosen = np.atleast_1d(np.arange(len(dets))[index])
    subset = dets[index]
    assert len(subset) == len(chosen)
    np.testing.assert_array_equal(subset.track_ids, dets.track_ids[chosen])
    for name in ("boxes", "scores", "class_ids", "mask_scores", "mask_regions"):
        np.testing.assert_array_equal(getattr(subset, name), getattr(dets, name)[chosen], err_msg=name)
    assert subset.class_names == [dets.class_names[i] for i in chosen]
    assert_exact_masks(subset, dets.masks[chosen])
    assert [record["track_id"] for record in subset.to_json("frame")["detections"]] == [100 + i for i in chosen]


def test_track_ids_must_match_the_detections(scene_detections):
    with pytest.raises(ValueError, match=rf"track_ids: expected \[{len(scene_detections)}\] ids, got shape \[2\]"):
        dataclasses.replace(scene_detections, track_ids=[1, 2])


def test_overlay_blends_the_best_mask_over_each_pixel():
    """Away from the outlines and labels (the pixels the same boxes change without masks), a covered pixel
    is the image blended with the colour of the best-scoring mask over it; an uncovered one is the image."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    dense = np.zeros((3, 80, 90), bool)
    dense[0, 40:60, 20:50] = dense[1, 45:70, 30:70] = True
    dense[2, 50:75, 10:80] = rng.random((25, 70)) < 0.5
    boxes = np.array([[15, 35, 55, 65], [25, 40, 75, 75], [5, 45, 85, 79]])
    drawn = draw_overlay(image, detections_of(dense, boxes))
    undecorated = (draw_overlay(image, detections_of(np.zeros_like(dense), boxes)) == image).all(axis=-1)
    covered = dense.any(axis=0)
    best = np.argmax(dense, axis=0)  # masks come best first
    expected = cv2.addWeighted(image, 1 - MASK_OPACITY, instance_colors(len(dense))[best], MASK_OPACITY, 0)
    assert (covered & undecorated).sum() > 1000
    np.testing.assert_array_equal(drawn[covered & undecorated], expected[covered & undecorated])
    np.testing.assert_array_equal(drawn[~covered & undecorated], image[~covered & undecorated])


def test_to_supervision_and_its_annotators_draw_our_results(scene_detections, images):
    dets = scene_detections[:]
    dets.track_ids = np.arange(len(dets))[::-1] + 7
    converted = dets.to_supervision()
    assert isinstance(converted.mask, sv.CompactMask)
    np.testing.assert_array_equal(np.asarray(converted.mask), dets.masks)
    np.testing.assert_array_equal(converted.xyxy, dets.boxes.astype(np.float32))
    np.testing.assert_array_equal(converted.confidence, dets.scores)
    np.testing.assert_array_equal(converted.class_id, dets.class_ids)
    np.testing.assert_array_equal(converted.tracker_id, dets.track_ids)
    assert list(converted.data["class_name"]) == dets.class_names
    np.testing.assert_array_equal(converted.data["mask_score"], dets.mask_scores)
    # supervision's own filtering keeps its fields aligned with the masks.
    kept = converted[converted.confidence > np.median(converted.confidence)]
    np.testing.assert_array_equal(np.asarray(kept.mask), dets.masks[dets.scores > np.median(dets.scores)])
    assert scene_detections.to_supervision().tracker_id is None

    image = images[0]
    masked = sv.MaskAnnotator(opacity=1.0, color_lookup=sv.ColorLookup.INDEX).annotate(image.copy(), converted)
    covered = dets.masks.any(axis=0)
    assert (masked[~covered] == image[~covered]).all() and (masked[covered] != image[covered]).any(axis=-1).mean() > 0.5
    boxed = sv.BoxAnnotator().annotate(image.copy(), converted)
    x1, y1, x2, y2 = dets.boxes[0]
    assert (boxed[y1, x1:x2] != image[y1, x1:x2]).any()
    labelled = sv.LabelAnnotator().annotate(image.copy(), converted, labels=[f"#{t} {n}" for t, n in zip(dets.track_ids, dets.class_names)])
    assert (labelled != image).any()


def test_to_supervision_without_supervision_names_the_extra(scene_detections, monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # what `import supervision` meets where it is not installed
    with pytest.raises(ImportError, match=r'^Detections.to_supervision needs supervision: pip install "\.\[video\]"$'):
        scene_detections.to_supervision()
