"""RecordingCompleted validation: every bad field gets a stable reason code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.errors import EventRejected
from streams.events import PciPause, RejectReason, parse_recording_event

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def good(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schema": "callvault.recording.v1",
        "recording_id": "rec-0001",
        "call_id": "call-0001",
        "tenant": "acme",
        "started_at": "2026-11-25T10:00:00Z",
        "ended_at": "2026-11-25T10:01:00+00:00",
        "agent_id": "agent-7",
        "customer_ref": "CUST 555-0100",
        "queue": "billing",
        "direction": "inbound",
        "consent": {"recording": "notified"},
        "audio": {"uri": "file:///landing/rec-0001.wav", "format": "wav", "sha256": "a" * 64},
        "pci_pauses": [{"start_ms": 1000, "end_ms": 2000}],
    }
    event.update(changes)
    return event


def test_good_event_parses_to_typed_fields() -> None:
    event = parse_recording_event(json.dumps(good()).encode(), now=NOW)
    assert event.recording_id == "rec-0001"
    assert event.started_at == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert event.duration_ms == 60_000
    assert event.pci_pauses == (PciPause(1000, 2000),)
    assert event.purposes is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", RejectReason.MALFORMED),
        (b"\xff\xfe", RejectReason.MALFORMED),
        (b"[1, 2]", RejectReason.MALFORMED),
        (b"x" * 70_000, RejectReason.MALFORMED),
        (json.dumps(good(schema="callvault.recording.v0")).encode(), RejectReason.SCHEMA_VERSION),
        (
            json.dumps({k: v for k, v in good().items() if k != "tenant"}).encode(),
            RejectReason.SCHEMA,
        ),
        (json.dumps(good(extra=1)).encode(), RejectReason.SCHEMA),
        (json.dumps(good(recording_id="../../etc/passwd")).encode(), RejectReason.INVALID_FIELD),
        (json.dumps(good(recording_id="")).encode(), RejectReason.SCHEMA),
        (json.dumps(good(tenant="ACME Corp")).encode(), RejectReason.INVALID_FIELD),
        (json.dumps(good(started_at="yesterday")).encode(), RejectReason.INVALID_FIELD),
        (json.dumps(good(started_at="2026-11-25T10:00:00")).encode(), RejectReason.INVALID_FIELD),
        (json.dumps(good(ended_at="2026-11-25T09:00:00Z")).encode(), RejectReason.INVALID_FIELD),
        (json.dumps(good(ended_at="2026-11-27T09:00:00Z")).encode(), RejectReason.INVALID_FIELD),
        (json.dumps(good(direction="sideways")).encode(), RejectReason.INVALID_FIELD),
        (json.dumps(good(consent={"recording": "maybe"})).encode(), RejectReason.INVALID_FIELD),
        (json.dumps(good(consent="declined")).encode(), RejectReason.SCHEMA),
        (json.dumps(good(customer_ref="")).encode(), RejectReason.SCHEMA),
        (json.dumps(good(purposes=[])).encode(), RejectReason.SCHEMA),
        (json.dumps(good(purposes=["Marketing!"])).encode(), RejectReason.INVALID_FIELD),
        (
            json.dumps(good(audio={"uri": "file:///x", "format": "wav"})).encode(),
            RejectReason.SCHEMA,
        ),
        (
            json.dumps(
                good(audio={"uri": "file:///x", "format": "aiff", "sha256": "a" * 64})
            ).encode(),
            RejectReason.AUDIO_UNSUPPORTED,
        ),
        (
            json.dumps(good(audio={"uri": "file:///x", "format": "wav", "sha256": "xyz"})).encode(),
            RejectReason.INVALID_FIELD,
        ),
        (
            json.dumps(
                good(audio={"uri": "file:///x\u0000", "format": "wav", "sha256": "a" * 64})
            ).encode(),
            RejectReason.URI_INVALID,
        ),
        (
            json.dumps(good(pci_pauses=[{"start_ms": 5, "end_ms": 5}])).encode(),
            RejectReason.PCI_OUT_OF_RANGE,
        ),
        (
            json.dumps(good(pci_pauses=[{"start_ms": -5, "end_ms": 5}])).encode(),
            RejectReason.PCI_OUT_OF_RANGE,
        ),
        (
            json.dumps(good(pci_pauses=[{"start_ms": 90_000, "end_ms": 95_000}])).encode(),
            RejectReason.PCI_OUT_OF_RANGE,
        ),
        (
            json.dumps(good(pci_pauses=[{"start_ms": "1", "end_ms": 5}])).encode(),
            RejectReason.SCHEMA,
        ),
        (
            json.dumps(good(pci_pauses=[{"start_ms": True, "end_ms": 5}])).encode(),
            RejectReason.SCHEMA,
        ),
    ],
)
def test_bad_events_are_rejected_with_a_reason(payload: bytes, reason: RejectReason) -> None:
    with pytest.raises(EventRejected) as info:
        parse_recording_event(payload, now=NOW)
    assert info.value.reason == reason


def test_rejection_detail_never_echoes_the_customer_reference() -> None:
    with pytest.raises(EventRejected) as info:
        parse_recording_event(good(customer_ref="x" * 300), now=NOW)
    assert "x" * 20 not in str(info.value)
