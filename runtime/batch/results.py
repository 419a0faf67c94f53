"""The results of a batch job: their Parquet schema, and the output folder of committed parts.

Output folder: ``part-<time>-<id>.parquet`` files, each holding whole rows of the schema below. A part is
committed atomically: on a local disk it is written under a hidden temporary name and renamed; on an
object store (``s3://``, ``gs://``) it is uploaded under its final name, which an object store shows only
once the upload is complete. The paths done are the ``path`` column of the committed parts, so a job that
was stopped, whatever the moment, resumes by skipping them; hidden leftovers of an interrupted write are
removed at the next start.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..detections import Detections
from contract.files import write_bytes
from .sources import filesystem_of, is_uri

# One row per input image. Lists are per detection (N of them, best score first); masks are COCO RLE
# (pycocotools' compressed counts as ASCII text, size [height, width]). A row whose image could not be
# read or decoded has ``error`` set (one line naming the path) and empty lists; height and width are null
# when the image was not decoded.
RESULT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("class_ids", pa.list_(pa.int64())),
        ("class_names", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float32())),
        ("mask_scores", pa.list_(pa.float32())),
        ("boxes", pa.list_(pa.list_(pa.int64(), 4))),  # pixel x1, y1, x2, y2
        ("masks", pa.list_(pa.struct([("size", pa.list_(pa.int32(), 2)), ("counts", pa.string())]))),
        ("error", pa.string()),
    ]
)
PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
TEMPORARY_PREFIX = ".part-"


def detections_row(path: str, detections: Detections) -> dict[str, Any]:
    """One results row: the detections' arrays as lists, the masks as COCO RLE."""
    return {
        "path": path,
        "height": detections.height,
        "width": detections.width,
        "class_ids": detections.class_ids.tolist(),
        "class_names": list(detections.class_names),
        "scores": detections.scores.tolist(),
        "mask_scores": detections.mask_scores.tolist(),
        "boxes": detections.boxes.tolist(),
        "masks": [{"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in detections.rle()],
        "error": None,
    }


def error_row(path: str, error: str, height: int | None = None, width: int | None = None) -> dict[str, Any]:
    return {
        "path": path,
        "height": height,
        "width": width,
        "class_ids": [],
        "class_names": [],
        "scores": [],
        "mask_scores": [],
        "boxes": [],
        "masks": [],
        "error": error,
    }


def results_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


class ResultsFolder:
    """The output folder (a local path or a URI) and its committed parts."""

    def __init__(self, location: str):
        self.location = location
        self.filesystem, self.path = filesystem_of(location)
        # Only a local disk renames atomically; an object store makes an upload visible when it completes.
        self.renames = isinstance(self.filesystem, pafs.LocalFileSystem)

    def files(self) -> list[pafs.FileInfo]:
        if self.filesystem.get_file_info(self.path).type != pafs.FileType.Directory:
            return []
        return self.filesystem.get_file_info(pafs.FileSelector(self.path, recursive=False))

    def parts(self) -> list[str]:
        return sorted(info.path for info in self.files() if info.base_name.startswith(PART_PREFIX) and info.base_name.endswith(PART_SUFFIX))

    def prepare(self, overwrite: bool) -> None:
        """Create the folder; remove leftovers of interrupted writes, and with ``overwrite`` every part."""
        self.filesystem.create_dir(self.path, recursive=True)
        for info in self.files():
            committed = info.base_name.startswith(PART_PREFIX) and info.base_name.endswith(PART_SUFFIX)
            if info.base_name.startswith(TEMPORARY_PREFIX) or (overwrite and committed):
                self.filesystem.delete_file(info.path)

    def done(self) -> set[str]:
        """The paths in the committed parts."""
        paths: set[str] = set()
        for part in self.parts():
            paths.update(pq.read_table(part, columns=["path"], filesystem=self.filesystem).column(0).to_pylist())
        return paths

    def commit(self, table: pa.Table) -> str:
        """Write ``table`` as a new part, atomically; its path."""
        name = f"{PART_PREFIX}{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}{PART_SUFFIX}"
        final = str(PurePosixPath(self.path) / name)
        if not self.renames:
            pq.write_table(table, final, filesystem=self.filesystem)
            return final
        temporary = str(PurePosixPath(self.path) / f".{name}.tmp")
        try:
            pq.write_table(table, temporary, filesystem=self.filesystem)
            self.filesystem.move(temporary, final)
        finally:
            if self.filesystem.get_file_info(temporary).type != pafs.FileType.NotFound:
                self.filesystem.delete_file(temporary)
        return final

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Every committed row."""
        parts = self.parts()
        if not parts:
            return RESULT_SCHEMA.empty_table() if columns is None else RESULT_SCHEMA.empty_table().select(columns)
        return pa.concat_tables(pq.read_table(part, columns=columns, filesystem=self.filesystem) for part in parts)


def coco_image_id(path: str) -> int | str:
    """A file's stem as an int when it is all digits (as COCO's file names are), else the path."""
    stem = PurePosixPath(path.split("#")[0]).stem
    return int(stem) if stem.isdigit() and "#" not in path else path


def coco_results(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """COCO results entries of every detection: the RLE mask scored by its mask score, with its box
    ([x, y, w, h] pixels), category id = class id + 1."""
    entries = []
    for row in rows:
        image_id = coco_image_id(row["path"])
        for class_id, score, box, mask in zip(row["class_ids"], row["mask_scores"], row["boxes"], row["masks"]):
            x1, y1, x2, y2 = box
            entries.append(
                {
                    "image_id": image_id,
                    "category_id": class_id + 1,
                    "segmentation": {"size": mask["size"], "counts": mask["counts"]},
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return entries


def write_coco_json(location: str, results: ResultsFolder) -> int:
    """The COCO results of every committed row to ``location`` (a local path or URI), atomically; how many."""
    table = results.read(["path", "class_ids", "mask_scores", "boxes", "masks"])
    entries = coco_results(table.to_pylist())
    data = json.dumps(entries).encode()
    if is_uri(location):
        filesystem, path = filesystem_of(location)
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)
    else:
        write_bytes(Path(location), data)
    return len(entries)
