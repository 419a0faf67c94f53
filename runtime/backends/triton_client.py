"""A model on a Triton Inference Server: ``grpc://host:8001/<name>`` or ``http://host:8000/<name>``.

The graph runs on the server (``python -m runtime.serve``, or a tritonserver on the repository that
``python -m export --to triton`` writes); the final-image step runs here, as for the local backends. The
model's metadata is checked as a file's is: its input, its outputs and its ``yolact.*`` parameters.
"""

from __future__ import annotations

import time
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np

from ..detections import RawOutputs
from ..errors import ModelError
from ..ragged_batches import refused_size
from contract import INPUT_NAME, METADATA_PREFIX, OUTPUT_NAMES

from .base import Backend, import_library

SCHEMES = ("grpc", "http")
DEFAULT_MODEL_NAME = "yolact"
DEFAULT_TIMEOUT_S = 30.0
# Connection errors are retried this many times, waiting BACKOFF_S, then twice that, and so on.
RETRIES = 3
BACKOFF_S = 0.25
INSTALL = 'pip install "yolact-runtime[serve]"'
# Model config parameters in which python -m runtime.serve says what runs the graph.
SERVED_BY_KEY, PRECISION_KEY = "runtime.served_by", "runtime.precision"
# gRPC status codes of a server that cannot be reached (worth a retry); a deadline is not retried.
UNREACHABLE_GRPC = {"StatusCode.UNAVAILABLE"}


def is_server_url(model: object) -> bool:
    return isinstance(model, str) and urlsplit(model).scheme in SCHEMES


def open_server_model(
    url: str, backend: str, device: str | None, precision: str | None, threads: int | None, timeout_s: float | None = None
) -> "TritonClientBackend":
    """The client for ``url`` (answers awaited ``timeout_s``, default ``DEFAULT_TIMEOUT_S``); device, precision
    and threads belong to the server, not to its clients."""
    if backend not in ("auto", TritonClientBackend.name):
        raise ModelError(f"{url}: a model on a server runs on backend {TritonClientBackend.name}, not {backend}")
    local = [option for option, value in (("device", device), ("precision", precision), ("threads", threads)) if value is not None]
    if local:
        raise ModelError(f"{url}: {local[0]} is an option of the server (python -m runtime.serve --{local[0]}), not of its clients")
    if timeout_s is not None and not timeout_s > 0:
        raise ModelError(f"{url}: timeout {timeout_s!r} s: must be positive")
    return TritonClientBackend(url, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)


def one_line_server_error(message: str) -> str:
    """Triton's message for a failed request; a Python-backend failure carries the traceback, whose last
    ``SomeError: text`` line is the informative one."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    raised = [line for line in lines if ": " in line and line.split(": ", 1)[0].rpartition(".")[2].endswith(("Error", "Exception"))]
    text = raised[-1] if len(lines) > 1 and raised else (lines[0] if lines else "no message")
    return text if len(text) <= 300 else text[:297] + "..."


class TritonClientBackend(Backend):
    """The graph behind ``url``, through tritonclient (gRPC or HTTP)."""

    name = "triton"
    fixed_batch = False

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = RETRIES):
        parts = urlsplit(url)
        self.url = url
        self.model_name = parts.path.strip("/") or DEFAULT_MODEL_NAME
        if not parts.netloc or "/" in self.model_name:
            raise ModelError(f"{url}: expected {parts.scheme}://HOST:PORT/MODEL_NAME")
        self.timeout_s = timeout_s
        self.retries = retries
        self.grpc = parts.scheme == "grpc"
        self.library = import_library(f"tritonclient.{parts.scheme}", self.name, INSTALL)
        self.utils = import_library("tritonclient.utils", self.name, INSTALL)
        if self.grpc:
            self.client = self.library.InferenceServerClient(parts.netloc, channel_args=self.grpc_channel_args())
        else:
            self.client = self.library.InferenceServerClient(parts.netloc, connection_timeout=timeout_s, network_timeout=timeout_s)
        try:
            metadata = self.call(self.client.get_model_metadata, self.model_name, **self.json_options())
            config = self.call(self.client.get_model_config, self.model_name, **self.json_options())
            self.outputs = self.checked_outputs(metadata)
        except ModelError:
            self.close()
            raise
        config = config.get("config", config)  # gRPC wraps it in {"config": ...}
        parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        self.metadata = {key: value for key, value in parameters.items() if key.startswith(METADATA_PREFIX)}
        self.max_batch = int(config.get("max_batch_size", 0)) or None
        self.input_size = None
        self.precision = parameters.get(PRECISION_KEY, "fp32")
        served_by = parameters.get(SERVED_BY_KEY, config.get("platform") or config.get("backend") or "Triton")
        self.executed_on = f"{served_by}, via Triton at {parts.netloc}"

    def grpc_channel_args(self) -> list[tuple[str, int]]:
        """tritonclient's own channel options, and a reconnect backoff capped at the retries' last wait: by
        default gRPC waits up to two minutes before it tries a restarted server again."""
        size = self.library.MAX_GRPC_MESSAGE_SIZE
        return [
            ("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            ("grpc.initial_reconnect_backoff_ms", int(BACKOFF_S * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(BACKOFF_S * 2 ** (self.retries - 1) * 1000)),
        ]

    def json_options(self) -> dict[str, Any]:
        return {"as_json": True, "client_timeout": self.timeout_s} if self.grpc else {}

    def checked_outputs(self, metadata: dict) -> dict[str, list[int]]:
        """The model's outputs (name -> per-image dims), or a ModelError when it is not a YOLACT graph."""
        inputs = {tensor["name"]: tensor for tensor in metadata.get("inputs", [])}
        image = inputs.get(INPUT_NAME)
        if (
            image is None
            or image["datatype"] != "UINT8"
            or [int(d) for d in image["shape"]][-3:] != [-1, -1, 3]
            or len(image["shape"]) != 4
        ):
            raise ModelError(
                f"{self.url}: model {self.model_name!r} has no {INPUT_NAME!r} input of UINT8 [batch, -1, -1, 3]: not a "
                "model served by python -m runtime.serve or exported by python -m export --to triton"
            )
        outputs = {tensor["name"]: [int(d) for d in tensor["shape"][1:]] for tensor in metadata.get("outputs", [])}
        missing = [name for name in OUTPUT_NAMES if name not in outputs]
        if missing:
            raise ModelError(f"{self.url}: model {self.model_name!r} has no {missing[0]!r} output: not a graph written by python -m export")
        return outputs

    def call(self, method: Callable, *args: Any, image_size: tuple[int, int] | None = None, **kwargs: Any) -> Any:
        """``method`` with bounded retries and backoff on connection errors; every failure is a one-line
        ModelError naming the server and the model. ``image_size`` (width, height) of the images sent: an
        inference that failed only because the server batched it with a refused image of another size is
        sent again at once."""
        for attempt in range(self.retries + 1):
            try:
                return method(*args, **kwargs)
            except self.utils.InferenceServerException as error:
                status, message = str(error.status()), error.message() or str(error)
                if status in UNREACHABLE_GRPC and attempt < self.retries:
                    time.sleep(BACKOFF_S * 2**attempt)
                    continue
                refused = refused_size(message)
                if refused is not None and image_size is not None and refused != image_size and attempt < self.retries:
                    continue
                raise ModelError(self.describe(status, message)) from None
            except OSError as error:  # HTTP: refused, reset or timed-out connections
                if not isinstance(error, TimeoutError) and attempt < self.retries:
                    time.sleep(BACKOFF_S * 2**attempt)
                    continue
                reason = (
                    f"no answer within {self.timeout_s:g} s"
                    if isinstance(error, TimeoutError)
                    else (error.strerror or type(error).__name__)
                )
                raise ModelError(f"{self.url}: no Triton server answers ({reason}, {attempt + 1} attempt(s))") from None
        raise AssertionError("unreachable")

    def describe(self, status: str, message: str) -> str:
        if "unknown model" in message or "is not found" in message:
            return f"{self.url}: the server has no model {self.model_name!r} (python -m runtime.serve --name sets it)"
        if status in UNREACHABLE_GRPC:
            return f"{self.url}: no Triton server answers ({one_line_server_error(message)}, {self.retries + 1} attempt(s))"
        if status == "StatusCode.DEADLINE_EXCEEDED" or "timed out" in message.lower():
            return f"{self.url}: no answer within {self.timeout_s:g} s"
        return f"{self.url}: the server refused the request: {one_line_server_error(message)}"

    def run(self, images: np.ndarray) -> RawOutputs:
        request = self.library.InferInput(INPUT_NAME, list(images.shape), "UINT8")
        request.set_data_from_numpy(images)
        options = {"client_timeout": self.timeout_s} if self.grpc else {}
        height, width = images.shape[1:3]
        result = self.call(self.client.infer, self.model_name, [request], image_size=(width, height), **options)
        outputs = {name: result.as_numpy(name) for name in self.outputs}
        # A per-image scalar travels as [1] (Triton needs dims): back to [B], as the local backends give it.
        outputs = {name: value.reshape(len(value)) if self.outputs[name] == [1] else value for name, value in outputs.items()}
        return RawOutputs(**{name: outputs[name] for name in RawOutputs._fields})

    def close(self) -> None:
        self.client.close()
