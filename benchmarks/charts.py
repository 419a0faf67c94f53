"""PNG charts of benchmark results (matplotlib, written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from train.curves import save_figure  # also selects the Agg backend: files only

STAGE_COLORS = {"decode_upload": "#8c8c8c", "graph": "#2b6cb0", "paste": "#dd6b20"}


def fps_chart(report: dict, path: Path) -> None:
    """Left: median latency per variant at the smallest batch, stacked by stage. Right: images/s against
    batch size, one line per variant; one bar per variant when the run has one batch size (a line over one
    point shows nothing)."""
    rows = report["results"]
    smallest = min(r["batch"] for r in rows)
    first = [r for r in rows if r["batch"] == smallest]
    fig, (latency_ax, rate_ax) = plt.subplots(1, 2, figsize=(13, 0.45 * len(first) + 2.5))
    names = [r["variant"] for r in first]
    left = [0.0] * len(first)
    for stage, color in STAGE_COLORS.items():
        widths = [r["ms"][stage]["median"] for r in first]
        latency_ax.barh(names, widths, left=left, color=color, label=stage.replace("_", " + "))
        left = [a + b for a, b in zip(left, widths)]
    for name, total in zip(names, left):
        latency_ax.text(total, name, f" {total:.0f} ms", va="center", fontsize=8)
    latency_ax.invert_yaxis()
    latency_ax.set(xlabel=f"ms per batch of {smallest} (median)", title=f"{report['config']}, {report['image_hw'][0]}x{report['image_hw'][1]}")
    latency_ax.legend(fontsize=8, loc="lower right")
    if len({r["batch"] for r in rows}) == 1:
        rates = [r["images_per_s"] for r in first]
        rate_ax.barh(names, rates, color=STAGE_COLORS["graph"])
        for name, rate in zip(names, rates):
            rate_ax.text(rate, name, f" {rate:.1f}", va="center", fontsize=8)
        rate_ax.invert_yaxis()
        rate_ax.set(xlabel=f"images/s at batch {smallest}", title=report["where"])
        rate_ax.grid(alpha=0.3, axis="x")
    else:
        for name in names:
            points = sorted((r["batch"], r["images_per_s"]) for r in rows if r["variant"] == name)
            rate_ax.plot(*zip(*points), marker="o", label=name)
        rate_ax.set(xlabel="batch size", ylabel="images/s", title=report["where"])
        rate_ax.grid(alpha=0.3)
        rate_ax.legend(fontsize=7)
    save_figure(fig, path)
