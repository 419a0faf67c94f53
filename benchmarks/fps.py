"""``python -m benchmarks.fps``: end-to-end speed of every backend and precision on this machine.

Each variant (``benchmarks.variants``: PyTorch eager with Fast or traditional NMS, onnxruntime FP32/INT8,
OpenVINO f32/bf16/INT8, TensorRT, and on CUDA PyTorch FP16 and torch.compile) runs in a process of its own,
so its peak memory is its own. One iteration is a batch of images of the asked size, rotated among several
JPEG-encoded val images, timed in three stages: decode + upload, graph (network and in-graph
post-processing) and paste (masks to the image size, pixel boxes). The number of detections pasted per image
and the bytes their masks take (as the result keeps them: the runtime's compact crops, PyTorch's dense
planes; and, to compare, as dense [N, H, W] bools) are recorded with every figure: without ``--weights`` the model holds the authors' recipe weights, which fill
every slot (random weights detect nothing and flatter post-processing). For onnxruntime FP32 the graph's
post-processing is also timed alone, on the outputs of its last convolutions, and onnxruntime's own profile of
the graph splits its kernel time by operator type (for YOLACT++: ``DeformConv``'s share).

Writes ``benchmarks/results/fps_<machine>_<config>_<date>.json``, ``.md`` (a table) and ``.png`` (latency
per variant by stage; images/s against batch size).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
from tqdm import tqdm

import runtime
from command_line import entry_parser, entry_point, image_size
from export.calibration import calibration_files
from contract import INPUT_NAME, OUTPUT_NAMES
from export.quantize import final_convolutions
from yolact.config import get_config
from yolact.data import ensure_shapes_dataset
from contract.files import write_text

from .charts import fps_chart
from .machine import cpu_description, machine_details, machine_tag
from .reports import report_stem
from .variants import (
    SPECS,
    GraphFiles,
    add_int8_options,
    export_graphs,
    int8_recipe,
    load_or_recipe,
    open_variant,
    set_threads,
    skip_reason,
)

PROG = "python -m benchmarks.fps"
RESULTS = Path(__file__).parent / "results"
STAGES = ("decode_upload", "graph", "paste")
NETWORK_GRAPH, POST_PROCESSING_GRAPH = "network_only.onnx", "post_processing.onnx"


def encoded_images(count: int, height: int, width: int) -> list[bytes]:
    """``count`` embedded val images resized to ``height`` x ``width``, JPEG-encoded (decoding is timed)."""
    files = calibration_files(ensure_shapes_dataset().val_images, count)
    encoded = []
    for path in files:
        image = cv2.resize(cv2.imread(str(path)), (width, height), interpolation=cv2.INTER_LINEAR)
        encoded.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    return encoded


def split_at_final_convolutions(fp32: Path, folder: Path) -> None:
    """Write the exported graph in two: the network (up to its last convolutions, every Conv with no Conv
    downstream) and the post-processing (from their outputs, and the images, to the graph's outputs)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp32)))
    finals = [node.output[0] for node in final_convolutions(model)]
    extractor = onnx.utils.Extractor(model)
    onnx.save(extractor.extract_model([INPUT_NAME], finals), str(folder / NETWORK_GRAPH))
    onnx.save(extractor.extract_model([INPUT_NAME, *finals], list(OUTPUT_NAMES)), str(folder / POST_PROCESSING_GRAPH))


class PostProcessingTimer:
    """Times the graph's post-processing on its own: the network runs once (untimed) to give it its inputs.
    Measured directly, not as the full graph less the network: on a large model the run-to-run noise of
    both would swamp their difference."""

    def __init__(self, graphs: Path, threads: int | None):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.network = ort.InferenceSession(str(graphs / NETWORK_GRAPH), options, providers=providers)
        self.post = ort.InferenceSession(str(graphs / POST_PROCESSING_GRAPH), options, providers=providers)

    def times_ms(self, images: np.ndarray, warmup: int, iters: int) -> list[float]:
        outputs = dict(zip((o.name for o in self.network.get_outputs()), self.network.run(None, {INPUT_NAME: images})))
        feed = {i.name: images if i.name == INPUT_NAME else outputs[i.name] for i in self.post.get_inputs()}
        times = []
        for iteration in range(warmup + iters):
            start = time.perf_counter()
            self.post.run(None, feed)
            if iteration >= warmup:
                times.append((time.perf_counter() - start) * 1000)
        return times


def operator_shares(graph: Path, threads: int | None, images: np.ndarray, runs: int) -> dict[str, float]:
    """onnxruntime's profile of ``runs`` runs of the whole graph: each operator type's share of the kernel
    time, summed over every node of that type (largest first)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(graph.parent / "operator_profile")
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, {INPUT_NAME: images})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    micros: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            micros[op] = micros.get(op, 0.0) + event["dur"]
    total = sum(micros.values())
    return {op: round(us / total, 4) for op, us in sorted(micros.items(), key=lambda item: -item[1])}


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike getrusage's maxrss it is not inherited from the
    parent that started the process)."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


def kept_mask_bytes(detections) -> int:
    """Bytes one image's masks take as the variant's result keeps them."""
    return detections.mask_nbytes if isinstance(detections, runtime.Detections) else detections.masks.nbytes


def summary(times_ms: list[float]) -> dict:
    return {"median": round(float(np.median(times_ms)), 3), "p90": round(float(np.percentile(times_ms, 90)), 3)}


def sample_variant(args: argparse.Namespace) -> list[dict]:
    """The worker: one variant at every batch size, ``args.iters`` timed runs each after ``args.warmup``;
    prints and returns its raw samples (per batch: each stage's times, detections pasted, peak memory)."""
    set_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    spec = SPECS[args.worker]
    graphs = GraphFiles(args.graphs, args.config)
    variant = open_variant(spec, lambda: load_or_recipe(args.config, args.weights, args.device), graphs, args.device, args.threads)
    # Both figures come from CPU sessions: on a GPU run they would time the CPU beside it, not the variant.
    profiled = spec.name == "onnxruntime_fp32" and not args.device.startswith("cuda")
    post_processing = PostProcessingTimer(args.graphs, args.threads) if profiled else None
    encoded = encoded_images(args.images, args.height, args.width)
    rows = []
    for batch in args.batch:
        stage_times: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
        detections, mask_bytes, dense_mask_bytes = [], [], []
        for iteration in range(args.warmup + args.iters):
            picks = [encoded[(iteration * batch + j) % len(encoded)] for j in range(batch)]
            start = time.perf_counter()
            images = np.stack([cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in picks])
            inputs = variant.prepare(images)
            variant.synchronize()
            decoded = time.perf_counter()
            raw = variant.graph(inputs)
            variant.synchronize()
            graphed = time.perf_counter()
            pasted = [variant.paste(raw, i, args.height, args.width) for i in range(batch)]
            done = time.perf_counter()
            if iteration < args.warmup:
                continue
            for stage, (a, b) in zip((*STAGES, "total"), ((start, decoded), (decoded, graphed), (graphed, done), (start, done))):
                stage_times[stage].append((b - a) * 1000)
            detections += [len(d) for d in pasted]
            mask_bytes += [kept_mask_bytes(d) for d in pasted]
            dense_mask_bytes += [len(d) * args.height * args.width for d in pasted]
        row = {
            "variant": spec.name,
            "backend": spec.backend,
            "precision": spec.precision,
            "executed_on": variant.executed_on,
            "batch": batch,
            "samples_ms": stage_times,
            "detections": detections,
            "mask_bytes": mask_bytes,
            "dense_mask_bytes": dense_mask_bytes,
        }
        if post_processing is not None:
            row["post_processing_ms"] = post_processing.times_ms(images, args.warmup, args.iters)
        if profiled:
            row["operator_time_share"] = operator_shares(graphs.of(spec), args.threads, images, args.iters)
        rows.append(row)
    peak = {"peak_rss_mib": peak_rss_mib()}
    if args.device.startswith("cuda"):
        peak["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    for row in rows:
        row.update(peak)
    print(json.dumps(rows))
    return rows


def summarize(samples: list[dict]) -> dict:
    """One variant at one batch size from the raw samples of every round: medians over all timed runs."""
    first = samples[0]
    times = {stage: [t for s in samples for t in s["samples_ms"][stage]] for stage in first["samples_ms"]}
    stages = {stage: summary(values) for stage, values in times.items()}
    row = {key: first[key] for key in ("variant", "backend", "precision", "executed_on", "batch")}
    row.update(
        {
            "iters": len(times["total"]),
            "rounds": len(samples),
            "ms": stages,
            "images_per_s": round(first["batch"] * 1000 / stages["total"]["median"], 2),
            "detections_per_image": round(float(np.mean([d for s in samples for d in s["detections"]])), 1),
            "mask_mib_per_image": {
                "kept": round(float(np.mean([b for s in samples for b in s["mask_bytes"]])) / 2**20, 3),
                "dense": round(float(np.mean([b for s in samples for b in s["dense_mask_bytes"]])) / 2**20, 3),
            },
        }
    )
    if "post_processing_ms" in first:
        post_ms = float(np.median([t for s in samples for t in s["post_processing_ms"]]))
        row["in_graph_postprocess_ms"] = round(post_ms, 3)
        row["network_ms"] = round(stages["graph"]["median"] - post_ms, 3)
        row["postprocess_and_paste_share"] = round((post_ms + stages["paste"]["median"]) / stages["total"]["median"], 4)
    if "operator_time_share" in first:
        row["operator_time_share"] = first["operator_time_share"]
    for peak in ("peak_rss_mib", "peak_cuda_mib"):
        if peak in first:
            row[peak] = max(s[peak] for s in samples)
    return row


def run_worker(args: argparse.Namespace, name: str, graphs: Path, iters: int) -> tuple[list[dict], str | None]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.fps",
        "--worker",
        name,
        "--graphs",
        str(graphs),
        "--config",
        args.config,
        "--device",
        args.device,
        "--image-size",
        f"{args.height}x{args.width}",
        "--warmup",
        str(args.warmup),
        "--iters",
        str(iters),
        "--images",
        str(args.images),
        "--batch",
        *map(str, args.batch),
    ]
    if args.weights:
        command += ["--weights", str(args.weights)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return [], f"failed: {lines[-1] if lines else 'exit status ' + str(proc.returncode)}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), None


def table(report: dict) -> list[str]:
    """The results as markdown table lines, with each variant's speed-up over PyTorch eager at its batch."""
    lines = [
        "| variant | batch | detections/image | latency ms, median (p90) | images/s | vs PyTorch eager "
        "| decode+upload / graph / paste ms | post-processing + paste | masks MiB/image kept (dense) | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        base = next((b for b in report["results"] if b["variant"] == "pytorch_fp32" and b["batch"] == r["batch"]), None)
        speedup = f"{base['ms']['total']['median'] / r['ms']['total']['median']:.2f}x" if base else "-"
        share = f"{100 * r['postprocess_and_paste_share']:.1f}%" if "postprocess_and_paste_share" in r else "-"
        # Reports from before compact masks (2026-12-07) did not record the masks' bytes.
        masks = r.get("mask_mib_per_image")
        mask_mib = f"{masks['kept']:.2f} ({masks['dense']:.1f})" if masks else "-"
        ms = r["ms"]
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['detections_per_image']:g} | {ms['total']['median']:.1f} ({ms['total']['p90']:.1f}) | "
            f"{r['images_per_s']:.2f} | {speedup} | {ms['decode_upload']['median']:.1f} / {ms['graph']['median']:.1f} / "
            f"{ms['paste']['median']:.1f} | {share} | {mask_mib} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
    return lines


def operator_lines(report: dict, shown: int = 5) -> list[str]:
    """Where the onnxruntime FP32 graph's kernel time goes, by operator type (its largest ``shown``)."""
    lines = []
    for r in report["results"]:
        if "operator_time_share" in r:
            shares = list(r["operator_time_share"].items())
            parts = [f"{op} {100 * share:.1f}%" for op, share in shares[:shown]]
            if "DeformConv" in r["operator_time_share"] and "DeformConv" not in dict(shares[:shown]):
                parts.append(f"DeformConv {100 * r['operator_time_share']['DeformConv']:.1f}%")
            lines.append(
                f"- {r['variant']} at batch {r['batch']}, kernel time by operator (onnxruntime's profile): " + ", ".join(parts) + "."
            )
    return ["", *lines] if lines else []


def skipped_line(report: dict) -> list[str]:
    lines = []
    if report["skipped"]:
        lines += ["", "Not run: " + "; ".join(f"{name} ({why})" for name, why in report["skipped"].items()) + "."]
    if report.get("unfinished"):
        lines += ["", "Unfinished (the run stopped before these ran): " + ", ".join(report["unfinished"]) + "."]
    return lines


def markdown_table(report: dict) -> str:
    heading = f"{report['config']}, {report['image_hw'][0]}x{report['image_hw'][1]} images, {report['where']}"
    return "\n".join([heading, "", *table(report), *operator_lines(report), *skipped_line(report)]) + "\n"


def write_report(args, started: datetime.datetime, samples: dict, skipped: dict, unfinished: list[str]) -> tuple[dict, Path]:
    """The report of the runs so far (``unfinished``: variants with rounds still to run) as JSON, table and
    chart, each written atomically; returns it and its path stem."""
    machine = {**machine_details(), "threads": args.threads or torch.get_num_threads()}
    results = [summarize(rounds) for key, rounds in samples.items() if key[0] not in skipped]
    report = {
        "what": "end to end from JPEG bytes: decode + upload, graph (network, in-graph post-processing), paste to the image",
        "config": args.config,
        "weights": str(args.weights) if args.weights else "authors' recipe weights (every detection slot filled)",
        "image_hw": [args.height, args.width],
        "device": args.device,
        "where": machine["gpu"]["name"]
        if machine["gpu"] and args.device.startswith("cuda")
        else f"{cpu_description(machine)}, {machine['threads']} threads",
        "machine": machine,
        "int8_recipe": int8_recipe(args).record(),
        "results": results,
        "skipped": skipped,
        "unfinished": unfinished,
    }
    tag = machine_tag(machine if args.device.startswith("cuda") else {**machine, "gpu": None})
    stem = report_stem(args.out_dir, "fps", tag, started, args.config)
    write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(stem.with_suffix(".md"), markdown_table(report))
    if results:
        fps_chart(report, stem.with_suffix(".png"))
    return report, stem


def parse_args(argv) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--config", default="yolact_small", help="model config (headline: yolact_base)")
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the authors' recipe weights)")
    parser.add_argument(
        "--variants", nargs="+", choices=sorted(SPECS), default=list(SPECS), metavar="VARIANT", help=f"default: all ({', '.join(SPECS)})"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--image-size", default="480x640", help="HxW of the input images")
    parser.add_argument("--images", type=int, default=4, help="distinct images rotated through the runs")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10, help="timed runs per variant and batch size, over all rounds")
    parser.add_argument("--rounds", type=int, default=1, help="split the timed runs into rounds that take turns through the variants")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of every backend")
    add_int8_options(parser, default_images=32)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=sorted(SPECS), help=argparse.SUPPRESS)
    parser.add_argument("--graphs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.height, args.width = image_size(parser, args.image_size)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    if args.weights is not None and not args.weights.is_file():
        parser.error(f"--weights {args.weights}: no such file")
    if min(args.batch) < 1 or args.iters < 1 or args.images < 1 or args.rounds < 1:
        parser.error("--batch, --iters, --images and --rounds must be at least 1")
    return args


@entry_point(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        sample_variant(args)
        return 0
    set_threads(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc)
    family = get_config(args.config).model_family
    skipped = {name: why for name in args.variants if (why := skip_reason(SPECS[name], args.device, family))}
    runnable = [name for name in args.variants if name not in skipped]
    with tempfile.TemporaryDirectory(prefix="yolact-fps-") as scratch:
        graphs = Path(scratch)
        if any(SPECS[name].backend != "pytorch" for name in runnable):
            model = load_or_recipe(args.config, args.weights, "cpu")
            files = export_graphs(model, graphs, [SPECS[name] for name in runnable], int8_recipe(args))
            if "onnxruntime_fp32" in runnable:
                split_at_final_convolutions(files.path("onnx", False), graphs)
        # Rounds take turns through the variants, so that a slow spell of a shared machine falls on all of them.
        per_round = -(-args.iters // args.rounds)
        samples: dict[tuple[str, int], list[dict]] = {}
        runs = [name for _ in range(args.rounds) for name in runnable]
        with tqdm(total=len(runs), desc="fps", unit="run") as progress:
            for done, name in enumerate(runs, start=1):
                if name not in skipped:
                    rows, failure = run_worker(args, name, graphs, per_round)
                    if failure:
                        skipped[name] = failure
                    for row in rows:
                        samples.setdefault((name, row["batch"]), []).append(row)
                if samples and done < len(runs):
                    # A run stopped part-way (a lease's time limit) keeps what it measured.
                    write_report(args, started, samples, skipped, unfinished=sorted(set(runs[done:])))
                progress.update()
        report, stem = write_report(args, started, samples, skipped, unfinished=[])
    for r in report["results"]:
        print(
            f"{r['variant']} batch {r['batch']}: {r['ms']['total']['median']:.1f} ms, {r['images_per_s']:.2f} images/s, "
            f"{r['detections_per_image']:g} detections/image"
        )
    results = report["results"]
    print(markdown_table(report))
    print(f"wrote {stem}.json, .md and .png")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
