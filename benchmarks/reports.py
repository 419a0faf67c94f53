"""Writing a benchmark's report: the figures as JSON, their table as Markdown and their chart as PNG, each
written whole (atomically) beside the others in ``benchmarks/results/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from contract.files import write_text


def write_report(stem: Path, report: dict, markdown: str, chart: Callable[[dict, Path], None]) -> None:
    """``stem``.json, .md and .png; the table is also printed."""
    write_text(stem.with_suffix(".json"), json.dumps(report, indent=1, default=float) + "\n")
    write_text(stem.with_suffix(".md"), markdown)
    chart(report, stem.with_suffix(".png"))
    print(markdown)
    print(f"wrote {stem}.json, .md and .png")
