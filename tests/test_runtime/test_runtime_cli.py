"""``python -m runtime``: folders, unreadable files, JSON and COCO outputs, a video round trip."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np

from runtime import Segmenter
from runtime.__main__ import COCO_RESULTS, main

CLOSING_LINE = re.compile(
    r"(\d+) images in [\d.]+ s \([\d.]+ images/s\), backend onnxruntime on CPUExecutionProvider \(fp32\); outputs in .+"
)


def output_files(out) -> list[str]:
    return sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())


def test_folders_are_searched_and_unreadable_files_skipped(onnx_model, images, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    cv2.imwrite(str(photos / "001.jpg"), images[0])
    cv2.imwrite(str(photos / "more" / "scene.png"), images[1])
    (photos / "notes.txt").write_text("not an image")
    (photos / "broken.mp4").write_bytes(b"not a video either")
    (photos / ".hidden.jpg").write_text("hidden files are left alone")
    single = tmp_path / "single.png"
    cv2.imwrite(str(single), images[2])
    out = tmp_path / "out"

    status = main(["--model", str(onnx_model), str(photos), str(single), "--out", str(out), "--threads", "1"])

    captured = capsys.readouterr()
    assert status == 1
    assert f"skipped: {photos / 'notes.txt'}: not an image OpenCV can read" in captured.err
    assert f"skipped: {photos / 'broken.mp4'}: not a video OpenCV or PyAV can read" in captured.err
    assert ".hidden" not in captured.err
    assert CLOSING_LINE.fullmatch(captured.out.strip().splitlines()[-1]).group(1) == "3"
    assert output_files(out) == sorted(
        ["001.json", "001.png", *COCO_RESULTS.values(), "more/scene.json", "more/scene.png", "single.json", "single.png"]
    )
    segmenter = Segmenter(onnx_model, threads=1)
    coco = {task: json.loads((out / name).read_text()) for task, name in COCO_RESULTS.items()}
    for name, path, image_id in [
        ("001", photos / "001.jpg", 1),
        ("more/scene", photos / "more" / "scene.png", "more/scene"),
        ("single", single, "single"),
    ]:
        dets = segmenter(str(path))[0]
        assert len(dets) > 10
        assert json.loads((out / f"{name}.json").read_text()) == dets.to_json(str(path))
        for task, entries in coco.items():
            assert [entry for entry in entries if entry["image_id"] == image_id] == json.loads(json.dumps(dets.to_coco(image_id, task)))
        overlay = cv2.imread(str(out / f"{name}.png"))
        source = cv2.imread(str(path))
        assert overlay.shape == source.shape and (overlay != source).any(axis=2).mean() > 0.05
    written = sum(len(json.loads((out / f"{n}.json").read_text())["detections"]) for n in ("001", "more/scene", "single"))
    assert len(coco["bbox"]) == len(coco["segm"]) == written


def test_video_round_trip(onnx_model, images, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for i in range(12):
        writer.write(cv2.resize(images[i % len(images)], (160, 120)))
    writer.release()
    out = tmp_path / "out"

    status = main(["--model", str(onnx_model), str(clip), "--out", str(out), "--batch-size", "5", "--threads", "1"])

    assert status == 0
    assert CLOSING_LINE.fullmatch(capsys.readouterr().out.strip().splitlines()[-1]).group(1) == "12"
    assert output_files(out) == sorted(["clip.jsonl", "clip.mot.txt", "clip.mp4", *COCO_RESULTS.values()])  # no temporary file left behind
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    assert len(frames) == 12 and all(frame.shape == (120, 160, 3) for frame in frames)
    records = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [(frame["frame"], frame["time_s"]) for frame in records] == [(i, i / 10.0) for i in range(12)]
    assert all(frame["height"] == 120 and frame["width"] == 160 and frame["detections"] for frame in records)
    # The overlay is the input with detections drawn: frames decoded from the input differ from it.
    source = cv2.VideoCapture(str(clip))
    first = source.read()[1]
    source.release()
    assert np.abs(frames[0].astype(int) - first.astype(int)).mean() > 1
    for name in COCO_RESULTS.values():
        assert {entry["image_id"] for entry in json.loads((out / name).read_text())} == {f"clip#{i}" for i in range(12)}
