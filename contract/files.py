"""Outputs written atomically, for every floor of the toolkit: a reader never sees a half-written file, and a
failure leaves none behind (the previous file, if any, stays)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def replaced_on_success(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``target`` for the block to write; renamed onto ``target`` when the block
    succeeds, removed when it fails.

    The temporary file is created before the block runs, so an unwritable folder fails at once with an
    ``OSError`` whose filename is ``target``; it gets the mode an ordinary ``open()`` gives. Its name keeps
    the suffix, because writers such as OpenCV's choose the format from it.
    """
    target = Path(target)
    temporary = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:12]}.tmp{target.suffix}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.touch(exist_ok=False)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with replaced_on_success(target) as temporary:
        temporary.write_bytes(data)


def write_text(target: str | os.PathLike, text: str) -> None:
    with replaced_on_success(target) as temporary:
        temporary.write_text(text)
