"""Atomic writes: all or nothing, with the file mode an ordinary write would give."""

from __future__ import annotations

import os

import pytest

from yolact.fileio import ImageReadError, read_bgr_image
from contract.files import replaced_on_success, write_text


def test_atomic_write_replaces_whole_file_with_ordinary_mode(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_text(target, "old")
    old_umask = os.umask(0o022)
    try:
        write_text(target, "new")
    finally:
        os.umask(old_umask)
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with replaced_on_success(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_read_bgr_image_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png: no such file"):
        read_bgr_image(tmp_path / "missing.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg: not a readable image"):
        read_bgr_image(broken)


def test_unwritable_folder_fails_before_the_write_naming_the_target(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    written = []
    with pytest.raises(OSError) as error:
        with replaced_on_success(blocker / "out.json") as tmp:
            written.append(tmp)
    assert error.value.filename == str(blocker / "out.json") and not written
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]
