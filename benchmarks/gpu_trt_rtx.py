"""Does TensorRT-RTX (pip ``onnxruntime-ep-nv-tensorrt-rtx``, an ONNX Runtime plugin EP) take our graph?

Run on a GPU machine: ``python -m benchmarks.gpu_trt_rtx [--onnx M.onnx | --weights W] [--out F.json]``.
Records each step (plugin library found and registered, GPU device offered, session created = ONNX parsed
and engine built, parity against CPU onnxruntime, latency) and writes JSON; a failing step is recorded,
not raised. The plugin EP API (onnxruntime >= 1.23): ``register_execution_provider_library`` then
``get_ep_devices`` then ``SessionOptions.add_provider_for_devices``.
"""

from __future__ import annotations

import glob
import importlib
import json
import site
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from benchmarks.machine import machine_details
from contract import INPUT_NAME, OUTPUT_NAMES
from export.onnx_export import export_onnx
from yolact import Yolact, get_config, load_model
from command_line import entry_parser, entry_point
from contract.files import write_text

PROG = "python -m benchmarks.gpu_trt_rtx"
EP_NAME = "NvTensorRTRTXExecutionProvider"
LIBRARY_GLOB = "**/*onnxruntime_providers_nv_tensorrt_rtx*"
PACKAGES = ("onnxruntime_ep_nv_tensorrt_rtx", "onnxruntime_ep_nv_tensorrt_rtx_cu13", "onnxruntime_ep_nv_tensorrt_rtx_cu12")
RESULTS = Path(__file__).parent / "results" / "export_gpu_trt_rtx.json"


def plugin_library() -> str:
    """The EP shared library: from the package's own helper if it has one, else found in site-packages."""
    for name in PACKAGES:
        try:
            package = importlib.import_module(name)
        except ImportError:
            continue
        for helper in ("get_library_path", "get_lib_path", "library_path"):
            value = getattr(package, helper, None)
            if value is not None:
                return str(value() if callable(value) else value)
    for root in site.getsitepackages():
        found = [p for p in glob.glob(f"{root}/{LIBRARY_GLOB}", recursive=True) if p.endswith((".so", ".dll"))]
        if found:
            return found[0]
    raise FileNotFoundError("no onnxruntime_providers_nv_tensorrt_rtx library: pip install onnxruntime-ep-nv-tensorrt-rtx")


def rtx_session(onnx_path: Path, record: dict) -> ort.InferenceSession:
    library = plugin_library()
    record["library"] = library
    ort.register_execution_provider_library("NvTensorRTRTX", library)
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    record["ep_devices"] = [str(getattr(d.device, "metadata", {}) or d.device.type) for d in devices]
    if not devices:
        raise RuntimeError(f"{EP_NAME} offers no device (GPU not accepted)")
    options = ort.SessionOptions()
    options.add_provider_for_devices(devices, {})
    start = time.perf_counter()
    session = ort.InferenceSession(str(onnx_path), sess_options=options)
    record["session_build_s"] = round(time.perf_counter() - start, 2)
    record["session_providers"] = session.get_providers()
    return session


def latency_ms(session: ort.InferenceSession, images: np.ndarray, runs: int = 50) -> float:
    for _ in range(5):
        session.run(None, {INPUT_NAME: images})
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, {INPUT_NAME: images})
    return 1000 * (time.perf_counter() - start) / runs


def parity(cpu: list[np.ndarray], gpu: list[np.ndarray]) -> dict:
    report = {name: float(np.abs(a.astype(np.float64) - b).max()) for name, a, b in zip(OUTPUT_NAMES, cpu, gpu)}
    report["num_dets_equal"] = bool((cpu[0] == gpu[0]).all())
    report["classes_equal"] = bool((cpu[3] == gpu[3]).all())
    return report


def step(record: dict, name: str, action):
    """Run ``action``; record its error (one line + traceback tail) instead of raising."""
    try:
        return action()
    except Exception as exc:  # everything that can go wrong on a foreign machine is a finding
        record[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
        record[f"{name}_traceback"] = traceback.format_exc().splitlines()[-6:]
        return None


@entry_point(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--onnx", type=Path, help="an exported graph (default: export one)")
    parser.add_argument("--weights", type=Path, help="checkpoint to export (default: random yolact_small)")
    parser.add_argument("--config")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    record: dict = {"machine": machine_details(), "onnxruntime": ort.__version__}
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = args.onnx
        if onnx_path is None:
            model = load_model(args.weights, args.config) if args.weights else Yolact(get_config("yolact_small")).eval()
            onnx_path = Path(scratch) / "model.onnx"
            export_onnx(model, onnx_path)
        record["onnx"] = str(onnx_path)
        images = np.random.default_rng(0).integers(0, 256, (args.batch, 480, 640, 3), dtype=np.uint8)
        cpu = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        cpu_outputs = cpu.run(None, {INPUT_NAME: images})
        record["cpu_latency_ms"] = latency_ms(cpu, images, runs=5)
        session = step(record, "rtx_session", lambda: rtx_session(onnx_path, record))
        record["gpu_accepted_and_built"] = session is not None
        if session is not None:
            gpu_outputs = step(record, "rtx_run", lambda: session.run(None, {INPUT_NAME: images}))
            if gpu_outputs is not None:
                record["parity_vs_cpu_max_abs"] = parity(cpu_outputs, gpu_outputs)
                record["rtx_latency_ms"] = step(record, "rtx_latency", lambda: latency_ms(session, images))
    write_text(args.out, json.dumps(record, indent=2, default=str))
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
