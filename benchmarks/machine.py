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


def package_versions(names=("torch", "torchvision", "onnx", "onnxruntime", "openvino", "numpy", "pycocotools")) -> dict:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_details() -> dict:
    """CPU model, usable cores, OS, Python, package versions, GPU (if torch sees one) and the time."""
    details = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
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
    """A short file-name tag for the machine: the GPU's name if one was used, else the CPU's and its cores,
    e.g. ``nvidia-h200`` or ``amd-epyc-2c``."""
    gpu = details.get("gpu")
    words = (gpu["name"] if gpu else details["cpu"]).lower().replace("(r)", "").replace("(tm)", "")
    keep = [w for w in re.split(r"[^a-z0-9]+", words) if w and w not in ("processor", "cpu", "core", "with")][:3]
    return "-".join(keep) + ("" if gpu else f"-{details['cores']}c")
