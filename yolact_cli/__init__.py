"""The ``yolact`` command: one subcommand per entry of the toolkit, each the same program as its
``python -m`` entry (``yolact export ...`` runs ``python -m export ...``'s ``main``).

A subcommand's module is imported only when it runs, so ``yolact run`` and ``yolact serve`` (the torch-free
runtime) never import torch. A new entry is one more row of :data:`COMMANDS`.
"""

from __future__ import annotations

from typing import Sequence

from command_line import Command, dispatch
from runtime.cli import COMMANDS as RUNTIME_COMMANDS

COMMANDS = {
    "train": Command("train.cli", "train a model (python -m train)"),
    "eval": Command("eval.__main__", "COCO box and mask AP of a checkpoint (python -m eval)"),
    "predict": Command("yolact.predict", "segment images with a checkpoint, in PyTorch (python -m yolact.predict)"),
    "export": Command("export.__main__", "export to ONNX, OpenVINO, TensorRT or a Triton repository (python -m export)"),
    **RUNTIME_COMMANDS,
    "benchmark": Command("benchmarks", "run a benchmark: yolact benchmark NAME (python -m benchmarks.NAME)", family=True),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("yolact", COMMANDS, argv)
