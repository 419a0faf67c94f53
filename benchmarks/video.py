"""``python -m benchmarks.video --model M``: video speed and memory.

1. End-to-end video fps: an embedded shape video decoded, segmented, drawn and written as MP4 + JSONL + MOT
   (``runtime.video.segment_source``, what ``python -m runtime VIDEO`` runs), against the same decoded
   frames handed to ``Segmenter`` as images in batches (no decoding, drawing or writing), the median of
   ``--rounds`` interleaved runs of each. Target: >= 0.9x.
2. Memory over a long 1080p stream (a generated source cycling through rendered 1080p frames, every output
   written): resident memory sampled at every frame; the growth from frame ``--rss-from`` to the end.
   Target: <= 50 MB from frame 1,000 to frame 10,000 (``--stream-frames``; on a small machine run fewer
   and say so).
3. Peak RSS of one 3840x2160 frame with 100 detections, segmented and written to JSONL and an overlay, with
   the compact masks as stored, and with the dense [N, H, W] planes made as before compact masks; and of a
   short 4K video through the whole video path. Each in a fresh process (VmHWM), on the recipe-weight
   yolact_tiny that finds 100 detections everywhere.

Writes ``benchmarks/results/video_<machine>_<time>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import pickle
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from command_line import entry_parser, entry_point, positive_int
from runtime import Segmenter, SegmenterError
from runtime.outputs import VideoOutputs, frame_record, tracked_overlay
from runtime.sources import FrameSource, open_source
from runtime.tracking import make_tracker
from runtime.video import segment_source

from .machine import cpu_description, machine_details, machine_tag
from .reports import report_stem, write_report

RESULTS = Path(__file__).parent / "results"
PROG = "python -m benchmarks.video"
UHD = (2160, 3840)
FULL_HD = (1080, 1920)
# Frames of the 4K video whose peak memory is measured: enough for full batches and the writer's queue.
UHD_VIDEO_FRAMES = 24


def rss_mib(field: str = "VmRSS") -> float:
    """The process's resident memory now (VmRSS) or its peak (VmHWM), in MiB. (``ru_maxrss`` would carry
    the parent's peak into a child started by fork and exec.)"""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024


class CycledFrames(FrameSource):
    """A file-like source of ``count`` frames cycling through a few rendered ones (copies, as a decoder
    hands out new arrays)."""

    def __init__(self, frames: list[np.ndarray], count: int, fps: float = 30.0):
        height, width = frames[0].shape[:2]
        super().__init__(f"generated {width}x{height} stream", "stream", live=False, fps=fps, frame_count=count, _capture=[])
        self._frames = frames

    def read(self) -> Iterator[np.ndarray]:
        for index in range(self.frame_count):
            yield self._frames[index % len(self._frames)].copy()


def end_to_end(segmenter: Segmenter, video: Path, out: Path, track: str | None, rounds: int) -> dict[str, Any]:
    """Frames/s of the whole video path and of the same frames as images in batches: the median of
    ``rounds`` runs of each, interleaved, so that a passing load weighs on both alike."""
    with open_source(str(video)) as source:
        frames = list(source.read())
    segmenter(frames[: segmenter.batch_size])  # warm-up: the first runs of a session are slower
    images_s, video_s = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        segmenter(frames)
        images_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        with open_source(str(video)) as source:
            tracker = make_tracker(track, frame_rate=source.fps)
            segment_source(segmenter, source, VideoOutputs(out, source.name, source.fps), tracker)
        video_s.append(time.perf_counter() - start)
    images, video = float(np.median(images_s)), float(np.median(video_s))
    return {
        "frames": len(frames),
        "rounds": rounds,
        "video_fps": len(frames) / video,
        "images_fps": len(frames) / images,
        "ratio": images / video,
        "video_s": video_s,
        "images_s": images_s,
    }


def long_stream(segmenter: Segmenter, count: int, rss_from: int, out: Path, track: str | None) -> dict[str, Any]:
    """Resident memory while a generated 1080p stream of ``count`` frames goes through every output."""
    from yolact.data.shape_video import VideoScenario, render_video

    scenario = VideoScenario("fullhd", frames=4, height=FULL_HD[0], width=FULL_HD[1], shapes=10, radius=(60, 150))
    frames = [frame.image for frame in render_video(scenario, seed=2)]
    samples: list[tuple[int, float]] = []
    source = CycledFrames(frames, count)
    with tqdm(total=count, unit="frame", desc="1080p stream") as bar:

        def sample(index: int, detections: Any) -> None:
            samples.append((index, rss_mib()))
            bar.update(1)

        tracker = make_tracker(track, frame_rate=source.fps)
        segment_source(segmenter, source, VideoOutputs(out, source.name, source.fps), tracker, on_frame=sample)
    indices = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    after = rss[indices >= rss_from]
    return {
        "frames": count,
        "rss_from_frame": rss_from,
        "rss_at_from_mib": float(after[0]) if len(after) else None,
        "peak_after_from_mib": float(after.max()) if len(after) else None,
        "growth_mib": float(after.max() - after[0]) if len(after) else None,
        "peak_mib": float(rss.max()),
        "samples": [[int(i), round(float(r), 1)] for i, r in zip(indices[:: max(1, count // 500)], rss[:: max(1, count // 500)])],
    }


def uhd_frame_peak(model: str, image: np.ndarray, dense: bool) -> dict[str, float]:
    """In a fresh process: one 4K frame segmented, its JSONL line and overlay made; ``dense`` also makes the
    [N, H, W] planes, as every result held before compact masks, and pickles them, as handing them to
    another process does (zero pages that nothing writes cost no RSS, a copy does). Peak RSS (VmHWM)
    in MiB, and its rise over the peak after loading the model."""
    with Segmenter(model, threads=1) as segmenter:
        before = rss_mib("VmHWM")
        detections = segmenter(image)[0]
        if dense:
            pickled = pickle.dumps(detections.masks)
            assert len(pickled) >= len(detections) * UHD[0] * UHD[1]
        json.dumps(frame_record(0, 0.0, detections))
        tracked_overlay(image, detections)
        peak = rss_mib("VmHWM")
    return {
        "detections": len(detections),
        "peak_mib": peak,
        "peak_over_model_mib": peak - before,
        "mask_bytes": int(detections.mask_nbytes) if hasattr(detections, "mask_nbytes") else None,
    }


def uhd_stream_peak(model: str, image: np.ndarray, count: int, out: Path) -> dict[str, float]:
    """In a fresh process: ``count`` copies of one 4K frame through the whole video path, as
    ``python -m runtime VIDEO --out DIR`` runs it at its default batch size (MP4, JSONL and MOT written).
    Peak RSS (VmHWM) in MiB, its rise over the peak after loading the model, and the frames per run."""
    with Segmenter(model, threads=1) as segmenter:
        before = rss_mib("VmHWM")
        source = CycledFrames([image], count)
        segment_source(segmenter, source, VideoOutputs(out, source.name, source.fps), None)
        peak = rss_mib("VmHWM")
        return {
            "frames": count,
            "batch_size": segmenter.batch_size,
            "frames_per_run": segmenter.batch_limit(image.shape),
            "peak_mib": peak,
            "peak_over_model_mib": peak - before,
        }


def recipe_model(folder: Path) -> Path:
    """yolact_tiny with the authors' fixture weight recipe, exported: 100 detections on every scene."""
    from export.onnx_export import export_onnx
    from yolact import get_config
    from yolact.recipe import recipe_model as make

    path = folder / "tiny_recipe.onnx"
    export_onnx(make(get_config("yolact_tiny")), path)
    return path


def uhd_peaks(model: str) -> dict[str, dict]:
    """Each measurement in a fresh process that imports the runtime alone (the scene is rendered here;
    this module imports yolact, and with it torch, only inside the functions that render)."""
    from yolact.data.shape_video import VideoScenario, render_video

    scenario = VideoScenario("uhd", frames=1, height=UHD[0], width=UHD[1], shapes=10, radius=(100, 300))
    image = next(render_video(scenario, seed=3)).image
    context = multiprocessing.get_context("spawn")
    peaks = {}
    for name, dense in (("compact", False), ("dense", True)):
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            peaks[name] = pool.submit(uhd_frame_peak, model, image, dense).result()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool, tempfile.TemporaryDirectory() as out:
        peaks["video"] = pool.submit(uhd_stream_peak, model, image, UHD_VIDEO_FRAMES, Path(out)).result()
    return peaks


def run(args: argparse.Namespace) -> dict[str, Any]:
    from yolact.data.shape_video import MODERATE, VideoScenario, render_video, write_video

    report: dict[str, Any] = {"model": str(args.model), "track": args.track}
    with tempfile.TemporaryDirectory() as folder, Segmenter(args.model, threads=args.threads) as segmenter:
        report["backend"] = f"{segmenter.backend_name} on {segmenter.executed_on} ({segmenter.precision})"
        scenario = VideoScenario(**{**asdict(MODERATE), "frames": args.video_frames})
        video = Path(folder) / "moderate.mp4"
        write_video(str(video), (frame.image for frame in render_video(scenario, seed=0)))
        report["end_to_end"] = {
            "video": f"{scenario.width}x{scenario.height}, {args.video_frames} frames",
            **end_to_end(segmenter, video, Path(folder) / "out", args.track, args.rounds),
        }
        if args.stream_frames:
            report["long_stream"] = long_stream(segmenter, args.stream_frames, args.rss_from, Path(folder) / "stream", args.track)
        if not args.skip_uhd:
            model = str(args.uhd_model or recipe_model(Path(folder)))
            report["uhd_frame"] = {"model": str(args.uhd_model or "yolact_tiny recipe weights"), **uhd_peaks(model)}
    return report


def markdown(report: dict[str, Any], machine: dict) -> str:
    e2e = report["end_to_end"]
    lines = [
        "# Video speed and memory",
        "",
        f"Model `{report['model']}`, {report['backend']}, tracking: {report['track'] or 'none'}; machine: "
        f"{cpu_description(machine)}, {machine['cores']} cores.",
        "",
        f"- End to end ({e2e['video']}, median of {e2e.get('rounds', 1)} interleaved runs): video path {e2e['video_fps']:.2f} "
        f"frames/s (decode, segment, draw, write MP4 + JSONL + MOT) vs images in batches {e2e['images_fps']:.2f} frames/s: "
        f"**{e2e['ratio']:.2f}x** (target >= 0.9x).",
    ]
    if stream := report.get("long_stream"):
        growth = f"{stream['growth_mib']:.1f} MiB" if stream["growth_mib"] is not None else "n/a"
        lines.append(
            f"- 1080p stream, {stream['frames']} frames: RSS {stream['rss_at_from_mib']:.1f} MiB at frame "
            f"{stream['rss_from_frame']}, growth after it **{growth}** (target <= 50 MB from frame 1,000 to "
            f"10,000), peak {stream['peak_mib']:.0f} MiB."
        )
    if uhd := report.get("uhd_frame"):
        lines.append(
            f"- One 3840x2160 frame ({uhd['model']}, {uhd['compact']['detections']} detections): peak RSS "
            f"{uhd['compact']['peak_mib']:.0f} MiB with compact masks (+{uhd['compact']['peak_over_model_mib']:.0f} over the "
            f"loaded model), {uhd['dense']['peak_mib']:.0f} MiB (+{uhd['dense']['peak_over_model_mib']:.0f}) with dense "
            f"planes pickled as before; stored mask bytes {uhd['compact']['mask_bytes']}."
        )
    if video := (uhd or {}).get("video"):
        lines.append(
            f"- A 3840x2160 video of {video['frames']} frames through the video path (MP4 + JSONL + MOT, batch size "
            f"{video['batch_size']}, {video['frames_per_run']} frame(s) per run at this size): peak RSS "
            f"**{video['peak_mib']:.0f} MiB** (+{video['peak_over_model_mib']:.0f} over the loaded model)."
        )
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    uhd = report.get("uhd_frame")
    fig, axes = plt.subplots(1, 3 if uhd else 2, figsize=(16 if uhd else 11, 4))
    e2e = report["end_to_end"]
    axes[0].bar(["video path\n(MP4+JSONL+MOT)", "images\nin batches"], [e2e["video_fps"], e2e["images_fps"]])
    axes[0].set_ylabel("frames/s")
    axes[0].set_title(f"End to end: {e2e['ratio']:.2f}x")
    if stream := report.get("long_stream"):
        samples = np.array(stream["samples"])
        axes[1].plot(samples[:, 0], samples[:, 1])
        axes[1].axvline(stream["rss_from_frame"], color="grey", linestyle=":")
        axes[1].set_xlabel("frame")
        axes[1].set_ylabel("RSS (MiB)")
        axes[1].set_title(f"1080p stream, {stream['frames']} frames")
    if uhd:
        peaks = {"one frame,\ncompact masks": uhd["compact"], "one frame,\ndense planes": uhd["dense"]}
        if "video" in uhd:
            peaks[f"{uhd['video']['frames']}-frame video,\nvideo path"] = uhd["video"]
        axes[2].bar(list(peaks), [peak["peak_over_model_mib"] for peak in peaks.values()])
        axes[2].set_ylabel("peak RSS over the loaded model (MiB)")
        axes[2].set_title("3840x2160")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--model", required=True, help="exported model for the end-to-end and stream runs (yolact_small)")
    parser.add_argument("--video-frames", type=positive_int, default=120, help="frames of the end-to-end video (default 120)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved runs of each end-to-end arm (default 3; medians)")
    parser.add_argument("--stream-frames", type=int, default=10000, help="frames of the 1080p stream (default 10000; 0 skips it)")
    parser.add_argument("--rss-from", type=int, default=1000, help="the frame memory growth is measured from (default 1000)")
    parser.add_argument("--track", choices=["bytetrack"], help="track in the video runs too")
    parser.add_argument("--uhd-model", help="model for the 4K frame (default: yolact_tiny with recipe weights, 100 detections)")
    parser.add_argument("--skip-uhd", action="store_true", help="skip the 4K frame")
    parser.add_argument("--threads", type=positive_int, help="inference threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    return parser.parse_args(argv)


@entry_point(PROG, bad_input=(SegmenterError,))
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    report = run(args)
    machine = machine_details()
    report["machine"] = machine
    stem = report_stem(args.out, "video", machine_tag(machine), started)
    write_report(stem, report, markdown(report, machine), chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
