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
    latency_ax.set(
        xlabel=f"ms per batch of {smallest} (median)", title=f"{report['config']}, {report['image_hw'][0]}x{report['image_hw'][1]}"
    )
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


def serve_chart(report: dict, path: Path) -> None:
    """Throughput (left) and p99 latency (right) against concurrent clients, one line per server setup and
    protocol (images of one size), a star per mixed-size cell; the in-process runtime's best throughput as a
    dashed line."""
    fig, (rate_ax, p99_ax) = plt.subplots(1, 2, figsize=(13, 5))
    for setup in report["servers"]:
        for protocol in sorted({cell["protocol"] for cell in setup["cells"]}):
            cells = sorted(
                (c for c in setup["cells"] if c["protocol"] == protocol and not c.get("mixed_sizes")), key=lambda c: c["clients"]
            )
            clients = [c["clients"] for c in cells]
            style = "-" if protocol == "grpc" else "--"
            (line,) = rate_ax.plot(clients, [c["images_per_s"] for c in cells], style, marker="o", label=f"{setup['label']}, {protocol}")
            p99_ax.plot(clients, [c["latency_ms"]["p99"] or 0 for c in cells], style, marker="o", color=line.get_color())
            # Mixed image sizes: a star beside the same-size point of as many clients.
            mixed = [c for c in setup["cells"] if c["protocol"] == protocol and c.get("mixed_sizes")]
            if mixed:
                label = f"{setup['label']}, {protocol}, sizes {' / '.join(mixed[0]['image_sizes'])} mixed"
                rate_ax.plot(
                    [c["clients"] for c in mixed],
                    [c["images_per_s"] for c in mixed],
                    "*",
                    markersize=12,
                    color=line.get_color(),
                    label=label,
                )
                p99_ax.plot(
                    [c["clients"] for c in mixed], [c["latency_ms"]["p99"] or 0 for c in mixed], "*", markersize=12, color=line.get_color()
                )
    best = report["in_process_best"]
    rate_ax.axhline(best["images_per_s"], color="black", linestyle=":", label=f"in-process runtime, batch {best['batch']}")
    for ax in (rate_ax, p99_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({c["clients"] for s in report["servers"] for c in s["cells"]}))
        ax.get_xaxis().set_major_formatter(plt.ScalarFormatter())
        ax.set_xlabel("concurrent clients")
        ax.grid(alpha=0.3)
    rate_ax.set(ylabel="images/s", title=f"{report['config']}, {report['image_hw'][0]}x{report['image_hw'][1]}: throughput")
    p99_ax.set(ylabel="p99 latency ms", title=report["where"])
    rate_ax.legend(fontsize=7)
    save_figure(fig, path)


def batch_chart(report: dict, path: Path) -> None:
    """Images/s of each arm of ``python -m benchmarks.batch``: medians over the command (start to exit), over
    the work (a job: from ray.init), and for the Ray arms after the first rows came back; one dot per round."""
    fig, ax = plt.subplots(figsize=(9, 1.0 * len(report["arms"]) + 1.8))
    positions = range(len(report["arms"]))
    for offset, key, color, label in (
        (-0.27, "median_wall_images_per_s", "#1a365d", "command: Python's start to exit"),
        (0.0, "median_images_per_s", STAGE_COLORS["graph"], "work (a job: ray.init to last commit)"),
        (0.27, "median_steady_images_per_s", "#90cdf4", "after the first rows"),
    ):
        for position, arm in zip(positions, report["arms"]):
            value = arm.get(key)
            if value is None:
                continue
            ax.barh(position + offset, value, height=0.27, color=color, label=label if position == len(report["arms"]) - 1 else None)
            ax.text(value, position + offset, f" {value:.3g}", va="center", fontsize=8)
            run_key = key.removeprefix("median_")
            runs = [run[run_key] for run in arm["runs"] if run.get(run_key) is not None]
            ax.plot(runs, [position + offset] * len(runs), "o", color="black", markersize=3)
    ax.set_yticks(list(positions), [arm["label"] for arm in report["arms"]])
    ax.invert_yaxis()
    ax.set(xlabel="images/s (bars: medians; dots: rounds)", title=f"{report['config']}, {report['images']} images: {report['where']}")
    ax.grid(alpha=0.3, axis="x")
    # Below the axes: inside, it would cover the longest bars, whichever arm they belong to. Its offset is in
    # axes heights, which grow with the arms: about half an inch, under the x label.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.72 / (len(report["arms"]) + 2)), ncol=3)
    save_figure(fig, path)
