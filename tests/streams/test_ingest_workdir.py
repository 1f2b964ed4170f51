"""Ingest's working copies of compressed audio (plaintext, PCI digits included) live in
a private folder under the data dir, ``<data_dir>/work/ingest`` (0700), never the
system temp folder; the worker removes what a kill left there before it consumes; a
full disk while writing a copy (or ffmpeg's output) is infrastructure (retried), not a
dead letter. Real ffmpeg, a real file vault."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callvault.demo import demo_event
from callvault.errors import CallvaultError, is_unavailable
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from storage.audio import DecodeLimit, Layout, SilencePlan
from storage.audio_store import STORAGE_CODECS, transcode_file
from storage.errors import BackendUnavailable
from streams.ingest import IngestPipeline, clear_work_folder, work_folder


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(tmp_path / "data")}))
    yield built
    built.close()


def _mp3(seconds: float = 2.0) -> bytes:
    wav = call_wav(seconds, codec="pcm16", seed=3)
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "wav", "-i", "pipe:0",
         "-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3", "pipe:1"],
        input=wav, capture_output=True, check=True,
    )  # fmt: skip
    return done.stdout


def _land_mp3(services: Services, rid: str) -> bytes:
    audio = _mp3()
    path = services.settings.landing_dir / f"{rid}.mp3"
    path.write_bytes(audio)
    event: dict[str, Any] = demo_event(rid, audio=audio, uri=f"file://{path}", seconds=2.0)
    event["audio"]["format"] = "mp3"
    event["audio"]["sha256"] = hashlib.sha256(audio).hexdigest()
    return json.dumps(event).encode()


def test_compressed_copy_goes_to_a_private_folder_under_the_data_dir(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Path, int, int]] = []
    pipeline = IngestPipeline.over(services, actor="worker:test")
    original = pipeline.preparer.copy_verified

    def spy(item: Any, target: Path) -> int:
        size = original(item, target)
        seen.append((target, stat.S_IMODE(target.parent.stat().st_mode), target.stat().st_size))
        return size

    monkeypatch.setattr(pipeline.preparer, "copy_verified", spy)
    try:
        (outcome,) = pipeline.process_batch([_land_mp3(services, "wd-1")])
    finally:
        pipeline.close()
    assert outcome.status == "stored", outcome
    (target, mode, size), folder = seen[0], work_folder(services.settings.data_dir)
    assert target.parent.parent == folder and size > 0
    assert target.parent.name.startswith(f"callvault-ingest-{os.getpid()}-")
    assert mode == 0o700 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert list(folder.iterdir()) == []  # the copy is gone once stored


def test_leftovers_of_a_killed_worker_are_removed_at_start(tmp_path: Path) -> None:
    folder = work_folder(tmp_path)
    dead, live = folder / "callvault-ingest-999999999-abc", folder / "callvault-ingest-1-xyz"
    legacy = folder / "callvault-ingest-q1w2e3"
    for leftover in (dead, live, legacy):
        leftover.mkdir(parents=True)
        (leftover / "sent.mp3").write_bytes(b"ID3 plaintext")
    folder.chmod(0o755)
    assert clear_work_folder(folder) == 2
    assert not dead.exists() and not legacy.exists()
    assert live.exists()  # pid 1 runs: a sibling worker's copy in use is left alone
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_full_disk_while_copying_is_retried_not_dead_lettered(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = _land_mp3(services, "wd-full")
    real_open = Path.open

    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.name.startswith("sent.") and "w" in mode:
            return Full()
        return real_open(self, mode, *args, **kwargs)

    pipeline = IngestPipeline.over(services, actor="worker:test")
    try:
        monkeypatch.setattr(Path, "open", full_open)
        with pytest.raises(CallvaultError) as raised:
            pipeline.process_batch([payload])
        assert is_unavailable(raised.value), raised.value
        assert "No space left" in str(raised.value)
        monkeypatch.undo()
        assert services.catalog.get_recording("wd-full") is None
        assert (services.settings.landing_dir / "wd-full.mp3").exists()  # kept for the retry
        (outcome,) = pipeline.process_batch([payload])  # space again: the retry stores it
    finally:
        pipeline.close()
    assert outcome.status == "stored", outcome


def test_ffmpeg_output_on_a_full_disk_is_infrastructure(tmp_path: Path) -> None:
    source = tmp_path / "sent.mp3"
    source.write_bytes(_mp3())
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "encoded.flac").symlink_to("/dev/full")  # every write: ENOSPC
    options = STORAGE_CODECS["flac"].options(1)
    with pytest.raises(BackendUnavailable, match="No space left"):
        transcode_file(
            source, "mp3", Layout(), SilencePlan((), 1, 0), options=options, muxer="flac",
            limit=DecodeLimit.for_call(2000), folder=folder,
        )  # fmt: skip


def test_the_worker_clears_its_work_folder_before_it_consumes(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.app import Worker

    leftover = work_folder(services.settings.data_dir) / "callvault-ingest-999999999-k"
    leftover.mkdir(parents=True)
    (leftover / "sent.mp3").write_bytes(b"ID3 plaintext of a killed worker")
    worker = Worker(services, broker_url="kafka://127.0.0.1:1")

    class Started(Exception):
        pass

    def started() -> None:  # the step before faust starts consuming
        raise Started

    monkeypatch.setattr(worker, "declare_topics", started)
    try:
        with pytest.raises(Started):
            worker.run()
    finally:
        worker.pipeline.close()
    assert not leftover.exists()
    assert worker.pipeline.work_dir == work_folder(services.settings.data_dir)
