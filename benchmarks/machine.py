"""The machine a benchmark ran on, recorded next to every figure it writes."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# The widest vector extension first: CPUs of one model name (a cloud "AMD EPYC") differ in these, and the
# speed of every kernel (bf16 and INT8 above all) with them.
VECTOR_ISAS = (("amx_tile", "amx"), ("avx512_bf16", "avx512-bf16"), ("avx512_vnni", "avx512-vnni"), ("avx512f", "avx512"), ("avx2", "avx2"))


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def vector_isa(flags: set[str]) -> str | None:
    """The CPU's widest vector extension as a short name (``avx512-bf16``, ``avx2``), None if unknown."""
    return next((name for flag, name in VECTOR_ISAS if flag in flags), None)


def package_versions(names=("torch", "torchvision", "onnx", "onnxruntime", "openvino", "numpy", "pycocotools")) -> dict:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_details() -> dict:
    """CPU model and vector extension, usable cores, OS, Python, package versions, GPU (if torch sees one)
    and the time."""
    details = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "vector_isa": vector_isa(cpu_flags()),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "gpu": None,
    }
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            details["gpu"] = {
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda,
                "capability": f"{props.major}.{props.minor}",
            }
    except ImportError:
        pass
    return details


def machine_tag(details: dict) -> str:
    """A short file-name tag for the machine: the GPU's name if one was used, else the CPU's, its vector
    extension (where recorded) and its cores, e.g. ``nvidia-h200`` or ``amd-epyc-avx2-2c``."""
    gpu = details.get("gpu")
    words = (gpu["name"] if gpu else details["cpu"]).lower().replace("(r)", "").replace("(tm)", "")
    keep = [w for w in re.split(r"[^a-z0-9]+", words) if w and w not in ("processor", "cpu", "core", "with")][:3]
    if gpu:
        return "-".join(keep)
    return "-".join(keep + ([details["vector_isa"]] if details.get("vector_isa") else []) + [f"{details['cores']}c"])


def cpu_description(details: dict) -> str:
    """The CPU's model name with its vector extension where recorded, e.g. ``AMD EPYC (avx2)``."""
    return f"{details['cpu']} ({details['vector_isa']})" if details.get("vector_isa") else details["cpu"]
