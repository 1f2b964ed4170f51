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


# -- issue 11: the declared layout, legs and per-channel pauses -------------------------

_LEGS = [
    {"uri": "file:///landing/in.wav", "sha256": "b" * 64, "role": "customer"},
    {"uri": "file:///landing/out.wav", "sha256": "c" * 64, "role": "agent"},
]


def _audio(**fields: Any) -> dict[str, Any]:
    return {"format": "sln", "uri": "file:///landing/r.raw", "sha256": "a" * 64, **fields}


def test_layout_legs_and_pause_channels_parse() -> None:
    event = parse_recording_event(
        good(
            audio=_audio(sample_rate=16000, channels=2, channel_roles=["customer", "agent"]),
            pci_pauses=[{"start_ms": 5000, "end_ms": 9500, "channels": ["agent", 0]}],
        ),
        now=NOW,
    )
    assert (event.audio.sample_rate, event.audio.channels) == (16000, 2)
    assert event.audio.channel_roles == ("customer", "agent")
    assert event.pci_pauses == (PciPause(5000, 9500, (0, 1)),)
    legs = parse_recording_event(good(audio={"format": "wav", "legs": _LEGS}), now=NOW).audio
    assert legs.channels == 2 and legs.channel_roles == ("customer", "agent")
    assert legs.files == (
        ("file:///landing/in.wav", "b" * 64),
        ("file:///landing/out.wav", "c" * 64),
    )
    assert (legs.uri, legs.sha256) == legs.files[0]


@pytest.mark.parametrize(
    ("audio", "pauses", "reason"),
    [
        (_audio(channels=3), None, RejectReason.INVALID_FIELD),
        (_audio(channels="2"), None, RejectReason.SCHEMA),
        (_audio(sample_rate=1000), None, RejectReason.INVALID_FIELD),
        (_audio(sample_rate=True), None, RejectReason.SCHEMA),
        (_audio(channels=1, channel_roles=["customer", "agent"]), None, RejectReason.INVALID_FIELD),
        (_audio(channel_roles=["agent", "agent"]), None, RejectReason.INVALID_FIELD),
        (_audio(channel_roles=["Agent"]), None, RejectReason.INVALID_FIELD),
        (_audio(bitrate=16000), None, RejectReason.SCHEMA),  # still no unknown fields
        ({"format": "wav", "legs": _LEGS, "uri": "file:///x"}, None, RejectReason.SCHEMA),
        ({"format": "wav", "legs": _LEGS[:1]}, None, RejectReason.SCHEMA),
        ({"format": "wav", "legs": [_LEGS[0], {**_LEGS[1], "role": "customer"}]}, None,
         RejectReason.INVALID_FIELD),
        ({"format": "wav", "legs": [_LEGS[0], {**_LEGS[1], "uri": _LEGS[0]["uri"]}]}, None,
         RejectReason.INVALID_FIELD),
        ({"format": "wav", "legs": _LEGS, "channel_roles": ["agent", "customer"]}, None,
         RejectReason.INVALID_FIELD),
        ({"format": "wav", "legs": [_LEGS[0], {**_LEGS[1], "sha256": "x"}]}, None,
         RejectReason.INVALID_FIELD),
        (_audio(channels=1), [{"start_ms": 0, "end_ms": 5, "channels": [1]}],
         RejectReason.PCI_OUT_OF_RANGE),
        (_audio(), [{"start_ms": 0, "end_ms": 5, "channels": ["agent"]}],
         RejectReason.PCI_OUT_OF_RANGE),
        (_audio(), [{"start_ms": 0, "end_ms": 5, "channels": [True]}], RejectReason.SCHEMA),
        (_audio(), [{"start_ms": 0, "end_ms": 5, "channel": [0]}], RejectReason.SCHEMA),
    ],
)  # fmt: skip
def test_bad_layouts_are_rejected(
    audio: dict[str, Any], pauses: list[dict[str, Any]] | None, reason: RejectReason
) -> None:
    changes: dict[str, Any] = {"audio": audio}
    if pauses is not None:
        changes["pci_pauses"] = pauses
    with pytest.raises(EventRejected) as info:
        parse_recording_event(good(**changes), now=NOW)
    assert info.value.reason == reason, info.value.detail
