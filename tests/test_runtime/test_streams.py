"""Video through ``python -m runtime`` and ``Segmenter.track``: on video files these tests encode themselves,
with the real onnxruntime and the real supervision ByteTrack.

- a video's JSONL equals the image path on the same decoded frames; the MOT file carries the same boxes;
- tracked detections keep their masks, scores and classes with their ids (supervision #418);
- an interrupted run (SIGINT, SIGTERM) leaves an MP4 that opens with as many frames as the JSONL has lines;
- bad inputs (not a video, no frames, no camera, a stream that dies) are one line and a non-zero exit;
- a frame size that changes mid-stream keeps working, in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime import RawOutputs, Segmenter, paste_detections
from runtime.__main__ import main
from runtime.sources import FrameSource, SourceEnded
from runtime.tracking import DEFAULT_SETTINGS, NO_TRACK, ByteTracker, TrackerSettings
from runtime.video import WriterThread
from yolact.data.shape_video import VideoScenario, render_video, write_video

SCENARIO = VideoScenario("test", frames=10, height=120, width=160, shapes=4)
REPO = Path(__file__).resolve().parents[2]


def decoded_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    return frames


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("streams") / "clip.mp4"
    write_video(str(path), (frame.image for frame in render_video(SCENARIO, seed=3)), fps=10.0)
    return path


@pytest.fixture(scope="module")
def segmenter(onnx_model):
    with Segmenter(onnx_model, threads=1, batch_size=4) as segmenter:
        yield segmenter


def test_video_outputs_equal_the_image_path(onnx_model, clip, segmenter, tmp_path):
    out = tmp_path / "out"
    status = main(["--model", str(onnx_model), str(clip), "--out", str(out), "--batch-size", "4", "--threads", "1"])

    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["clip.mp4", "clip.jsonl", "clip.mot.txt", "coco_bbox_results.json", "coco_segm_results.json"]
    )
    frames = decoded_frames(clip)
    lines = jsonl(out / "clip.jsonl")
    assert [line["frame"] for line in lines] == list(range(len(frames)))
    assert [line["time_s"] for line in lines] == pytest.approx([i / 10.0 for i in range(len(frames))])
    mot = np.loadtxt(out / "clip.mot.txt", delimiter=",", ndmin=2)
    for line, detections in zip(lines, segmenter(frames)):
        assert len(detections) > 10
        expected = detections.to_json("")["detections"]
        assert [d["rle"] for d in line["detections"]] == [d["mask_rle"] for d in expected]
        keys = ("class_id", "class_name", "score", "mask_score", "box_xyxy")
        assert [{k: d[k] for k in keys} for d in line["detections"]] == [{k: d[k] for k in keys} for d in expected]
        assert all(d["track_id"] is None for d in line["detections"])
        rows = mot[mot[:, 0] == line["frame"] + 1]
        assert (rows[:, 1] == -1).all() and (rows[:, 7:] == -1).all()
        boxes = detections.boxes.copy()
        boxes[:, 2:] -= boxes[:, :2]
        np.testing.assert_array_equal(rows[:, 2:6], boxes)
    assert len(decoded_frames(out / "clip.mp4")) == len(frames)


def shape_raw(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, cells: int = 32) -> RawOutputs:
    """Graph outputs of one image whose detections are the given normalised boxes, each mask filling its
    box at prototype resolution."""
    count = len(boxes)
    masks = np.zeros((1, count, cells, cells), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[0, k, int(y1 * cells) : int(np.ceil(y2 * cells)), int(x1 * cells) : int(np.ceil(x2 * cells))] = 1
    return RawOutputs(
        num_dets=np.array([count], np.int32),
        boxes=boxes[None].astype(np.float32),
        scores=scores[None].astype(np.float32),
        classes=classes[None].astype(np.int32),
        masks=masks,
        mask_scores=scores[None].astype(np.float32),
    )


def test_track_ids_stay_with_their_masks():
    """Four objects of distinct classes move right. Classes 0 and 1 swap score ranks at random; class 2
    scores 0.35, enough for ByteTrack's first association but not to start a track, so ByteTrack drops it
    from the middle of the score order; class 3 starts a track at 0.8 and then scores 0.2, kept by the
    second association, so it comes back from behind the dropped one. Every answer must keep each object's
    id with its row: its class, score and mask (ids set on the first rows, or in another order, fail). A
    track gets its id on its first match here (class 3's would not last the default 5 frames)."""
    tracker = ByteTracker(TrackerSettings(feed_threshold=0.1, activation_threshold=0.3, minimum_consecutive_frames=1))
    start = np.array([[0.05, 0.1, 0.25, 0.3], [0.05, 0.6, 0.25, 0.8], [0.4, 0.1, 0.6, 0.3], [0.4, 0.6, 0.6, 0.8]])
    rng = np.random.default_rng(0)
    ids_of_class: dict[int, int] = {}
    for frame in range(12):
        boxes = start + np.array([0.02 * frame, 0, 0.02 * frame, 0])
        scores = np.array([*rng.permutation([0.9, 0.7]), 0.35, 0.8 if frame < 3 else 0.2])
        order = np.argsort(-scores)  # the graph's detections come best score first
        detections = paste_detections(shape_raw(boxes[order], scores[order], order), 0, 200, 200, 0.1, ["a", "b", "c", "d"])
        tracked = tracker.update(detections)
        np.testing.assert_array_equal(tracked.class_ids, order)
        np.testing.assert_array_equal(tracked.boxes, detections.boxes)
        for i in range(len(tracked)):
            class_id = int(tracked.class_ids[i])
            if class_id == 2:
                assert tracked.track_ids[i] == NO_TRACK
                continue
            assert ids_of_class.setdefault(class_id, int(tracked.track_ids[i])) == tracked.track_ids[i]
            np.testing.assert_array_equal(tracked.mask(i), detections.mask(i))
    assert len(set(ids_of_class.values())) == 3 and NO_TRACK not in ids_of_class.values()


@pytest.mark.parametrize("box_twins_out", [True, False], ids=["default", "box-twins-fed"])
def test_twins_and_flickers_start_no_track(box_twins_out):
    """The default settings on the real ByteTrack. Shape A (0.9) moves right with a twin of another class
    (0.7) whose box nearly coincides with A's (IoU 0.88) but whose mask is a corner of it, as YOLACT's
    class-by-class suppression lets through; shape B (0.8) merely overlaps A (box IoU 0.33); C (0.9) flickers
    for two frames later on. A and B get ids of their own from their 5th frame on, nobody before; the flicker never;
    the twin never, unless cross-class box suppression is off (then it holds a track of its own)."""
    settings = DEFAULT_SETTINGS if box_twins_out else replace(DEFAULT_SETTINGS, duplicate_box_iou=None)
    tracker = ByteTracker(settings)
    start = {"A": [0.1, 0.1, 0.4, 0.4], "twin": [0.11, 0.11, 0.41, 0.41], "B": [0.25, 0.1, 0.55, 0.4], "C": [0.7, 0.7, 0.9, 0.9]}
    score = {"A": 0.9, "C": 0.9, "B": 0.8, "twin": 0.7}  # the graph's order: best first
    ids: dict[str, set[int]] = {name: set() for name in start}
    for frame in range(10):
        names = [name for name in score if name != "C" or frame in (5, 6)]
        boxes = np.array([start[name] for name in names]) + np.array([0.01 * frame, 0, 0.01 * frame, 0])
        raw = shape_raw(boxes, np.array([score[name] for name in names]), np.arange(len(names)))
        twin = names.index("twin")
        raw.masks[0, twin] = 0
        raw.masks[0, twin, 4:7, 4:7] = 1  # the twin's mask: a corner of its box
        tracked = tracker.update(paste_detections(raw, 0, 200, 200, 0.1, names))
        for name, track_id in zip(names, tracked.track_ids):
            if frame < 4:
                assert track_id == NO_TRACK, (frame, name)
            elif track_id != NO_TRACK:
                ids[name].add(int(track_id))
    assert len(ids["A"]) == len(ids["B"]) == 1 and ids["A"] != ids["B"]
    assert not ids["C"]
    assert len(ids["twin"]) == (0 if box_twins_out else 1) and not ids["twin"] & (ids["A"] | ids["B"])


def test_segmenter_track_gives_the_image_path_across_a_size_change(segmenter):
    """Segmenter.track on frames whose size changes mid-stream (the segmenter batches by size): frames
    come back in order, with the image path's detections, each with its track id."""
    small = [frame.image for frame in render_video(SCENARIO, seed=4)][:6]
    frames = small[:3] + [cv2.resize(image, (200, 150)) for image in small[3:]]
    results = list(segmenter.track(frames, ByteTracker(TrackerSettings(minimum_consecutive_frames=1))))
    assert [image.shape for image, _ in results] == [image.shape for image in frames]
    for (image, tracked), frame, expected in zip(results, frames, segmenter(frames)):
        assert image is frame and len(tracked) == len(expected) > 0
        assert (tracked.track_ids != NO_TRACK).any()
        np.testing.assert_array_equal(tracked.boxes, expected.boxes)
        np.testing.assert_array_equal(tracked.scores, expected.scores)
        np.testing.assert_array_equal(tracked.masks, expected.masks)


def test_large_frames_run_fewer_at_a_time(onnx_model, monkeypatch):
    """A batch holds at most one 4K frame's pixels (the graph makes a float copy of its whole batch): 1440p
    frames run two at a time at batch size 8, and give the results of one at a time."""
    frames = [cv2.resize(frame.image, (2560, 1440)) for frame in render_video(SCENARIO, seed=5)][:3]
    with Segmenter(onnx_model, threads=1, batch_size=8) as segmenter:
        assert [segmenter.batch_limit(shape) for shape in ((2160, 3840, 3), (1080, 1920, 3), (480, 640, 3))] == [1, 4, 8]
        runs: list[int] = []
        infer = segmenter.infer
        monkeypatch.setattr(segmenter, "infer", lambda batch: runs.append(len(batch)) or infer(batch))
        together = segmenter(frames)
        assert runs == [2, 1]
        for frame, expected in zip(frames, together):
            alone = segmenter(frame)[0]
            np.testing.assert_array_equal(alone.boxes, expected.boxes)
            np.testing.assert_array_equal(alone.masks, expected.masks)


def test_writer_queue_holds_at_most_one_run_of_pixels():
    """The writer's queue is bounded by pixels as well as frames, so a stream that grows from small frames
    to large ones does not let a whole batch of large frames wait; a frame over the bound passes alone."""
    release = threading.Event()
    written: list[int] = []
    writer = WriterThread(lambda index: (release.wait(), written.append(index)), 8, 100, "test-writer")
    queued: list[int] = []
    sizes = [10, 10, 10, 60, 60, 500]

    def produce() -> None:
        for index, pixels in enumerate(sizes):
            writer.put(pixels, index)
            queued.append(index)

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 10
    while len(queued) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    # Frame 0 is being written; 1, 2 and 3 wait (80 pixels); frame 4 would make 140.
    assert queued == [0, 1, 2, 3]
    release.set()
    producer.join(timeout=10)
    writer.close()
    assert written == list(range(len(sizes)))


def run_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "runtime", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_complete_files(onnx_model, tmp_path, sent):
    long_clip = tmp_path / "long.mp4"
    frames = [frame.image for frame in render_video(SCENARIO, seed=5)]
    write_video(str(long_clip), (frames[i % len(frames)] for i in range(400)))
    out = tmp_path / "out"
    process = run_cli(
        "--model", str(onnx_model), str(long_clip), "--out", str(out), "--track", "bytetrack", "--batch-size", "2", "--threads", "1"
    )
    deadline = time.monotonic() + 60  # 8 frames: tracks get ids from their 5th
    while time.monotonic() < deadline and not ((out / "long.jsonl").exists() and len((out / "long.jsonl").read_bytes().splitlines()) >= 8):
        time.sleep(0.1)
    process.send_signal(sent)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 130, err
    assert "interrupted after" in err
    lines = jsonl(out / "long.jsonl")
    assert 8 <= len(lines) < 400
    assert [line["frame"] for line in lines] == list(range(len(lines)))
    assert any(d["track_id"] is not None for line in lines for d in line["detections"])
    assert len(decoded_frames(out / "long.mp4")) == len(lines)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left
    json.loads((out / "coco_segm_results.json").read_text())


def one_line_failure(capsys, status: int, expected: str) -> None:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("segmenting") and "it/s" not in line]
    stated = [line for line in err if line.startswith(("skipped:", "stopped:"))]
    assert status == 1 and len(stated) == 1 and expected in stated[0], err


def test_bad_video_inputs_are_one_line_each(onnx_model, tmp_path, capsys):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    empty = tmp_path / "empty.mp4"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48)).release()
    common = ["--model", str(onnx_model), "--out", str(tmp_path / "out"), "--threads", "1"]

    one_line_failure(capsys, main([str(not_video), *common]), f"{not_video}: not a video OpenCV or PyAV can read")
    one_line_failure(capsys, main([str(empty), *common]), f"{empty}:")
    one_line_failure(capsys, main(["/dev/video97", *common]), "/dev/video97: not a camera OpenCV can open")
    one_line_failure(capsys, main(["rtsp://127.0.0.1:9/none", *common, "--track", "bytetrack"]), "rtsp://127.0.0.1:9/none:")
    assert not (tmp_path / "out" / "empty.mp4").exists() and not (tmp_path / "out" / "notes.jsonl").exists()


def test_a_stream_that_dies_keeps_its_outputs(onnx_model, tmp_path, capsys):
    """An MJPEG AVI cut in the middle: decoding stops before the frame count its header states."""
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (SCENARIO.width, SCENARIO.height))
    for frame in render_video(SCENARIO, seed=6):
        writer.write(frame.image)
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "out"

    status = main(["--model", str(onnx_model), str(cut), "--out", str(out), "--track", "bytetrack", "--threads", "1"])

    one_line_failure(capsys, status, f"{cut}: decoding stopped after")
    lines = jsonl(out / "cut.jsonl")
    assert 0 < len(lines) < SCENARIO.frames
    assert len(decoded_frames(out / "cut.mp4")) == len(lines)


def test_image_sequence_with_a_size_change(onnx_model, tmp_path, segmenter):
    """A printf-style image sequence whose frames change size: one video, frames in order, the MP4 at the
    first size, the JSONL at each frame's own."""
    folder = tmp_path / "frames"
    folder.mkdir()
    images = [frame.image for frame in render_video(SCENARIO, seed=7)][:6]
    images[3:] = [cv2.resize(image, (200, 150)) for image in images[3:]]
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    out = tmp_path / "out"

    status = main(["--model", str(onnx_model), str(folder / "%03d.png"), "--out", str(out), "--threads", "1", "--batch-size", "4"])

    assert status == 0
    lines = jsonl(out / "frames.jsonl")
    assert [(line["frame"], line["height"]) for line in lines] == [(i, 120 if i < 3 else 150) for i in range(6)]
    for line, detections in zip(lines, segmenter(images)):
        assert [d["rle"] for d in line["detections"]] == [d["mask_rle"] for d in detections.to_json("")["detections"]]
    assert [frame.shape for frame in decoded_frames(out / "frames.mp4")] == [(120, 160, 3)] * 6


class LiveFrames(FrameSource):
    """A live source that produces a numbered frame every millisecond for a while."""

    def __init__(self, count: int):
        super().__init__("live test source", "live", live=True, fps=1000.0, frame_count=None, _capture=[])
        self.count = count

    def read(self):
        for index in range(self.count):
            time.sleep(0.001)
            yield np.full((4, 4, 3), index % 256, np.uint8)


@pytest.mark.parametrize("drop_late", [False, True], ids=["keeps every frame", "drops late frames"])
def test_a_live_source_drops_late_frames_only_when_asked(drop_late):
    source = LiveFrames(200)
    seen = []
    for frame in source.frames(capacity=4, drop_late=drop_late):
        seen.append(frame.index)
        time.sleep(0.01)  # a consumer ten times slower than the source
    assert seen == sorted(seen) and len(seen) + source.dropped == 200
    if drop_late:
        assert source.dropped > 100 and seen[-1] == 199
    else:
        assert source.dropped == 0 and seen == list(range(200))
    with pytest.raises(SourceEnded, match="live test source: the stream stopped after 200 frames"):
        source.check_end()
