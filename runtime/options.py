"""The command-line options with which every runtime command opens its Segmenter: one wording and one
type check for ``python -m runtime``, ``runtime.batch`` and ``runtime.serve``."""

from __future__ import annotations

import argparse

from command_line import positive_int

DEVICE_HELP = "cpu, cuda[:N], gpu[.N] (OpenVINO) or auto; default: the backend's own"
THREADS_HELP = "intra-op threads (onnxruntime, openvino; default: the backend's, all cores)"


def add_backend_options(parser: argparse.ArgumentParser, device_help: str = DEVICE_HELP, threads_help: str = THREADS_HELP) -> None:
    """``--backend``, ``--device``, ``--precision`` and ``--threads``; a command says what the device and the
    threads mean for it where that differs (an actor's GPU, a server instance's threads)."""
    parser.add_argument("--backend", default="auto", help="auto (default), onnxruntime, openvino or tensorrt")
    parser.add_argument("--device", help=device_help)
    parser.add_argument("--precision", help="fp32, fp16 or bf16; default fp32 (a TensorRT engine: its own)")
    parser.add_argument("--threads", type=positive_int, help=threads_help)
