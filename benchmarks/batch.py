"""``python -m benchmarks.batch``: images/s of ``python -m runtime.batch`` against ``Segmenter`` in process.

The same images (the embedded shapes val set: 200 files of mixed sizes) go through:
- ``in process``: a fresh Python that opens one ``Segmenter`` and runs it over the files (its reader
  thread decodes), each result turned into the batch job's row (masks to COCO RLE), so that both sides do
  the same work;
- ``embedded Ray``: ``python -m runtime.batch`` with no ``--address`` (1 Segmenter actor), results
  committed to Parquet;
- ``cluster, N workers``: ``python -m runtime.batch --address`` on a two-node Ray cluster on this machine
  (``ray.cluster_utils.Cluster``, 2 logical CPUs a node), 1 and 2 actors of 1 thread each.
The arms run interleaved, round after round, so that a shared machine's load falls on all of them alike.
Every arm is a command, timed from its start to its exit: what a user waits for (Python's start, imports,
model load, Ray's start and stop, the work). Also recorded: the work alone (in process: from opening the
Segmenter to the last row; a job: from ray.init to its last commit, as it prints), ray.init alone, and a
job's rate after its first rows.

Writes ``benchmarks/results/batch_<machine>_<config>_<date>.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import datetime
import json
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
from runtime.segmenter import DEFAULT_BATCH_SIZE
from yolact.data.shapes import ensure_shapes_dataset

from .charts import batch_chart
from .machine import cpu_description, machine_details, machine_tag, package_versions
from .reports import report_stem, write_report
from .variants import SPECS, export_graphs, load_or_recipe

RESULTS = Path(__file__).parent / "results"
PROG = "python -m benchmarks.batch"
TARGET_RATIO = 0.8
# What the target's ratio compares. Reports without a measure compared the work alone: from a job's first
# task (after ray.init), and from the Segmenter's opening.
MEASURE = "over the command (Python's start to exit)"
OLD_MEASURE = "over the work (a job from its first task, ray.init not included)"
JOB_RATE = re.compile(
    r"(\d+) images in ([\d.]+) s, Ray's start-up \(([\d.]+) s\) included \(([\d.]+) images/s; "
    r"(?:([\d.]+) images/s after the first rows|every row in the first ones), at ([\d.]+) s\)"
)


def timed_command(command: list[str]) -> tuple[str, float]:
    """A command's output and its wall time, from its start to its exit."""
    start = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout, wall


def in_process_command(model: Path, folder: Path, threads: int) -> dict:
    """The in-process arm (benchmarks.batch_in_process) in a fresh Python, timed like a job."""
    code = (
        "import json, sys; from pathlib import Path; from benchmarks.batch_in_process import run; "
        "print(json.dumps(run(Path(sys.argv[1]), sorted(Path(sys.argv[2]).iterdir()), int(sys.argv[3]))))"
    )
    output, wall = timed_command([sys.executable, "-c", code, str(model), str(folder), str(threads)])
    work = json.loads(output.strip().splitlines()[-1])
    return {**work, "wall_s": round(wall, 2), "wall_images_per_s": round(work["images"] / wall, 2)}


def job_rates(output: str) -> dict | None:
    """The rates in what ``python -m runtime.batch`` prints (runtime.batch.job.JobSummary.line); None if absent."""
    match = JOB_RATE.search(output)
    if match is None:
        return None
    return {
        "images": int(match[1]),
        "seconds": float(match[2]),
        "ray_start_s": float(match[3]),
        "images_per_s": float(match[4]),
        # None when every row came back with the first ones (a small job spread over several workers).
        "steady_images_per_s": float(match[5]) if match[5] else None,
        "first_rows_s": float(match[6]),
    }


def batch_job(model: Path, folder: Path, out: Path, options: list[str]) -> dict:
    """One ``python -m runtime.batch`` run from scratch (--overwrite): its wall time and what it prints."""
    command = [sys.executable, "-m", "runtime.batch", str(folder), "--model", str(model), "--out", str(out), "--overwrite", *options]
    output, wall = timed_command(command)
    rates = job_rates(output)
    if rates is None:
        raise RuntimeError(f"{' '.join(command)}: no rate in its output {output!r}")
    return {**rates, "wall_s": round(wall, 2), "wall_images_per_s": round(rates["images"] / wall, 2)}


def parse_args(argv):
    parser = entry_parser(PROG, __doc__)
    # yolact_base: the authors' model, whose cost per image (0.85 s on 2 cores) is that of a real dataset job;
    # yolact_small's 25 ms make a 200-image job measure mostly Ray's fixed start-up (docs/batch.md gives both).
    parser.add_argument("--config", default="yolact_base", help="model config (default yolact_base)")
    parser.add_argument("--weights", type=Path, help="trained weights (default: the authors' recipe weights, every slot filled)")
    parser.add_argument("--images", type=positive_int, default=200, help="how many of the shapes val images (default 200)")
    parser.add_argument("--rounds", type=positive_int, default=2, help="interleaved rounds of every arm (default 2)")
    parser.add_argument("--threads", type=positive_int, default=2, help="intra-op threads in process and of the embedded actor")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.images <= DEFAULT_BATCH_SIZE:
        # A job's first rows are one block of DEFAULT_BATCH_SIZE images: with no more, it has no rate after them.
        parser.error(f"--images: more than {DEFAULT_BATCH_SIZE} (one block of a job), not {args.images}")
    return args


def median_rate(runs: list[dict], key: str = "images_per_s") -> float | None:
    """The median of the runs that have the rate; None if none has it."""
    rates = [run[key] for run in runs if run.get(key) is not None]
    return round(float(np.median(rates)), 2) if rates else None


def rate_ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else round(numerator / denominator, 3)


def ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def markdown(report: dict) -> str:
    lines = [
        f"# Batch inference: {report['config']}, {report['images']} images ({report['where']})",
        "",
        report["what"],
        "",
        "| arm | command, s per round | images/s over the command (median) | work, images/s per round | median "
        "| ray.init, s per round | after the first rows, images/s per round (s until them) | median |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in report["arms"]:
        runs = arm["runs"]
        walls = ", ".join(f"{run['wall_s']:.1f}" for run in runs if "wall_s" in run)
        wall_median = f"{arm['median_wall_images_per_s']:.2f}" if "median_wall_images_per_s" in arm else "-"
        rates = ", ".join(f"{run['images_per_s']:.2f}" for run in runs)
        ray_starts = ", ".join(f"{run['ray_start_s']:.1f}" for run in runs if "ray_start_s" in run)
        steady = ", ".join(
            ("all in the first rows" if run["steady_images_per_s"] is None else f"{run['steady_images_per_s']:.2f}")
            + f" ({run['first_rows_s']:.1f})"
            for run in runs
            if "steady_images_per_s" in run
        )
        steady_median = f"{arm['median_steady_images_per_s']:.2f}" if arm["median_steady_images_per_s"] is not None else "-"
        lines.append(
            f"| {arm['label']} | {walls or '-'} | {wall_median} | {rates} | {arm['median_images_per_s']:.2f} "
            f"| {ray_starts or '-'} | {steady or '-'} | {steady_median} |"
        )
    target = report["target"]
    lines += [
        "",
        (
            f"Embedded Ray / in process, {target.get('measure', OLD_MEASURE)}: {target['ratio']:.2f}x "
            f"(target {target['ratio_needed']}x: {'met' if target['met'] else 'NOT met'}); "
            + (f"over the work {target['work_ratio']:.2f}x; " if "work_ratio" in target else "")
            + f"after the first rows {ratio_text(target['steady_ratio'])}. Two-node cluster, 2 workers / 1 worker: {report['cluster_scaling']:.2f}x; "
            f"after the first rows {ratio_text(report['cluster_steady_scaling'])}."
        ),
        (
            "Load average (1, 5, 15 min) at the start "
            + ", ".join(f"{value:.2f}" for value in report["machine"]["load_average_1_5_15_min"]["start"])
            + ", at the end "
            + ", ".join(f"{value:.2f}" for value in report["machine"]["load_average_1_5_15_min"]["end"])
            + " (the benchmark's own Ray processes included); the arms alternate round by round, so that other work weighs on all alike."
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
                "in process": lambda: in_process_command(model, folder, args.threads),
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
    wall_medians = {label: median_rate(runs, "wall_images_per_s") for label, runs in arms.items()}
    ratio = wall_medians["embedded Ray, 1 worker"] / wall_medians["in process"]
    # After the first rows: the rate of a long job, once the actors have started and loaded the model.
    steady = {label: median_rate(runs, "steady_images_per_s") for label, runs in arms.items() if label != "in process"}
    machine = {
        **machine_details(),
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "batch_packages": package_versions(("ray", "pyarrow", "onnxruntime")),
    }
    report = {
        "what": "images decoded, segmented and turned into result rows (masks as COCO RLE); the Ray arms also commit Parquet parts. "
        "Command: a fresh Python from its start to its exit (imports, model load, Ray's start and stop, the work): what a user waits "
        "for, and the target's measure. Work: in process from opening the Segmenter to the last row; a job from ray.init to its "
        "last commit (ray.init, its share, also given alone).",
        "config": args.config,
        "weights": str(args.weights) if args.weights else "authors' recipe weights (every detection slot filled)",
        "images": len(files),
        "where": f"{cpu_description(machine)}, {machine['cores']} cores",
        "machine": machine,
        "threads": args.threads,
        "arms": [
            {
                "label": label,
                "runs": runs,
                "median_wall_images_per_s": wall_medians[label],
                "median_images_per_s": medians[label],
                "median_steady_images_per_s": steady.get(label),
            }
            for label, runs in arms.items()
        ],
        "target": {
            "ratio_needed": TARGET_RATIO,
            "measure": MEASURE,
            "ratio": round(ratio, 3),
            "met": ratio >= TARGET_RATIO,
            "work_ratio": round(medians["embedded Ray, 1 worker"] / medians["in process"], 3),
            "steady_ratio": rate_ratio(steady["embedded Ray, 1 worker"], medians["in process"]),
        },
        "cluster_scaling": round(wall_medians["cluster, 2 workers"] / wall_medians["cluster, 1 worker"], 3),
        "cluster_steady_scaling": rate_ratio(steady["cluster, 2 workers"], steady["cluster, 1 worker"]),
    }
    stem = report_stem(args.out_dir, "batch", machine_tag(machine), started, args.config)
    write_report(stem, report, markdown(report), batch_chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
