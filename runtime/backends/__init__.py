"""Backend choice: by name, or ``auto`` by file type and what is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ModelError
from .base import PRECISIONS, Backend
from .onnxruntime_backend import OnnxRuntimeBackend
from .openvino_backend import OpenVinoBackend
from .tensorrt_backend import TensorRTBackend
from .triton_client import is_server_url, open_server_model

BACKENDS = {backend.name: backend for backend in (OnnxRuntimeBackend, OpenVinoBackend, TensorRTBackend)}
ENGINE_SUFFIXES = (".engine", ".plan")


# What each file type is, by suffix, and the backends that read it (the first installed one is auto's choice).
READERS = {".onnx": ("onnxruntime", "openvino"), ".xml": ("openvino",), **{suffix: ("tensorrt",) for suffix in ENGINE_SUFFIXES}}


def choose_backend(model: Path) -> str:
    """``auto``: an engine goes to tensorrt, an OpenVINO IR to openvino; an ONNX file to onnxruntime if
    installed, else openvino."""
    readers = READERS.get(model.suffix)
    if readers is None:
        raise ModelError(f"{model}: backend auto needs a .onnx, .xml or .engine file (or name the backend)")
    if len(readers) == 1:
        return readers[0]
    for name in readers:
        if importlib.util.find_spec(name) is not None:
            return name
    raise ModelError(f"{model}: no ONNX backend is installed (pip install onnxruntime, or openvino)")


def check_backend_reads(model: Path, backend: str) -> None:
    """A named backend given a file type it cannot read (an IR to onnxruntime, an ONNX graph to tensorrt)
    fails here with the backends that read it, not deep in the library with a parse error."""
    readers = READERS.get(model.suffix, (backend,))
    if backend not in readers:
        raise ModelError(
            f"{model}: backend {backend} cannot read a {model.suffix} file (backend {' or '.join(readers)} does; auto picks it)"
        )


def open_backend(
    model: str | Path,
    backend: str = "auto",
    device: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    timeout_s: float | None = None,
) -> Backend:
    """Load ``model`` on ``backend`` (a ``grpc://`` or ``http://`` URL: the model on that Triton server, whose
    answers are awaited ``timeout_s``); every bad option or file ends in a one-line ModelError."""
    if is_server_url(model):
        return open_server_model(str(model), backend, device, precision, threads, timeout_s)
    if timeout_s is not None:
        raise ModelError(f"{model}: a timeout is an option of a server's clients (grpc:// or http://), not of a model file")
    model = Path(model)
    if backend != "auto" and backend not in BACKENDS:
        raise ModelError(f"backend {backend!r}: unknown (choose auto, {', '.join(BACKENDS)})")
    if precision is not None and precision not in PRECISIONS:
        raise ModelError(f"precision {precision!r}: unknown (choose {', '.join(PRECISIONS)})")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ModelError(f"threads {threads!r}: must be a whole number of at least 1")
    if not model.is_file():
        raise ModelError(f"{model}: no such model file")
    if backend == "auto":
        name = choose_backend(model)
    else:
        check_backend_reads(model, backend)
        name = backend
    return BACKENDS[name](model, device, precision, threads)
