"""``python -m benchmarks.cpp_runtime``: the C++ runtime's latency next to the Python runtime's, on the same
backend (OpenVINO f32), model and image, the C++ overhead over the backend's own inference, and the two
final-image steps (paste) on the same detections.

It builds ``runtime/cpp`` (Release) unless ``--build-dir`` already holds ``yolact_segment``, exports the model
(without ``--weights``: the authors' recipe weights, every detection slot filled), and times both runtimes at
batch 1 with every detection pasted, in rounds that take turns between them. Writes ``benchmarks/results/cpp_runtime_<machine>_<config>_<date>.json``
and ``.md``.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

import runtime
from command_line import entry_parser, entry_point, image_size
from export.calibration import calibration_files
from export.onnx_export import export_onnx
from yolact.data import ensure_shapes_dataset
from contract.files import write_text

from .machine import cpu_description, machine_details, machine_tag
from .reports import report_stem
from .variants import load_or_recipe

PROG = "python -m benchmarks.cpp_runtime"
RESULTS = Path(__file__).parent / "results"
CPP_SOURCE = Path(__file__).parents[1] / "runtime" / "cpp"
EXAMPLE = "yolact_segment"


def openvino_cmake_dir() -> Path | None:
    """The folder of ``OpenVINOConfig.cmake`` inside the openvino pip package, or None without it."""
    try:
        import openvino
    except ImportError:
        return None
    folder = Path(openvino.__file__).parent / "cmake"
    return folder if (folder / "OpenVINOConfig.cmake").is_file() else None


def cmake_build(build_dir: Path, *options: str, target: str | None = None, timeout: float = 900) -> Path:
    """Configure and build ``runtime/cpp`` into ``build_dir`` (Ninja when present); RuntimeError with the
    end of CMake's output when a step fails."""
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    steps = [
        ["cmake", "-S", str(CPP_SOURCE), "-B", str(build_dir), *generator, f"-DOpenVINO_DIR={openvino_cmake_dir()}", *options],
        ["cmake", "--build", str(build_dir), "-j2", *(["--target", target] if target else [])],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(step[:2])} failed:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}")
    return build_dir


@dataclass
class Samples:
    """Per-run milliseconds of one runtime: the backend's inference, everything else, and the paste alone."""

    infer: list[float] = field(default_factory=list)
    rest: list[float] = field(default_factory=list)
    paste: list[float] = field(default_factory=list)
    detections: int = 0

    def summary(self) -> dict:
        """Medians, and the overhead over the backend's inference."""
        infer, rest = float(np.median(self.infer)), float(np.median(self.rest))
        return {
            "infer_ms": round(infer, 2),
            "rest_ms": round(rest, 2),
            "total_ms": round(infer + rest, 2),
            "paste_ms": round(float(np.median(self.paste)), 2),
            "overhead_vs_inference": round(rest / infer, 4),
            "detections": self.detections,
            "runs": len(self.infer),
        }


def time_python(segmenter: runtime.Segmenter, image: np.ndarray, repeat: int, samples: Samples) -> None:
    """The Python runtime: the graph (``infer``) and the paste, ``repeat`` runs after a warm-up run."""
    batch = image[None]
    for index in range(repeat + 1):
        start = time.perf_counter()
        raw = segmenter.infer(batch)
        inferred = time.perf_counter()
        samples.detections = len(runtime.paste_detections(raw, 0, *image.shape[:2]))
        done = time.perf_counter()
        if index:
            samples.infer.append((inferred - start) * 1000)
            samples.rest.append((done - inferred) * 1000)
            samples.paste.append((done - inferred) * 1000)


def time_cpp(example: Path, model: Path, image_path: Path, repeat: int, threads: int, scratch: Path, samples: Samples) -> None:
    """The C++ example on the image, ``repeat`` runs after a warm-up run, timed by its --timing-json."""
    timing = scratch / "cpp_timing.json"
    command = [
        str(example),
        "--model",
        str(model),
        "--out",
        str(scratch / "cpp_out"),
        "--backend",
        "openvino",
        "--precision",
        "fp32",
        "--threads",
        str(threads),
        "--batch-size",
        "1",
        "--score-threshold",
        "0",
        "--repeat",
        str(repeat + 1),
        "--timing-json",
        str(timing),
        str(image_path),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True)
    runs = json.loads(timing.read_text())["runs"][1:]  # run 0 warms the backend up
    samples.detections = len(json.loads((scratch / "cpp_out" / f"{image_path.stem}.json").read_text())["detections"])
    samples.infer += [r["infer_ms"] for r in runs]
    samples.rest += [r["total_ms"] - r["infer_ms"] for r in runs]
    samples.paste += [r["paste_ms"] for r in runs]


def markdown(report: dict) -> str:
    lines = [
        f"{report['config']}, {report['image_hw'][0]}x{report['image_hw'][1]}, OpenVINO f32, {report['where']}",
        "",
        "| runtime | detections | backend inference ms | paste and the rest ms | total ms | overhead over inference |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("cpp", "python"):
        r = report[name]
        lines.append(
            f"| {name} | {r['detections']} | {r['infer_ms']:.1f} | {r['rest_ms']:.1f} | {r['total_ms']:.1f} | "
            f"{100 * r['overhead_vs_inference']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def paste_markdown(report: dict) -> str:
    """The two final-image steps on the same detections: medians and the Python/C++ ratio."""
    cpp, python = report["cpp"]["paste_ms"], report["python"]["paste_ms"]
    return (
        f"Paste of {report['cpp']['detections']} detections at {report['image_hw'][0]}x{report['image_hw'][1]}: "
        f"C++ {cpp:.2f} ms, Python {python:.2f} ms ({python / cpp:.2f}x the C++ time).\n"
    )


@entry_point(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--config", default="yolact_base")
    parser.add_argument("--weights", type=Path, help="checkpoint (default: the authors' recipe weights)")
    parser.add_argument("--build-dir", type=Path, default=Path("build/cpp"), help="CMake build folder (built if needed)")
    parser.add_argument("--image-size", default="480x640")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per runtime and round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds taking turns between the runtimes (a slow spell of a shared machine falls on both)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    height, width = image_size(parser, args.image_size)
    if openvino_cmake_dir() is None:
        parser.error("openvino: not installed with its C++ SDK (pip install openvino)")
    started = datetime.datetime.now(datetime.timezone.utc)
    example = args.build_dir / EXAMPLE
    if not example.is_file():
        print(f"building {CPP_SOURCE} into {args.build_dir} ...")
        cmake_build(args.build_dir, "-DCMAKE_BUILD_TYPE=Release", target=EXAMPLE)
    with tempfile.TemporaryDirectory(prefix="yolact-cpp-bench-") as folder:
        scratch = Path(folder)
        model = scratch / f"{args.config}.onnx"
        export_onnx(load_or_recipe(args.config, args.weights, "cpu"), model)
        source = calibration_files(ensure_shapes_dataset().val_images, 1)[0]
        image = cv2.resize(cv2.imread(str(source)), (width, height), interpolation=cv2.INTER_LINEAR)
        image_path = scratch / "image.png"
        cv2.imwrite(str(image_path), image)
        segmenter = runtime.Segmenter(model, backend="openvino", precision="fp32", threads=args.threads, score_threshold=0.0)
        cpp_samples, python_samples = Samples(), Samples()
        for _ in range(args.rounds):
            time_cpp(example, model, image_path, args.repeat, args.threads, scratch, cpp_samples)
            time_python(segmenter, image, args.repeat, python_samples)
        cpp, python = cpp_samples.summary(), python_samples.summary()
    machine = {**machine_details(), "gpu": None, "threads": args.threads}
    report = {
        "config": args.config,
        "image_hw": [height, width],
        "backend": "openvino f32",
        "batch": 1,
        "weights": str(args.weights) if args.weights else "authors' recipe weights",
        "where": f"{cpu_description(machine)}, {args.threads} threads",
        "cpp": cpp,
        "python": python,
        "machine": machine,
    }
    stem = report_stem(args.out_dir, "cpp_runtime", machine_tag(machine), started, args.config)
    report["python_paste_vs_cpp"] = round(python["paste_ms"] / cpp["paste_ms"], 3)
    write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(stem.with_suffix(".md"), markdown(report) + "\n" + paste_markdown(report))
    print(markdown(report))
    print(paste_markdown(report))
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
