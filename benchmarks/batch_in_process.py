"""The in-process arm of ``python -m benchmarks.batch``, run in a fresh Python so that its wall time counts
what a user of ``Segmenter`` waits for (Python's start, imports, model load, the work) like the job's does.
Light imports on purpose: the benchmark itself imports torch.
"""

from __future__ import annotations

import time
from pathlib import Path

from runtime import Segmenter
from runtime.batch.results import detections_row


def run(model: Path, files: list[Path], threads: int | None) -> dict:
    """One Segmenter over ``files`` (its reader thread decodes), each result turned into the batch job's row
    (masks to COCO RLE): the same work as the job's. Seconds from opening the model to the last row."""
    start = time.perf_counter()
    with Segmenter(model, threads=threads) as segmenter:
        rows = [detections_row(str(path), detections) for path, detections in zip(files, segmenter(files))]
    seconds = time.perf_counter() - start
    return {"images": len(rows), "seconds": round(seconds, 2), "images_per_s": round(len(rows) / seconds, 2)}
