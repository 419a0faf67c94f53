"""``python -m benchmarks.serve``: a bounded load test of ``python -m runtime.serve`` on this machine.

The graph (authors' recipe weights: every detection slot filled) is served on 127.0.0.1 by a server started
for the run, with dynamic batching on and off and with 1 and 2 model instances. For each, 1, 4 and 16
concurrent clients (threads, each with its own ``runtime.Segmenter("grpc://..." or "http://...")``) send
one image per request for a fixed time; each client pastes its own detections, as a deployed client does.
Every response is compared with the in-process runtime's detections for the same image. The in-process
runtime (one caller, ``Segmenter.infer`` then the paste, the same loop) is timed at several batch sizes in
the same run; clients, server and the in-process runtime all share this machine's cores.

Mixed image sizes: right after the same-size cell of the most clients, each dynamic-batching server gets a
cell as loaded whose clients send images of three sizes (``--mixed-sizes``), interleaved, as phones,
cameras and crops do. Triton's own counters say how many executions served the requests; the target is at
most half as many executions as requests and at least 0.8x the same-size cell's throughput.

Per cell: throughput, p50/p99 latency, errors, mismatches, and where the time of a request goes: the
server's queue and compute (Triton's Prometheus counters), and the rest of the round trip (transport and
serialisation on both sides). Writes ``benchmarks/results/serve_<machine>_<config>_<date>.json``, ``.md``
and ``.png`` (throughput and p99 latency against clients).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

import runtime
from command_line import entry_parser, entry_point, image_size, non_negative_int, positive_float, positive_int

from .charts import serve_chart
from .fps import encoded_images
from .machine import cpu_description, machine_details, machine_tag, package_versions
from .reports import report_stem, write_report
from .triton_harness import ServerProcess
from .variants import SPECS, export_graphs, load_or_recipe

PROG = "python -m benchmarks.serve"
RESULTS = Path(__file__).parent / "results"
# Every client loop stops at the cell's duration or at this many requests, whichever comes first.
MAX_REQUESTS_PER_CLIENT = 10_000
# A request still running when its cell ends is waited for at most this long (or its timeout, if longer).
STRAGGLER_TIMEOUT_S = 120
TARGET_RATIO = 0.8
# Mixed-size cells: at least this share of the same-size cell's throughput, in at most this share of executions per request.
MIXED_TARGET_RATIO = 0.8
MIXED_MAX_EXECUTIONS_PER_REQUEST = 0.5
# Their mean area (315,392 px) is close to the default 480x640 (307,200 px): the clients' paste costs about the same.
DEFAULT_MIXED_SIZES = ("480x640", "384x512", "576x768")


@dataclass(frozen=True)
class ServerSetup:
    dynamic_batching: bool
    instances: int

    @property
    def label(self) -> str:
        return f"{'dynamic batching' if self.dynamic_batching else 'no batching'}, {self.instances} instance(s)"


def same_detections(a: runtime.Detections, b: runtime.Detections) -> bool:
    """Equal up to float noise: a dynamic batch of other size than the in-process run may change the last
    bits of a score, and so a mask pixel at 0.5."""
    return (
        len(a) == len(b)
        and np.array_equal(a.class_ids, b.class_ids)
        and np.abs(a.boxes - b.boxes).max(initial=0) <= 1
        and np.abs(a.scores - b.scores).max(initial=0) <= 1e-4
        and (a.masks != b.masks).mean() <= 1e-3
    )


def segment_one(segmenter: runtime.Segmenter, images: list[np.ndarray]) -> tuple[list[runtime.Detections], float]:
    """What one request costs a client: the graph (local, or a round trip to the server), then the paste.
    Returns the detections and the graph's (or round trip's) seconds."""
    started = time.perf_counter()
    raw = segmenter.infer(np.stack(images))
    graph_s = time.perf_counter() - started
    detections = [
        runtime.paste_detections(raw, i, *image.shape[:2], segmenter.score_threshold, segmenter.class_names)
        for i, image in enumerate(images)
    ]
    return detections, graph_s


def in_process(
    graph: Path, images: list[np.ndarray], batches: list[int], seconds: float, threads: int, reference_images: Sequence[np.ndarray] = ()
) -> tuple[list[dict], list[runtime.Detections]]:
    """images/s and the graph's ms per batch of the in-process runtime at each batch size (batches of
    ``images``, one size), and its detections of every one of ``reference_images`` (the reference for the
    server's)."""
    rows = []
    with runtime.Segmenter(graph, threads=threads, batch_size=max(batches)) as segmenter:
        references = [segment_one(segmenter, [image])[0][0] for image in reference_images]
        for batch in batches:
            chosen = [images[i % len(images)] for i in range(batch)]
            segment_one(segmenter, chosen)  # warm-up
            rounds, graph_s, started = 0, 0.0, time.perf_counter()
            while time.perf_counter() - started < seconds and rounds < MAX_REQUESTS_PER_CLIENT:
                graph_s += segment_one(segmenter, chosen)[1]
                rounds += 1
            elapsed = time.perf_counter() - started
            rows.append({"batch": batch, "images_per_s": round(batch * rounds / elapsed, 2), "graph_ms": round(1000 * graph_s / rounds, 2)})
    return rows, references


@dataclass
class StartLine:
    """The clients connect (and read the model's metadata) first; then all start when the clock does."""

    connected: threading.Barrier
    go: threading.Event = field(default_factory=threading.Event)
    deadline: float = 0.0


@dataclass
class ClientTally:
    latencies_ms: list[float] = field(default_factory=list)
    round_trip_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    mismatches: int = 0
    finished_at: float = 0.0


def client_loop(
    url: str,
    images: list[np.ndarray],
    references: list[runtime.Detections],
    offset: int,
    start: StartLine,
    tally: ClientTally,
    timeout_s: float,
) -> None:
    with runtime.Segmenter(url, batch_size=1, timeout_s=timeout_s) as segmenter:
        start.connected.wait(timeout=STRAGGLER_TIMEOUT_S)
        start.go.wait(timeout=STRAGGLER_TIMEOUT_S)
        for request in range(MAX_REQUESTS_PER_CLIENT):
            if time.perf_counter() >= start.deadline:
                break
            index = (offset + request) % len(images)
            started = time.perf_counter()
            try:
                (detections,), round_trip_s = segment_one(segmenter, [images[index]])
            except runtime.SegmenterError as error:
                tally.errors.append(str(error))
                continue
            tally.latencies_ms.append(1000 * (time.perf_counter() - started))
            tally.round_trip_ms.append(1000 * round_trip_s)
            tally.mismatches += not same_detections(detections, references[index])
    tally.finished_at = time.perf_counter()


def metric_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-request means (ms) of the server's queue, compute and total time, and its mean batch size."""
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    requests = delta.get("nv_inference_request_success", 0) or 1
    executions = delta.get("nv_inference_exec_count", 0) or 1
    compute = sum(delta.get(f"nv_inference_compute_{part}_duration_us", 0) for part in ("input", "infer", "output"))
    return {
        "server_requests": int(delta.get("nv_inference_request_success", 0)),
        "server_failures": int(delta.get("nv_inference_request_failure", 0)),
        "inferences": int(delta.get("nv_inference_count", 0)),
        "executions": int(delta.get("nv_inference_exec_count", 0)),
        "mean_batch": round(delta.get("nv_inference_count", 0) / executions, 2),
        "queue_ms": round(delta.get("nv_inference_queue_duration_us", 0) / requests / 1000, 2),
        "compute_ms": round(compute / requests / 1000, 2),
        "server_total_ms": round(delta.get("nv_inference_request_duration_us", 0) / requests / 1000, 2),
    }


def run_cell(
    server: ServerProcess,
    protocol: str,
    clients: int,
    images: list[np.ndarray],
    references: list[runtime.Detections],
    seconds: float,
    timeout_s: float,
) -> dict:
    """``clients`` clients for ``seconds``; client i sends images[i], images[i + 1], ... (sizes interleave
    when ``images`` alternates them)."""
    tallies = [ClientTally() for _ in range(clients)]
    start = StartLine(threading.Barrier(clients + 1))
    threads = [
        threading.Thread(target=client_loop, args=(server.url(protocol), images, references, index, start, tally, timeout_s))
        for index, tally in enumerate(tallies)
    ]
    for thread in threads:
        thread.start()
    start.connected.wait(timeout=STRAGGLER_TIMEOUT_S)
    before = server.metrics()
    started = time.perf_counter()
    start.deadline = started + seconds
    start.go.set()
    # A request still running at the deadline gets its whole timeout, and a little more, to answer.
    straggler_s = max(STRAGGLER_TIMEOUT_S, timeout_s + 10)
    for thread in threads:
        thread.join(timeout=seconds + straggler_s)
    hung = sum(thread.is_alive() for thread in threads)
    wall = max(t.finished_at for t in tallies) - started if not hung else seconds + straggler_s
    latencies = [ms for t in tallies for ms in t.latencies_ms]
    round_trips = [ms for t in tallies for ms in t.round_trip_ms]
    answered = before.get("nv_inference_request_success", 0) + len(latencies)
    server_side = metric_means(before, server.metrics(at_least={"nv_inference_request_success": answered}))
    errors = [error for t in tallies for error in t.errors]
    sizes = list(dict.fromkeys(f"{image.shape[0]}x{image.shape[1]}" for image in images))
    return {
        "protocol": protocol,
        "clients": clients,
        "image_sizes": sizes,
        "mixed_sizes": len(sizes) > 1,
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "images_per_s": round(len(latencies) / wall, 2),
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "mean": percentile(latencies, None)},
        "round_trip_ms": percentile(round_trips, None),
        "errors": len(errors) + hung,
        "first_error": errors[0] if errors else ("client thread hung" if hung else None),
        "mismatches": sum(t.mismatches for t in tallies),
        **server_side,
        # What the round trip costs beyond the server's own time: transport, and (de)serialisation in the client library and tritonserver's front end.
        "transport_and_serialisation_ms": round(percentile(round_trips, None) - server_side["server_total_ms"], 2) if round_trips else None,
    }


def percentile(values: list[float], q: float | None) -> float | None:
    if not values:
        return None
    return round(float(np.mean(values) if q is None else np.percentile(values, q)), 2)


def decoded_images(count: int, height: int, width: int) -> list[np.ndarray]:
    return [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in encoded_images(count, height, width)]


def interleaved_sizes(count: int, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """``count`` images of each size, the sizes alternating: image i has size i % len(sizes)."""
    per_size = [decoded_images(count, height, width) for height, width in sizes]
    return [images[i] for i in range(count) for images in per_size]


def size_hw(text: str) -> tuple[int, int]:
    """``HxW`` as (height, width); argparse reports the option and the value when this raises."""
    height, width = (int(value) for value in text.lower().split("x"))
    return height, width


def mixed_size_targets(servers: list[dict]) -> list[dict]:
    """For each mixed-size cell: its executions per request, and its throughput against the same-size cell
    of as many clients on the same server and protocol (run just before it)."""
    targets = []
    for setup in servers:
        for mixed in (cell for cell in setup["cells"] if cell["mixed_sizes"]):
            (same,) = [
                cell
                for cell in setup["cells"]
                if not cell["mixed_sizes"] and (cell["protocol"], cell["clients"]) == (mixed["protocol"], mixed["clients"])
            ]
            ratio = mixed["images_per_s"] / same["images_per_s"] if same["images_per_s"] else 0.0
            executions_per_request = mixed["executions"] / mixed["server_requests"] if mixed["server_requests"] else 1.0
            targets.append(
                {
                    "cell": f"{setup['label']}, {mixed['protocol']}, {mixed['clients']} clients",
                    "requests": mixed["server_requests"],
                    "executions": mixed["executions"],
                    "executions_per_request": round(executions_per_request, 3),
                    "same_size_images_per_s": same["images_per_s"],
                    "mixed_images_per_s": mixed["images_per_s"],
                    "ratio": round(ratio, 3),
                    "met": executions_per_request <= MIXED_MAX_EXECUTIONS_PER_REQUEST and ratio >= MIXED_TARGET_RATIO,
                }
            )
    return targets


def table(report: dict) -> list[str]:
    lines = [
        "| server | protocol | clients | image sizes | images/s | vs in-process best | latency p50 / p99 ms | errors | mismatches "
        "| requests / executions | mean batch | queue / compute / transport+serialisation ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    best = report["in_process_best"]["images_per_s"]
    # Reports from before mixed-size cells (2026-12-07) sent one size and did not count executions.
    one_size = [f"{report['image_hw'][0]}x{report['image_hw'][1]}"]
    for setup in report["servers"]:
        for cell in setup["cells"]:
            lines.append(
                f"| {setup['label']} | {cell['protocol']} | {cell['clients']} | {', '.join(cell.get('image_sizes', one_size))} | {cell['images_per_s']:.2f} | "
                f"{cell['images_per_s'] / best:.2f}x | {cell['latency_ms']['p50']} / {cell['latency_ms']['p99']} | {cell['errors']} | {cell['mismatches']} | "
                f"{cell['server_requests']} / {cell.get('executions', '-')} | {cell['mean_batch']} | "
                f"{cell['queue_ms']} / {cell['compute_ms']} / {cell['transport_and_serialisation_ms']} |"
            )
    return lines


def markdown(report: dict) -> str:
    def rates(rows: list[dict]) -> str:
        return ", ".join(f"batch {r['batch']}: {r['images_per_s']:.2f} images/s (graph {r['graph_ms']:.1f} ms)" for r in rows)

    target = report["target"]
    load = report["machine"]["load_average_1_5_15_min"]
    return (
        "\n".join(
            [
                f"{report['config']}, {report['image_hw'][0]}x{report['image_hw'][1]} images, {report['where']} "
                f"(load average {load['start'][0]:.1f} at the start, {load['end'][0]:.1f} at the end)",
                "",
                f"In-process runtime before the servers: {rates(report['in_process'])}; after them: {rates(report['in_process_after_servers'])}.",
                "",
                *table(report),
                "",
                f"Target (16 clients, dynamic batching, >= {TARGET_RATIO}x the in-process best): best {target['best_images_per_s']:.2f} images/s "
                f"({target['best_cell']}) = {target['ratio']:.2f}x: {'met' if target['met'] else 'missed'}.",
                *(
                    f"\nMixed image sizes ({mixed['cell']}; target <= {MIXED_MAX_EXECUTIONS_PER_REQUEST} executions per request, >= "
                    f"{MIXED_TARGET_RATIO}x the same-size cell): {mixed['requests']} requests in {mixed['executions']} executions "
                    f"({mixed['executions_per_request']:.2f} per request), {mixed['mixed_images_per_s']:.2f} against {mixed['same_size_images_per_s']:.2f} "
                    f"images/s of one size = {mixed['ratio']:.2f}x: {'met' if mixed['met'] else 'missed'}."
                    for mixed in report.get("mixed_size_targets", [])
                ),
            ]
        )
        + "\n"
    )


def parse_args(argv) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--config", default="yolact_small", help="model config (also: yolact_base)")
    parser.add_argument("--clients", type=positive_int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--protocols", nargs="+", choices=("grpc", "http"), default=["grpc", "http"])
    parser.add_argument("--instances", type=positive_int, nargs="+", default=[1, 2])
    parser.add_argument("--batching", nargs="+", choices=("on", "off"), default=["on", "off"], help="dynamic batching")
    parser.add_argument("--seconds", type=positive_float, default=3.0, help="duration of each cell")
    parser.add_argument("--batches", type=positive_int, nargs="+", default=[1, 2, 4, 8], help="in-process batch sizes")
    parser.add_argument("--max-batch", type=positive_int, default=8, help="the server's max batch")
    parser.add_argument("--queue-delay-us", type=non_negative_int, default=2000, help="the dynamic batcher's queue delay")
    parser.add_argument("--threads", type=positive_int, default=2, help="intra-op threads, split among the server's instances")
    parser.add_argument(
        "--client-timeout",
        type=positive_float,
        default=120.0,
        help="seconds a client waits for an answer (16 clients queue behind each other on a slow model)",
    )
    parser.add_argument("--image-size", default="480x640", help="HxW of the images")
    parser.add_argument("--images", type=positive_int, default=4, help="distinct images (of each size) rotated through the requests")
    parser.add_argument(
        "--mixed-sizes",
        type=size_hw,
        nargs="*",
        default=[size_hw(text) for text in DEFAULT_MIXED_SIZES],
        help=f"HxW sizes sent interleaved in each dynamic-batching server's mixed-size cell "
        f"(default {' '.join(DEFAULT_MIXED_SIZES)}; none: no such cell)",
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.height, args.width = image_size(parser, args.image_size)
    return args


@entry_point(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    setups = [ServerSetup(batching == "on", instances) for batching in args.batching for instances in args.instances]
    images = decoded_images(args.images, args.height, args.width)
    mixed_images = interleaved_sizes(args.images, args.mixed_sizes)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="yolact-serve-") as scratch:
        model = load_or_recipe(args.config, None, "cpu")
        graph = export_graphs(model, Path(scratch), [SPECS["onnxruntime_fp32"]], None).path("onnx", False)
        in_process_rows, references = in_process(graph, images, args.batches, args.seconds, args.threads, images + mixed_images)
        requests = Requests(images, references[: len(images)], mixed_images, references[len(images) :])
        mixed_cells = sum(setup.dynamic_batching for setup in setups) * len(args.protocols) * bool(mixed_images)
        with tqdm(total=len(setups) * len(args.protocols) * len(args.clients) + mixed_cells, desc="serve", unit="cell") as progress:
            servers = [
                served_cells(args, setup, graph, Path(scratch) / f"server{number}.log", requests, progress)
                for number, setup in enumerate(setups)
            ]
        # Timed again after the servers: on a shared machine the baseline is the better of the two.
        in_process_after, _ = in_process(graph, images, args.batches, args.seconds, args.threads)
    # The machine may be shared: its load while the run went is part of the figures' context.
    machine = {
        **machine_details(),
        "threads": args.threads,
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "serving_packages": package_versions(("nvidia-pytriton", "tritonclient", "grpcio", "onnxruntime")),
    }
    report = serving_report(args, machine, in_process_rows, in_process_after, servers)
    stem = report_stem(args.out_dir, "serve", machine_tag(machine), started, args.config)
    write_report(stem, report, markdown(report), serve_chart)
    errors = sum(cell["errors"] + cell["mismatches"] for setup in servers for cell in setup["cells"])
    return 1 if errors else 0


@dataclass(frozen=True)
class Requests:
    """What the clients send, with the in-process answers: images of one size, and of mixed sizes interleaved."""

    images: list[np.ndarray]
    references: list[runtime.Detections]
    mixed_images: list[np.ndarray]
    mixed_references: list[runtime.Detections]


def served_cells(args: argparse.Namespace, setup: ServerSetup, graph: Path, log: Path, requests: Requests, progress: tqdm) -> dict:
    """One server setup: a server started with its options, every (protocol, clients) cell run against it
    (for a dynamic-batching server, the mixed-size cell right after the same-size one of the most clients,
    which it is compared with), then the server drained; its row of the report."""
    threads = max(1, args.threads // setup.instances)
    options = [
        "--instances",
        str(setup.instances),
        "--threads",
        str(threads),
        "--max-batch",
        str(args.max_batch),
        "--queue-delay-us",
        str(args.queue_delay_us),
        *([] if setup.dynamic_batching else ["--no-dynamic-batching"]),
    ]
    server = ServerProcess(graph, log, options).start()
    try:
        results = []
        for protocol in args.protocols:
            for clients in args.clients:
                mixed = bool(requests.mixed_images) and setup.dynamic_batching and clients == max(args.clients)
                cells = [(requests.images, requests.references), *([(requests.mixed_images, requests.mixed_references)] if mixed else [])]
                for sent, answers in cells:
                    results.append(run_cell(server, protocol, clients, sent, answers, args.seconds, args.client_timeout))
                    sizes = "mixed sizes" if results[-1]["mixed_sizes"] else "one size"
                    progress.set_postfix_str(f"{setup.label}, {protocol}, {clients} clients, {sizes}: {results[-1]['images_per_s']:.1f}/s")
                    progress.update()
        status = server.terminate()
    finally:
        server.kill()
    return {
        "label": setup.label,
        "dynamic_batching": setup.dynamic_batching,
        "instances": setup.instances,
        "threads_per_instance": threads,
        "drained_exit_status": status,
        "cells": results,
    }


def serving_report(
    args: argparse.Namespace, machine: dict, in_process_rows: list[dict], in_process_after: list[dict], servers: list[dict]
) -> dict:
    """The report: the in-process baseline (the better of before and after the servers), every server's
    cells, and the best dynamically batched cell at the most clients against the target ratio."""
    best = max(in_process_rows + in_process_after, key=lambda row: row["images_per_s"])
    loaded = [
        (setup, cell)
        for setup in servers
        if setup["dynamic_batching"]
        for cell in setup["cells"]
        if cell["clients"] == max(args.clients) and not cell["mixed_sizes"]
    ]
    best_setup, best_cell = max(loaded, key=lambda pair: pair[1]["images_per_s"]) if loaded else (None, None)
    return {
        "what": "one image per request, each client pasting its own detections; in-process: Segmenter.infer then the paste, one caller",
        "config": args.config,
        "weights": "authors' recipe weights (every detection slot filled)",
        "image_hw": [args.height, args.width],
        "mixed_image_hw": [list(size) for size in args.mixed_sizes],
        "where": f"{cpu_description(machine)}, {machine['cores']} cores shared by server, clients and the in-process runtime",
        "machine": machine,
        "seconds_per_cell": args.seconds,
        "server_options": {"max_batch": args.max_batch, "queue_delay_us": args.queue_delay_us, "threads": args.threads},
        "client_timeout_s": args.client_timeout,
        "in_process": in_process_rows,
        "in_process_after_servers": in_process_after,
        "in_process_best": best,
        "servers": servers,
        "target": {
            "ratio_needed": TARGET_RATIO,
            "best_images_per_s": best_cell["images_per_s"] if best_cell else 0.0,
            "best_cell": f"{best_setup['label']}, {best_cell['protocol']}" if best_cell else None,
            "ratio": round(best_cell["images_per_s"] / best["images_per_s"], 3) if best_cell else 0.0,
            "met": bool(best_cell) and best_cell["images_per_s"] >= TARGET_RATIO * best["images_per_s"],
        },
        "mixed_size_targets": mixed_size_targets(servers),
    }


if __name__ == "__main__":
    sys.exit(main())
