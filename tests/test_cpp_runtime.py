"""The C++ runtime (runtime/cpp): built with CMake once per session; the example app (on the ONNX graph and
on the OpenVINO IR) and the C program against the Python runtime's JSON on generated images; every error case fed to both; the C++ test binary,
plain and under AddressSanitizer + UBSan; the timing mode; the docs' C++ and C examples compiled as
written.

The model is yolact_tiny holding the authors' deterministic recipe weights (yolact.recipe) with a low
class-confidence gain: on noise it gives the full K detections with scores on both sides of the 0.3
threshold, on a flat grey image none above it."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pycocotools.mask as mask_utils
import pytest

from benchmarks.cpp_runtime import CPP_SOURCE as CPP
from benchmarks.cpp_runtime import cmake_build as build_runtime
from benchmarks.cpp_runtime import openvino_cmake_dir
from export.onnx_export import export_onnx
from export.openvino_export import export_openvino
from yolact import get_config
from yolact.recipe import recipe_model

ROOT = Path(__file__).resolve().parents[1]
DOCS_PAGE = "docs/cpp.md"
# Scales the class-confidence layer of the recipe: noise then scores 0.27-0.35, about half above 0.3.
CONF_GAIN = 0.2
NOISE_SIZES = [(120, 160), (97, 203), (300, 41), (480, 640), (64, 64)]
GREY_SIZE = (80, 100)
BUILD_TIMEOUT_S = 900
RUN_TIMEOUT_S = 300


def missing_prerequisites() -> list[str]:
    """What the C++ build needs and this machine lacks (.ci/run installs all of it)."""
    missing = [f"{tool} (apt-get install {package})" for tool, package in (("cmake", "cmake"), ("c++", "g++")) if not shutil.which(tool)]
    if openvino_cmake_dir() is None:
        missing.append("OpenVINO's OpenVINOConfig.cmake (pip install openvino)")
    cmake_configs = {
        "OpenCV (apt-get install libopencv-dev)": "opencv4/OpenCVConfig.cmake",
        "nlohmann-json (apt-get install nlohmann-json3-dev)": "nlohmann_json/nlohmann_jsonConfig.cmake",
    }
    for what, config in cmake_configs.items():
        prefixes = ("/usr/lib/*/cmake", "/usr/lib/cmake", "/usr/share/cmake", "/usr/local/lib/cmake", "/usr/local/share/cmake")
        places = [f"{prefix}/{config}" for prefix in prefixes]
        if not any(glob.glob(place) for place in places):
            missing.append(what)
    return missing


MISSING = missing_prerequisites()
pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=f"C++ runtime build prerequisites missing: {', '.join(MISSING)}"),
    # pycocotools' decode/encode warn under numpy 2 on every call.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]


def run(command: list, timeout: float = RUN_TIMEOUT_S, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, **kwargs)


def cmake_build(build_dir: Path, *options: str, target: str | None = None) -> Path:
    """benchmarks.cpp_runtime's build, failing the test with CMake's output on error."""
    try:
        return build_runtime(build_dir, *options, target=target, timeout=BUILD_TIMEOUT_S)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> Path:
    return cmake_build(tmp_path_factory.mktemp("cpp-build"), "-DCMAKE_BUILD_TYPE=Release")


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """ours: the exported many-detections model; ir: its OpenVINO IR (python -m export --to openvino);
    foreign: the same graph without our metadata."""
    folder = tmp_path_factory.mktemp("cpp-models")
    model = recipe_model(get_config("yolact_tiny"), conf_gain=CONF_GAIN)
    export_onnx(model, folder / "tiny.onnx")
    export_openvino(model, folder / "tiny.xml")
    foreign = onnx.load(str(folder / "tiny.onnx"))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(folder / "foreign.onnx"))
    return {"ours": folder / "tiny.onnx", "ir": folder / "tiny.xml", "foreign": folder / "foreign.onnx"}


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[Path]:
    """PNG files written by OpenCV: noise of several sizes (many detections), then a flat grey image (none
    above the threshold)."""
    folder = tmp_path_factory.mktemp("cpp-images")
    rng = np.random.default_rng(0)
    paths = []
    for height, width in NOISE_SIZES:
        paths.append(folder / f"noise_{height}x{width}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    paths.append(folder / "grey.png")
    cv2.imwrite(str(paths[-1]), np.full((*GREY_SIZE, 3), 128, np.uint8))
    return paths


@pytest.fixture(scope="session")
def python_runtime_json(tmp_path_factory, models, images) -> dict[str, dict]:
    """What `python -m runtime` (onnxruntime) writes for the images, by file stem."""
    out = tmp_path_factory.mktemp("python-runtime")
    result = run([sys.executable, "-m", "runtime", "--model", models["ours"], "--out", out, *images], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return {path.stem: json.loads((out / f"{path.stem}.json").read_text()) for path in images}


def segment(program: Path, model: Path, images: list[Path], out: Path) -> Path:
    """Run yolact_segment or c_segment on the images; the folder of its outputs."""
    result = run([program, "--model", model, "--out", out, *images])
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def example_out(tmp_path_factory, build, models, images) -> Path:
    return segment(build / "yolact_segment", models["ours"], images, tmp_path_factory.mktemp("example-out"))


@pytest.fixture(scope="session")
def c_program_out(tmp_path_factory, build, models, images) -> Path:
    return segment(build / "c_segment", models["ours"], images, tmp_path_factory.mktemp("c-program-out"))


def decoded(detection: dict) -> np.ndarray:
    rle = detection["mask_rle"]
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})


def assert_matches_python_runtime(text: str, reference: dict) -> None:
    """Same image record, classes, scores (1e-5), boxes within 0.5 px, masks equal on >= 99.9% of pixels;
    and the RLE is pycocotools' own encoding of the mask it decodes to, in Python's JSON layout."""
    ours = json.loads(text)
    assert json.dumps(ours, indent=1) == text, "not laid out as Python's json.dumps(indent=1)"
    assert {k: ours[k] for k in ("image", "height", "width")} == {k: reference[k] for k in ("image", "height", "width")}
    assert len(ours["detections"]) == len(reference["detections"])
    for mine, theirs in zip(ours["detections"], reference["detections"]):
        assert (mine["class_id"], mine["class_name"]) == (theirs["class_id"], theirs["class_name"])
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
        assert mine["mask_score"] == pytest.approx(theirs["mask_score"], abs=1e-5)
        assert np.abs(np.subtract(mine["box_xyxy"], theirs["box_xyxy"])).max() <= 0.5
        mask = decoded(mine)
        assert mine["mask_rle"]["size"] == [ours["height"], ours["width"]] and mask.sum() == mine["mask_area"]
        assert mask_utils.encode(np.asfortranarray(mask))["counts"].decode("ascii") == mine["mask_rle"]["counts"]
        assert (mask == decoded(theirs)).mean() >= 0.999


def test_example_matches_the_python_runtime(example_out, python_runtime_json, images):
    kept = {}
    for path in images:
        text = (example_out / f"{path.stem}.json").read_text()
        assert_matches_python_runtime(text, python_runtime_json[path.stem])
        kept[path.stem] = len(json.loads(text)["detections"])
        overlay = cv2.imread(str(example_out / f"{path.stem}.png"))
        assert overlay is not None and overlay.shape == cv2.imread(str(path)).shape
    noise = [kept[p.stem] for p in images[: len(NOISE_SIZES)]]
    assert min(noise) >= 20 and sum(noise) >= 200, f"the test model should detect plenty on noise: {kept}"
    assert kept["grey"] == 0


def test_example_on_the_ir_matches_the_python_runtime(build, models, python_runtime_json, images, tmp_path):
    """The IR of python -m export --to openvino: metadata from its rt_info, the same detections."""
    out = segment(build / "yolact_segment", models["ir"], images, tmp_path / "out")
    for path in images:
        assert_matches_python_runtime((out / f"{path.stem}.json").read_text(), python_runtime_json[path.stem])


@pytest.fixture(scope="session")
def yolact_plus_ir(tmp_path_factory) -> Path:
    """yolact_plus_tiny (deformable convolutions, 9 anchors, mask re-scoring) with the recipe weights, as
    the OpenVINO IR that is YOLACT++'s OpenVINO path."""
    path = tmp_path_factory.mktemp("cpp-plus") / "plus_tiny.xml"
    export_openvino(recipe_model(get_config("yolact_plus_tiny"), conf_gain=CONF_GAIN), path)
    return path


def test_example_on_a_yolact_plus_ir_matches_the_python_runtime(build, yolact_plus_ir, images, tmp_path):
    """Boxes, masks, scores and the re-scored mask scores of YOLACT++ equal the Python runtime's on the IR."""
    result = run([sys.executable, "-m", "runtime", "--model", yolact_plus_ir, "--out", tmp_path / "python", *images], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    out = segment(build / "yolact_segment", yolact_plus_ir, images, tmp_path / "cpp")
    detections = []
    for path in images:
        reference = json.loads((tmp_path / "python" / f"{path.stem}.json").read_text())
        assert_matches_python_runtime((out / f"{path.stem}.json").read_text(), reference)
        detections += reference["detections"]
    assert len(detections) >= 20
    # Re-scoring ran: mask scores are the box scores times a predicted IoU, not copies of them.
    assert any(abs(d["mask_score"] - d["score"]) > 1e-3 for d in detections)


def test_c_program_matches_the_python_runtime(c_program_out, python_runtime_json, images):
    for path in images:
        text = (c_program_out / f"{path.stem}.json").read_text()
        assert_matches_python_runtime(text, python_runtime_json[path.stem])
        # The accessors (yolact_results_detection) read back what the JSON says.
        lines = (c_program_out / f"{path.stem}.txt").read_text().splitlines()
        detections = json.loads(text)["detections"]
        assert len(lines) == len(detections)
        for line, detection in zip(lines, detections):
            class_id, score, mask_score, x1, y1, x2, y2, area, name = line.split(" ", 8)
            assert (int(class_id), name) == (detection["class_id"], detection["class_name"])
            assert float(score) == pytest.approx(detection["score"], abs=1e-6)
            assert float(mask_score) == pytest.approx(detection["mask_score"], abs=1e-6)
            assert [int(x1), int(y1), int(x2), int(y2)] == detection["box_xyxy"]
            assert int(area) == detection["mask_area"]


@pytest.mark.parametrize("program", ["yolact_segment", "c_segment"])
def test_a_bad_image_is_reported_and_skipped(build, models, images, tmp_path, program):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    missing = tmp_path / "missing.png"
    result = run([build / program, "--model", models["ours"], "--out", tmp_path / "out", broken, images[0], missing])
    assert result.returncode == 1, result.stderr
    assert f"{broken}: not a readable image" in result.stderr and f"{missing}: no such file" in result.stderr
    assert (tmp_path / "out" / f"{images[0].stem}.json").is_file()


def error_cases(models: dict[str, Path], folder: Path) -> dict[str, tuple[list, str]]:
    """name -> (extra arguments, text the one-line error must contain)."""
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 definitely not a protobuf of an ONNX model")
    truncated = folder / "truncated.onnx"
    truncated.write_bytes(models["ours"].read_bytes()[:5000])
    engine = folder / "tiny.engine"
    engine.write_bytes(b"not an engine")
    corrupt_ir = folder / "corrupt.xml"
    corrupt_ir.write_bytes(b"<net> not an IR")
    ir_without_weights = folder / "no_bin.xml"
    ir_without_weights.write_bytes(models["ir"].read_bytes())
    return {
        "missing model": (["--model", folder / "none.onnx"], f"{folder / 'none.onnx'}: no such file"),
        "corrupt model": (["--model", corrupt], f"{corrupt}: OpenVINO cannot read it as ONNX"),
        "truncated model": (["--model", truncated], f"{truncated}: OpenVINO cannot read it as ONNX"),
        "corrupt IR": (["--model", corrupt_ir], f"{corrupt_ir}: OpenVINO cannot read it as an IR"),
        "IR without its .bin": (["--model", ir_without_weights], f"{ir_without_weights}: OpenVINO cannot read it as an IR"),
        "model without our metadata": (["--model", models["foreign"]], "no yolact.class_names in its metadata"),
        "unknown backend": (["--model", models["ours"], "--backend", "tflite"], "unknown backend 'tflite'"),
        "TensorRT without TensorRT": (["--model", models["ours"], "--backend", "tensorrt"], "backend 'tensorrt' is not in this build"),
        "engine in a build without TensorRT": (["--model", engine], "backend 'tensorrt' is not in this build"),
    }


@pytest.mark.parametrize("program", ["yolact_segment", "c_segment"])
def test_every_model_error_is_one_line_and_exit_status_2(build, models, images, tmp_path, program):
    for name, (arguments, expected) in error_cases(models, tmp_path).items():
        result = run([build / program, *arguments, "--out", tmp_path / "out", images[0]])
        assert result.returncode == 2, f"{name}: exit {result.returncode}, stderr {result.stderr!r}"
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and expected in errors[0], f"{name}: {result.stderr!r}"


def test_unknown_precision_is_refused(build, models, images, tmp_path):
    result = run([build / "yolact_segment", "--model", models["ours"], "--precision", "int4", "--out", tmp_path, images[0]])
    assert result.returncode == 2 and "unknown precision 'int4'" in result.stderr


def test_cpp_test_binary(build, models, tmp_path):
    result = run([build / "segmenter_test", "--model", models["ours"], "--foreign-model", models["foreign"], "--scratch", tmp_path])
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpp_test_binary_under_address_sanitizer(tmp_path_factory, models, tmp_path):
    sanitized = cmake_build(
        tmp_path_factory.mktemp("cpp-asan"), "-DCMAKE_BUILD_TYPE=Debug", "-DYOLACT_SANITIZE=address,undefined", target="segmenter_test"
    )
    environment = dict(
        os.environ,
        # OpenVINO's TBB would dlopen its topology library with RTLD_DEEPBIND, which AddressSanitizer refuses.
        TBB_ENABLE_SANITIZERS="1",
        LSAN_OPTIONS=f"suppressions={CPP / 'tests' / 'lsan.supp'}",
        UBSAN_OPTIONS="print_stacktrace=1",
    )
    result = run(
        [sanitized / "segmenter_test", "--model", models["ours"], "--foreign-model", models["foreign"], "--scratch", tmp_path],
        env=environment,
    )
    assert result.returncode == 0 and "ERROR: AddressSanitizer" not in result.stderr, result.stdout + result.stderr[-5000:]


def test_json_layout_and_numbers_match_python(build):
    """A result with awkward names and scores, written by the library, equals what Python writes for the
    same detections (yolact.predict.detections_json: round(score, 6), ensure_ascii, indent=1)."""
    text = run([build / "segmenter_test", "--json-sample"]).stdout
    scores = np.array([0.87654325, 0.5, 1e-05, 0.30000001], np.float32)
    names = ["circle", 'quote " back\\slash \t tab', "café 🙂", "ring"]
    records = []
    for i in range(4):
        mask = np.zeros((4, 3), np.uint8)
        mask[i, : 3 - i % 3] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        records.append(
            {
                "class_id": i,
                "class_name": names[i],
                "score": round(float(scores[i]), 6),
                "mask_score": round(float(scores[3 - i]), 6),
                "box_xyxy": [i, 0, 3, 4 - i],
                "mask_area": int(mask.sum()),
                "mask_rle": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
            }
        )
    expected = {"image": "dir/sample image.png", "height": 4, "width": 3, "detections": records}
    assert text == json.dumps(expected, indent=1)


def test_timing_mode_records_infer_and_paste(build, models, images, tmp_path):
    timing = tmp_path / "timing.json"
    chosen = images[:2]
    result = run(
        [
            build / "yolact_segment",
            "--model",
            models["ours"],
            "--out",
            tmp_path / "out",
            "--batch-size",
            "1",
            "--repeat",
            "3",
            "--timing-json",
            timing,
            *chosen,
        ]
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(timing.read_text())
    assert record["backend"] == "openvino" and record["batch_size"] == 1
    assert [(run["images"], run["repeat"]) for run in record["runs"]] == [([str(p)], r) for p in chosen for r in range(3)]
    for entry in record["runs"]:
        assert 0 < entry["infer_ms"] <= entry["total_ms"] and entry["paste_ms"] > 0
        assert entry["prepare_ms"] + entry["infer_ms"] + entry["paste_ms"] == pytest.approx(entry["total_ms"])


def readme_examples() -> dict[str, str]:
    """The ```cpp and ```c code blocks of the docs' C and C++ page, by language."""
    page = (ROOT / DOCS_PAGE).read_text()
    blocks = dict(re.findall(r"^```(cpp|c)\n(.*?)^```", page, flags=re.M | re.S))
    assert set(blocks) == {"cpp", "c"}, f"{DOCS_PAGE} needs one ```cpp and one ```c example"
    return blocks


def test_readme_examples_compile_as_written_and_run(build, models, images, tmp_path):
    examples = readme_examples()
    for language, code in examples.items():
        assert len(code.strip().splitlines()) <= 15, f"the docs' {language} example is meant to be 15 lines"
        (tmp_path / f"example.{language}").write_text(code)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(readme_examples C CXX)\nset(CMAKE_CXX_STANDARD 17)\n"
        "find_package(yolact_runtime REQUIRED)\n"
        "foreach(language cpp c)\n  add_executable(example_${language} example.${language})\n"
        "  target_link_libraries(example_${language} PRIVATE yolact::yolact_runtime)\nendforeach()\n"
    )
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = run(["cmake", "-S", tmp_path, "-B", tmp_path / "build", *generator, f"-Dyolact_runtime_DIR={build}"], BUILD_TIMEOUT_S)
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    compiled = run(["cmake", "--build", tmp_path / "build"], BUILD_TIMEOUT_S)
    assert compiled.returncode == 0, compiled.stdout[-5000:] + compiled.stderr[-3000:]
    for language in examples:
        result = run([tmp_path / "build" / f"example_{language}", models["ours"], images[0]])
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) >= 20, f"{language} example printed: {result.stdout!r}"
        failed = run([tmp_path / "build" / f"example_{language}", models["ours"], tmp_path / "missing.png"])
        assert failed.returncode != 0 and "missing.png: no such file" in failed.stderr
