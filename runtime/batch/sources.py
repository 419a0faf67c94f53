"""What a batch job reads: the SOURCE arguments resolved, in the driver, into a table of work items.

A SOURCE is an image file, a folder of them (searched recursively, hidden files left out), a glob, a list
file (``.txt``/``.lst``: one image path or URI a line, relative ones from the list's folder), or a Parquet
(``.parquet``, ``.pq``) or Arrow IPC (``.arrow``, ``.feather``, ``.ipc``) table with the encoded images in a
column. Each may be a local path or a URI that pyarrow's filesystems read (``s3://``, ``gs://``,
``file://``; S3 endpoint and credentials from the usual AWS environment, e.g. ``AWS_ENDPOINT_URL``).

Every item has a key, its ``path`` in the results: a file's name as listed (the SOURCE as written, joined
with the file's path below it), or for a table row the value of its path column, else ``TABLE#ROW``. The
key is what makes a rerun skip finished work.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyarrow import ipc

from ..errors import ImageError

PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")
LIST_SUFFIXES = (".txt", ".lst")
# An item's place in its table: IMAGE_FILE for an image file of its own.
IMAGE_FILE = -1

# The work items: key, filesystem (an index into Sources.filesystems), the file on it, and for a table row
# its row group (Parquet) or record batch (Arrow) and its row there.
ITEM_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("filesystem", pa.int32()),
        ("file", pa.string()),
        ("chunk", pa.int32()),
        ("row", pa.int32()),
    ]
)


@dataclass
class Sources:
    """The items of a job and the filesystems they are read from (picklable: they travel to Ray tasks)."""

    items: pa.Table
    filesystems: list[pafs.FileSystem]


def is_uri(text: str) -> bool:
    return "://" in text


def has_magic(text: str) -> bool:
    return glob.has_magic(text)


def filesystem_of(location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path on it) for a local path or a URI; ImageError naming it when pyarrow cannot open it."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), os.path.abspath(location)
    try:
        return pafs.FileSystem.from_uri(location)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise ImageError(f"{location}: {str(error).splitlines()[0]}") from None


def joined(base: str, relative: str = "") -> str:
    """``relative`` below ``base``; a local path written as pathlib writes it (``./a/`` and ``b`` give
    ``a/b``), as ``python -m runtime`` names its inputs."""
    if is_uri(base):
        return f"{base.rstrip('/')}/{relative}" if relative else base
    return str(PurePath(base, relative))


def table_kind(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(ARROW_SUFFIXES):
        return "arrow"
    return None


class SourceReader:
    """Resolves SOURCE arguments into items, one filesystem per argument."""

    def __init__(self, image_column: str, path_column: str | None, skip_folder: str | None = None):
        self.image_column = image_column
        self.path_column = path_column
        self.skip_folder = skip_folder  # the output folder, when it lies inside a source folder
        self.filesystems: list[pafs.FileSystem] = []
        self.columns: dict[str, list] = {name: [] for name in ITEM_SCHEMA.names}

    def read(self, sources: list[str]) -> Sources:
        for source in sources:
            self.add_source(source)
        return Sources(pa.table(self.columns, schema=ITEM_SCHEMA), self.filesystems)

    def add(self, key: str, filesystem: int, file: str, chunk: int = IMAGE_FILE, row: int = IMAGE_FILE) -> None:
        for name, value in zip(ITEM_SCHEMA.names, (key, filesystem, file, chunk, row)):
            self.columns[name].append(value)

    def add_source(self, source: str) -> None:
        base = glob_base(source) if has_magic(source) else source
        filesystem, path = filesystem_of(base)
        self.filesystems.append(filesystem)
        index = len(self.filesystems) - 1
        if has_magic(source):
            pattern = source[len(base) :].lstrip("/")
            for relative, file in listed_files(filesystem, path, self.skip_folder):
                if fnmatch.fnmatchcase(relative, pattern):
                    self.add_file(joined(base, relative), index, file)
            return
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            for relative, file in listed_files(filesystem, path, self.skip_folder):
                self.add_file(joined(source, relative), index, file)
        elif info.type == pafs.FileType.File:
            if path.lower().endswith(LIST_SUFFIXES):
                self.add_list(source, index, path)
            else:
                self.add_file(joined(source), index, path)
        else:
            raise ImageError(f"{source}: no such file or folder")

    def add_file(self, key: str, filesystem: int, file: str) -> None:
        kind = table_kind(file)
        if kind is None:
            self.add(key, filesystem, file)
        else:
            self.add_table(key, filesystem, file, kind)

    def add_list(self, source: str, filesystem: int, path: str) -> None:
        """One image a line; a relative line is taken from the list's folder. A listed file that is missing
        becomes an error row, not a failure of the job."""
        with self.filesystems[filesystem].open_input_stream(path) as stream:
            lines = [line.strip() for line in stream.read().decode("utf-8", errors="replace").splitlines()]
        folder = os.path.dirname(source)
        for line in lines:
            if not line or line.startswith("#"):
                continue
            if is_uri(line) or os.path.isabs(line):
                listed_filesystem, listed_path = filesystem_of(line)
                self.filesystems.append(listed_filesystem)
                self.add(line, len(self.filesystems) - 1, listed_path)
            else:
                self.add(joined(folder, line), filesystem, joined(os.path.dirname(path), line))

    def add_table(self, key: str, filesystem: int, file: str, kind: str) -> None:
        """One item per row, from the table's row group (Parquet) or record batch (Arrow) sizes."""
        with self.filesystems[filesystem].open_input_file(file) as handle:
            chunks = list(table_chunks(handle, kind, self.path_column))
            schema = table_schema(handle, kind)
        if self.image_column not in schema.names:
            raise ImageError(f"{key}: no column {self.image_column!r} (--image-column); columns: {', '.join(schema.names)}")
        row_number = 0
        for chunk, (size, names) in enumerate(chunks):
            for row in range(size):
                name = names[row] if names is not None and names[row] is not None else f"{key}#{row_number}"
                self.add(str(name), filesystem, file, chunk, row)
                row_number += 1


def glob_base(source: str) -> str:
    """The part of a glob before its first wildcard segment (``s3://b/imgs/*/a*.png`` -> ``s3://b/imgs``)."""
    parts = source.split("/")
    first_magic = next(i for i, part in enumerate(parts) if has_magic(part))
    return "/".join(parts[:first_magic]) or "."


def listed_files(filesystem: pafs.FileSystem, folder: str, skip_folder: str | None) -> Iterator[tuple[str, str]]:
    """(path below ``folder``, path on the filesystem) of each file in it, recursively, sorted; hidden ones
    and those below ``skip_folder`` left out."""
    infos = filesystem.get_file_info(pafs.FileSelector(folder, recursive=True))
    for info in sorted((info for info in infos if info.type == pafs.FileType.File), key=lambda info: info.path):
        relative = info.path[len(folder.rstrip("/")) + 1 :]
        hidden = any(part.startswith(".") for part in relative.split("/"))
        if not hidden and not (skip_folder and info.path.startswith(skip_folder.rstrip("/") + "/")):
            yield relative, info.path


def table_schema(handle: pa.NativeFile, kind: str) -> pa.Schema:
    return pq.ParquetFile(handle).schema_arrow if kind == "parquet" else ipc.open_file(handle).schema


def table_chunks(handle: pa.NativeFile, kind: str, path_column: str | None) -> Iterator[tuple[int, list | None]]:
    """(rows, their path-column values or None) per row group or record batch."""
    if kind == "parquet":
        table = pq.ParquetFile(handle)
        wanted = path_column if path_column in table.schema_arrow.names else None
        for group in range(table.num_row_groups):
            names = table.read_row_group(group, columns=[wanted]).column(0).to_pylist() if wanted else None
            yield table.metadata.row_group(group).num_rows, names
    else:
        reader = ipc.open_file(handle)
        wanted = path_column if path_column in reader.schema.names else None
        for index in range(reader.num_record_batches):
            batch = reader.get_batch(index)
            yield batch.num_rows, batch.column(wanted).to_pylist() if wanted else None


def read_table_chunk(filesystem: pafs.FileSystem, file: str, chunk: int, column: str) -> pa.Array:
    """The image column of one row group (Parquet) or record batch (Arrow); a column of structs with a
    ``bytes`` field (Hugging Face's image feature) gives that field."""
    with filesystem.open_input_file(file) as handle:
        if table_kind(file) == "parquet":
            values = pq.ParquetFile(handle).read_row_group(chunk, columns=[column]).column(0).combine_chunks()
        else:
            values = ipc.open_file(handle).get_batch(chunk).column(column)
    if pa.types.is_struct(values.type) and values.type.get_field_index("bytes") >= 0:
        return values.field("bytes")
    return values
