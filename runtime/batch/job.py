"""The Ray Data pipeline of a batch job and the driver loop that commits its results.

pending items -> decode (Ray tasks) -> segment (an actor pool of Segmenters) -> the driver, which commits
parts of whole rows to the output folder. Exactly once: a path is written by one committed part only (the
done paths are skipped before the job starts, and a path Ray hands back twice after a retry is dropped);
a fault between commits loses nothing but uncommitted work, which the next run redoes.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import ActorPoolStrategy, DataContext
from tqdm import tqdm

from ..segmenter import DEFAULT_BATCH_SIZE
from .results import ResultsFolder
from .sources import Sources
from .workers import Limits, SegmenterWorker, decode_items, model_files

DECODE_CPUS = 0.5  # decoding is light next to inference; a fraction lets it share a core with an actor


@dataclass
class WorkerPool:
    """The actor pool: a fixed size, or an autoscaling range; resources per actor."""

    min_size: int
    max_size: int
    cpus: float = 1.0
    gpus: float = 0.0

    def compute(self) -> ActorPoolStrategy:
        if self.min_size == self.max_size:
            return ActorPoolStrategy(size=self.min_size)
        return ActorPoolStrategy(min_size=self.min_size, max_size=self.max_size)


@dataclass
class JobSettings:
    """What the job runs (the model, Segmenter's options), where (the pool), what it accepts (limits), and
    how often it commits (every part_rows rows, or commit_interval_s)."""

    model: str
    segmenter_options: dict[str, Any]
    pool: WorkerPool
    limits: Limits
    image_column: str = "image"
    # Items per Ray block: one decode task and one actor call each. Ray Data hands a task's output back
    # when the task ends, so this is also the grain of progress and of commits: one Segmenter batch.
    rows_per_block: int = DEFAULT_BATCH_SIZE
    part_rows: int = 256
    commit_interval_s: float = 60.0


@dataclass
class JobSummary:
    """What a run did: rows committed (errors among them), the parts, and its time."""

    processed: int = 0
    errors: int = 0
    parts: list[str] = field(default_factory=list)
    # From the call to ray.init to the last commit: Ray's start-up is part of what a user waits for.
    seconds: float = 0.0
    # How long ray.init took (starting an embedded Ray, or connecting to a cluster).
    ray_start_s: float = 0.0
    # When the first rows came back, and how many: before them, Ray starts, plans the job, starts the
    # actors' processes, and the actors load the model.
    first_rows_s: float = 0.0
    first_rows: int = 0

    @property
    def steady_images_per_s(self) -> float | None:
        """The rate after the first rows came back: what a long job runs at. None for a job whose rows all
        came back at once."""
        if self.processed == self.first_rows:
            return None
        return (self.processed - self.first_rows) / max(self.seconds - self.first_rows_s, 1e-9)

    def line(self) -> str:
        """What ``python -m runtime.batch`` prints of the run (benchmarks.batch reads its rates from it)."""
        steady = self.steady_images_per_s
        return (
            f"{self.processed} images in {self.seconds:.1f} s, Ray's start-up ({self.ray_start_s:.1f} s) included "
            f"({self.processed / self.seconds:.2f} images/s; "
            + ("every row in the first ones" if steady is None else f"{steady:.2f} images/s after the first rows")
            + f", at {self.first_rows_s:.1f} s), {self.errors} with an error; {len(self.parts)} part{'s' * (len(self.parts) != 1)} committed"
        )


def pending_items(sources: Sources, done: set[str]) -> pa.Table:
    """The items not done yet, each path once (the first item of a repeated path)."""
    items = sources.items
    if done:
        items = items.filter(pc.invert(pc.is_in(items["path"], value_set=pa.array(sorted(done), pa.string()))))
    keys = items["path"].to_pylist()
    if len(set(keys)) == len(keys):
        return items
    first_of_path = {key: index for index, key in reversed(list(enumerate(keys)))}
    return items.take(sorted(first_of_path.values()))


def start_ray(address: str | None, pool: WorkerPool) -> None:
    """Connect to the cluster at ``address`` (``auto``, ``host:port`` or ``ray://host:10001``), or start an
    embedded Ray on this machine. Quiet: the job shows its own progress bar."""
    if address is not None:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        # An embedded Ray lives for this job only: its usage reports would only take CPU from it (the
        # dashboard's process runs the reporting module alone when the dashboard is off).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # An embedded Ray counts at least the CPUs that the pool reserves plus one decode task: with as many
        # actors as cores, the decode tasks would otherwise never be scheduled and the job would wait forever.
        cpus = max(os.cpu_count() or 1, math.ceil(pool.max_size * pool.cpus + DECODE_CPUS))
        # "local" starts a Ray of our own even where another one runs on this machine (ray.init() would join it).
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def results_dataset(items: pa.Table, sources: Sources, settings: JobSettings, embedded: bool) -> ray.data.Dataset:
    size = settings.rows_per_block
    blocks = [items.slice(start, size) for start in range(0, len(items), size)]
    # from_blocks reads each block's metadata here; from_arrow would run a Ray task per block for it, which
    # held the job's start back by about 1.5 s for 25 blocks on 2 cores.
    decoded = ray.data.from_blocks(blocks).map_batches(
        decode_items,
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=DECODE_CPUS,
        fn_kwargs={"filesystems": sources.filesystems, "image_column": settings.image_column, "limits": settings.limits},
    )
    pool = settings.pool
    return decoded.map_batches(
        SegmenterWorker,
        batch_format="pyarrow",
        batch_size=size,
        compute=pool.compute(),
        num_cpus=pool.cpus,
        num_gpus=pool.gpus or None,
        # On a cluster, the model's bytes go through the object store once, held by the driver for the whole
        # job (a reference inside a dict is not resolved by Ray), so that a restarted actor can fetch them
        # again. An embedded Ray's actors run on this machine: they open the model where it is.
        fn_constructor_kwargs={
            "model": local_model(settings.model) if embedded else settings.model,
            "files": {"ref": None if embedded else ray.put(model_files(settings.model))},
            "options": settings.segmenter_options,
        },
        # Ray Data's actor pools restart a dead actor (killed, out of memory) and retry its batch without
        # limit (max_restarts=-1, max_task_retries=-1 by default): exactly-once relies on it.
    )


def local_model(model: str) -> str:
    """The model as an actor on this machine opens it: a file by its absolute path (an actor's working
    folder is not the driver's), a served model's URL as it is."""
    return model if "://" in model else os.path.abspath(model)


def run_job(items: pa.Table, sources: Sources, results: ResultsFolder, settings: JobSettings, address: str | None) -> JobSummary:
    """Segment ``items`` on Ray and commit the rows to ``results`` in parts of ``part_rows`` (or whatever
    came in ``commit_interval_s``)."""
    summary = JobSummary()
    start = time.perf_counter()
    start_ray(address, settings.pool)
    summary.ray_start_s = time.perf_counter() - start
    written: set[str] = set()
    waiting: list[pa.Table] = []
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal waiting, last_commit
        if waiting:
            summary.parts.append(results.commit(pa.concat_tables(waiting)))
            waiting, last_commit = [], time.monotonic()

    dataset = results_dataset(items, sources, settings, embedded=address is None)
    with tqdm(total=len(items), unit="img", desc="segmenting", smoothing=0.1) as bar:
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            fresh = [key not in written for key in table["path"].to_pylist()]
            table = table.filter(pa.array(fresh)) if not all(fresh) else table
            written.update(table["path"].to_pylist())
            waiting.append(table)
            if not summary.processed:
                summary.first_rows_s, summary.first_rows = time.perf_counter() - start, len(table)
            summary.processed += len(table)
            summary.errors += len(table) - table["error"].null_count
            bar.update(len(table))
            if sum(map(len, waiting)) >= settings.part_rows or time.monotonic() - last_commit >= settings.commit_interval_s:
                commit()
        commit()
    summary.seconds = time.perf_counter() - start
    return summary


def parse_workers(text: str) -> tuple[int, int]:
    """``N`` or ``MIN-MAX`` (an autoscaling pool) -> (min, max); ValueError when malformed."""
    low, _, high = text.partition("-")
    sizes = (int(low), int(high or low))
    if not 1 <= sizes[0] <= sizes[1]:
        raise ValueError(text)
    return sizes
