"""Amazon Connect: the recording in S3 (real SeaweedFS) and its contact trace record,
joined by contact id in either order into one 8 kHz stereo event, customer left."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.audio import decode
from streams.sources.config import parse_sources
from streams.sources.connect import ctr_fields
from tests.fixtures.signals import envelope, ncc, split_channels
from tests.fixtures.telephony import TelephonySamples
from tests.streams.sources.conftest import (
    CONNECT_ARN,
    SourceWorld,
    aws_notification,
)

CONTACT = "6a8f0d3c-2b1e-4c9d-8e7f-1a2b3c4d5e6f"
KEY = f"connect/northwind/CallRecordings/2026/11/25/{CONTACT}_20261125T10:00_UTC.wav"


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ctr(bucket: str, **overrides: Any) -> dict[str, Any]:
    """A contact trace record in the shape Amazon Connect streams to Kinesis."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    record: dict[str, Any] = {
        "AWSAccountId": "123456789012",
        "AWSContactTraceRecordFormatVersion": "2017-03-10",
        "Agent": {
            "ARN": f"{CONNECT_ARN}/agent/0f2b-sam",
            "AfterContactWorkDuration": 12,
            "AgentInteractionDuration": 8,
            "ConnectedToAgentTimestamp": _iso(start + timedelta(seconds=30)),
            "Username": "sam.agent",
        },
        "AgentConnectionAttempts": 1,
        "Attributes": {"customer_ref": "C-1001"},
        "Channel": "VOICE",
        "ConnectedToSystemTimestamp": _iso(start),
        "ContactId": CONTACT,
        "CustomerEndpoint": {"Address": "+15555550100", "Type": "TELEPHONE_NUMBER"},
        "DisconnectTimestamp": _iso(start + timedelta(seconds=38)),
        "InitialContactId": None,
        "InitiationMethod": "INBOUND",
        "InitiationTimestamp": _iso(start),
        "InstanceARN": CONNECT_ARN,
        "LastUpdateTimestamp": _iso(start + timedelta(seconds=60)),
        "Queue": {"ARN": f"{CONNECT_ARN}/queue/q1", "Name": "Billing Queue"},
        "Recording": {
            "DeletionReason": None,
            "Location": f"{bucket}/{KEY}",
            "Status": "AVAILABLE",
            "Type": "AUDIO",
        },
        "SystemEndpoint": {"Address": "+15555550199", "Type": "TELEPHONE_NUMBER"},
    }
    record.update(overrides)
    return record


def _binding(bucket: str) -> Any:
    return parse_sources(
        {
            "connect": [
                {
                    "instance_arn": CONNECT_ARN,
                    "tenant": "acme",
                    "prefix": f"s3://{bucket}/connect/northwind/CallRecordings/",
                }
            ]
        }  # fmt: skip
    ).connect[0]


def test_what_a_ctr_maps_to() -> None:
    record = ctr("acme-connect")
    fields, bucket, key = ctr_fields(record, _binding("acme-connect"))  # type: ignore[misc]
    assert (bucket, key) == ("acme-connect", KEY)
    assert fields["recording_id"] == CONTACT and fields["call_id"] == CONTACT
    assert fields["customer_ref"] == "C-1001"  # the contact attribute wins over the number
    assert fields["agent_id"] == "sam.agent" and fields["queue"] == "Billing-Queue"
    assert fields["direction"] == "inbound"
    assert fields["started_at"] == record["Agent"]["ConnectedToAgentTimestamp"]
    assert fields["ended_at"] == record["DisconnectTimestamp"]
    no_attribute = ctr("acme-connect", Attributes={}, InitiationMethod="CALLBACK")
    fields, _, _ = ctr_fields(no_attribute, _binding("acme-connect"))  # type: ignore[misc]
    assert fields["customer_ref"] == "+15555550100" and fields["direction"] == "outbound"
    assert ctr_fields(ctr("b", Recording=None), _binding("b")) is None  # not recorded
    assert ctr_fields(ctr("b", Channel="CHAT"), _binding("b")) is None


def test_ctrs_that_cannot_be_joined_are_refused(world: SourceWorld) -> None:
    on_ctr = world.sources.on_ctr_message
    cases = {
        b"{not json": "malformed",
        json.dumps({"ContactId": CONTACT}).encode(): "malformed",
        json.dumps(ctr(world.bucket, InstanceARN=CONNECT_ARN + "x")).encode(): "unknown-source",
        json.dumps(
            ctr(world.bucket, Recording={"Location": f"{world.bucket}/elsewhere/{CONTACT}.wav"})
        ).encode(): "unknown-source",
        json.dumps(
            ctr(world.bucket, ContactId="11111111-2222-4333-8444-555555555555")
        ).encode(): "contact-mismatch",
    }
    for payload, reason in cases.items():
        outcome = on_ctr(payload)
        assert (outcome.status, outcome.reason) == ("refused", reason), (payload[:60], outcome)
    skipped = on_ctr(json.dumps(ctr(world.bucket, Recording=None)).encode())
    assert (skipped.status, skipped.reason) == ("skipped", "not-recorded")
    assert world.metrics.source_received.labels("connect")._value.get() == 6


def _check_stored(world: SourceWorld, event: dict[str, Any], samples: TelephonySamples) -> None:
    sample = samples.get("amazon-connect-wav")
    assert event["audio"]["channel_roles"] == ["customer", "agent"]
    assert (event["audio"]["sample_rate"], event["audio"]["channels"]) == (8000, 2)
    (stored,) = world.ingest(event)
    assert stored.status == "stored", stored
    row = world.services.catalog.get_recording(CONTACT)
    assert row is not None and row.channels == 2 and row.sample_rate == 8000
    audio = decode(
        world.services.keys.open_recording(world.services.vault.get(row.object_key)), "wav"
    )
    left, right = split_channels(audio.pcm, 2)
    customer = envelope(split_channels(decode(sample.path.read_bytes(), "wav").pcm, 2)[0], 8000)
    assert ncc(envelope(left, 8000), customer) > 0.99  # the customer stays left
    assert ncc(envelope(right, 8000), customer) < 0.3


def test_the_ctr_first_then_the_recording(
    world: SourceWorld, telephony_samples: TelephonySamples
) -> None:
    waiting = world.sources.on_ctr_message(json.dumps(ctr(world.bucket)).encode())
    assert (waiting.status, waiting.reason) == ("skipped", "waiting-for-recording"), waiting
    pending = json.loads(
        world.client.get_object(Bucket=world.bucket, Key=KEY + ".event.json")["Body"].read()
    )
    assert pending["recording_id"] == CONTACT and "sha256" not in pending["audio"]
    sample = telephony_samples.get("amazon-connect-wav")
    world.client.put_object(Bucket=world.bucket, Key=KEY, Body=sample.path.read_bytes())
    (outcome,) = world.sources.on_s3_message(None, aws_notification(world.bucket, KEY))
    assert outcome.status == "mapped" and outcome.source == "connect", outcome
    assert outcome.event is not None
    _check_stored(world, outcome.event, telephony_samples)


def test_the_recording_first_then_the_ctr_and_duplicates(
    world: SourceWorld, telephony_samples: TelephonySamples
) -> None:
    sample = telephony_samples.get("amazon-connect-wav")
    world.client.put_object(Bucket=world.bucket, Key=KEY, Body=sample.path.read_bytes())
    (waiting,) = world.sources.on_s3_message(None, aws_notification(world.bucket, KEY))
    assert (waiting.status, waiting.reason) == ("skipped", "waiting-for-ctr")
    outcome = world.sources.on_ctr_message(json.dumps(ctr(world.bucket)).encode())
    assert outcome.status == "mapped", outcome
    again = world.sources.on_ctr_message(json.dumps(ctr(world.bucket)).encode())  # CTR update
    assert (again.status, again.reason) == ("skipped", "duplicate")
    assert outcome.event is not None
    _check_stored(world, outcome.event, telephony_samples)
