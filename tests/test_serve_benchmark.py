"""``python -m benchmarks.serve`` on the tiny config, for a second a cell: a real server on 127.0.0.1, every
response compared with the in-process runtime's, the figures written with the machine's details (no timing
is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

pytest.importorskip("pytriton", reason="the serving benchmark needs nvidia-pytriton (pip install -e '.[dev]')")

REPO = Path(__file__).resolve().parents[1]


def test_load_test_writes_its_figures(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.serve",
            "--config",
            "yolact_tiny",
            "--seconds",
            "1",
            "--clients",
            "1",
            "3",
            "--protocols",
            "grpc",
            "http",
            "--batching",
            "on",
            "--instances",
            "1",
            "--batches",
            "1",
            "2",
            "--image-size",
            "90x120",
            "--images",
            "2",
            "--threads",
            "1",
            "--mixed-sizes",
            "90x120",
            "72x96",
            "108x144",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (report_file,) = tmp_path.glob("serve_*_yolact_tiny_*.json")
    report = json.loads(report_file.read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["serving_packages"]["nvidia-pytriton"]
    assert [row["batch"] for row in report["in_process"]] == [1, 2]
    (server,) = report["servers"]
    assert server["dynamic_batching"] and server["drained_exit_status"] == 0
    cells = [(c["protocol"], c["clients"], c["mixed_sizes"]) for c in server["cells"]]
    assert cells == [("grpc", 1, False), ("grpc", 3, False), ("grpc", 3, True), ("http", 1, False), ("http", 3, False), ("http", 3, True)]
    for cell in server["cells"]:
        assert cell["requests"] > 0 and cell["errors"] == 0 and cell["mismatches"] == 0
        assert cell["server_requests"] >= cell["requests"] and cell["latency_ms"]["p99"] >= cell["latency_ms"]["p50"] > 0
        assert 0 < cell["executions"] <= cell["inferences"] == cell["server_requests"]
    assert server["cells"][2]["image_sizes"] == ["90x120", "72x96", "108x144"]
    assert "ratio" in report["target"]
    assert [target["cell"] for target in report["mixed_size_targets"]] == [
        "dynamic batching, 1 instance(s), grpc, 3 clients",
        "dynamic batching, 1 instance(s), http, 3 clients",
    ]
    table = next(tmp_path.glob("serve_*.md")).read_text()
    assert "| dynamic batching, 1 instance(s) | http | 3 | 90x120, 72x96, 108x144 |" in table and "Mixed image sizes (" in table
    chart = cv2.imread(str(next(tmp_path.glob("serve_*.png"))))
    assert chart is not None and chart.shape[1] > 600
