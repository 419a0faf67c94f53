"""``curves.png``: the loss parts and the val AP of a run against iteration, drawn from its ``log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402

from contract.files import replaced_on_success  # noqa: E402

LOSS_PARTS = ("box", "conf", "mask", "maskiou", "segm", "total")
AP_METRICS = ("box/AP", "box/AP50", "mask/AP", "mask/AP50")


def read_log(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def draw_curves(log_path: Path, png_path: Path) -> None:
    """Two panels: each loss part (log scale) and each val AP metric, against iteration; written atomically."""
    rows = read_log(log_path)
    fig, (loss_ax, ap_ax) = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for part in LOSS_PARTS:
        points = [(r["iteration"], r[f"loss/{part}"]) for r in rows if f"loss/{part}" in r and "skipped" not in r]
        if points:
            loss_ax.plot(*zip(*points), label=part, linewidth=1)
    loss_ax.set(xlabel="iteration", ylabel="training loss", yscale="log", title="loss parts")
    loss_ax.legend(fontsize=8)
    for metric in AP_METRICS:
        points = [(r["iteration"], r[metric]) for r in rows if metric in r]
        if points:
            ap_ax.plot(*zip(*points), marker="o", label=metric)
    ap_ax.set(xlabel="iteration", ylabel="AP (val)", ylim=(0, 1), title="validation AP")
    ap_ax.grid(alpha=0.3)
    ap_ax.legend(fontsize=8)
    save_figure(fig, png_path)


def save_figure(fig, path: Path) -> None:
    """Lay out ``fig``, write it as PNG atomically and release it."""
    fig.tight_layout()
    with replaced_on_success(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
