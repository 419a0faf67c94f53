"""The benchmark scripts run and write their figures with the machine's details (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2


def test_fps_writes_json_and_chart(tmp_path):
    out = tmp_path / "fps.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.fps", "--configs", "yolact_tiny", "--batch", "1", "2",
         "--iters", "2", "--warmup", "1", "--image-size", "90x120", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["image_hw"] == [90, 120]
    assert report["machine"]["cores"] >= 1 and report["machine"]["packages"]["torch"]
    assert [(r["config"], r["batch"], r["precision"]) for r in report["results"]] == [
        ("yolact_tiny", 1, "fp32"), ("yolact_tiny", 2, "fp32")
    ]
    assert all(r["images_per_s"] > 0 and r["iters"] == 2 for r in report["results"])
    chart = cv2.imread(str(out.with_suffix(".png")))
    assert chart is not None and chart.shape[1] > 0


def test_fps_rejects_a_bad_image_size(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.fps", "--image-size", "big", "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "--image-size 'big'" in result.stderr
    assert not (tmp_path / "x.json").exists()
