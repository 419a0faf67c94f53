"""``python -m benchmarks.fps``: end-to-end PyTorch inference speed, written to ``benchmarks/results/``.

What is timed is the whole graph a deployment runs: uint8 BGR images already on the device -> resize and
normalise -> network -> Fast NMS -> mask assembly and crop (``yolact.EndToEnd``), for each config, batch
size and precision asked. Writes a JSON with the machine's details and a PNG bar chart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from yolact import EndToEnd, Yolact, get_config
from yolact.fileio import write_text_atomic
from yolact.visualize import save_png

from .machine import machine_details

RESULTS = Path(__file__).parent / "results"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_end_to_end(
    model: Yolact, batch: int, height: int, width: int, precision: str, warmup: int, iters: int
) -> dict:
    """Median and mean milliseconds per batch over ``iters`` timed runs after ``warmup`` untimed ones."""
    device = next(model.parameters()).device
    images = torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, device=device)
    module = EndToEnd(model).eval()
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.float16)
        if precision == "fp16"
        else contextlib.nullcontext()
    )
    times = []
    with torch.inference_mode(), autocast:
        for i in range(warmup + iters):
            synchronize(device)
            start = time.perf_counter()
            module(images)
            synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    median = float(np.median(times))
    return {
        "batch": batch,
        "precision": precision,
        "ms_per_batch_median": round(median, 3),
        "ms_per_batch_mean": round(float(np.mean(times)), 3),
        "images_per_s": round(batch * 1000 / median, 2),
        "iters": iters,
    }


def bar_chart(rows: list[dict], title: str) -> np.ndarray:
    """A plain bar chart of images/s per (config, precision, batch), drawn with OpenCV."""
    bar_h, gap, left, width = 26, 8, 330, 900
    height = 60 + len(rows) * (bar_h + gap)
    img = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(img, title, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    top = max(r["images_per_s"] for r in rows) or 1.0
    for i, r in enumerate(rows):
        y = 50 + i * (bar_h + gap)
        label = f"{r['config']} {r['precision']} b{r['batch']}"
        cv2.putText(img, label, (10, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        length = int((width - left - 120) * r["images_per_s"] / top)
        color = (200, 120, 40) if r["precision"] == "fp32" else (40, 160, 60)
        cv2.rectangle(img, (left, y), (left + length, y + bar_h), color, -1)
        cv2.putText(img, f"{r['images_per_s']:.1f} img/s", (left + length + 6, y + 18),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["yolact_base"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--precision", nargs="+", choices=("fp32", "fp16"), default=None,
                        help="default: fp32 and fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--image-size", default="480x640", help="HxW of the uint8 input images")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/fps_<device>.json)")
    args = parser.parse_args(argv)
    try:
        args.height, args.width = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        parser.error(f"--image-size {args.image_size!r}: expected HxW, e.g. 480x640")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    args.precision = args.precision or (["fp32", "fp16"] if args.device.startswith("cuda") else ["fp32"])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Plain float32 convolutions, as the authors measured (TF32 would be a different precision).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    device = torch.device(args.device)
    runs = [(c, p, b) for c in args.configs for p in args.precision for b in args.batch]
    rows = []
    for config, precision, batch in tqdm(runs, desc="fps", unit="run"):
        model = Yolact(get_config(config)).to(device).eval()
        row = time_end_to_end(model, batch, args.height, args.width, precision, args.warmup, args.iters)
        rows.append({"config": config, **row})
        tqdm.write(f"{config} {precision} batch {batch}: {row['ms_per_batch_median']:.2f} ms, "
                   f"{row['images_per_s']:.1f} images/s")
    tag = "cuda" if device.type == "cuda" else "cpu"
    out = args.out or RESULTS / f"fps_{tag}.json"
    report = {
        "what": "yolact.EndToEnd: uint8 BGR images on the device -> preprocessing, network, Fast NMS, "
        "cropped masks at prototype resolution (PyTorch eager)",
        "image_hw": [args.height, args.width],
        "device": str(device),
        "machine": machine_details(),
        "results": rows,
    }
    write_text_atomic(out, json.dumps(report, indent=1))
    gpu = report["machine"]["gpu"]
    where = gpu["name"] if gpu else report["machine"]["cpu"]
    save_png(out.with_suffix(".png"), bar_chart(rows, f"YOLACT end-to-end images/s, PyTorch, {where}"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
