"""End to end through the real tansu broker and a real ``callvault worker`` process."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from callvault.broker import EmbeddedBroker
from callvault.synth import call_wav
from storage.audio import decode
from tests.e2e.harness import (
    WorkerProcess,
    consume_messages,
    e2e_settings,
    landed_call,
    open_services,
    produce,
    wait_until,
)

pytestmark = [pytest.mark.e2e]

TOPIC = "callvault.recordings"


def _audit_actions(services) -> Counter[str]:  # type: ignore[no-untyped-def]
    return Counter(entry.action for entry in services.audit.iter_entries())


@pytest.mark.clause("collection.no-harmful")
def test_mixed_batch_ends_in_exactly_the_expected_state(
    env: dict[str, str], worker: WorkerProcess, kafka_broker: EmbeddedBroker
) -> None:
    services = open_services(env)
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    audio = {
        name: call_wav(6.0, codec="mulaw", seed=seed)
        for seed, name in enumerate(["good1", "good2", "pci", "declined", "badsum"])
    }
    good1 = landed_call(services, "e2e-good1", audio["good1"])
    good2 = landed_call(services, "e2e-good2", audio["good2"], consent="granted")
    pci = landed_call(
        services, "e2e-pci", audio["pci"], pci_pauses=[{"start_ms": 1000, "end_ms": 2500}]
    )
    declined = landed_call(services, "e2e-declined", audio["declined"], consent="declined")
    badsum = landed_call(services, "e2e-badsum", audio["badsum"], sha256="0" * 64)
    missing = landed_call(services, "e2e-missing", audio["good1"], write=False)
    outside = dict(
        good1, recording_id="e2e-outside", audio={**good1["audio"], "uri": "file:///etc/passwd"}
    )
    payloads = [
        json.dumps(good1).encode(),
        json.dumps(good2).encode(),
        json.dumps(pci).encode(),
        json.dumps(declined).encode(),
        b'{"schema": "callvault.recording.v1", "recording_id": ',  # malformed
        json.dumps(missing).encode(),
        json.dumps(badsum).encode(),
        json.dumps(outside).encode(),
        json.dumps(good1).encode(),  # duplicate
    ]
    produce(bootstrap, TOPIC, payloads)
    worker.start()

    def settled() -> bool:
        actions = _audit_actions(services)
        return (
            actions["ingest.stored"] >= 3
            and actions["ingest.rejected"] >= 4
            and actions["ingest.declined"] >= 1
        )

    wait_until(settled, 90, "the batch to settle")
    time.sleep(1.5)  # anything extra (a second copy of the duplicate) would show up now

    # Catalog: exactly the three good calls.
    stored = services.catalog.list_recordings(limit=100)
    assert sorted(r.recording_id for r in stored) == ["e2e-good1", "e2e-good2", "e2e-pci"]
    assert services.catalog.get_recording("e2e-declined") is None
    # Audit: one record per decision, chain intact.
    actions = _audit_actions(services)
    assert actions["ingest.stored"] == 3
    assert actions["ingest.declined"] == 1
    assert actions["ingest.rejected"] == 4
    assert services.audit.verify().ok
    # DLQ: the four bad events with their reasons.
    dlq = consume_messages(bootstrap, "callvault.dlq", expect=4)
    assert sorted(m.headers["cv-reason"] for m in dlq) == sorted(
        ["malformed", "landing-missing", "sha256-mismatch", "uri-outside-landing"]
    )
    for message in dlq:  # the original is sealed; headers carry no personal data
        seen = message.value + json.dumps(message.headers).encode()
        assert b"cust-0001" not in seen and b"/landing/" not in seen
    # Landing: stored and declined copies gone; the bad-checksum copy kept for an operator.
    landing = services.settings.landing_dir
    assert not (landing / "e2e-good1.wav").exists()
    assert not (landing / "e2e-declined.wav").exists()
    assert (landing / "e2e-badsum.wav").exists()
    # Vault: three objects, no plaintext audio anywhere under it.
    keys = sorted(services.vault.iter_keys())
    assert len(keys) == 3
    vault_root = Path(services.settings.vault.removeprefix("file://"))
    for path in vault_root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"RIFF" not in data and b"WAVE" not in data, path
    # Stored audio, decrypted, equals the input except the silenced interval.
    row = services.catalog.get_recording("e2e-pci")
    assert row is not None and row.pci_redacted_ms == 1500
    plain = services.keys.open_recording(services.vault.get(row.object_key))
    original = decode(audio["pci"], "wav")
    stored_audio = decode(plain, "wav")
    assert stored_audio.sample_rate == 8000 and len(stored_audio.pcm) == len(original.pcm)
    lo, hi = 1000 * 8 * 2, 2500 * 8 * 2  # 8 samples/ms, 2 bytes/sample
    assert stored_audio.pcm[:lo] == original.pcm[:lo]
    assert stored_audio.pcm[hi:] == original.pcm[hi:]
    assert stored_audio.pcm[lo:hi] == bytes(hi - lo)
    assert original.pcm[lo:hi] != bytes(hi - lo)  # there was speech to remove
    services.close()


def test_worker_killed_mid_batch_stores_every_recording_exactly_once(
    env: dict[str, str], worker: WorkerProcess, kafka_broker: EmbeddedBroker
) -> None:
    services = open_services(env)
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    count = 300
    clip = call_wav(30.0, codec="mulaw", seed=7)
    events = []
    for i in range(count):
        audio = clip + bytes([i % 250])  # distinct bytes -> distinct sha256
        events.append(
            json.dumps(
                landed_call(services, f"kill-{i:04d}", audio, customer=f"c{i % 17}")
            ).encode()
        )
    produce(bootstrap, TOPIC, events)
    vault_root = Path(services.settings.vault.removeprefix("file://"))

    worker.start()
    wait_until(
        lambda: any(p.suffix == ".cvlt" for p in vault_root.rglob("*.cvlt")),
        60,
        "first vault write",
        0.02,
    )
    worker.kill()
    in_vault_at_kill = len(list(vault_root.rglob("*.cvlt")))
    rows_at_kill = len(
        services.catalog.recording_ids_present(f"kill-{i:04d}" for i in range(count))
    )
    assert rows_at_kill < count, "the kill came too late to interrupt anything"

    worker.start()
    wait_until(
        lambda: (
            len(services.catalog.recording_ids_present(f"kill-{i:04d}" for i in range(count)))
            == count
        ),
        180,
        "all recordings after the restart",
    )
    time.sleep(2.0)
    assert len(list(vault_root.rglob("*.cvlt"))) == count
    actions = _audit_actions(services)
    assert actions["ingest.stored"] == count
    assert actions["ingest.rejected"] == 0
    assert services.audit.verify().ok
    assert not list(services.settings.landing_dir.glob("kill-*.wav"))
    print(f"killed with {in_vault_at_kill} objects and {rows_at_kill} rows written")
    services.close()


def test_reconciler_reannounces_landing_audio_whose_event_was_lost(
    tmp_path: Path, kafka_broker: EmbeddedBroker
) -> None:
    env = e2e_settings(tmp_path / "data", kafka_broker.url, CALLVAULT_RECONCILE_AFTER_SECONDS="1")
    services = open_services(env)
    audio = call_wav(4.0, codec="mulaw", seed=3)
    event = landed_call(services, "lost-1", audio)
    services.landing.write_sidecar(
        event["audio"]["uri"], event
    )  # telephony's sidecar; no event sent
    orphan = landed_call(
        services, "orphan-1", audio
    )  # audio without a sidecar: cannot be re-announced
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_until(
            lambda: services.catalog.get_recording("lost-1"), 60, "the re-announced recording"
        )
        assert services.catalog.get_recording("orphan-1") is None
        assert Path(orphan["audio"]["uri"].removeprefix("file://")).exists()
        metrics = wait_until(
            lambda: _metric(worker, "callvault_landing_reannounced_total"),
            10,
            "the reconcile metric",
        )
        assert metrics >= 1
    finally:
        worker.stop()
        services.close()


def _metric(worker: WorkerProcess, name: str) -> float | None:
    import urllib.request

    with urllib.request.urlopen(f"{worker.web_url}/metrics", timeout=2) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None
