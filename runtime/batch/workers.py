"""What runs inside Ray: decoding (stateless tasks) and segmenting (a pool of actors, one Segmenter each).

Between the two, an image travels as its raw BGR pixels (``pixels`` bytes, ``height``, ``width``), so that
images of any size share one Arrow column.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import ray

from ..errors import ImageError
from ..images import decode_image
from ..segmenter import Segmenter
from .results import detections_row, error_row, results_table
from .sources import IMAGE_FILE, read_table_chunk

DECODED_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("pixels", pa.large_binary()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("error", pa.string()),
    ]
)


class Limits:
    """The largest input accepted: encoded bytes, and decoded pixels (a small file can decode huge)."""

    def __init__(self, max_bytes: int, max_pixels: int):
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    def check_bytes(self, key: str, size: int) -> None:
        if size > self.max_bytes:
            raise ImageError(f"{key}: {size} bytes, over the limit of {self.max_bytes} (--max-image-mb)")

    def check_pixels(self, key: str, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        if height * width > self.max_pixels:
            raise ImageError(f"{key}: {width}x{height} pixels, over the limit of {self.max_pixels} (--max-megapixels)")


def read_file(filesystem: pafs.FileSystem, file: str, key: str, limits: Limits) -> bytes:
    try:
        with filesystem.open_input_file(file) as handle:
            limits.check_bytes(key, handle.size())
            return handle.read()
    except FileNotFoundError:
        raise ImageError(f"{key}: no such file") from None
    except OSError as error:
        raise ImageError(f"{key}: {str(error).splitlines()[0]}") from None


def decode_items(items: pa.Table, filesystems: list[pafs.FileSystem], image_column: str, limits: Limits) -> pa.Table:
    """Work items (sources.ITEM_SCHEMA) -> decoded images (DECODED_SCHEMA); an item that cannot be read,
    is too large or does not decode gets its one-line error instead. A table's chunk is read once per
    batch."""
    chunks: dict[tuple[int, str, int], pa.Array] = {}
    rows = []
    for item in items.to_pylist():
        key = item["path"]
        try:
            filesystem = filesystems[item["filesystem"]]
            if item["chunk"] == IMAGE_FILE:
                data = read_file(filesystem, item["file"], key, limits)
            else:
                where = (item["filesystem"], item["file"], item["chunk"])
                if where not in chunks:
                    chunks[where] = read_table_chunk(filesystem, item["file"], item["chunk"], image_column)
                data = chunks[where][item["row"]].as_py() or b""
                limits.check_bytes(key, len(data))
            image = decode_image(data, key)
            limits.check_pixels(key, image)
        except ImageError as error:
            rows.append({"path": key, "pixels": b"", "height": None, "width": None, "error": str(error)})
            continue
        rows.append({"path": key, "pixels": image.tobytes(), "height": image.shape[0], "width": image.shape[1], "error": None})
    return pa.Table.from_pylist(rows, schema=DECODED_SCHEMA)


def model_files(model: str) -> dict[str, bytes] | None:
    """A model file and the files it needs beside it (an OpenVINO IR's ``.bin``, an engine's
    ``.engine.json``) as bytes, to be sent to every actor through Ray's object store, so that the model
    need not be on every node's disk. None for a served model (``grpc://``, ``http://``)."""
    if "://" in model:
        return None
    path = Path(model)
    companions = [path.with_suffix(".bin"), path.with_name(path.name + ".json")]
    return {file.name: file.read_bytes() for file in [path, *companions] if file.is_file()}


class SegmenterWorker:
    """One actor of the pool: a Segmenter on the model, opened where it is or from the bytes the driver sent."""

    def __init__(self, model: str, files: dict[str, ray.ObjectRef | None], options: dict[str, Any]):
        """files: {"ref": a reference to model_files(model), or None to open ``model`` itself}."""
        sent = None if files["ref"] is None else ray.get(files["ref"])
        if sent is None:
            self.segmenter = Segmenter(model, **options)
            return
        # The copy is needed only while the backend reads it (a file still mapped stays readable once unlinked).
        with tempfile.TemporaryDirectory(prefix="yolact-batch-model-", ignore_cleanup_errors=True) as folder:
            for name, data in sent.items():
                (Path(folder) / name).write_bytes(data)
            self.segmenter = Segmenter(str(Path(folder) / Path(model).name), **options)

    def __call__(self, decoded: pa.Table) -> pa.Table:
        """Decoded images (DECODED_SCHEMA) -> result rows (results.RESULT_SCHEMA), in input order."""
        records = decoded.to_pylist()
        rows: list[dict[str, Any] | None] = [None] * len(records)
        images = []
        for index, record in enumerate(records):
            if record["error"] is not None:
                rows[index] = error_row(record["path"], record["error"])
            else:
                shape = (record["height"], record["width"], 3)
                images.append((index, np.frombuffer(record["pixels"], dtype=np.uint8).reshape(shape)))
        for index, _, detections in self.segmenter.stream(images):
            rows[index] = detections_row(records[index]["path"], detections)
        return results_table(rows)
