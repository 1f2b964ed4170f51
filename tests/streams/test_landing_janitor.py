"""Nothing left behind (issue 17): what a worker stopped between its catalog commit and
its landing deletes leaves, with no redelivery coming (the broker lost the events), is
removed by the reconciler's janitor, and only that.

The state of such a stop is made exactly: a recording ingested for real, then its
landing files put back and its claim re-taken (what the catalog and the landing area
hold after a SIGKILL at that point; tests/e2e/test_faults_e2e.py kills real workers)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callvault.demo import demo_event
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from storage.catalog.claims import ClaimState
from streams.app import Worker
from streams.dlq import DlqSource
from streams.refs import landing_key
from tests.streams.test_agents import Recorder

AGE = 7200.0  # left-behind files: written before their recording was stored


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "data"), "CALLVAULT_RECONCILE_AFTER_SECONDS": "60"}
    # the catalog's clock an hour behind: recordings were stored an hour ago
    built = build_services(load_settings(env), clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    built.settings.landing_dir.mkdir(parents=True, exist_ok=True)
    yield built
    built.close()


def _aged(path: Path) -> None:
    past = time.time() - AGE
    for each in (path, path.with_name(path.name + ".event.json")):
        if each.exists():
            os.utime(each, (past, past))


class Call:
    def __init__(self, services: Services, rid: str, seed: int, **event_kw: Any) -> None:
        self.services, self.rid = services, rid
        self.audio = call_wav(1.0, codec="mulaw", seed=seed)
        self.uri = services.landing.land(f"{rid}.wav", self.audio)
        self.path = Path(self.uri.removeprefix("file://"))
        self.event = demo_event(
            rid, audio=self.audio, uri=self.uri, seconds=1,
            sha256=hashlib.sha256(self.audio).hexdigest(), **event_kw,
        )  # fmt: skip
        services.landing.write_sidecar(self.uri, self.event)

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".event.json")

    @property
    def key(self) -> str:
        return landing_key(self.services.keyring, self.uri)

    def left_behind(self, *, audio: bool = True, sidecar: bool = True) -> None:
        """The files and claim a worker killed after the commit leaves."""
        if audio:
            self.path.write_bytes(self.audio)
        if sidecar:
            self.services.landing.write_sidecar(self.uri, self.event)
        self.services.claims.set_state([(self.key, self.rid)], ClaimState.CLAIMED)
        _aged(self.path)

    def claim_state(self) -> ClaimState | None:
        claim = self.services.claims.get([self.key]).get(self.key)
        return None if claim is None else claim.state


def _ingest(worker: Worker, *calls: Call) -> list[str]:
    outcomes = worker.pipeline.process_batch([json.dumps(c.event).encode() for c in calls])
    return [o.status for o in outcomes]


def _reconcile(worker: Worker) -> tuple[int, Recorder]:
    sent = Recorder()
    worker.recordings.send = sent  # type: ignore[method-assign]
    return asyncio.run(worker.reconcile_landing()), sent


def _gauge(worker: Worker, name: str) -> float:
    for line in worker.metrics.exposition().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


@pytest.fixture
def worker(services: Services) -> Iterator[Worker]:
    built = Worker(services, broker_url="kafka://127.0.0.1:1")
    yield built
    built.pipeline.close()


def test_the_janitor_removes_only_what_settled_recordings_left_behind(
    services: Services, worker: Worker
) -> None:
    both = Call(services, "left-both", 1)
    sidecar_only = Call(services, "left-sidecar", 2)
    tampered = Call(services, "left-tampered", 3)
    declined = Call(services, "left-declined", 4, consent="declined")
    reused = Call(services, "left-reused", 5)
    newer = Call(services, "left-newer", 8)
    released = Call(services, "left-released", 9)
    assert _ingest(worker, both, sidecar_only, tampered, declined, reused, newer, released) == [
        "stored", "stored", "stored", "declined", "stored", "stored", "stored",
    ]  # fmt: skip
    both.left_behind()
    sidecar_only.left_behind(audio=False)  # killed between the audio and the sidecar delete
    tampered.left_behind()
    declined.left_behind()
    reused.left_behind(sidecar=False)
    other = dict(reused.event, recording_id="someone-else")  # a PBX reused the file name
    services.landing.write_sidecar(reused.uri, other)
    _aged(reused.path)
    # a new call's audio under a stored recording's name, written after it was stored
    # (its claim still held: the worker died before releasing it), no sidecar yet
    newer.left_behind(sidecar=False)
    after = time.time() - 120  # stale for the janitor, yet later than the stored row
    os.utime(newer.path, (after, after))
    # a new call's sidecar under a name whose claim was released: its audio comes later
    services.landing.write_sidecar(released.uri, dict(released.event, recording_id="next-call"))
    _aged(released.path)
    row = services.catalog.get_recording(tampered.rid)
    assert row is not None
    object_path = Path(services.settings.vault.removeprefix("file://")) / row.object_key
    object_path.write_bytes(object_path.read_bytes()[:-1] + b"\x00")
    # audio of a pending upload (claimed, not stored) and a sidecar whose recording is
    # not known yet: never touched, counted
    pending = Call(services, "pending", 6)
    services.claims.claim([(pending.key, pending.rid, "demo")])
    _aged(pending.path)
    waiting = Call(services, "waiting", 7)
    waiting.path.unlink()
    _aged(waiting.path)

    sent, recorder = _reconcile(worker)

    for done in (both, sidecar_only, declined):
        assert not done.path.exists() and not done.sidecar.exists(), done.rid
        assert done.claim_state() is ClaimState.RELEASED, done.rid
    assert tampered.path.exists() and tampered.sidecar.exists()  # the vault copy is bad
    assert reused.path.exists() and reused.sidecar.exists()  # not the stored one's file
    assert newer.path.exists()  # written after the stored recording: not its file
    assert released.sidecar.exists()  # names a recording nobody settled yet
    assert pending.path.exists() and pending.claim_state() is ClaimState.CLAIMED
    assert waiting.sidecar.exists()
    assert sent == 1 and json.loads(recorder.values[0])["recording_id"] == "pending"
    assert _gauge(worker, "callvault_landing_orphan_sidecars") == 2  # waiting, released
    # tampered, reused (its sidecar names a recording the catalog does not know: it is
    # re-announced, an operator sees landing-claimed), pending, waiting
    assert _gauge(worker, "callvault_landing_backlog") == 6  # + newer, released
    assert _gauge(worker, 'callvault_landing_cleaned_total{kind="audio"}') == 2
    assert _gauge(worker, 'callvault_landing_cleaned_total{kind="sidecar"}') == 3

    # the waiting sidecar's recording is dead-lettered: its sidecar goes too
    waiting.path.write_bytes(b"not audio at all")
    outcomes = worker.pipeline.process_batch([json.dumps(waiting.event).encode()])
    assert [o.status for o in outcomes] == ["dlq"]
    worker.dead_letters.record([(outcomes[0], DlqSource("callvault.recordings"))])
    waiting.path.unlink()
    _aged(waiting.path)
    _reconcile(worker)
    assert not waiting.sidecar.exists()
    assert _gauge(worker, "callvault_landing_orphan_sidecars") == 1  # released's


def test_the_janitor_checks_the_vault_copy_in_ranges_not_whole(
    services: Services, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest check before a left-behind copy is removed reads the vault object 1 MiB
    at a time (constant memory for a 2-hour call): ``get`` is never called."""
    call = Call(services, "left-long", 11)
    call.audio = call_wav(75.0, codec="pcm16", seed=11)  # > 1 MiB once sealed
    call.path.write_bytes(call.audio)
    call.event["audio"]["sha256"] = hashlib.sha256(call.audio).hexdigest()
    call.event["started_at"] = (
        datetime.fromisoformat(call.event["ended_at"]) - timedelta(seconds=75)
    ).isoformat()
    services.landing.write_sidecar(call.uri, call.event)
    assert _ingest(worker, call) == ["stored"]
    call.left_behind()
    row = services.catalog.get_recording(call.rid)
    assert row is not None and services.vault.head(row.object_key).size > 1 << 20
    ranges: list[int] = []
    real_range = services.vault.get_range

    def counted(key: str, start: int, end: int) -> bytes:
        ranges.append(end - start + 1)
        return real_range(key, start, end)

    def whole(key: str) -> bytes:
        raise AssertionError("the janitor read a whole recording into memory")

    monkeypatch.setattr(services.vault, "get", whole)
    monkeypatch.setattr(services.vault, "get_range", counted)
    _reconcile(worker)
    assert not call.path.exists() and call.claim_state() is ClaimState.RELEASED
    assert len(ranges) >= 2 and max(ranges) <= 1 << 20


def test_landing_entries_nothing_can_ingest_are_counted_in_the_backlog(
    services: Services, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO, a socket, a symlink, a name with a newline or with bytes that are not
    UTF-8: no event can name them, so they were passed over without a trace (audio kept
    outside retention and erasure, unseen). The backlog gauge counts them and the
    reconciler says so, without naming them (a name may hold a caller's number)."""
    import socket

    landing = Path(services.settings.landing_dir)  # type: ignore[arg-type]
    landing.mkdir(parents=True, exist_ok=True)
    os.mkfifo(landing / "fifo.wav")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(landing / "sock.wav"))
    (landing / "link.wav").symlink_to("/etc/hostname")
    (landing / "new\nline.wav").write_bytes(b"audio")
    (landing / os.fsdecode(b"\xff-4930555.wav")).write_bytes(b"audio")
    for entry in landing.iterdir():
        os.utime(entry, (time.time() - 3600,) * 2, follow_symlinks=False)
    with caplog.at_level("WARNING"):
        _reconcile(worker)
    assert services.landing.unusable_entries == 5
    assert _gauge(worker, "callvault_landing_backlog") == 5
    (warning,) = [r.getMessage() for r in caplog.records if "cannot be ingested" in r.getMessage()]
    assert warning.startswith("5 landing entries") and "4930555" not in warning
    caplog.clear()
    with caplog.at_level("WARNING"):
        _reconcile(worker)  # the same count: said once
    assert not [r for r in caplog.records if "cannot be ingested" in r.getMessage()]
    assert all(p.exists() or p.is_symlink() for p in landing.iterdir())  # nothing touched
