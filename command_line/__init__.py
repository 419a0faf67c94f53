"""Command-line helpers shared by every floor of the toolkit (``train``, ``benchmarks``, ``runtime.serve``).

It sits below all of them and needs nothing but the standard library, so that the torch-free runtime can
ship it: ``runtime/command_line`` links here, and ``pip install ./runtime`` installs it as this top-level
package.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """Reports a bad option in one line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def image_size(parser: argparse.ArgumentParser, text: str, option: str = "--image-size") -> tuple[int, int]:
    """``HxW`` (e.g. 480x640) as (height, width); otherwise the parser's one-line error on ``option``."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        parser.error(f"{option} {text!r}: expected HxW, e.g. 480x640")
    return height, width
