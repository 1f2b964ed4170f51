"""A call's event can come long after the call (a backlog after an outage, a PBX that
uploads its recordings hours later, a dead letter replayed, the reconciler announcing
landing audio again). When the customer had their data erased in between, that late
call must not come back: ingest declines it (``customer-erased``), destroys its landing
audio and creates no new key. Calls after the erasure are new and stored; other
customers, and erasures of named recordings only, block nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from callvault.demo import demo_event
from callvault.services import Services
from callvault.synth import call_wav
from streams.ingest import IngestPipeline
from tests.streams.lifecycle_support import (
    Clock,
    lifecycle_of,
    make_services,
    store_call,
    verification,
)

CUSTOMER = "C-4242"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(tmp_path: Path, catalog_url: str, clock: Clock) -> Iterator[Services]:
    opened = make_services(tmp_path, catalog_url, "local", clock)  # SQLite and PostgreSQL
    yield opened
    opened.close()


def _erase(services: Services, customer: str, **params: Any) -> None:
    done = lifecycle_of(services).privacy.submit(
        {"type": "erase", "tenant": "demo", "customer_ref": customer,
         "identity_verification": verification(), **params},
        requested_by="officer-7",
    )  # fmt: skip
    assert done.status.value == "completed", done.result


def _landed(services: Services, rid: str, customer: str, ended_ago: timedelta) -> bytes:
    audio = call_wav(2.0, codec="mulaw", seed=len(rid))
    path = services.settings.landing_dir / f"{rid}.wav"
    path.write_bytes(audio)
    event = demo_event(
        rid, audio=audio, uri=f"file://{path}", seconds=2, customer=customer,
        sha256=hashlib.sha256(audio).hexdigest(), ended_at=services.clock() - ended_ago,
    )  # fmt: skip
    return json.dumps(event).encode()


@pytest.mark.clause("requests.removal")
def test_a_late_event_of_an_erased_customer_s_call_is_declined_and_its_audio_destroyed(
    services: Services, clock: Clock
) -> None:
    store_call(services, "r-stored", customer=CUSTOMER, tenant="demo")
    store_call(services, "r-other-named", customer="C-5151", tenant="demo")
    _erase(services, CUSTOMER)
    _erase(services, "C-5151", recording_ids=["r-other-named"])  # named recordings only
    subject = services.keys.subject_ref("demo", CUSTOMER)
    assert services.keys.live_subject_key(subject) is None

    clock.now += timedelta(hours=3)  # the backlog arrives three hours later
    late = _landed(services, "r-late", CUSTOMER, ended_ago=timedelta(hours=4))
    later_call = _landed(services, "r-new", CUSTOMER, ended_ago=timedelta(hours=1))
    other = _landed(services, "r-other", "C-9090", ended_ago=timedelta(hours=4))
    named_only = _landed(services, "r-named-only", "C-5151", ended_ago=timedelta(hours=4))
    pipeline = IngestPipeline.over(services, actor="worker:test")
    try:
        outcomes = pipeline.process_batch([late, later_call, other, named_only])
    finally:
        pipeline.close()
    assert [(o.status, o.reason) for o in outcomes] == [
        ("declined", "customer-erased"),
        ("stored", ""),  # ended after the erasure was asked for: a new call
        ("stored", ""),
        ("stored", ""),
    ]
    landing = services.settings.landing_dir
    assert not (landing / "r-late.wav").exists()  # destroyed, not kept
    assert services.catalog.get_recording("r-late") is None
    (declined,) = [
        e
        for e in services.audit.iter_entries(recording_id="r-late")
        if e.action.startswith("ingest.")
    ]
    assert (declined.action, declined.reason) == ("ingest.declined", "customer-erased")
    # the new call got a new key; the erased one stays destroyed
    row = services.catalog.get_recording("r-new")
    assert row is not None and services.keys.key_destroyed(row.subject_key_id) is False
    erased_row = services.catalog.get_recording("r-stored")
    assert erased_row is not None and services.keys.key_destroyed(erased_row.subject_key_id)

    # the same late event once more (a redelivery): declined again, nothing stored
    pipeline = IngestPipeline.over(services, actor="worker:test")
    try:
        (again,) = pipeline.process_batch([late])
    finally:
        pipeline.close()
    assert (again.status, again.reason) == ("declined", "customer-erased")
    assert services.catalog.get_recording("r-late") is None
