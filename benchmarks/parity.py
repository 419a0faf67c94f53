"""``python -m benchmarks.parity``: box and mask AP of every backend and precision against PyTorch FP32.

Every variant of ``benchmarks.variants`` available here scores the same COCO-format dataset (default: the
embedded val split) with pycocotools; the report gives each one's AP and its delta to the PyTorch FP32
reference in AP points (AP x 100), and the command exits 1 when a delta exceeds its tolerance: FP32
backends 0.1 points, bf16/FP16 0.5, INT8 1.0 (all configurable). PyTorch with traditional NMS is scored as
well, reported but not judged (another algorithm): the paper's Table 2a comparison of Fast NMS. Writes
``benchmarks/results/parity_<machine>_<config>_<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from command_line import entry_parser, entry_point
from yolact.data import CocoDataset, DatasetError, eval_transform
from yolact.evaluation import evaluate_detector
from contract.files import write_text

from .machine import cpu_description, machine_details, machine_tag
from .reports import report_stem
from .variants import (
    REFERENCE,
    SPECS,
    add_dataset_options,
    add_int8_options,
    export_graphs,
    int8_recipe,
    load_or_recipe,
    open_variant,
    resolve_dataset,
    set_threads,
    skip_reason,
)

PROG = "python -m benchmarks.parity"
RESULTS = Path(__file__).parent / "results"
DEFAULT_WEIGHTS = Path("runs/train/weights.pth")
METRICS = ("box/AP", "box/AP50", "mask/AP", "mask/AP50")


def table(report: dict) -> list[str]:
    """The variants as markdown table lines: AP, deltas in AP points, tolerance and verdict."""
    tolerances = report["tolerance_ap_points"]
    lines = [
        "| variant | box AP | mask AP | mask AP50 | Δ box AP | Δ mask AP | tolerance (AP points) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["variants"].items():
        m, d = row["metrics"], row["delta_ap_points"]
        tol = "reference" if name == REFERENCE else f"±{tolerances[SPECS[name].kind]}" if SPECS[name].kind in tolerances else "not judged"
        lines.append(
            f"| {name} | {100 * m['box/AP']:.2f} | {100 * m['mask/AP']:.2f} | {100 * m['mask/AP50']:.2f} | "
            f"{d['box/AP']:+.2f} | {d['mask/AP']:+.2f} | {tol} | {row['verdict']} |"
        )
    return lines


def markdown_table(report: dict) -> str:
    heading = f"{report['config']} ({report['weights']}), {report['images']} images of {report['dataset']}, {report['where']}"
    lines = [heading, "", *table(report)]
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{name} ({why})" for name, why in report["skipped"].items())]
    return "\n".join(lines) + "\n"


def parse_args(argv) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument(
        "--weights", type=Path, default=DEFAULT_WEIGHTS, help=f"checkpoint (default: {DEFAULT_WEIGHTS}, what python -m train leaves)"
    )
    parser.add_argument("--recipe-weights", action="store_true", help="the authors' recipe weights instead of --weights")
    parser.add_argument("--config", help="config name (default: the checkpoint's own; yolact_small with --recipe-weights)")
    parser.add_argument("--variants", nargs="+", choices=sorted(SPECS), default=list(SPECS), metavar="VARIANT")
    add_dataset_options(parser)
    parser.add_argument("--max-images", type=int, help="score only the first N images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int)
    add_int8_options(parser, default_images=64)
    parser.add_argument("--tol-fp32", type=float, default=0.1, help="AP points")
    parser.add_argument("--tol-reduced", type=float, default=0.5, help="AP points, bf16 and FP16")
    parser.add_argument("--tol-int8", type=float, default=1.0, help="AP points")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.recipe_weights and not args.weights.is_file():
        parser.error(f"--weights {args.weights}: no such file (train first with python -m train, or pass --recipe-weights)")
    if args.recipe_weights:
        args.config = args.config or "yolact_small"
    resolve_dataset(parser, args)
    return args


def measure(
    args: argparse.Namespace, model, weights: Path | None, dataset: CocoDataset, runnable: list[str]
) -> dict[str, dict[str, float]]:
    """Each runnable variant's METRICS on ``dataset`` (graphs exported once into a scratch folder)."""
    metrics = {}
    with tempfile.TemporaryDirectory(prefix="yolact-parity-") as scratch:
        graphs = export_graphs(model, Path(scratch), [SPECS[name] for name in runnable], int8_recipe(args))
        for name in runnable:
            # A model of its own per PyTorch variant: a variant may move it or change its memory layout.
            variant = open_variant(
                SPECS[name], lambda: load_or_recipe(args.config, weights, args.device), graphs, args.device, args.threads
            )
            print(f"{name} on {variant.executed_on}")
            result = evaluate_detector(variant.detect, dataset, batch_size=8, max_images=args.max_images)
            metrics[name] = {k: float(result.metrics[k]) for k in METRICS}
    return metrics


def judge(metrics: dict[str, dict[str, float]], tolerances: dict[str, float]) -> dict[str, dict]:
    """Per variant: its metrics, their difference from the reference in AP points, and the verdict (pass or
    FAIL against its kind's tolerance; "compared" for another algorithm, reported and not judged)."""
    reference = metrics[REFERENCE]
    rows = {}
    for name, values in metrics.items():
        delta = {k: round(100 * (values[k] - reference[k]), 3) for k in METRICS}
        tolerance = tolerances.get(SPECS[name].kind)
        if name == REFERENCE or tolerance is None:
            verdict = "reference" if name == REFERENCE else "compared"
        else:
            verdict = "pass" if max(abs(delta["box/AP"]), abs(delta["mask/AP"])) <= tolerance else "FAIL"
        rows[name] = {"metrics": values, "delta_ap_points": delta, "verdict": verdict}
    return rows


@entry_point(PROG, bad_input=(DatasetError,))
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc)
    weights = None if args.recipe_weights else args.weights
    model = load_or_recipe(args.config, weights, "cpu")
    dataset = CocoDataset(args.images, args.annotations, eval_transform(model.cfg))
    names = [REFERENCE, *(n for n in args.variants if n != REFERENCE)]
    skipped = {name: why for name in names if (why := skip_reason(SPECS[name], args.device, model.cfg.model_family))}
    tolerances = {"fp32": args.tol_fp32, "reduced": args.tol_reduced, "int8": args.tol_int8}
    metrics = measure(args, model, weights, dataset, [name for name in names if name not in skipped])
    rows = judge(metrics, tolerances)
    failed = [name for name, row in rows.items() if row["verdict"] == "FAIL"]
    machine = {**machine_details(), "threads": args.threads or torch.get_num_threads()}
    report = {
        "config": model.cfg.name,
        "weights": "authors' recipe weights" if weights is None else str(weights),
        "dataset": str(args.annotations),
        "images": min(len(dataset), args.max_images or len(dataset)),
        "where": machine["gpu"]["name"]
        if machine["gpu"] and args.device.startswith("cuda")
        else f"{cpu_description(machine)}, {machine['threads']} threads",
        "tolerance_ap_points": tolerances,
        "variants": rows,
        "skipped": skipped,
        "int8_recipe": int8_recipe(args).record(),
        "machine": machine,
    }
    tag = machine_tag(machine if args.device.startswith("cuda") else {**machine, "gpu": None})
    stem = report_stem(args.out_dir, "parity", tag, started, model.cfg.name)
    write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(stem.with_suffix(".md"), markdown_table(report))
    print(markdown_table(report))
    print(f"wrote {stem}.json and .md")
    if failed:
        print(f"{PROG}: {', '.join(failed)} outside tolerance", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
