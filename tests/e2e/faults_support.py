"""Fault scenarios against real worker processes and the real broker, shared by
tests/e2e/test_faults_e2e.py (small) and bench/faults.py (full size).

- :func:`pbx_calls`: recordings dropped in the landing area as a PBX does (audio plus
  its ``<file>.event.json`` sidecar), their events produced to the broker.
- :func:`kill_in_window`: SIGKILL a worker right after a batch's catalog commit,
  while a stored recording's landing copy still exists (the window issue 17 names).
- :func:`settle` / :func:`leftovers`: wait until every recording is stored and nothing
  is left behind; count what is (landing audio, sidecars, plaintext anywhere, copies).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callvault.services import Services
from callvault.synth import call_wav
from storage.catalog.audit import entry_json
from tests.e2e.harness import WorkerProcess, consume_messages, landed_call, produce, wait_until

__all__ = [
    "pbx_calls",
    "kill_in_window",
    "settle",
    "leftovers",
    "Leftovers",
    "audit_topic_matches",
    "TOPIC",
]

TOPIC = "callvault.recordings"
_PLAINTEXT = (b"RIFF", b"WAVE")


def pbx_calls(
    services: Services, bootstrap: str, count: int, prefix: str, *, wave: int = 0
) -> tuple[list[str], threading.Thread]:
    """Land ``count`` one-second calls with sidecars; returns their ids and a thread (not
    started) that produces their events, ``wave`` at a time every 0.25 s (all at once
    with 0), so that a running worker processes them in several batches."""
    clip = call_wav(1.0, codec="mulaw", seed=11)
    ids, payloads = [], []
    for i in range(count):
        rid = f"{prefix}-{i:05d}"
        audio = clip[:-4] + i.to_bytes(4, "big")  # distinct sha256 per call
        event = landed_call(services, rid, audio, seconds=1, customer=f"c{i % 13}")
        services.landing.write_sidecar(event["audio"]["uri"], event)
        ids.append(rid)
        payloads.append(json.dumps(event).encode())
    size = wave or count

    def waves() -> None:
        for start in range(0, count, size):
            produce(bootstrap, TOPIC, payloads[start : start + size])
            time.sleep(0.25)

    return ids, threading.Thread(target=waves, name="pbx", daemon=True)


def _landing_of(services: Services, rid: str) -> Path:
    return services.settings.landing_dir / f"{rid}.wav"


def kill_in_window(
    services: Services, worker: WorkerProcess, ids: list[str], at_least: int, timeout: float = 120
) -> tuple[int, int]:
    """SIGKILL ``worker`` once ``at_least`` recordings are in the catalog and one stored
    since this call still has its landing copy (polled every few ms: right after a
    commit, before its landing deletes); return (rows, stored recordings whose landing
    audio or sidecar was still there at the kill)."""
    before = services.catalog.recording_ids_present(ids)

    def in_window() -> bool:
        present = services.catalog.recording_ids_present(ids)
        if len(present) < at_least:
            return False
        return any(_landing_of(services, rid).exists() for rid in present - before)

    try:
        wait_until(in_window, timeout, "a commit before its landing deletes", 0.003)
    finally:
        worker.kill()
    present = services.catalog.recording_ids_present(ids)
    behind = 0
    for rid in present:
        path = _landing_of(services, rid)
        if path.exists() or path.with_name(path.name + ".event.json").exists():
            behind += 1
    return len(present), behind


@dataclass
class Leftovers:
    """What a scenario left: the figures bench/faults.py prints."""

    stored_once: int = 0
    lost: int = 0
    duplicated: int = 0
    landing_audio: int = 0
    sidecars: int = 0
    plaintext_files: int = 0
    objects: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def left_behind(self) -> int:
        return self.landing_audio + self.sidecars + self.plaintext_files


def leftovers(services: Services, ids: list[str]) -> Leftovers:
    stored = Counter(
        entry.recording_id
        for entry in services.audit.iter_entries(action_prefix="ingest.stored")
        if entry.recording_id in set(ids)
    )
    present = services.catalog.recording_ids_present(ids)
    landing = services.settings.landing_dir
    files = [p for p in landing.rglob("*") if p.is_file()] if landing.exists() else []
    vault_root = Path(services.settings.vault.removeprefix("file://"))
    objects = sum(1 for path in vault_root.rglob("*.cvlt") if path.is_file())
    # audio in clear anywhere under the data folder but the landing area (ingest's work
    # folder, <data_dir>/work/ingest, included: a kill must not leave copies there)
    plaintext = 0
    for path in services.settings.data_dir.rglob("*"):
        if path.is_file() and landing not in path.parents:
            with open(path, "rb") as handle:
                head = handle.read(64)
            plaintext += any(marker in head for marker in _PLAINTEXT)
    return Leftovers(
        stored_once=sum(1 for rid in ids if stored[rid] == 1 and rid in present),
        lost=sum(1 for rid in ids if rid not in present),
        duplicated=sum(1 for rid in ids if stored[rid] > 1),
        landing_audio=sum(1 for p in files if not p.name.endswith(".event.json")),
        sidecars=sum(1 for p in files if p.name.endswith(".event.json")),
        plaintext_files=plaintext,
        objects=objects,
    )


def settle(services: Services, ids: list[str], timeout: float) -> float:
    """Wait until every recording is stored and the landing area is empty; return the
    seconds it took."""
    start = time.monotonic()

    def done() -> bool:
        found = leftovers(services, ids)
        return found.lost == 0 and found.landing_audio == 0 and found.sidecars == 0

    wait_until(done, timeout, "every recording stored and nothing left in landing", 0.5)
    return time.monotonic() - start


def audit_topic_matches(services: Services, bootstrap: str, timeout: float = 60) -> int:
    """Assert that ``callvault.audit`` holds the audit log, record by record, in order
    (waiting for the publisher to catch up); return the number of records."""
    expected = [entry_json(entry) for entry in services.audit.iter_entries()]

    def caught_up() -> list[dict[str, Any]] | None:
        messages = consume_messages(bootstrap, "callvault.audit", len(expected), timeout=10)
        got, last = [], 0
        for message in messages:
            body = json.loads(message.value)
            if message.key == b"checkpoint":  # a signed checkpoint: after the record it pins
                assert body["checkpoint"]["payload"]["seq"] == last, "checkpoint out of place"
                continue
            got.append(body)
            last = body["seq"]
        return got if len(got) >= len(expected) else None

    got = wait_until(caught_up, timeout, "the audit topic to catch up", 1.0)
    seqs = [g["seq"] for g in got]
    assert seqs == list(range(1, len(got) + 1)), "the topic skips, repeats or reorders"
    assert got[: len(expected)] == expected  # (the worker may have audited more since)
    return len(expected)
