"""Runs an exported model over a dataset on Ray Data: images decoded in Ray tasks, segmented by a pool of
Segmenter actors, results committed to Parquet parts in DIR (local or a URI such as s3://bucket/out).
With no --address it starts an embedded Ray on this machine; --address auto (or HOST:PORT, or
ray://HOST:10001) uses a running cluster. A rerun over the same sources and DIR skips the paths done;
--overwrite starts again. An image that cannot be read gets a row with its error; the job goes on.

``python -m runtime.batch SOURCE... --model M --out DIR``. Exit status: 0 when every image has its row
(error rows included), 1 when the job failed while working (rerun to resume), 2 for a bad model, option or
source.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ray.exceptions import RayError

from command_line import UsageError, WorkFailed, entry_parser, entry_point, positive_float, positive_int

from ..errors import ImageError, SegmenterError, one_line
from ..options import add_backend_options
from ..segmenter import DEFAULT_BATCH_SIZE, Segmenter
from .job import JobSettings, WorkerPool, parse_workers, pending_items, run_job
from .results import ResultsFolder, write_coco_json
from .sources import SourceReader, filesystem_of, is_uri
from .workers import Limits

PROG = "python -m runtime.batch"


def workers_option(text: str) -> tuple[int, int]:
    try:
        return parse_workers(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX (1 <= MIN <= MAX), not {text!r}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="image files, folders, globs, list files (.txt, .lst), Parquet or Arrow tables; local paths or URIs (s3://, gs://, file://)",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="exported .onnx, OpenVINO .xml (with its .bin), TensorRT .engine, "
        "or a served model (grpc://HOST:8001/NAME); sent to every worker by the driver",
    )
    parser.add_argument("--out", required=True, help="results folder (local or URI): Parquet parts")
    parser.add_argument("--coco-json", metavar="FILE", help="also write every result in COCO results format (masks as RLE)")
    parser.add_argument("--overwrite", action="store_true", help="drop the results already in --out and start again")
    parser.add_argument("--address", help="a running Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: an embedded Ray)")
    parser.add_argument(
        "--workers",
        type=workers_option,
        default=(1, 1),
        metavar="N|MIN-MAX",
        help="Segmenter actors: a fixed number, or an autoscaling range (default 1)",
    )
    parser.add_argument("--image-column", default="image", help="Parquet/Arrow column of encoded images (default image)")
    parser.add_argument(
        "--path-column", default="path", help="Parquet/Arrow column naming each row (default path; without it a row is TABLE#ROW)"
    )
    parser.add_argument("--max-image-mb", type=positive_float, default=64.0, help="larger files are error rows (default 64)")
    parser.add_argument("--max-megapixels", type=positive_float, default=64.0, help="larger images are error rows (default 64)")
    parser.add_argument("--part-rows", type=positive_int, default=256, help="rows per committed Parquet part (default 256)")
    add_backend_options(
        parser,
        device_help="cpu, cuda[:N], gpu[.N] (OpenVINO); cuda gives each actor a GPU",
        threads_help="intra-op threads per actor (default: the backend's, all cores); with several actors on a node, its cores / actors",
    )
    parser.add_argument("--batch-size", type=positive_int, help="images per run in an actor (default 8)")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="keep detections scoring above (default 0.3)")
    parser.add_argument("--cpus-per-worker", type=positive_float, default=1.0, help="CPUs each actor reserves in Ray (default 1)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> JobSettings:
    options = {
        "backend": args.backend,
        "device": args.device,
        "precision": args.precision,
        "score_threshold": args.score_threshold,
        "threads": args.threads,
        "batch_size": args.batch_size,
    }
    on_gpu = (args.device or "").startswith("cuda")
    pool = WorkerPool(*args.workers, cpus=args.cpus_per_worker, gpus=1.0 if on_gpu else 0.0)
    limits = Limits(int(args.max_image_mb * 2**20), int(args.max_megapixels * 1e6))
    return JobSettings(args.model, options, pool, limits, args.image_column, args.batch_size or DEFAULT_BATCH_SIZE, args.part_rows)


def check_model(settings: JobSettings, address: str | None) -> None:
    """Open the model here, before any work starts, so that a model that fails to load is one line. On a
    cluster with --device cuda the driver may have no GPU: the check then opens it on the default device."""
    options = dict(settings.segmenter_options)
    if address is not None and settings.pool.gpus:
        options["device"] = None
    Segmenter(settings.model, **options).close()


def output_location(text: str) -> str | None:
    """The local output folder, to leave out of source folders; None for a URI."""
    return None if is_uri(text) else filesystem_of(text)[1]


@entry_point(PROG, bad_input=(SegmenterError,))
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    check_model(settings, args.address)
    sources = SourceReader(args.image_column, args.path_column, output_location(args.out)).read(args.sources)
    results = ResultsFolder(args.out)
    try:
        results.prepare(args.overwrite)
        items = pending_items(sources, results.done())
    except OSError as error:
        raise UsageError(f"--out {args.out}: {one_line(error)}") from None
    total = len(set(sources.items["path"].to_pylist()))
    try:
        if len(items):
            summary = run_job(items, sources, results, settings, args.address)
            print(summary.line())
        print(f"{total} images, {total - len(items)} of them done before; results in {args.out}")
        if args.coco_json:
            count = write_coco_json(args.coco_json, results)
            print(f"{count} COCO results in {args.coco_json}")
    except (ImageError, OSError, RayError) as error:
        # What was committed stays, and a rerun resumes from it. A task's error carries the exception raised
        # in the task (its own first line names only the task).
        raise WorkFailed(f"{one_line(getattr(error, 'cause', None) or error)} (committed parts are kept: rerun to resume)") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
