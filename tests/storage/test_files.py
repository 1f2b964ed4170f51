"""storage._files.write_file_atomically: temp names never reuse a planted file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import _files
from storage._files import TMP_PREFIX, write_file_atomically
from tests.fixtures.syncs import record_syncs


def test_a_planted_temp_name_is_skipped_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    folder = tmp_path / "v"
    folder.mkdir()
    # The next two names this process would use: a symlink to a file outside and a
    # leftover file of a crashed writer.
    nxt = next(_files._tmp_counter) + 1
    os.symlink(outside, folder / f"{TMP_PREFIX}{os.getpid()}-{nxt}")
    (folder / f"{TMP_PREFIX}{os.getpid()}-{nxt + 1}").write_bytes(b"old")
    assert write_file_atomically(folder / "obj", [b"ab", bytearray(b"cd"), memoryview(b"ef")]) == 6
    assert (folder / "obj").read_bytes() == b"abcdef"
    assert outside.read_bytes() == b"keep"
    assert (folder / "obj").stat().st_mode & 0o777 == 0o600
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        ["obj", f"{TMP_PREFIX}{os.getpid()}-{nxt}", f"{TMP_PREFIX}{os.getpid()}-{nxt + 1}"]
    )


def test_a_failing_piece_leaves_no_temp_file(tmp_path: Path) -> None:
    def pieces() -> Iterator[bytes]:
        yield b"abc"
        raise RuntimeError("source gone")

    folder = tmp_path / "v"
    with pytest.raises(RuntimeError, match="source gone"):
        write_file_atomically(folder / "obj", pieces())
    assert list(folder.iterdir()) == []


def test_a_synced_write_into_new_folders_syncs_each_changed_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    synced = record_syncs(monkeypatch, ("fsync",))
    write_file_atomically(tmp_path / "a" / "b" / "c" / "f", b"x")
    # the file, its folder, then each folder that gained an entry: c in b, b in a
    assert synced[1:] == [str(tmp_path / "a" / "b" / "c"), str(tmp_path / "a" / "b"),
                          str(tmp_path / "a")]  # fmt: skip
    assert (tmp_path / "a" / "b" / "c" / "f").read_bytes() == b"x"
    synced.clear()
    write_file_atomically(tmp_path / "a" / "b" / "c" / "g", b"y", sync=False)
    assert synced == []


def test_an_unsynced_write_reports_the_parents_its_new_folders_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With sync=False the caller makes the write durable later: it learns which folders
    gained an entry, also when a folder it knew was gone and was created again here."""
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    grown: list[Path] = []
    write_file_atomically(tmp_path / "a" / "b" / "f", b"x", sync=False, grown=grown)
    assert grown == [tmp_path, tmp_path / "a"] and synced == []  # outermost first
    grown.clear()
    write_file_atomically(tmp_path / "a" / "b" / "g", b"y", sync=False, grown=grown)
    assert grown == []  # nothing created
    (tmp_path / "a" / "b" / "f").unlink()
    (tmp_path / "a" / "b" / "g").unlink()
    (tmp_path / "a" / "b").rmdir()  # removed behind the caller's back
    write_file_atomically(
        tmp_path / "a" / "b" / "h", b"z", sync=False, make_dirs=False, grown=grown
    )
    assert grown == [tmp_path / "a"] and (tmp_path / "a" / "b" / "h").read_bytes() == b"z"
    assert synced == []
