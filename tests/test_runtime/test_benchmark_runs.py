"""benchmarks.video, benchmarks.tracking and benchmarks.batch run end to end on a short input and write their
report: JSON, Markdown and a PNG, named by the machine. The figures they commit come from full runs; these
runs prove the commands still work."""

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.batch import job_rates
from runtime.batch.job import JobSummary

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_benchmark(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def the_report(folder: Path, kind: str) -> dict:
    """The one report of ``kind`` in ``folder``, checked to come with its Markdown and PNG."""
    (path,) = folder.glob(f"{kind}_*.json")
    assert path.with_suffix(".md").read_text().startswith("# ")
    assert path.with_suffix(".png").read_bytes().startswith(PNG_SIGNATURE)
    return json.loads(path.read_text())


def test_video_benchmark_times_both_paths_over_the_same_frames(onnx_model, tmp_path):
    result = run_benchmark(
        "benchmarks.video",
        *("--model", str(onnx_model), "--video-frames", "6", "--rounds", "1", "--stream-frames", "0", "--skip-uhd"),
        *("--threads", "1", "--out", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    report = the_report(tmp_path, "video")
    e2e = report["end_to_end"]
    assert e2e["frames"] == 6 and e2e["rounds"] == 1
    assert e2e["video_fps"] > 0 and e2e["images_fps"] > 0
    assert abs(e2e["ratio"] - e2e["video_fps"] / e2e["images_fps"]) < 1e-9
    assert "long_stream" not in report and "uhd_frame" not in report
    assert report["machine"]["cores"] >= 1


def test_tracking_benchmark_scores_every_setting_on_both_scenarios(onnx_model, tmp_path):
    result = run_benchmark("benchmarks.tracking", "--model", str(onnx_model), "--frames", "20", "--threads", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = the_report(tmp_path, "tracking")
    assert [video["scenario"]["name"] for video in report["videos"].values()] == ["moderate", "occluded"]
    assert report["default"] in report["settings"]
    for video in report["videos"].values():
        assert video["scenario"]["frames"] == 20 and video["identities"] > 0
        shown_low = f"{report['default']}, low-score matches shown"
        bounds = {"bound: truth boxes, default setting", "bound: true detections only, default setting"}
        assert set(video["trackers"]) == {"plain glue", *report["settings"], shown_low, *bounds}
        truth_bound = video["trackers"]["bound: truth boxes, default setting"]
        assert truth_bound["box"]["IDSW"] == 0 and truth_bound["box"]["IDF1"] > 0.6, truth_bound  # the truth's own boxes keep their ids
        assert "library_trackers" not in report
        for scores in video["trackers"].values():
            for measure in ("box", "mask"):
                assert all(0 <= scores[measure][name] <= 1 for name in ("HOTA", "IDF1")), scores
                assert scores[measure]["MOTA"] <= 1 and scores[measure]["IDSW"] >= 0


def test_tracking_benchmark_runs_the_trackers_library_in_an_environment_of_its_own(onnx_model, tmp_path):
    """Roboflow's trackers 2.x needs numpy 2, which our environment cannot have: the benchmark makes it a
    virtual environment (a real pip install from the index, once) and every one of its trackers tracks the
    detections ours is fed."""
    from benchmarks.library_trackers import TRACKERS_REQUIREMENT, library_python, library_trackers

    result = run_benchmark(
        "benchmarks.tracking", "--model", str(onnx_model), "--frames", "12", "--threads", "1", "--library-trackers", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    report = the_report(tmp_path, "tracking")
    names = [entry["name"] for entry in library_trackers()]
    assert report["library_trackers"]["requirement"] == TRACKERS_REQUIREMENT and len(names) == 10
    for video in report["videos"].values():
        for name in names:
            scores = video["trackers"][name]
            assert scores["ids"] > 0, (name, scores)
            assert 0 <= scores["box"]["IDF1"] <= 1 and scores["box"]["IDSW"] >= 0
    numpy_there = subprocess.run([str(library_python()), "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True)
    assert numpy_there.stdout.startswith("2."), numpy_there


def test_batch_benchmark_times_every_arm_on_a_real_ray(tmp_path):
    """In process, the embedded Ray and a two-node local cluster with 1 and 2 workers, each a real command;
    the rates come from what the jobs print."""
    result = run_benchmark(
        "benchmarks.batch", "--config", "yolact_tiny", "--images", "12", "--rounds", "1", "--threads", "1", "--out-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    report = the_report(tmp_path, "batch")
    arms = {arm["label"]: arm for arm in report["arms"]}
    assert list(arms) == ["in process", "embedded Ray, 1 worker", "cluster, 1 worker", "cluster, 2 workers"]
    for label, arm in arms.items():
        (run,) = arm["runs"]
        assert run["images"] == 12 and run["wall_s"] > 0 and run["images_per_s"] > 0, label
        if label != "in process":
            assert 0 < run["ray_start_s"] < run["seconds"] < run["wall_s"], run
            # Two workers may hand back all 12 images at once: then the job has no rate after its first rows.
            assert run["steady_images_per_s"] is None or run["steady_images_per_s"] > 0, run
    target = report["target"]
    in_process, embedded = (arms[label]["median_wall_images_per_s"] for label in ("in process", "embedded Ray, 1 worker"))
    assert target["ratio"] == round(embedded / in_process, 3) and target["met"] == (target["ratio"] >= 0.8)


def test_batch_benchmark_reads_a_jobs_line_with_and_without_rows_after_the_first():
    """The benchmark's parser against the line runtime.batch prints, in both of its forms."""
    summary = JobSummary(processed=12, errors=1, parts=["part-0"], seconds=4.0, ray_start_s=0.1, first_rows_s=4.0, first_rows=12)
    rates = job_rates(summary.line())
    assert rates == {
        "images": 12,
        "seconds": 4.0,
        "ray_start_s": 0.1,
        "images_per_s": 3.0,
        "steady_images_per_s": None,
        "first_rows_s": 4.0,
    }
    summary.first_rows, summary.first_rows_s = 8, 2.0
    assert job_rates(summary.line())["steady_images_per_s"] == 2.0
    assert job_rates("12 images, 0 of them done before") is None
