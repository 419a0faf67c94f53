"""Writing a benchmark's report: the figures as JSON, their table as Markdown and their chart as PNG, each
written whole (atomically) beside the others in ``benchmarks/results/``."""

from __future__ import annotations

import datetime
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


def report_stem(folder: Path, benchmark: str, machine_tag: str, started: datetime.datetime, *names: str) -> Path:
    """Where a run's report goes: ``folder/<benchmark>_<machine tag>[_<name>...]_<started, UTC>``, so that
    the runs of one benchmark on one machine sort by time."""
    return folder / "_".join([benchmark, machine_tag, *names, f"{started:%Y%m%d_%H%M%S}"])
