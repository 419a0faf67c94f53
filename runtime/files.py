"""Outputs written atomically: a reader never sees a half-written file, a failure leaves none behind."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def replaced_on_success(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` for the block to write; renamed onto ``target`` when the block
    succeeds, removed when it fails. The temporary name keeps the suffix, because OpenCV's writers choose
    the format from it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:12]}.tmp{target.suffix}")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(target: Path, data: bytes) -> None:
    with replaced_on_success(target) as temporary:
        temporary.write_bytes(data)
