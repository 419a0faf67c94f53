"""``python -m benchmarks.masks``: compact masks against the dense planes they replace, on one image's graph
outputs with every detection slot filled (the model's recipe weights; default yolact_base, 100 detections).

At each image size, in the same process and taking turns: the paste of the runtime at a baseline commit
(``--baseline-commit``, by default the last one with dense ``[N, H, W]`` planes; its module is read with
``git show``), that paste plus pycocotools' RLE of its planes, and today's paste alone and with its RLE made
from the crops. It checks that both give the same masks and RLE, and records the bytes the masks take
(dense: N x H x W bools; compact: ``Detections.mask_nbytes``) and, each in a process of its own, the peak
resident memory that pasting one image and writing its JSON record adds. Times are CPU time of this
process (``time.process_time``: on a shared machine, other processes' load inflates wall time).

Writes ``benchmarks/results/masks_<machine>_<config>_<date>.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm import tqdm

import runtime.detections
from command_line import entry_parser, entry_point, image_size
from export.calibration import calibration_files
from train.curves import save_figure
from yolact import EndToEnd, get_config
from yolact.data import ensure_shapes_dataset
from yolact.recipe import recipe_model

from .machine import cpu_description, machine_details, machine_tag
from .reports import report_stem, write_report

RESULTS = Path(__file__).parent / "results"
PROG = "python -m benchmarks.masks"
ROOT = Path(__file__).resolve().parent.parent
# The last commit whose runtime kept every mask as a dense full-image plane.
DENSE_COMMIT = "ae84ab8eb4a1116877ffe1adb7091574f21fd938"
DEFAULT_SIZES = ("480x640", "2160x3840")
STEPS = {"baseline_paste": "baseline: paste", "baseline_paste_rle": "baseline: paste + RLE", "paste": "paste", "paste_rle": "paste + RLE"}


def graph_outputs(config: str, path: Path) -> int:
    """Save the recipe model's outputs on an embedded val image (npz of ``RawOutputs``); its detections."""
    model = EndToEnd(recipe_model(get_config(config)))
    image = cv2.imread(str(calibration_files(ensure_shapes_dataset().val_images, 1)[0]))
    with torch.inference_mode():
        result = model(torch.from_numpy(image[None]))
    np.savez(path, **{name: value.numpy() for name, value in result._asdict().items()})
    return int(result.num_dets[0])


def load_outputs(path: Path) -> runtime.detections.RawOutputs:
    with np.load(path) as saved:
        return runtime.detections.RawOutputs(**{name: saved[name] for name in runtime.detections.RawOutputs._fields})


def baseline_source(parser: argparse.ArgumentParser, commit: str) -> str:
    """runtime/detections.py as it was at ``commit`` (``git show``), or the parser's one-line error."""
    shown = subprocess.run(["git", "show", f"{commit}:runtime/detections.py"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        lines = shown.stderr.strip().splitlines()
        parser.error(f"--baseline-commit {commit}: git cannot show runtime/detections.py there ({lines[-1] if lines else 'no git'})")
    return shown.stdout


def baseline_module(source: str, commit: str) -> types.ModuleType:
    """The baseline runtime's detections module, imported under a name of its own."""
    name = "baseline_detections"
    module = types.ModuleType(name)
    module.__file__ = f"{commit}:runtime/detections.py"
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def steps(baseline: types.ModuleType, raw, height: int, width: int) -> dict:
    return {
        "baseline_paste": lambda: baseline.paste_detections(raw, 0, height, width),
        "baseline_paste_rle": lambda: baseline.paste_detections(raw, 0, height, width).rle(),
        "paste": lambda: runtime.detections.paste_detections(raw, 0, height, width),
        "paste_rle": lambda: runtime.detections.paste_detections(raw, 0, height, width).rle(),
    }


def check_same(baseline: types.ModuleType, raw, height: int, width: int) -> None:
    dense = baseline.paste_detections(raw, 0, height, width)
    compact = runtime.detections.paste_detections(raw, 0, height, width)
    if not np.array_equal(dense.masks, compact.masks):
        raise SystemExit(f"{height}x{width}: the compact masks differ from the baseline's")
    if [r["counts"] for r in dense.rle()] != [r["counts"] for r in compact.rle()]:
        raise SystemExit(f"{height}x{width}: the RLE from crops differs from pycocotools' encoding of the planes")


def timed_ms(functions: dict, repeats: int, progress: tqdm) -> dict:
    """CPU milliseconds of each function, ``repeats`` runs taking turns after one untimed round."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(repeats + 1):
        for name, function in functions.items():
            start = time.process_time()
            function()
            if round_index:
                samples[name].append((time.process_time() - start) * 1000)
            progress.update()
    return {name: {"median": round(float(np.median(ms)), 2), "min": round(float(np.min(ms)), 2)} for name, ms in samples.items()}


def peak_rss_growth_mib(kind: str, outputs: Path, commit: str, height: int, width: int) -> float:
    """Peak resident memory that pasting the image and making its JSON record adds, in a fresh process."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.masks",
        "--rss-worker",
        kind,
        "--outputs",
        str(outputs),
        "--baseline-commit",
        commit,
        "--sizes",
        f"{height}x{width}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"peak RSS worker ({kind}, {height}x{width}) failed: {done.stderr.strip().splitlines()[-1:]}")
    return float(done.stdout.strip().splitlines()[-1])


def status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field_name}:"))


def rss_worker(args: argparse.Namespace) -> None:
    module = baseline_module(args.baseline_source, args.baseline_commit) if args.rss_worker == "baseline" else runtime.detections
    raw = load_outputs(args.outputs)
    ((height, width),) = args.sizes
    module.paste_detections(raw, 0, 8, 8).to_json("warm-up")  # imports and caches outside the measure
    before = status_kib("VmRSS")
    module.paste_detections(raw, 0, height, width).to_json("frame")
    print(round((status_kib("VmHWM") - before) / 1024, 1))


def chart(report: dict, path: Path) -> None:
    """Left: CPU ms of each step per image size. Right: mask bytes, dense and compact, per image size."""
    sizes = [f"{r['image_hw'][0]}x{r['image_hw'][1]}" for r in report["results"]]
    fig, (time_ax, bytes_ax) = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(STEPS)
    for k, (step, label) in enumerate(STEPS.items()):
        values = [r["cpu_ms"][step]["median"] for r in report["results"]]
        time_ax.bar(np.arange(len(sizes)) + k * width, values, width, label=label)
    time_ax.set_xticks(np.arange(len(sizes)) + width * (len(STEPS) - 1) / 2, sizes)
    time_ax.set_yscale("log")
    time_ax.set_ylabel("CPU ms per image (median)")
    time_ax.legend(fontsize=8)
    for k, kind in enumerate(("dense_mask_bytes", "compact_mask_bytes")):
        bytes_ax.bar(np.arange(len(sizes)) + k * 0.4, [r[kind] / 2**20 for r in report["results"]], 0.4, label=kind.replace("_", " "))
    bytes_ax.set_xticks(np.arange(len(sizes)) + 0.2, sizes)
    bytes_ax.set_yscale("log")
    bytes_ax.set_ylabel("MiB per image")
    bytes_ax.legend(fontsize=8)
    fig.suptitle(f"{report['config']}, {report['detections']} detections, {report['where']}", fontsize=10)
    save_figure(fig, path)


def markdown(report: dict) -> str:
    lines = [
        f"{report['config']}, {report['detections']} detections per image, {report['where']}; CPU ms per image "
        f"(median of {report['repeats']}); baseline: runtime at {report['baseline_commit'][:10]}"
        f"{' (dense planes)' if DENSE_COMMIT.startswith(report['baseline_commit'][:10]) else ''}",
        "",
        "| image | baseline paste | baseline paste + RLE | paste | paste + RLE | (paste + RLE) / baseline paste "
        "| dense mask MiB | compact mask MiB | compact / dense | peak RSS growth MiB, baseline / compact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        ms = {step: r["cpu_ms"][step]["median"] for step in STEPS}
        lines.append(
            f"| {r['image_hw'][0]}x{r['image_hw'][1]} | {ms['baseline_paste']:.1f} | {ms['baseline_paste_rle']:.1f} | {ms['paste']:.1f} | "
            f"{ms['paste_rle']:.1f} | {r['paste_rle_over_baseline_paste']:.2f} | {r['dense_mask_bytes'] / 2**20:.1f} | "
            f"{r['compact_mask_bytes'] / 2**20:.2f} | {100 * r['compact_over_dense']:.2f}% | "
            f"{r['peak_rss_growth_mib']['baseline']:.0f} / {r['peak_rss_growth_mib']['compact']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--config", default="yolact_base", help="model config whose recipe-weight outputs are pasted")
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), metavar="HxW", help="image sizes")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs of each step per size (at sizes over 1080p, a third)")
    parser.add_argument("--baseline-commit", default=DENSE_COMMIT, help="git commit of the runtime compared against")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--rss-worker", choices=("baseline", "compact"), help=argparse.SUPPRESS)
    parser.add_argument("--outputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = [image_size(parser, size, "--sizes") for size in args.sizes]
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.baseline_source = baseline_source(parser, args.baseline_commit)
    return args


@entry_point(PROG)
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rss_worker:
        rss_worker(args)
        return 0
    torch.set_num_threads(1)
    baseline = baseline_module(args.baseline_source, args.baseline_commit)
    started = datetime.datetime.now(datetime.timezone.utc)
    results = []
    with tempfile.TemporaryDirectory(prefix="yolact-masks-") as scratch:
        outputs = Path(scratch) / "outputs.npz"
        detections = graph_outputs(args.config, outputs)
        raw = load_outputs(outputs)
        repeats = [args.repeats if h * w <= 1920 * 1080 else max(args.repeats // 3, 1) for h, w in args.sizes]
        with tqdm(total=sum((r + 1) * len(STEPS) for r in repeats), desc="masks", unit="step") as progress:
            for (height, width), size_repeats in zip(args.sizes, repeats):
                check_same(baseline, raw, height, width)
                cpu_ms = timed_ms(steps(baseline, raw, height, width), size_repeats, progress)
                compact = runtime.detections.paste_detections(raw, 0, height, width)
                dense_bytes = len(compact) * height * width
                results.append(
                    {
                        "image_hw": [height, width],
                        "repeats": size_repeats,
                        "cpu_ms": cpu_ms,
                        "paste_rle_over_baseline_paste": round(cpu_ms["paste_rle"]["median"] / cpu_ms["baseline_paste"]["median"], 3),
                        "dense_mask_bytes": dense_bytes,
                        "compact_mask_bytes": compact.mask_nbytes,
                        "compact_over_dense": round(compact.mask_nbytes / dense_bytes, 5),
                        "set_pixels_share": round(sum(int(compact.crop(i).mask.sum()) for i in range(len(compact))) / dense_bytes, 5),
                        "peak_rss_growth_mib": {
                            kind: peak_rss_growth_mib(kind, outputs, args.baseline_commit, height, width)
                            for kind in ("baseline", "compact")
                        },
                    }
                )
    machine = machine_details()
    report = {
        "what": "one image's masks from the graph's outputs: paste (and COCO RLE), dense planes at the baseline commit against compact crops",
        "config": args.config,
        "weights": "recipe weights (every detection slot filled)",
        "detections": detections,
        "baseline_commit": args.baseline_commit,
        "repeats": args.repeats,
        "where": f"{cpu_description(machine)}, 1 thread",
        "machine": machine,
        "results": results,
    }
    stem = report_stem(args.out_dir, "masks", machine_tag({**machine, "gpu": None}), started, args.config)
    write_report(stem, report, markdown(report), chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
