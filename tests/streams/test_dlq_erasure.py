"""Dead letters do not escape erasure: an event naming a canonical customer reference
is sealed under that customer's subject key (the pseudonym ingest uses), so erasing the
customer shreds the original in the catalog, in the vault and in the copy on
``callvault.dlq``; ``dlq show`` and ``dlq replay`` then answer ``dlq-original-erased``.
Events without a canonical reference keep the master-key sealing."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callvault.cli import cli
from callvault.demo import demo_event
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from storage.errors import KeyDestroyed, RecordingNotFound
from storage.landing import SIDECAR_SUFFIX
from streams.app import Worker
from streams.dlq import ORIGINAL_ERASED, DeadLetterQueue, DlqMessage, DlqSource
from streams.ingest import IngestOutcome, IngestPipeline
from tests.streams.lifecycle_support import (
    Clock,
    lifecycle_of,
    make_services,
    store_call,
    verification,
)

CUSTOMER = "C-7788"
PHONE = "+14155550123"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "CALLVAULT_DATA_DIR": str(tmp_path / "data"),
        "CALLVAULT_CATALOG": f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite3'}",
        "CALLVAULT_WORKER_ID": "test",
    }


@pytest.fixture
def services(tmp_path: Path, env: dict[str, str]) -> Iterator[Services]:
    opened = make_services(tmp_path, env["CALLVAULT_CATALOG"], "local", Clock())
    yield opened
    opened.close()


def _cli(env: dict[str, str], *args: str) -> Any:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CALLVAULT_")}
    clean.update(env)
    return CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)


def _event(recording_id: str, customer_ref: object, **extra: Any) -> bytes:
    event: dict[str, Any] = {
        "schema": "callvault.recording.v1",
        "recording_id": recording_id,
        "tenant": "acme",
        "audio": {"uri": f"landing://{PHONE}/{recording_id}.wav", "format": "wav"},
        **extra,
    }
    if customer_ref is not None:
        event["customer_ref"] = customer_ref
    return json.dumps(event).encode()


def _dead(queue: DeadLetterQueue, *payloads: bytes) -> list[DlqMessage]:
    return queue.record(
        [
            (
                IngestOutcome(
                    "dlq", f"r-dead-{i}", "landing-missing", "no such file", payload=payload,
                    tenant="acme",
                ),
                DlqSource("callvault.recordings", 0, i, key=f"r-dead-{i}".encode()),
            )
            for i, payload in enumerate(payloads)
        ]
    )  # fmt: skip


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.clause("requests.removal")
def test_a_customer_s_dead_letters_are_shredded_by_the_erasure(
    services: Services, env: dict[str, str], tmp_path: Path
) -> None:
    queue = DeadLetterQueue.from_services(services)
    queue.inline_max = 2048  # the padded event below goes to the vault
    store_call(services, "r-stored", customer=CUSTOMER)
    big = _event("r-dead-1", CUSTOMER, note="x" * 4000)
    messages = _dead(
        queue,
        _event("r-dead-0", CUSTOMER),
        big,
        _event("r-dead-2", f" {CUSTOMER}"),  # not canonical: the master keyring
        _event("r-dead-3", None),  # names no customer: the master keyring
    )
    letters = [services.dead_letters.get(m.header("cv-dlq-id") or "") for m in messages]
    assert all(letters)
    subject_key = services.keys.live_subject_key(services.keys.subject_ref("acme", CUSTOMER))
    assert subject_key is not None  # the same key as the customer's recordings
    assert [m.header("cv-sealing") for m in messages] == [
        "subject-v1", "subject-v1", "keyring-v1", "keyring-v1",
    ]  # fmt: skip
    assert [letter.subject_key_id for letter in letters] == [  # type: ignore[union-attr]
        subject_key.key_id, subject_key.key_id, None, None,
    ]  # fmt: skip
    assert (messages[1].header("cv-original") or "").startswith("vault:")
    # before the erasure the original opens and the redacted view shows it
    assert queue.original(letters[0]) == _event("r-dead-0", CUSTOMER)  # type: ignore[arg-type]
    assert queue.original(letters[1]) == big  # type: ignore[arg-type]
    shown = _cli(env, "dlq", "show", letters[0].entry_id)  # type: ignore[union-attr]
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.output)
    assert view["original"] == "available" and view["event"]["recording_id"] == "r-dead-0"
    assert CUSTOMER not in shown.output and view["sealing"] == "subject"
    topic_copies = [m.value for m in messages]  # what a reader of callvault.dlq holds

    lifecycle = lifecycle_of(services)
    done = lifecycle.privacy.submit(
        {"type": "erase", "tenant": "acme", "customer_ref": CUSTOMER,
         "identity_verification": verification()},
        requested_by="officer-7",
    )  # fmt: skip
    assert done.status.value == "completed" and done.result["subject_key_destroyed"] is True

    # the customer's two letters are gone from the catalog (not left open for good), the
    # large one's vault object with them; one audit record counts them, naming no call
    assert done.result["dead_letters_removed"] == 2
    for letter in letters[:2]:
        assert services.dead_letters.get(letter.entry_id) is None  # type: ignore[union-attr]
    with pytest.raises(RecordingNotFound):
        services.vault.get(letters[1].blob_key)  # type: ignore[arg-type, union-attr]
    (erased,) = [e for e in services.audit.iter_entries() if e.action == "dlq.erased"]
    assert erased.recording_id is None and erased.details["dead_letters"] == 2
    assert erased.details["request_id"] == done.request_id
    # what a reader kept from before is ciphertext under the destroyed key: the row as
    # read then, and the copy on the topic
    with pytest.raises(KeyDestroyed, match=ORIGINAL_ERASED):
        queue.original(letters[0])  # type: ignore[arg-type]
    with pytest.raises(KeyDestroyed):
        services.keys.open_named(topic_copies[0], f"dlq:{letters[0].entry_id}")  # type: ignore[union-attr]
    # the master-sealed entries are as before (README: they live as long as the entry)
    assert queue.original(letters[2]) == _event("r-dead-2", f" {CUSTOMER}")  # type: ignore[arg-type]
    assert not queue.erased(letters[3])  # type: ignore[arg-type]
    listed = _cli(env, "dlq", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert (
        sorted(json.loads(line)["id"] for line in listed.output.splitlines())
        == sorted(
            letter.entry_id  # type: ignore[union-attr]
            for letter in letters[2:]
        )
    )
    shown = _cli(env, "dlq", "show", letters[0].entry_id)  # type: ignore[union-attr]
    assert shown.exit_code == 1 and "no dead letter" in shown.output
    replayed = _cli(env, "dlq", "replay", letters[1].entry_id)  # type: ignore[union-attr]
    assert replayed.exit_code == 1 and "no dead letter" in replayed.output
    assert not [e for e in services.audit.iter_entries() if e.action == "dlq.replayed"]

    # the destroyed key's row no longer carries the customer's pseudonym (only the
    # erasure request itself names it), and nothing under the data dir holds the
    # customer or the phone number in clear
    rows = services.catalog.database.fetch_all(
        "SELECT key_id, subject_ref FROM subject_keys WHERE key_id = ?", (subject_key.key_id,)
    )
    assert [tuple(r) for r in rows] == [(subject_key.key_id, "")]
    services.close()
    for needle in (CUSTOMER.encode(), PHONE.encode()):
        assert _files_holding(tmp_path / "data", needle) == [], needle


def test_a_dead_letter_after_the_erasure_is_sealed_under_the_new_key(
    tmp_path: Path, catalog_url: str
) -> None:
    services = make_services(tmp_path, catalog_url, "local", Clock())  # SQLite and PostgreSQL
    try:
        _renewed_after_erasure(services)
    finally:
        services.close()


def _renewed_after_erasure(services: Services) -> None:
    queue = DeadLetterQueue.from_services(services)
    event = _event("r-dead-0", CUSTOMER)
    (first,) = _dead(queue, event)
    entry_id = first.header("cv-dlq-id") or ""
    old = services.dead_letters.get(entry_id)
    assert old is not None and old.subject_key_id is not None
    assert services.keys.destroy_key(old.subject_key_id)  # the customer was erased
    assert queue.erased(old)
    (again,) = _dead(queue, event)  # the same event arrives once more: new personal data
    renewed = services.dead_letters.get(entry_id)
    assert renewed is not None and renewed.attempts == 2
    assert renewed.subject_key_id not in (None, old.subject_key_id)
    assert queue.original(renewed) == event and again.value != first.value
    # poison that names nobody (too deep to parse, not JSON, no customer) is master-sealed
    poison = [b"[" * 60_000, b"\xff\xfe", b'{"tenant": "acme"}', b'{"customer_ref": "C-1"}']
    sealed = [m.header("cv-sealing") for m in _dead(queue, *poison)]
    assert sealed == ["keyring-v1"] * 4


CONNECT_ARN = "arn:aws:connect:us-east-1:123456789012:instance/4f1c2d3e-0000-4000-8000-000000000001"
CONTACT = "6a8f0d3c-2b1e-4c9d-8e7f-1a2b3c4d5e6f"


@dataclass
class _Message:
    topic: str


@dataclass
class _Event:
    """The part of a faust event the worker reads of a source message."""

    value: bytes
    message: _Message
    key: bytes | None = None


@pytest.mark.clause("requests.removal")
def test_a_refused_connect_ctr_is_sealed_under_its_customer_and_erased(tmp_path: Path) -> None:
    """A CTR the Connect source refuses carries the customer's phone number: its dead
    letter is sealed under the customer the mapping would name (the binding's tenant and
    ``CustomerEndpoint.Address``, no customer attribute here), and erasing that customer
    shreds it."""
    sources = tmp_path / "sources.toml"
    sources.write_text(
        f'[[connect]]\ninstance_arn = "{CONNECT_ARN}"\n'
        'prefix = "s3://acme-connect/connect/CallRecordings/"\ntenant = "acme"\n'
    )
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "data"), "CALLVAULT_SOURCES": str(sources)}
    services = build_services(load_settings(env), clock=Clock())
    worker = Worker(services, broker_url="kafka://127.0.0.1:1")
    published: list[DlqMessage] = []

    async def publish(message: DlqMessage) -> None:
        published.append(message)

    worker._publish_dead_letter = publish  # type: ignore[method-assign]
    ctr = {
        "ContactId": CONTACT,
        "InstanceARN": CONNECT_ARN,
        "Channel": "VOICE",
        "Attributes": {},
        "CustomerEndpoint": {"Address": PHONE, "Type": "TELEPHONE_NUMBER"},
        # outside the binding's prefix: refused (unknown-source) before any S3 access
        "Recording": {"Location": f"acme-connect/elsewhere/{CONTACT}.wav", "Status": "AVAILABLE"},
    }
    value = json.dumps(ctr).encode()
    event = _Event(value, _Message("callvault.connect-ctr"))
    try:
        (outcome,) = asyncio.run(worker._source_message(event, lambda: worker._ctr_outcomes(value)))
        assert (outcome.status, outcome.reason) == ("refused", "unknown-source")
        (message,) = published
        assert message.header("cv-sealing") == "subject-v1"
        letter = services.dead_letters.get(message.header("cv-dlq-id") or "")
        assert letter is not None and letter.tenant == "acme"
        key = services.keys.live_subject_key(services.keys.subject_ref("acme", PHONE))
        assert key is not None and letter.subject_key_id == key.key_id
        queue = DeadLetterQueue.from_services(services)
        assert queue.original(letter) == value

        done = lifecycle_of(services).privacy.submit(
            {"type": "erase", "tenant": "acme", "customer_ref": PHONE,
             "identity_verification": verification()},
            requested_by="officer-7",
        )  # fmt: skip
        assert done.status.value == "completed", done.result
        with pytest.raises(KeyDestroyed, match=ORIGINAL_ERASED):
            queue.original(letter)
        assert queue.erased(letter)
        with pytest.raises(KeyDestroyed):  # the copy on callvault.dlq too
            services.keys.open_named(message.value, f"dlq:{letter.entry_id}")
    finally:
        worker.pipeline.close()
        services.close()


@pytest.mark.clause("requests.removal")
def test_the_erasure_removes_the_landing_audio_its_dead_letters_kept_and_only_theirs(
    services: Services,
) -> None:
    """A dead-lettered event keeps its landing audio (and sidecar) for a replay: the
    customer's voice, their reference in clear. Erasing the customer deletes what is
    provably theirs (audio ingest verified and claimed for that recording id) and keeps
    a file their event merely named (another call's audio, unverified)."""
    landing = services.settings.landing_dir
    pipeline = IngestPipeline.over(services, actor="worker:test")
    queue = DeadLetterQueue.from_services(services)
    own = landing / "dl-own.wav"
    own_audio = call_wav(2.0, codec="mulaw", seed=61)
    own.write_bytes(own_audio)
    victim = landing / "victim.wav"
    victim.write_bytes(call_wav(2.0, codec="mulaw", seed=62))  # another caller's audio
    now = services.clock()
    events = [
        demo_event(  # verified, then refused: its PCI pause lies past the audio
            "r-own", audio=own_audio, uri=f"file://{own}", seconds=2, customer=CUSTOMER,
            pci_pauses=[{"start_ms": 5000, "end_ms": 6000}], ended_at=now,
        ),
        demo_event(  # names another call's file with its own digest: never verified
            "r-foreign", audio=own_audio, uri=f"file://{victim}", seconds=2, customer=CUSTOMER,
            ended_at=now,
        ),
    ]  # fmt: skip
    services.landing.write_sidecar(f"file://{own}", events[0])  # as POST /v1/recordings does
    try:
        outcomes = pipeline.process_batch([json.dumps(e).encode() for e in events])
    finally:
        pipeline.close()
    assert [(o.status, o.reason) for o in outcomes] == [
        ("dlq", "pci-out-of-range"),
        ("dlq", "sha256-mismatch"),
    ]
    queue.record(
        [
            (outcome, DlqSource("callvault.recordings", 0, i, key=outcome.recording_id.encode()))  # type: ignore[union-attr]
            for i, outcome in enumerate(outcomes)
        ]
    )
    assert own.exists() and services.landing.read_sidecar(f"file://{own}") is not None

    done = lifecycle_of(services).privacy.submit(
        {"type": "erase", "tenant": "demo", "customer_ref": CUSTOMER,
         "identity_verification": verification()},
        requested_by="officer-7",
    )  # fmt: skip
    assert done.status.value == "completed", done.result
    assert (
        done.result["dead_letters_removed"],
        done.result["landing_files_removed"],
        done.result["landing_files_kept"],
    ) == (2, 1, 1)
    assert not own.exists()
    assert not (landing / f"dl-own.wav{SIDECAR_SUFFIX}").exists()
    assert victim.exists()  # not theirs to erase
    assert services.dead_letters.list(state=None) == []
