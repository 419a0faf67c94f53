"""``python -m benchmarks.batch``: images/s of ``python -m runtime.batch`` against ``Segmenter`` in process.

The same images (the embedded shapes val set: 200 files of mixed sizes) go through:
- ``in process``: one ``Segmenter`` over the files (its reader thread decodes), each result turned into
  the batch job's row (masks to COCO RLE), so that both sides do the same work;
- ``embedded Ray``: ``python -m runtime.batch`` with no ``--address`` (1 Segmenter actor), results
  committed to Parquet;
- ``cluster, N workers``: ``python -m runtime.batch --address`` on a two-node Ray cluster on this machine
  (``ray.cluster_utils.Cluster``, 2 logical CPUs a node), 1 and 2 actors of 1 thread each.
The arms run interleaved, round after round, so that a shared machine's load falls on all of them alike.
A job's images/s is the one it prints (from its first task to its last commit: actor start-up and model
load included, Ray's own start-up not); its wall time, Ray's start-up included, is recorded too.

Writes ``benchmarks/results/batch_<machine>_<config>_<date>.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from command_line import entry_parser, entry_point, positive_int
from runtime import Segmenter
from runtime.batch.results import detections_row
from yolact.data.shapes import ensure_shapes_dataset

from .charts import batch_chart
from .machine import cpu_description, machine_details, machine_tag, package_versions
from .reports import report_stem, write_report
from .variants import SPECS, export_graphs, load_or_recipe

RESULTS = Path(__file__).parent / "results"
PROG = "python -m benchmarks.batch"
TARGET_RATIO = 0.8
JOB_RATE = re.compile(r"(\d+) images in ([\d.]+) s \(([\d.]+) images/s; ([\d.]+) images/s after the first rows, at ([\d.]+) s\)")


def in_process(model: Path, files: list[Path], threads: int | None) -> dict:
    start = time.perf_counter()
    with Segmenter(model, threads=threads) as segmenter:
        rows = [detections_row(str(path), detections) for path, detections in zip(files, segmenter(files))]
    seconds = time.perf_counter() - start
    return {"images": len(rows), "seconds": round(seconds, 2), "images_per_s": round(len(rows) / seconds, 2)}


def batch_job(model: Path, folder: Path, out: Path, options: list[str]) -> dict:
    """One ``python -m runtime.batch`` run from scratch (--overwrite); its printed rate and its wall time."""
    command = [sys.executable, "-m", "runtime.batch", str(folder), "--model", str(model), "--out", str(out), "--overwrite", *options]
    start = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    match = JOB_RATE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    images, seconds, rate, steady, first_rows_s = int(match[1]), float(match[2]), float(match[3]), float(match[4]), float(match[5])
    return {
        "images": images,
        "seconds": seconds,
        "images_per_s": rate,
        "steady_images_per_s": steady,
        "first_rows_s": first_rows_s,
        "wall_s": round(wall, 2),
        "wall_images_per_s": round(images / wall, 2),
    }


def parse_args(argv):
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--config", default="yolact_small", help="model config (default yolact_small)")
    parser.add_argument("--weights", type=Path, help="trained weights (default: the authors' recipe weights, every slot filled)")
    parser.add_argument("--images", type=positive_int, default=200, help="how many of the shapes val images (default 200)")
    parser.add_argument("--rounds", type=positive_int, default=2, help="interleaved rounds of every arm (default 2)")
    parser.add_argument("--threads", type=positive_int, default=2, help="intra-op threads in process and of the embedded actor")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def median_rate(runs: list[dict], key: str = "images_per_s") -> float:
    return round(float(np.median([run[key] for run in runs])), 2)


def markdown(report: dict) -> str:
    lines = [
        f"# Batch inference: {report['config']}, {report['images']} images ({report['where']})",
        "",
        report["what"],
        "",
        "| arm | images/s per round | median | after the first rows, per round (s until them) | median | wall s (Ray start-up included) |",
        "|---|---|---|---|---|---|",
    ]
    for arm in report["arms"]:
        rates = ", ".join(f"{run['images_per_s']:.2f}" for run in arm["runs"])
        steady = ", ".join(
            f"{run['steady_images_per_s']:.2f} ({run['first_rows_s']:.1f})" for run in arm["runs"] if "steady_images_per_s" in run
        )
        walls = ", ".join(f"{run.get('wall_s', run['seconds']):.1f}" for run in arm["runs"])
        steady_median = f"{arm['median_steady_images_per_s']:.2f}" if arm["median_steady_images_per_s"] is not None else "-"
        lines.append(f"| {arm['label']} | {rates} | {arm['median_images_per_s']:.2f} | {steady or '-'} | {steady_median} | {walls} |")
    target = report["target"]
    lines += [
        "",
        (
            f"Embedded Ray / in process: {target['ratio']:.2f}x (target {target['ratio_needed']}x: {'met' if target['met'] else 'NOT met'}); "
            f"after the first rows {target['steady_ratio']:.2f}x. Two-node cluster, 2 workers / 1 worker: {report['cluster_scaling']:.2f}x; "
            f"after the first rows {report['cluster_steady_scaling']:.2f}x."
        ),
        (
            f"Load average (1, 5, 15 min) at the start {report['machine']['load_average_1_5_15_min']['start']}, "
            f"at the end {report['machine']['load_average_1_5_15_min']['end']}: the machine was shared, which is why the arms alternate."
        ),
    ]
    return "\n".join(lines) + "\n"


@entry_point(PROG)
def main(argv=None) -> int:
    args = parse_args(argv)
    from ray.cluster_utils import Cluster

    started = datetime.datetime.now(datetime.timezone.utc)
    files = sorted(ensure_shapes_dataset().val_images.glob("*"))[: args.images]
    load_before = os.getloadavg()
    arms = {"in process": [], "embedded Ray, 1 worker": [], "cluster, 1 worker": [], "cluster, 2 workers": []}
    with tempfile.TemporaryDirectory(prefix="yolact-batch-bench-") as scratch:
        scratch = Path(scratch)
        folder = scratch / "images"
        folder.mkdir()
        for path in files:
            (folder / path.name).symlink_to(path)
        model = export_graphs(load_or_recipe(args.config, args.weights, "cpu"), scratch, [SPECS["onnxruntime_fp32"]], None).path(
            "onnx", False
        )
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        try:
            arm_runs = {
                "in process": lambda: in_process(model, sorted(folder.iterdir()), args.threads),
                "embedded Ray, 1 worker": lambda: batch_job(model, folder, scratch / "out", ["--threads", str(args.threads)]),
                "cluster, 1 worker": lambda: batch_job(model, folder, scratch / "out", ["--address", cluster.address, "--threads", "1"]),
                "cluster, 2 workers": lambda: batch_job(
                    model, folder, scratch / "out", ["--address", cluster.address, "--threads", "1", "--workers", "2"]
                ),
            }
            with tqdm(total=args.rounds * len(arms), desc="batch", unit="run") as progress:
                for _ in range(args.rounds):
                    for label, run in arm_runs.items():
                        arms[label].append(run())
                        progress.set_postfix_str(f"{label}: {arms[label][-1]['images_per_s']:.1f}/s")
                        progress.update()
        finally:
            cluster.shutdown()
    medians = {label: median_rate(runs) for label, runs in arms.items()}
    ratio = medians["embedded Ray, 1 worker"] / medians["in process"]
    # After the first rows: the rate of a long job, once the actors have started and loaded the model.
    steady = {label: median_rate(runs, "steady_images_per_s") for label, runs in arms.items() if label != "in process"}
    machine = {
        **machine_details(),
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "batch_packages": package_versions(("ray", "pyarrow", "onnxruntime")),
    }
    report = {
        "what": "images decoded, segmented and turned into result rows (masks as COCO RLE); the Ray arms also commit Parquet parts. "
        "A Ray arm's images/s: from its first task to its last commit (actors' start-up and model load included, "
        "ray.init not); its wall time includes Ray's start-up.",
        "config": args.config,
        "weights": str(args.weights) if args.weights else "authors' recipe weights (every detection slot filled)",
        "images": len(files),
        "where": f"{cpu_description(machine)}, {machine['cores']} cores, shared with other work",
        "machine": machine,
        "threads": args.threads,
        "arms": [
            {"label": label, "runs": runs, "median_images_per_s": medians[label], "median_steady_images_per_s": steady.get(label)}
            for label, runs in arms.items()
        ],
        "target": {
            "ratio_needed": TARGET_RATIO,
            "ratio": round(ratio, 3),
            "met": ratio >= TARGET_RATIO,
            "steady_ratio": round(steady["embedded Ray, 1 worker"] / medians["in process"], 3),
        },
        "cluster_scaling": round(medians["cluster, 2 workers"] / medians["cluster, 1 worker"], 3),
        "cluster_steady_scaling": round(steady["cluster, 2 workers"] / steady["cluster, 1 worker"], 3),
    }
    stem = report_stem(args.out_dir, "batch", machine_tag(machine), started, args.config)
    write_report(stem, report, markdown(report), batch_chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
