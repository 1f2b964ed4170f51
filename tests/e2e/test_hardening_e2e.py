"""Hostile input through the real tansu broker and a real ``callvault worker`` process:
poison events never stall the stream, the DLQ keeps what it refused (sealed, within
the broker's message size) and ``callvault dlq replay`` brings it back once fixed;
every file the worker creates is private."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from callvault.broker import EmbeddedBroker
from callvault.synth import call_wav
from tests.e2e.harness import (
    WorkerProcess,
    consume_messages,
    landed_call,
    multipart_upload,
    open_services,
    produce,
    wait_until,
)

pytestmark = [pytest.mark.e2e]

TOPIC = "callvault.recordings"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "callvault.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_poison_events_through_the_real_broker_never_stall_ingest(
    env: dict[str, str], worker: WorkerProcess, kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    services = open_services(env)
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    landing = services.settings.landing_dir
    landing.mkdir(parents=True, exist_ok=True)

    def good(i: int) -> bytes:
        return json.dumps(
            landed_call(services, f"ok-{i}", call_wav(2.0, codec="mulaw", seed=i))
        ).encode()

    def poisoned(rid: str, **changes: object) -> bytes:
        event = landed_call(services, rid, call_wav(2.0, codec="mulaw", seed=99))
        event.update(changes)
        return json.dumps(event).encode()

    os.mkfifo(landing / "fifo.wav")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(landing / "sock.wav"))
    outside = tmp_path / "outside.wav"
    outside.write_bytes(call_wav(2.0, codec="mulaw", seed=98))
    os.link(outside, landing / "hardlink.wav")

    def at(rid: str, name: str) -> bytes:
        event = landed_call(services, rid, outside.read_bytes(), write=False)
        event["audio"]["uri"] = (landing / name).as_uri()
        return json.dumps(event).encode()

    big = json.loads(good(1000))
    big["recording_id"], big["queue"] = "big-1", "q" * 1_100_000
    poison = {
        "deep": b"[" * 60_000,
        "year-1": poisoned("p-year1", started_at="0001-01-01T00:00:00+01:00"),
        "year-999": poisoned(
            "p-year999", started_at="0999-01-01T00:00:00Z", ended_at="0999-01-01T00:01:00Z"
        ),
        "surrogate": poisoned("p-surrogate", customer_ref="\ud800"),
        "fifo": at("p-fifo", "fifo.wav"),
        "socket": at("p-socket", "sock.wav"),
        "hardlink": at("p-hardlink", "hardlink.wav"),
        "big": json.dumps(big).encode(),
    }
    payloads: list[bytes] = []
    for i, bad in enumerate(poison.values()):
        payloads += [good(i), bad]
    payloads.append(good(len(poison)))
    try:
        produce(bootstrap, TOPIC, payloads)
        worker.start()
        goods = [f"ok-{i}" for i in range(len(poison) + 1)]
        wait_until(
            lambda: len(services.catalog.recording_ids_present(goods)) == len(goods),
            120,
            "every good event interleaved with the poison",
        )
        dlq = consume_messages(bootstrap, "callvault.dlq", expect=len(poison), timeout=60)
    finally:
        unix.close()
    assert worker.proc is not None and worker.proc.poll() is None  # no crash
    assert sorted(m.headers["cv-reason"] for m in dlq) == sorted(
        [
            "malformed",
            "invalid-field",
            "invalid-field",
            "invalid-field",
            "landing-not-regular",
            "landing-not-regular",
            "landing-unsafe",
            "malformed",
        ]
    )
    assert all(m.size() < 300_000 for m in dlq)  # within any broker's message size
    assert [m.headers["cv-original"][:6] for m in dlq].count("vault:") == 1  # the big one
    assert services.catalog.get_recording("p-hardlink") is None
    services.close()


def test_a_dead_letter_is_replayed_once_its_cause_is_fixed(
    env: dict[str, str], worker: WorkerProcess, kafka_broker: EmbeddedBroker
) -> None:
    services = open_services(env)
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    audio = call_wav(2.0, codec="mulaw", seed=5)
    event = landed_call(services, "late-1", audio, write=False)  # its audio is not there yet
    produce(bootstrap, TOPIC, [json.dumps(event).encode()])
    worker.start()
    wait_until(services.dead_letters.list, 60, "the dead letter")
    (message,) = consume_messages(bootstrap, "callvault.dlq", expect=1, timeout=60)
    entry = message.headers["cv-dlq-id"]
    assert message.headers["cv-reason"] == "landing-missing"

    listed = cli(env, "dlq", "list", "--reason", "landing-missing")
    assert listed.returncode == 0 and entry in listed.stdout
    assert "late-1" not in listed.stdout and "cust-0001" not in listed.stdout
    shown = cli(env, "dlq", "show", entry)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["event"]["customer_ref"] == "[redacted]"
    assert view["event"]["audio"] == {"uri": "[redacted]", "format": "wav", "sha256": "[redacted]"}

    Path(event["audio"]["uri"].removeprefix("file://")).write_bytes(audio)  # the fix
    replayed = cli(env, "dlq", "replay", entry, "--by", "ops-1")
    assert replayed.returncode == 0, replayed.stderr
    assert f"{entry}: replayed" in replayed.stdout
    wait_until(lambda: services.catalog.get_recording("late-1"), 60, "the replayed recording")
    again = cli(env, "dlq", "replay", entry)
    assert again.returncode == 1 and "already replayed" in again.stdout
    replays = [e for e in services.audit.iter_entries() if e.action == "dlq.replayed"]
    assert len(replays) == 1 and replays[0].actor == "user:ops-1"
    ref = cli(env, "ref", "late-1")
    assert ref.returncode == 0 and ref.stdout.split()[0] == message.headers["cv-recording-ref"]
    services.close()


def test_every_file_the_worker_creates_is_private(
    env: dict[str, str], worker: WorkerProcess
) -> None:
    """Found on main: catalog.sqlite3 and its WAL/SHM were 0644 (vault and keys 0600)."""
    old = os.umask(0o022)  # what a shell usually has; the worker must not depend on it
    try:
        worker.start()
    finally:
        os.umask(old)
    services = open_services(env)
    audio = call_wav(2.0, codec="mulaw", seed=6)
    meta = json.dumps(
        {**landed_call(services, "private-1", audio, write=False), "audio": {"format": "wav"}}
    ).encode()
    body, content_type = multipart_upload(meta, audio)
    token = cli(
        env, "token", "issue", "--user", "pbx-1", "--role", "telephony", "--tenant", "demo"
    ).stdout.strip()
    import urllib.request

    request = urllib.request.Request(
        f"{worker.web_url}/v1/recordings",
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": content_type,
        },
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 202
    wait_until(lambda: services.catalog.get_recording("private-1"), 60, "the upload stored")
    services.close()
    data_dir = Path(env["CALLVAULT_DATA_DIR"])
    loose = []
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            loose.append(f"{path.relative_to(data_dir.parent)} {mode:o}")
    assert loose == []
    assert (data_dir / "catalog.sqlite3-wal").exists()
