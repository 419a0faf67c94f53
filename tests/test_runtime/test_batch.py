"""``python -m runtime.batch`` on real Ray: the embedded default, and a two-node cluster on this machine
(``ray.cluster_utils.Cluster``, started once for the session); S3 through a moto server on 127.0.0.1; a
worker process killed mid-run; a driver killed and the job rerun. Every row is compared with ``Segmenter``
run in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import ray.cluster_utils as ray_cluster_utils
from conftest import scenes
from moto import server as moto_server

from runtime import Segmenter
from runtime.batch.job import pending_items
from runtime.batch.results import detections_row
from runtime.batch.sources import SourceReader

BAD_FILES = {
    "empty.png": "empty file",
    "notes.txt": "not an image OpenCV can read",
    "broken.jpg": "not an image OpenCV can read",
    "huge.png": "over the limit",
}
RUN_TIMEOUT_S = 240


def encoded(image: np.ndarray, suffix: str = ".png") -> bytes:
    return cv2.imencode(suffix, image)[1].tobytes()


@pytest.fixture(scope="session")
def batch_scenes() -> list[np.ndarray]:
    """Six scenes of mixed sizes (256-400 px a side)."""
    return scenes(6, seed=26)


@pytest.fixture(scope="session")
def reference_rows(onnx_model, batch_scenes) -> list[dict]:
    """The rows of each scene by Segmenter in this process (path left to the caller)."""
    with Segmenter(onnx_model) as segmenter:
        return [detections_row("", detections) for detections in segmenter(batch_scenes)]


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory, batch_scenes) -> Path:
    """The scenes as PNGs and JPEG-free PNG copies under a subfolder, and one file of each kind of bad
    input (empty, not an image, truncated, 3000x3000 pixels: over --max-megapixels 4)."""
    folder = tmp_path_factory.mktemp("batch-images")
    for index, image in enumerate(batch_scenes):
        (folder / f"{index:03d}.png").write_bytes(encoded(image))
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(encoded(batch_scenes[0], ".jpg")[:300])
    (folder / "huge.png").write_bytes(encoded(np.zeros((3000, 3000, 3), np.uint8)))
    return folder


@pytest.fixture(scope="session")
def many_images(tmp_path_factory, batch_scenes) -> Path:
    """36 files (the scenes, each under 6 names): a run long enough to be interrupted."""
    folder = tmp_path_factory.mktemp("batch-many")
    for copy in range(6):
        for index, image in enumerate(batch_scenes):
            (folder / f"{copy}-{index:03d}.png").write_bytes(encoded(image))
    return folder


@pytest.fixture(scope="session")
def ray_cluster():
    """Two Ray nodes on this machine (2 logical CPUs each), shared by every test that names it."""
    cluster = ray_cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    yield cluster.address
    cluster.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def batch_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "runtime.batch", *map(str, args), "--threads", "1"]


def run_batch(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(batch_command(*args), check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env)


def read_rows(out: str, filesystem: pafs.FileSystem | None = None) -> list[dict]:
    if filesystem is None:
        filesystem, out = pafs.FileSystem.from_uri(out) if "://" in out else (pafs.LocalFileSystem(), out)
    parts = [info.path for info in filesystem.get_file_info(pafs.FileSelector(out)) if info.base_name.startswith("part-")]
    return pa.concat_tables(pq.read_table(part, filesystem=filesystem) for part in parts).to_pylist()


def assert_rows_equal_reference(rows: list[dict], reference_rows: list[dict], scene_of) -> None:
    """Every row without an error equals Segmenter's row for its scene (``scene_of(path)``: its index)."""
    for row in rows:
        if row["error"] is None:
            assert row == {**reference_rows[scene_of(row["path"])], "path": row["path"]}, row["path"]


def scene_index(path: str) -> int:
    return int(Path(path.split("#")[0]).stem.split("-")[-1])


def test_sources_resolve_folders_globs_lists_and_tables(tmp_path, image_folder, batch_scenes):
    """What each kind of SOURCE becomes; a path listed twice is done once; a missing file in a list is an
    item (its row will carry the error), a missing SOURCE an error."""
    table = tmp_path / "scenes.parquet"
    pq.write_table(pa.table({"image": [encoded(image) for image in batch_scenes[:3]], "path": ["a", "b", None]}), table, row_group_size=2)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{image_folder / '000.png'}\n# comment\n\nmissing.png\n")
    sources = SourceReader("image", "path").read([str(image_folder / "00*.png"), str(listing), str(table), str(image_folder / "000.png")])
    keys = sources.items["path"].to_pylist()
    assert keys[:6] == [str(image_folder / f"{index:03d}.png") for index in range(6)]
    assert keys[6:] == [str(image_folder / "000.png"), str(tmp_path / "missing.png"), "a", "b", f"{table}#2", str(image_folder / "000.png")]
    assert sources.items.column("chunk").to_pylist()[8:11] == [0, 0, 1]
    assert pending_items(sources, {"a"})["path"].to_pylist() == [k for k in dict.fromkeys(keys) if k != "a"]
    with pytest.raises(Exception, match="no such file or folder"):
        SourceReader("image", "path").read([str(tmp_path / "nowhere")])


def test_embedded_ray_rows_equal_segmenter_rerun_skips(tmp_path, onnx_model, image_folder, reference_rows):
    """The default (no --address): an embedded Ray. Every row equals Segmenter's; bad files are error
    rows; a rerun starts no work and adds no row; COCO results of every detection."""
    out, coco = tmp_path / "out", tmp_path / "coco.json"
    done = run_batch(image_folder, "--model", onnx_model, "--out", out, "--coco-json", coco, "--max-megapixels", 4)
    assert done.returncode == 0, done.stderr
    rows = read_rows(str(out))
    assert sorted(row["path"] for row in rows) == sorted(str(path) for path in image_folder.iterdir())
    errors = {Path(row["path"]).name: row["error"] for row in rows if row["error"] is not None}
    assert errors.keys() == BAD_FILES.keys()
    for name, message in BAD_FILES.items():
        assert errors[name].startswith(str(image_folder / name)) and message in errors[name]
    assert_rows_equal_reference(rows, reference_rows, scene_index)
    entries = json.loads(coco.read_text())
    assert len(entries) == sum(len(row["class_ids"]) for row in rows)
    assert {entry["image_id"] for entry in entries} == set(range(len(reference_rows)))

    again = run_batch(image_folder, "--model", onnx_model, "--out", out, "--max-megapixels", 4)
    assert again.returncode == 0, again.stderr
    assert f"{len(rows)} of them done before" in again.stdout and "images/s" not in again.stdout
    assert len(read_rows(str(out))) == len(rows)


def test_model_that_fails_to_load_is_one_line_before_any_work(tmp_path, image_folder):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    failed = run_batch(image_folder, "--model", broken, "--out", tmp_path / "out")
    assert failed.returncode == 2
    assert len(failed.stderr.strip().splitlines()) == 1 and str(broken) in failed.stderr
    assert not (tmp_path / "out").exists()


def test_s3_in_and_out_on_a_two_node_cluster(tmp_path, onnx_model, batch_scenes, reference_rows, ray_cluster, s3_endpoint):
    """Images and a Parquet table of image bytes read from s3://, results written to s3://, by 2 workers."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    s3 = pafs.S3FileSystem(
        endpoint_override=s3_endpoint, access_key="test", secret_key="test", region="us-east-1", allow_bucket_creation=True
    )
    s3.create_dir("scenes")
    for index, image in enumerate(batch_scenes):
        with s3.open_output_stream(f"scenes/images/{index:03d}.png") as stream:
            stream.write(encoded(image))
    table = pa.table({"image": [encoded(image) for image in batch_scenes], "path": [f"row-{i:03d}" for i in range(len(batch_scenes))]})
    pq.write_table(table, "scenes/table.parquet", filesystem=s3, row_group_size=4)
    done = run_batch(
        "s3://scenes/images",
        "s3://scenes/table.parquet",
        "--model",
        onnx_model,
        "--out",
        "s3://scenes/out",
        "--address",
        ray_cluster,
        "--workers",
        2,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    rows = read_rows("scenes/out", s3)
    assert sorted(row["path"] for row in rows) == sorted(
        [f"s3://scenes/images/{i:03d}.png" for i in range(len(batch_scenes))] + table["path"].to_pylist()
    )
    assert_rows_equal_reference(rows, reference_rows, scene_index)


def segmenter_worker_pids() -> set[int]:
    """The processes of the Segmenter actors (Ray names an actor's process after its class)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"SegmenterWorker" in (entry / "cmdline").read_bytes():
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def wait_for_part(out: Path, job: subprocess.Popen) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not list(out.glob("part-*.parquet")):
        assert job.poll() is None, job.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def assert_each_once_and_equal(out: Path, folder: Path, reference_rows: list[dict]) -> None:
    rows = read_rows(str(out))
    assert sorted(row["path"] for row in rows) == sorted(str(path) for path in folder.iterdir())
    assert all(row["error"] is None for row in rows)
    assert_rows_equal_reference(rows, reference_rows, scene_index)


def test_worker_killed_mid_run_every_image_once(tmp_path, onnx_model, many_images, reference_rows, ray_cluster):
    """SIGKILL to the Segmenter actor's process after the first part: Ray restarts it, retries its batch,
    and the job ends with every image exactly once."""
    out = tmp_path / "out"
    job = subprocess.Popen(
        batch_command(many_images, "--model", onnx_model, "--out", out, "--address", ray_cluster, "--part-rows", 2, "--batch-size", 1),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_part(out, job)
    victims = segmenter_worker_pids()
    assert victims
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert len(read_rows(str(out))) < len(list(many_images.iterdir()))  # killed mid-run
    stdout, stderr = job.communicate(timeout=RUN_TIMEOUT_S)
    assert job.returncode == 0, stderr
    assert "0 of them done before" in stdout
    assert_each_once_and_equal(out, many_images, reference_rows)


def test_driver_killed_rerun_resumes_and_overwrite_restarts(tmp_path, onnx_model, many_images, reference_rows, ray_cluster):
    out = tmp_path / "out"
    args = (many_images, "--model", onnx_model, "--out", out, "--address", ray_cluster, "--part-rows", 2, "--batch-size", 1)
    job = subprocess.Popen(batch_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_part(out, job)
    job.kill()
    job.communicate()
    committed = len(read_rows(str(out)))
    assert 0 < committed < len(list(many_images.iterdir()))

    resumed = run_batch(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{committed} of them done before" in resumed.stdout
    assert_each_once_and_equal(out, many_images, reference_rows)

    restarted = run_batch(*args, "--overwrite", "--part-rows", 64)
    assert restarted.returncode == 0, restarted.stderr
    assert "0 of them done before" in restarted.stdout and len(list(out.glob("part-*"))) == 1
    assert_each_once_and_equal(out, many_images, reference_rows)
