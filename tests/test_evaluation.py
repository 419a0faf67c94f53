"""Evaluation: COCO result conversion, pycocotools scoring and the ``python -m eval`` command."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from eval.__main__ import main as eval_main
from yolact import ImageDetections, Yolact, get_config, save_weights
from yolact.data import DatasetError, ShapesDataset, ensure_shapes_dataset
from yolact.evaluation import METRIC_NAMES, coco_detections, evaluate, format_table, score_detections

REPO = Path(__file__).resolve().parents[1]

# pycocotools' RLE decoding under NumPy 2; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> ShapesDataset:
    # Shared by name with test_data.py: the second call reuses the files.
    return ensure_shapes_dataset(tmp_path_factory.getbasetemp() / "shapes-tiny", num_train=6, num_val=4)


def ground_truth_detections(coco: COCO, image_id: int, category_ids: list[int]) -> ImageDetections:
    """The image's annotations as detections with score 1."""
    annotations = coco.imgToAnns[image_id]
    info = coco.imgs[image_id]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)], dtype=np.int64)
    return ImageDetections(
        class_ids=np.array([category_ids.index(a["category_id"]) for a in annotations], dtype=np.int64),
        scores=np.ones(len(annotations), dtype=np.float32),
        boxes=boxes.reshape(-1, 4),
        masks=np.array([coco.annToMask(a) for a in annotations], dtype=bool).reshape(-1, info["height"], info["width"]),
        mask_scores=np.ones(len(annotations), dtype=np.float32),
    )


def test_perfect_detections_score_one(tiny_shapes):
    coco = COCO(str(tiny_shapes.val_annotations))
    category_ids = sorted(coco.getCatIds())
    detections = []
    for image_id in coco.getImgIds():
        detections += coco_detections(image_id, ground_truth_detections(coco, image_id, category_ids), category_ids)
    assert len(detections) == len(coco.anns)
    json.dumps(detections)  # JSON-ready: RLE counts are str
    metrics = score_detections(coco, detections)
    assert set(metrics) == set(METRIC_NAMES)
    for kind in ("box", "mask"):
        assert metrics[f"{kind}/AP"] == pytest.approx(1.0)
        assert metrics[f"{kind}/AP50"] == pytest.approx(1.0)
        assert metrics[f"{kind}/AP75"] == pytest.approx(1.0)
    table = format_table(metrics)
    assert "box" in table and "mask" in table and "100.00" in table


def test_masks_rank_by_mask_score_and_boxes_by_box_score(tiny_shapes):
    """Each object detected twice: a wrong mask with the higher box score, the exact mask with the higher
    mask score. Ranked by mask score (the authors' eval.py for YOLACT++) the exact masks come first: mask AP
    1; ranked by box score they do not. Boxes are exact in both, so box AP is 1 either way."""
    coco = COCO(str(tiny_shapes.val_annotations))
    category_ids = sorted(coco.getCatIds())

    def scored(box_score: float, mask_score: float) -> list[dict]:
        detections = []
        for image_id in coco.getImgIds():
            exact = ground_truth_detections(coco, image_id, category_ids)
            wrong = dataclasses.replace(exact, masks=np.roll(exact.masks, exact.masks.shape[2] // 2, axis=2))
            n = len(exact)
            detections += coco_detections(
                image_id,
                dataclasses.replace(exact, scores=np.full(n, box_score, np.float32), mask_scores=np.full(n, mask_score, np.float32)),
                category_ids,
            )
            detections += coco_detections(
                image_id,
                dataclasses.replace(
                    wrong, scores=np.full(n, 1 - box_score, np.float32), mask_scores=np.full(n, 1 - mask_score, np.float32)
                ),
                category_ids,
            )
        return detections

    rescored = score_detections(coco, scored(box_score=0.4, mask_score=0.9))
    assert rescored["mask/AP"] == pytest.approx(1.0) and rescored["box/AP"] == pytest.approx(1.0)
    box_ranked = score_detections(coco, scored(box_score=0.4, mask_score=0.4))
    assert box_ranked["mask/AP"] < 0.9 and box_ranked["box/AP"] == pytest.approx(1.0)
    assert "mask_box_score/AP" not in box_ranked  # nothing was re-scored
    # The same model without re-scoring, evaluated alongside.
    assert rescored["mask_box_score/AP"] == pytest.approx(box_ranked["mask/AP"])
    assert "mask_box_score" in format_table(rescored)


def test_no_detections_score_zero(tiny_shapes):
    coco = COCO(str(tiny_shapes.val_annotations))
    assert score_detections(coco, []) == {name: 0.0 for name in METRIC_NAMES}


def test_coco_detections_map_classes_back_to_category_ids():
    masks = np.zeros((2, 20, 30), dtype=bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 10:12, 0:4] = True
    dets = ImageDetections(
        class_ids=np.array([1, 0]),
        scores=np.array([0.9, 0.4], dtype=np.float32),
        boxes=np.array([[3, 2, 9, 5], [0, 10, 4, 12]]),
        masks=masks,
        mask_scores=np.array([0.5, 0.3], dtype=np.float32),
    )
    results = coco_detections(5, dets, category_ids=[3, 7])
    assert [r["category_id"] for r in results] == [7, 3]
    assert results[0]["bbox"] == [3.0, 2.0, 6.0, 3.0] and results[0]["image_id"] == 5
    assert results[1]["score"] == pytest.approx(0.4)
    assert isinstance(results[0]["segmentation"]["counts"], str) and results[0]["segmentation"]["size"] == [20, 30]
    assert coco_detections(5, dets.above(1.0), [3, 7]) == []


def test_evaluate_rejects_a_model_with_other_classes(tiny_shapes):
    model = Yolact(get_config("yolact_tiny", class_names=("a", "b")))
    with pytest.raises(DatasetError, match="2 classes"):
        evaluate(model, tiny_shapes.val_images, tiny_shapes.val_annotations, progress=False)


def _run_eval(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), YOLACT_DATA_DIR=str(cwd / "cache"))
    return subprocess.run([sys.executable, "-m", "eval", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("config", ["yolact_tiny", "yolact_plus_tiny"])
def test_eval_command_end_to_end(tiny_shapes, tmp_path, config):
    torch.manual_seed(0)
    save_weights(Yolact(get_config(config)), tmp_path / "tiny.pth")
    out = tmp_path / "out" / "results.json"
    done = _run_eval(
        "--weights",
        "tiny.pth",
        "--images",
        str(tiny_shapes.val_images),
        "--annotations",
        str(tiny_shapes.val_annotations),
        "--batch-size",
        "2",
        "--max-images",
        "3",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "box" in done.stdout and "mask" in done.stdout
    results = json.loads(out.read_text())
    # YOLACT++ adds the masks ranked by box score (mask_box_score/*) when re-scoring changed a mask's score.
    assert set(METRIC_NAMES) <= set(results["metrics"])
    assert all(name in METRIC_NAMES or name.startswith("mask_box_score/") for name in results["metrics"])
    assert results["config"] == config and results["weights"] == "tiny.pth"
    assert results["dataset"]["annotations"] == str(tiny_shapes.val_annotations) and results["timestamp"]
    detections = json.loads((out.parent / "results_detections.json").read_text())
    assert {d["image_id"] for d in detections} <= {1, 2, 3}
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.json", "results_detections.json"]


def test_eval_command_bad_paths_fail_in_one_line(tiny_shapes, tmp_path, capsys):
    assert eval_main(["--weights", str(tmp_path / "missing.pth")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "missing.pth" in error

    torch.manual_seed(0)
    save_weights(Yolact(get_config("yolact_tiny")), tmp_path / "tiny.pth")
    args = ["--weights", str(tmp_path / "tiny.pth"), "--annotations", str(tiny_shapes.val_annotations)]
    assert eval_main([*args, "--images", str(tmp_path / "no-such-dir")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no-such-dir" in error
