"""The S3 notification adapter's contract, against the real SeaweedFS server: objects
PUT with their call metadata (user metadata, tags or a sidecar), announced in the
shape AWS documents, become events the real core path stores; everything else is
refused with a reason or skipped, and nothing is deleted."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.audio import decode
from tests.fixtures.telephony import TelephonySamples
from tests.streams.sources.conftest import SourceWorld, aws_notification


def _times() -> dict[str, str]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return {
        "started-at": start.isoformat().replace("+00:00", "Z"),
        "ended-at": (start + timedelta(seconds=8)).isoformat().replace("+00:00", "Z"),
    }


def _meta(**extra: str) -> dict[str, str]:
    return {
        "call-id": "c-100",
        "customer-ref": "C-1001",
        "agent-id": "a-7",
        "queue": "billing",
        **_times(),
        **extra,
    }


def _put(world: SourceWorld, key: str, body: bytes, **kw: Any) -> dict[str, Any]:
    response: dict[str, Any] = world.client.put_object(
        Bucket=world.bucket, Key=key, Body=body, **kw
    )
    return response


def _etag(response: dict[str, Any]) -> str:
    return str(response["ETag"]).strip('"')


def _exists(world: SourceWorld, key: str) -> bool:
    listed = world.client.list_objects_v2(Bucket=world.bucket, Prefix=key)
    return any(item["Key"] == key for item in listed.get("Contents", []))


def test_an_object_with_metadata_is_mapped_and_stored(
    world: SourceWorld, telephony_samples: TelephonySamples
) -> None:
    sample = telephony_samples.get("asterisk-wav")
    audio = sample.path.read_bytes()
    key = "calls/2026/11/25/1764590400.17.wav"
    etag = _etag(_put(world, key, audio, Metadata=_meta()))

    (outcome,) = world.sources.on_s3_message(None, aws_notification(world.bucket, key, etag=etag))

    assert outcome.status == "mapped", outcome
    event = outcome.event
    assert event is not None
    assert event["tenant"] == "acme" and event["call_id"] == "c-100"
    assert event["customer_ref"] == "C-1001" and event["queue"] == "billing"
    assert event["audio"] == {
        "uri": f"s3://{world.bucket}/{key}",
        "format": "wav",
        "sha256": hashlib.sha256(audio).hexdigest(),
    }
    assert event["recording_id"].startswith("s3-")
    # The event waits beside the audio for the reconciler.
    sidecar = json.loads(
        world.client.get_object(Bucket=world.bucket, Key=key + ".event.json")["Body"].read()
    )
    assert sidecar == event

    (stored,) = world.ingest(event)
    assert stored.status == "stored", stored
    row = world.services.catalog.get_recording(event["recording_id"])
    assert row is not None and row.tenant == "acme"
    assert not _exists(world, key)  # the core path owns landing audio: deleted once stored
    plain = world.services.keys.open_recording(world.services.vault.get(row.object_key))
    assert decode(plain, "wav").pcm == decode(audio, "wav").pcm


def test_metadata_from_tags_and_the_sidecar_later_wins(
    world: SourceWorld, telephony_samples: TelephonySamples
) -> None:
    audio = telephony_samples.get("asterisk-wav").path.read_bytes()
    key = "calls/tagged.wav"
    meta = _meta()
    _put(world, key, audio, Metadata={"call-id": meta.pop("call-id")})
    world.client.put_object_tagging(
        Bucket=world.bucket,
        Key=key,
        Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in meta.items()]},
    )
    (outcome,) = world.sources.on_s3_message(None, aws_notification(world.bucket, key))
    assert outcome.status == "mapped", outcome
    assert outcome.event is not None and outcome.event["agent_id"] == "a-7"


def test_audio_without_metadata_waits_for_its_sidecar(
    world: SourceWorld, telephony_samples: TelephonySamples
) -> None:
    audio = telephony_samples.get("asterisk-wav").path.read_bytes()
    key = "calls/1764590400.18.wav"
    _put(world, key, audio)
    (waiting,) = world.sources.on_s3_message(None, aws_notification(world.bucket, key))
    assert (waiting.status, waiting.reason) == ("skipped", "waiting-for-metadata")
    assert _exists(world, key)  # nothing touched

    sidecar = {k.replace("-", "_"): v for k, v in _meta(**{"recording-id": "pbx-18"}).items()}
    _put(world, key + ".event.json", json.dumps(sidecar).encode())
    (outcome,) = world.sources.on_s3_message(
        None, aws_notification(world.bucket, key + ".event.json")
    )
    assert outcome.status == "mapped" and outcome.recording_id == "pbx-18", outcome

    # At-least-once: the redelivered notification, and the notification of the sidecar
    # the adapter itself rewrote, are duplicates; neither reads or rewrites anything.
    for again in (key, key + ".event.json"):
        (dup,) = world.sources.on_s3_message(None, aws_notification(world.bucket, again))
        assert (dup.status, dup.reason) == ("skipped", "duplicate"), dup
    assert world.ingest(outcome.event)[0].status == "stored"  # type: ignore[arg-type]
    # After ingest (a new worker: nothing remembered), the object is gone.
    fresh = world.fresh_sources()
    (gone,) = fresh.on_s3_message(None, aws_notification(world.bucket, key))
    assert (gone.status, gone.reason) == ("skipped", "gone")


def test_a_restarted_adapter_finds_a_stored_recording_a_duplicate(
    world: SourceWorld, telephony_samples: TelephonySamples
) -> None:
    audio = telephony_samples.get("asterisk-wav").path.read_bytes()
    key = "calls/redelivered.wav"
    _put(world, key, audio, Metadata=_meta(**{"recording-id": "pbx-dup"}))
    (first,) = world.sources.on_s3_message(None, aws_notification(world.bucket, key))
    assert first.event is not None
    assert world.ingest(first.event)[0].status == "stored"
    # The same object comes back (a PBX retrying its upload) and is announced again.
    _put(world, key, audio, Metadata=_meta(**{"recording-id": "pbx-dup"}))
    fresh = world.fresh_sources()
    (again,) = fresh.on_s3_message(None, aws_notification(world.bucket, key))
    assert (again.status, again.reason) == ("skipped", "duplicate")


def test_refusals_carry_a_reason_and_delete_nothing(
    world: SourceWorld, telephony_samples: TelephonySamples
) -> None:
    audio = telephony_samples.get("asterisk-wav").path.read_bytes()
    cases = {
        "calls/other-tenant.wav": (_meta(tenant="globex"), "tenant-mismatch"),
        "calls/bad-time.wav": (_meta(**{"started-at": "yesterday"}), "invalid-metadata"),
        "calls/bad-direction.wav": (_meta(direction="sideways"), "invalid-field"),
        "calls/bad-call-id.wav": (_meta(**{"call-id": "not an id"}), "invalid-field"),
    }
    for key, (meta, reason) in cases.items():
        _put(world, key, audio, Metadata=meta)
        (outcome,) = world.sources.on_s3_message(None, aws_notification(world.bucket, key))
        assert (outcome.status, outcome.reason) == ("refused", reason), (key, outcome)
        assert _exists(world, key)
    # A sidecar that leaves a required field out is refused, not waited for.
    _put(world, "calls/half.wav", audio)
    _put(world, "calls/half.wav.event.json", json.dumps({"call_id": "c-1"}).encode())
    (half,) = world.sources.on_s3_message(None, aws_notification(world.bucket, "calls/half.wav"))
    assert (half.status, half.reason) == ("refused", "missing-metadata")
    assert "customer_ref" in half.detail and "C-1001" not in half.detail
    # Outside every binding; not JSON; not an object notification at all.
    (unbound,) = world.sources.on_s3_message(None, aws_notification(world.bucket, "x/y.wav"))
    assert (unbound.status, unbound.reason) == ("refused", "unknown-source")
    (broken,) = world.sources.on_s3_message(None, b"{not json")
    assert (broken.status, broken.reason) == ("refused", "malformed")
    (shape,) = world.sources.on_s3_message(None, b'{"hello": "world"}')
    assert (shape.status, shape.reason) == ("refused", "malformed")
    refused = world.metrics.source_refused
    assert refused.labels("s3", "tenant-mismatch")._value.get() == 1
    assert refused.labels("s3", "malformed")._value.get() == 2
    assert world.metrics.source_received.labels("s3")._value.get() == 8


def test_deletes_and_test_events_are_skipped(world: SourceWorld) -> None:
    removed = aws_notification(world.bucket, "calls/a.wav", event="ObjectRemoved:Delete")
    (skipped,) = world.sources.on_s3_message(None, removed)
    assert (skipped.status, skipped.reason) == ("skipped", "not-object-created")
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}).encode()
    (nothing,) = world.sources.on_s3_message(None, test_event)
    assert nothing.status == "skipped"
