"""``python -m runtime.serve`` and the ``grpc://`` / ``http://`` client backend, against a real tritonserver
(nvidia-pytriton's) on 127.0.0.1 with free ports: the same results as the local runtime, dynamic batching,
bad requests refused while the server keeps serving, a killed server reported in one line and a restarted
one used again, SIGTERM draining, and the Triton repository that ``python -m export --to triton`` writes
declaring the same tensors.

One server serves the whole module (started once, yolact_tiny, one thread); the kill and SIGTERM tests
start their own, because they end it. Every wait is bounded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

import runtime
from benchmarks.triton_harness import ServerProcess, free_ports

pytest.importorskip("pytriton", reason="the serving tests need nvidia-pytriton (pip install -e '.[dev]')")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from conftest import scenes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT_S = 120
MAX_BATCH = 4
# A long queue delay, so that concurrent single-image requests are seen batched even on a busy machine.
QUEUE_DELAY_US = 50_000
SERVER_OPTIONS = ("--threads", "1", "--max-batch", str(MAX_BATCH), "--queue-delay-us", str(QUEUE_DELAY_US))
WITHOUT_LIBRARY_PATH = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
# The SIGTERM test's load: requests of MAX_BATCH images this large (about 0.1 s each for yolact_tiny on one
# thread), queued behind each other on the one instance.
DRAIN_SIDE, DRAIN_REQUESTS = 256, 6


def start_server(model: Path, log: Path, ports: list[int] | None = None) -> ServerProcess:
    """The server started without LD_LIBRARY_PATH: it must set what its Python-backend stub needs itself."""
    return ServerProcess(model, log, SERVER_OPTIONS, ports, env=WITHOUT_LIBRARY_PATH).start(START_TIMEOUT_S)


@pytest.fixture(scope="module")
def server(onnx_model, tmp_path_factory):
    served = start_server(onnx_model, tmp_path_factory.mktemp("serve") / "server.log")
    yield served
    served.kill()


@pytest.fixture(scope="module")
def sized_images() -> list[np.ndarray]:
    """Scenes of several sizes, two of each size (they go through as one batch), and a small crop."""
    images = scenes(4, seed=3)
    resized = [cv2.resize(image, (200, 150)) for image in images[:2]]
    return [*images, *resized, np.ascontiguousarray(images[0][:90, :130])]


@pytest.fixture(scope="module")
def local(onnx_model):
    with runtime.Segmenter(onnx_model, threads=1, batch_size=MAX_BATCH) as segmenter:
        yield segmenter


def assert_same_detections(expected: list[runtime.Detections], found: list[runtime.Detections]) -> None:
    assert len(expected) == len(found)
    for want, got in zip(expected, found):
        assert len(want) == len(got) > 0
        np.testing.assert_array_equal(got.class_ids, want.class_ids)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.masks, want.masks)
        assert got.class_names == want.class_names


def grpc_request(server: ServerProcess, images: np.ndarray, datatype: str = "UINT8"):
    client = tritonclient_grpc.InferenceServerClient(f"{HOST}:{server.grpc_port}")
    request = tritonclient_grpc.InferInput("images", list(images.shape), datatype)
    request.set_data_from_numpy(images)
    try:
        return client.infer("yolact", [request], client_timeout=30)
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_results_equal_the_local_runtime(server, local, sized_images, protocol):
    url = server.url("grpc") if protocol == "grpc" else server.url("http")
    with runtime.Segmenter(url, batch_size=MAX_BATCH) as remote:
        assert remote.backend_name == "triton"
        assert remote.class_names == local.class_names
        assert remote.max_batch == MAX_BATCH
        assert "onnxruntime" in remote.executed_on
        assert_same_detections(local(sized_images), remote(sized_images))


def test_cli_runs_images_folders_and_videos_on_a_server(server, local, sized_images, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, image in enumerate(sized_images[:3]):
        cv2.imwrite(str(photos / f"{index}.png"), image)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (200, 150))
    for image in sized_images[4:6]:
        writer.write(image)
    writer.release()
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "runtime", "--model", server.url("grpc"), str(photos), str(video), "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "backend triton" in run.stdout
    expected = local([str(photos / "0.png")])[0]
    record = json.loads((out / "0.json").read_text())
    assert [d["box_xyxy"] for d in record["detections"]] == expected.boxes.tolist()
    frames = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [frame["frame"] for frame in frames] == [0, 1]
    assert len((out / "clip.mot.txt").read_text().splitlines()) == sum(len(frame["detections"]) for frame in frames)
    assert (out / "clip.mp4").stat().st_size > 0


def test_metadata_health_and_config_match_the_exported_repository(server, onnx_model, tmp_path):
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    from export.triton_repo import RepositoryOptions, write_repository

    client = tritonclient_grpc.InferenceServerClient(f"{HOST}:{server.grpc_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("yolact")
    served = client.get_model_config("yolact").config
    client.close()
    written = write_repository(onnx_model, tmp_path / "repo", RepositoryOptions(max_batch=MAX_BATCH))
    repository = text_format.Parse((written / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())

    def tensors(config, field):
        # What a client sees: names, types and dims (a repository's reshape is internal to the server).
        return [(t.name, t.data_type, list(t.dims)) for t in getattr(config, field)]

    assert tensors(served, "input") == tensors(repository, "input")
    assert tensors(served, "output") == tensors(repository, "output")
    assert served.max_batch_size == repository.max_batch_size == MAX_BATCH
    yolact_parameters = {key for key in json_format.MessageToDict(repository)["parameters"]}
    assert yolact_parameters <= set(served.parameters)
    for name in ("health/live", "health/ready", "models/yolact", "models/yolact/ready"):
        assert urllib.request.urlopen(f"http://{HOST}:{server.http_port}/v2/{name}", timeout=10).status == 200


def test_dynamic_batching_under_concurrent_load(server, sized_images):
    before = server.metrics()
    image = np.ascontiguousarray(sized_images[4][None])
    barrier = threading.Barrier(8)
    failures = []

    def client() -> None:
        barrier.wait(timeout=30)
        try:
            for _ in range(3):
                grpc_request(server, image)
        except InferenceServerException as error:
            failures.append(error)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures and not any(thread.is_alive() for thread in threads)
    counted = ("nv_inference_count", "nv_inference_request_success")
    after = server.metrics(at_least={name: before[name] + 24 for name in counted})
    images = after["nv_inference_count"] - before["nv_inference_count"]
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    assert images == 24
    assert executions < images, f"{images} images in {executions} executions: no batch above 1"


# The mixed-size burst: clients sending images of three sizes, the sizes interleaved in the server's queue.
MIXED_SIZES_HW = ((150, 200), (120, 160), (96, 128))
BURST_CLIENTS, BURST_REQUESTS_PER_CLIENT = 12, 2
# Clients sending good images beside the one that sends an oversized image.
GOOD_CLIENTS = 3


def test_mixed_image_sizes_are_batched_together_with_the_local_runtimes_answers(server, local):
    """NVIDIA's tritonclient (gRPC), concurrent clients, three image sizes: every output equals the in-process
    runtime's on the same graph, bit for bit, and Triton ran the requests in at most half as many executions
    (its dynamic batcher alone batches only requests of one shape: as many executions as requests)."""
    images = [cv2.resize(image, (width, height)) for image, (height, width) in zip(scenes(3, seed=7), MIXED_SIZES_HW)]
    expected = [local.infer(image[None])._asdict() for image in images]
    before = server.metrics()
    barrier = threading.Barrier(BURST_CLIENTS)
    answers: list[tuple[int, object]] = []

    def client(number: int) -> None:
        barrier.wait(timeout=30)
        for request in range(BURST_REQUESTS_PER_CLIENT):
            index = (number + request) % len(images)
            try:
                answers.append((index, grpc_request(server, images[index][None])))
            except InferenceServerException as error:
                answers.append((index, error))

    threads = [threading.Thread(target=client, args=(number,)) for number in range(BURST_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    requests = BURST_CLIENTS * BURST_REQUESTS_PER_CLIENT
    assert not any(thread.is_alive() for thread in threads) and len(answers) == requests
    for index, answer in answers:
        assert not isinstance(answer, InferenceServerException), answer.message()
        for name, want in expected[index].items():
            np.testing.assert_array_equal(answer.as_numpy(name).reshape(want.shape), want, err_msg=name)
    counted = ("nv_inference_count", "nv_inference_request_success")
    after = server.metrics(at_least={name: before[name] + requests for name in counted})
    inferences = after["nv_inference_count"] - before["nv_inference_count"]
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    assert inferences == requests
    assert executions <= requests / 2, f"{requests} requests of three sizes in {executions} executions"


BAD_REQUESTS = {
    "a batch over the limit": (np.zeros((MAX_BATCH + 1, 32, 32, 3), np.uint8), "UINT8", "batch-size must be <="),
    "a wrong dtype": (np.zeros((1, 32, 32, 3), np.float32), "FP32", "data-type is 'FP32'"),
    "a wrong rank": (np.zeros((1, 32, 3), np.uint8), "UINT8", "unexpected shape"),
    "four channels": (np.zeros((1, 32, 32, 4), np.uint8), "UINT8", "unexpected shape"),
    # PyTriton refuses it before the graph runs (it cannot put a zero-size tensor in shared memory).
    "an empty image": (np.zeros((1, 0, 32, 3), np.uint8), "UINT8", None),
    "an oversized image": (np.zeros((1, 9000, 2, 3), np.uint8), "UINT8", "over the 8192 px side"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_refused_and_the_next_is_served(server, local, sized_images, case):
    images, datatype, message = BAD_REQUESTS[case]
    with pytest.raises(InferenceServerException, match=message and re.escape(message)):
        grpc_request(server, images, datatype)
    assert_good_request_served(server, local, sized_images)


def test_requests_batched_with_a_refused_one_are_sent_again_by_the_runtime_client(server, local, sized_images):
    """One client sends an image over the server's side limit while others send good images at the same
    moment, so Triton batches them into one execution and PyTriton fails it as a whole. The refused client
    gets its own error; runtime's clients see from the refused size that theirs were only batched with it,
    send again, and get the local runtime's answers. Bursts repeat until the server's metrics show that an
    execution really did fail good requests with the bad one (at most three bursts)."""
    good = sized_images[:GOOD_CLIENTS]
    expected = local(good)
    oversized = np.zeros((9000, 2, 3), np.uint8)
    for _ in range(3):
        before = server.metrics()
        barrier = threading.Barrier(GOOD_CLIENTS + 1)
        answers: dict[int, object] = {}

        def client(number: int) -> None:
            with runtime.Segmenter(server.url("grpc")) as remote:
                image = oversized if number == GOOD_CLIENTS else good[number]
                barrier.wait(timeout=30)
                try:
                    answers[number] = remote([image])[0]
                except runtime.SegmenterError as error:
                    answers[number] = error

        threads = [threading.Thread(target=client, args=(number,)) for number in range(GOOD_CLIENTS + 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(answers) == GOOD_CLIENTS + 1
        assert isinstance(answers[GOOD_CLIENTS], runtime.SegmenterError)
        assert "a 2x9000 image, over the 8192 px side" in str(answers[GOOD_CLIENTS])
        assert_same_detections(expected, [answers[number] for number in range(GOOD_CLIENTS)])
        after = server.metrics(at_least={"nv_inference_request_success": before["nv_inference_request_success"] + GOOD_CLIENTS})
        if after["nv_inference_request_failure"] - before["nv_inference_request_failure"] > 1:
            return
    pytest.fail("in three bursts the refused request was never batched with a good one")


def assert_good_request_served(server: ServerProcess, local: runtime.Segmenter, sized_images: list[np.ndarray]) -> None:
    image = sized_images[6]
    with runtime.Segmenter(server.url("grpc")) as remote:
        assert_same_detections(local([image]), remote([image]))


@pytest.mark.parametrize("body", ["size mismatch", "not JSON"])
def test_undecodable_bytes_are_refused_and_the_next_is_served(server, local, sized_images, body):
    header = json.dumps(
        {"inputs": [{"name": "images", "shape": [1, 4, 4, 3], "datatype": "UINT8", "parameters": {"binary_data_size": 48}}]}
    ).encode()
    data, headers = (
        (header + b"\x00" * 5, {"Inference-Header-Content-Length": str(len(header))}) if body == "size mismatch" else (b"\x00{garbage", {})
    )
    request = urllib.request.Request(f"http://{HOST}:{server.http_port}/v2/models/yolact/infer", data=data, headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code in (400, 500)
    assert "error" in json.loads(refused.value.read())
    assert_good_request_served(server, local, sized_images)


def test_client_errors_are_one_line(server, onnx_model):
    (unused,) = free_ports(1)
    cases = {
        server.url("grpc", "nope"): "the server has no model 'nope'",
        server.url("http", "nope"): "the server has no model 'nope'",
        f"grpc://{HOST}:{unused}/yolact": "no Triton server answers",
        f"http://{HOST}:{unused}/yolact": "no Triton server answers",
    }
    for url, message in cases.items():
        with pytest.raises(runtime.ModelError, match=re.escape(message)) as error:
            runtime.Segmenter(url)
        assert "\n" not in str(error.value) and str(error.value).startswith(url)
    with pytest.raises(runtime.ModelError, match="an option of the server"):
        runtime.Segmenter(server.url("grpc"), threads=2)
    with pytest.raises(runtime.ModelError, match="timeout 0 s: must be positive"):
        runtime.Segmenter(server.url("grpc"), timeout_s=0)
    with pytest.raises(runtime.ModelError, match="a timeout is an option of a server's clients"):
        runtime.Segmenter(onnx_model, timeout_s=5)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_client_timeout_is_reported_in_one_line_and_the_server_keeps_serving(server, local, sized_images, protocol):
    """A client that waits less than the server needs gives up in one line; the server answers the next one."""
    with pytest.raises(runtime.ModelError) as error:
        with runtime.Segmenter(server.url(protocol), timeout_s=1e-4) as impatient:
            impatient([sized_images[0]])
    assert "\n" not in str(error.value) and str(error.value).startswith(server.url(protocol))
    assert_good_request_served(server, local, sized_images)


def test_foreign_model_on_a_triton_server_is_refused(tmp_path):
    """A Triton model that is not a YOLACT graph (here an echo served by PyTriton itself) is refused after
    its metadata is read, as a foreign file is."""
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from runtime.pytriton_adapter import python_backend_library_path

    python_backend_library_path()
    http_port, grpc_port, metrics_port = free_ports(3)
    config = TritonConfig(
        http_address=HOST, grpc_address=HOST, metrics_address=HOST, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port
    )
    with Triton(config=config) as triton:
        triton.bind(
            "echo",
            lambda requests: [{"out": r["data"]} for r in requests],
            inputs=[Tensor(name="data", dtype=np.float32, shape=(-1,))],
            outputs=[Tensor(name="out", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=2),
        )
        triton.run()
        for url in (f"grpc://{HOST}:{grpc_port}/echo", f"http://{HOST}:{http_port}/echo"):
            with pytest.raises(runtime.ModelError, match="not a model served by python -m runtime.serve"):
                runtime.Segmenter(url)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_killed_server_is_reported_in_one_line_and_a_restart_serves_again(onnx_model, local, sized_images, tmp_path, protocol):
    first = start_server(onnx_model, tmp_path / "server.log")
    restarted = ServerProcess(onnx_model, tmp_path / "restarted.log", SERVER_OPTIONS, first.ports, env=WITHOUT_LIBRARY_PATH)
    image = sized_images[6]
    expected = local([image])
    try:
        with runtime.Segmenter(first.url(protocol)) as remote:
            assert_same_detections(expected, remote([image]))
            first.kill()
            started = time.monotonic()
            with pytest.raises(runtime.ModelError, match="no Triton server answers") as error:
                remote([image])
            assert time.monotonic() - started < remote._backend.timeout_s
            assert "\n" not in str(error.value)
            restarted.start(START_TIMEOUT_S)
            assert_same_detections(expected, remote([image]))
    finally:
        first.kill()
        restarted.kill()


def test_sigterm_drains_the_requests_in_flight(onnx_model, local, sized_images, tmp_path):
    served = start_server(onnx_model, tmp_path / "server.log")
    try:
        batch = np.stack([cv2.resize(image, (DRAIN_SIDE, DRAIN_SIDE)) for image in sized_images[:MAX_BATCH]])
        expected = local.infer(batch).scores
        outcomes: list = []
        finished: list[float] = []

        def client() -> None:
            try:
                outcomes.append(grpc_request(served, batch).as_numpy("scores"))
                finished.append(time.monotonic())
            except InferenceServerException as error:
                outcomes.append(error)

        threads = [threading.Thread(target=client) for _ in range(DRAIN_REQUESTS)]
        for thread in threads:
            thread.start()
        # Once the first is answered the others (sent with it, 0.8 MB each) wait in the server's queue.
        deadline = time.monotonic() + 60
        while not outcomes and time.monotonic() < deadline:
            time.sleep(0.005)
        signalled = time.monotonic()
        status = served.terminate()
        for thread in threads:
            thread.join(timeout=120)
        assert status == 0, served.log_tail()
        assert "drained and stopped" in served.log.read_text()
        assert len(outcomes) == DRAIN_REQUESTS
        for outcome in outcomes:
            assert not isinstance(outcome, Exception), f"{outcome.status()} {outcome.message()}"
            np.testing.assert_array_equal(outcome, expected)
        assert max(finished) > signalled, "every request had finished before SIGTERM: nothing was drained"
    finally:
        served.kill()
