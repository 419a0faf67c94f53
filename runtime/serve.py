"""Serves an exported graph behind a real Triton Inference Server: ``python -m runtime.serve --model M``.

The server is the tritonserver that ``nvidia-pytriton`` bundles (``pip install "./runtime[serve]"``); the
graph runs in this process on any backend of the runtime (onnxruntime, OpenVINO, TensorRT), one Segmenter
per model instance. Clients speak the KServe v2 protocol over HTTP or gRPC; they see the inputs and
outputs of the model repository that ``python -m export --to triton`` writes, so one client works against
both: ``runtime.Segmenter("grpc://127.0.0.1:8001/yolact")``. Concurrent requests of mixed image sizes batch
together (a ragged input; ``runtime/ragged_batches.py``, docs/serving-batching.md). SIGTERM or Ctrl-C drains
the requests in flight, then the process exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import NamedTuple, Sequence

import numpy as np

from command_line import UsageError, entry_parser, entry_point, non_negative_int, positive_int
from contract import INPUT_NAME, SERVER_DEFAULT_MAX_SIDE

from .backends.triton_client import DEFAULT_MODEL_NAME, PRECISION_KEY, SERVED_BY_KEY
from .errors import ImageError, SegmenterError
from .options import add_backend_options
from .pytriton_adapter import allow_ragged_inputs, check_version, publish_parameters, python_backend_library_path, triton_log_tail
from .ragged_batches import BATCHED_WITH_REFUSED, infer_by_size
from .segmenter import Segmenter

PROG = "python -m runtime.serve"
DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 2000
# Seconds tritonserver waits for the requests in flight when it is asked to stop.
DRAIN_TIMEOUT_S = 30
# Two image sizes for the probe that reads the graph's output dims: a dim that differs between them is
# dynamic (-1). Small, because a graph of dynamic size resizes to its network size inside anyway.
PROBE_SIZES = ((64, 64), (48, 80))


class OutputSpec(NamedTuple):
    """One graph output as Triton declares it: per-image dims (-1 for dynamic), numpy dtype."""

    name: str
    dims: tuple[int, ...]
    dtype: np.dtype


def triton_dims(dims: tuple[int, ...]) -> tuple[int, ...]:
    """Triton refuses an output without dims, so a per-image scalar (num_dets) is served as [1]."""
    return dims or (1,)


def graph_outputs(segmenter: Segmenter) -> list[OutputSpec]:
    """Every output the graph gives, by name, with its dtype and per-image dims, read from two probe runs
    (the backends give arrays, whatever file format they opened)."""
    sizes = [segmenter.input_size] * 2 if segmenter.input_size else PROBE_SIZES
    probes = [segmenter.infer(np.zeros((1, height, width, 3), np.uint8))._asdict() for height, width in sizes]
    specs = []
    for name, first in probes[0].items():
        second = probes[1][name]
        dims = tuple(a if a == b else -1 for a, b in zip(first.shape[1:], second.shape[1:]))
        specs.append(OutputSpec(name, dims, first.dtype))
    return specs


class GraphInstance:
    """The inference function of one model instance: its own Segmenter, so instances run in parallel."""

    def __init__(self, segmenter: Segmenter, max_side: int):
        self.segmenter = segmenter
        self.max_side = max_side

    def refusal(self, images: np.ndarray, index: int) -> str | None:
        """Why request ``index`` ([B, H, W, 3]) is refused, or None. Triton has already refused a wrong dtype,
        rank, channel count or batch size; the sizes are ours."""
        height, width = images.shape[1:3]
        if height == 0 or width == 0:
            return f"request {index}: an empty {width}x{height} image"
        if max(height, width) > self.max_side:
            return f"request {index}: a {width}x{height} image, over the {self.max_side} px side this server takes"
        return None

    def __call__(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Triton's dynamic batcher hands over requests of any image sizes (the input is ragged); each size
        goes through the graph as one batch, and the outputs come back split per request. An error fails
        every request of the call (PyTriton 0.7.0 answers a call with all responses or one error), so the
        message names the refused image's size: the other clients tell from it that theirs were not at fault
        (runtime's client sends them again)."""
        images = [request[INPUT_NAME] for request in requests]
        for index, batch in enumerate(images):
            if reason := self.refusal(batch, index):
                height, width = batch.shape[1:3]
                others = f"; {BATCHED_WITH_REFUSED.format(width=width, height=height)}" if len(requests) > 1 else ""
                raise ImageError(reason + others)
        return infer_by_size(self.outputs, images)

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs for a batch [B, H, W, 3] of one size, each [B, *triton_dims]."""
        raw = self.segmenter.infer(images)
        return {name: value.reshape(len(value), *triton_dims(value.shape[1:])) for name, value in raw._asdict().items()}


def model_parameters(segmenter: Segmenter) -> dict[str, str]:
    """What a client needs besides the tensors (class names, sizes: the graph's ``yolact.*`` metadata) and
    what runs the graph."""
    served_by = f"{segmenter.backend_name} on {segmenter.executed_on}"
    return {**segmenter.metadata, SERVED_BY_KEY: served_by, PRECISION_KEY: segmenter.precision}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--model", required=True, help="graph the runtime opens (.onnx, OpenVINO .xml, TensorRT .engine)")
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help=f"model name clients ask for (default {DEFAULT_MODEL_NAME})")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--http-port", type=positive_int, default=8000)
    parser.add_argument("--grpc-port", type=positive_int, default=8001)
    parser.add_argument("--metrics-port", type=positive_int, default=8002, help="Prometheus metrics at /metrics")
    parser.add_argument("--instances", type=positive_int, default=1, help="model instances, each with its own backend")
    parser.add_argument("--max-batch", type=positive_int, help=f"images per batch (default {DEFAULT_MAX_BATCH}, at most the graph's limit)")
    parser.add_argument(
        "--queue-delay-us",
        type=non_negative_int,
        default=DEFAULT_QUEUE_DELAY_US,
        help=f"how long the dynamic batcher waits to fill a batch (default {DEFAULT_QUEUE_DELAY_US})",
    )
    parser.add_argument(
        "--no-dynamic-batching", dest="dynamic_batching", action="store_false", help="run every request as it comes (for comparison)"
    )
    parser.add_argument(
        "--max-image-side",
        type=positive_int,
        default=SERVER_DEFAULT_MAX_SIDE,
        help=f"refuse images with a longer side (default {SERVER_DEFAULT_MAX_SIDE})",
    )
    add_backend_options(parser, threads_help="intra-op threads per instance (default: the backend's, all cores)")
    return parser.parse_args(argv)


def open_instances(args: argparse.Namespace) -> list[Segmenter]:
    segmenters: list[Segmenter] = []
    try:
        for _ in range(args.instances):
            segmenters.append(
                Segmenter(args.model, args.backend, args.device, args.precision, threads=args.threads, batch_size=args.max_batch)
            )
    except SegmenterError:
        for segmenter in segmenters:
            segmenter.close()
        raise
    return segmenters


def serve(args: argparse.Namespace, segmenters: list[Segmenter], stop: threading.Event) -> int:
    """Runs the server until ``stop`` is set (then drains) or tritonserver dies (exit 1)."""
    python_backend_library_path()
    if warning := check_version():
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    first = segmenters[0]
    max_batch = args.max_batch or min(DEFAULT_MAX_BATCH, first.max_batch or DEFAULT_MAX_BATCH)
    batcher = DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us) if args.dynamic_batching else None
    outputs = [Tensor(name=spec.name, dtype=spec.dtype, shape=triton_dims(spec.dims)) for spec in graph_outputs(first)]
    config = TritonConfig(
        http_address=args.host,
        grpc_address=args.host,
        metrics_address=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        exit_timeout_secs=DRAIN_TIMEOUT_S,
        log_verbose=0,
    )
    triton = Triton(config=config)
    triton.bind(
        model_name=args.name,
        infer_func=[GraphInstance(segmenter, args.max_image_side) for segmenter in segmenters],
        inputs=[Tensor(name=INPUT_NAME, dtype=np.uint8, shape=(-1, -1, 3))],
        outputs=outputs,
        config=ModelConfig(max_batch_size=max_batch, batcher=batcher),
        strict=True,
    )
    publish_parameters(triton, args.name, model_parameters(first))
    allow_ragged_inputs(triton, args.name, [INPUT_NAME])
    try:
        triton.run()
        print(
            f"serving {args.model} as {args.name!r} ({first.backend_name}, {args.instances} instance(s), batches up to "
            f"{max_batch}, dynamic batching {'on, mixed image sizes together' if batcher else 'off'}): http://{args.host}:{args.http_port} "
            f"grpc://{args.host}:{args.grpc_port} metrics http://{args.host}:{args.metrics_port}/metrics",
            flush=True,
        )
        while not stop.wait(1.0):
            if not triton.is_alive():
                print(f"{PROG}: error: tritonserver stopped on its own:\n{triton_log_tail(triton)}", file=sys.stderr)
                return 1
    finally:
        # tritonserver gets SIGINT: it takes no new request and finishes those in flight, then exits.
        triton.stop()
    print("drained and stopped", flush=True)
    return 0


@entry_point(PROG, bad_input=(SegmenterError,))
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    segmenters = open_instances(args)
    try:
        return serve(args, segmenters, stop)
    except ImportError as error:
        raise UsageError(f'{error.name or error}: not installed (pip install "./runtime[serve]")') from None
    finally:
        for segmenter in segmenters:
            segmenter.close()


if __name__ == "__main__":
    sys.exit(main())
