"""``python -m benchmarks.train_sweep``: training recipes compared side by side, each a ``python -m train`` run
of its own (in parallel processes), evaluated on the val split as it goes.

Each variant is ``NAME:TRAIN-OPTIONS`` (options as ``python -m train`` takes them, e.g.
``s256:--set max_size=256 --iters 2100``). The table (val AP at every evaluation, seconds per iteration on
this machine) goes to ``benchmarks/results/train_sweep_<machine>_<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from train.curves import read_log
from command_line import entry_parser, entry_point
from contract.files import write_text

from .machine import cpu_description, machine_details

PROG = "python -m benchmarks.train_sweep"
RESULTS = Path(__file__).parent / "results"
METRICS = ("box/AP", "mask/AP", "mask/AP50")


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, options = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:TRAIN-OPTIONS")
    return name, shlex.split(options)


def summarise(name: str, options: list[str], out: Path, returncode: int) -> dict:
    """Per variant: its evaluations, the last one, and the median seconds per iteration between log rows."""
    rows = read_log(out / "log.jsonl") if (out / "log.jsonl").exists() else []
    evals = [{"iteration": r["iteration"], **{m: round(r[m], 4) for m in METRICS}} for r in rows if "mask/AP" in r]
    steps = [r for r in rows if "lr" in r]
    rates = sorted(
        (b["time"] - a["time"]) / (b["iteration"] - a["iteration"]) for a, b in zip(steps, steps[1:]) if b["iteration"] > a["iteration"]
    )
    return {
        "name": name,
        "options": " ".join(options),
        "returncode": returncode,
        "precision": next((r["precision"] for r in rows if "precision" in r), None),
        "iterations": steps[-1]["iteration"] if steps else 0,
        "seconds_per_iteration": round(rates[len(rates) // 2], 3) if rates else None,
        "evaluations": evals,
        "final": evals[-1] if evals else None,
    }


def finish(name: str, options: list[str], out: Path, proc: subprocess.Popen, log) -> dict:
    returncode = proc.wait()
    log.close()
    return summarise(name, options, out, returncode)


def markdown(record: dict) -> str:
    lines = [
        f"Training recipes on {record['machine']['gpu']['name'] if record['machine']['gpu'] else cpu_description(record['machine'])}",
        "",
        "| variant | options | precision | iterations | s/iter | box AP | mask AP | mask AP50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in record["variants"]:
        final = v["final"] or {}
        lines.append(
            f"| {v['name']} | `{v['options']}` | {v['precision']} | {v['iterations']} | {v['seconds_per_iteration']} | "
            + " | ".join(f"{final.get(m, float('nan')):.3f}" for m in METRICS)
            + " |"
        )
    return "\n".join(lines) + "\n"


@entry_point(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("variants", nargs="+", type=parse_variant, metavar="NAME:TRAIN-OPTIONS")
    parser.add_argument("--common", default="", help="options given to every variant (e.g. '--workers 2')")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"), help="folder for the runs")
    parser.add_argument("--tag", default="cpu", help="machine tag in the result file name")
    parser.add_argument("--parallel", type=int, default=0, help="variants run at once (default: all; 1 to time each alone)")
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    args.out.mkdir(parents=True, exist_ok=True)
    wall = time.monotonic()
    variants, running = [], []
    for name, options in args.variants:
        if args.parallel and len(running) >= args.parallel:
            variants.append(finish(*running.pop(0)))
        out = args.out / name
        command = [sys.executable, "-m", "train", *shlex.split(args.common), *options, "--out", str(out), "--no-progress"]
        log = open(args.out / f"{name}.out", "w")
        running.append((name, options, out, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    variants += [finish(*run) for run in running]
    record = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_details(),
        "wall_seconds": round(time.monotonic() - wall, 1),
        "common": args.common,
        "variants": variants,
    }
    stem = RESULTS / f"train_sweep_{args.tag}_{started.strftime('%Y%m%d_%H%M%S')}"
    write_text(stem.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    write_text(stem.with_suffix(".md"), markdown(record))
    print(markdown(record))
    return 0 if all(v["returncode"] == 0 for v in variants) else 1


if __name__ == "__main__":
    sys.exit(main())
