"""A ``python -m runtime.serve`` process for tests and benchmarks: free ports on 127.0.0.1, a process group of
its own (a kill takes tritonserver and its Python-backend stub with it), readiness, Prometheus counters.

It lives here, beside the benchmarks that use it (``tests/`` import it too), not in the deployable runtime.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

from runtime.backends.triton_client import DEFAULT_MODEL_NAME
from runtime.serve import DRAIN_TIMEOUT_S


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the kernel has just handed out on ``host`` (held together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def model_counters(text: str, model: str) -> dict[str, float]:
    """The ``nv_inference_*`` counters of version 1 of ``model`` in Prometheus text, each summed over its
    other labels (Triton splits ``nv_inference_request_failure`` by ``reason``)."""
    counters: dict[str, float] = {}
    for match in re.finditer(r"^(nv_inference_\w+)\{([^}]*)\} (\S+)$", text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        if labels.get("model") == model and labels.get("version") == "1":
            counters[match[1]] = counters.get(match[1], 0.0) + float(match[3])
    return counters


class ServerProcess:
    """``python -m runtime.serve`` run in a process group of its own on free ports of 127.0.0.1, for tests
    and benchmarks: a kill takes its tritonserver and Python-backend stub with it. ``env``: the server's
    environment (default: this one)."""

    def __init__(
        self,
        model: str | os.PathLike,
        log: Path,
        options: Sequence[str] = (),
        ports: Sequence[int] | None = None,
        env: dict[str, str] | None = None,
        name: str = DEFAULT_MODEL_NAME,
    ):
        self.host = "127.0.0.1"
        self.http_port, self.grpc_port, self.metrics_port = ports or free_ports(3, self.host)
        self.name = name
        self.command = [
            sys.executable,
            "-m",
            "runtime.serve",
            "--model",
            str(model),
            "--name",
            name,
            "--host",
            self.host,
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            *options,
        ]
        self.log = log
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def ports(self) -> list[int]:
        return [self.http_port, self.grpc_port, self.metrics_port]

    def url(self, protocol: str, name: str | None = None) -> str:
        port = self.grpc_port if protocol == "grpc" else self.http_port
        return f"{protocol}://{self.host}:{port}/{name or self.name}"

    def start(self, timeout_s: float = 120) -> "ServerProcess":
        """Start it and wait, at most ``timeout_s``, until the model is ready."""
        # Run from the repository root, so that the server imports this very runtime.
        package_parent = Path(__file__).resolve().parents[1]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=package_parent, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runtime.serve exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"runtime.serve not ready within {timeout_s:g} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/v2/models/{self.name}/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def metrics(self, at_least: Mapping[str, float] | None = None, timeout_s: float = 10) -> dict[str, float]:
        """The model's ``nv_inference_*`` Prometheus counters (request, execution and image counts; queue,
        compute and total durations in microseconds).

        Triton records an execution's statistics after its responses have gone out, so a client holding its
        last answer can read counters that have not moved yet (seen in CI: 20 of 24 images counted).
        ``at_least`` (counter name -> value) reads again, for at most ``timeout_s``, until every named counter
        has reached its value; the last read is returned either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            with urllib.request.urlopen(f"http://{self.host}:{self.metrics_port}/metrics", timeout=10) as answer:
                text = answer.read().decode()
            counters = model_counters(text, self.name)
            reached = all(counters.get(name, 0) >= value for name, value in (at_least or {}).items())
            if reached or time.monotonic() >= deadline:
                return counters
            time.sleep(0.05)

    def terminate(self, timeout_s: float = DRAIN_TIMEOUT_S + 30) -> int:
        """SIGTERM (the server drains), then its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL to the whole group: the server dies as on a crashed machine."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
