"""S3 reflects the catalog (storage/mirror.py): a reschedule rewrites the tags of the
stored objects (batched, resumable); a legal hold sets the S3 legal hold on every
version of the objects it covers where the bucket has Object Lock, S3 itself then
refuses their deletion, and a release clears it. Real backends: a folder and SeaweedFS
buckets (versioned; Object Lock), SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from callvault.services import Services
from policies import load_policy
from storage.catalog.holds import LegalHold
from storage.errors import StorageError
from storage.mirror import OBJECT_FORMAT, tag_time
from storage.types import RecordingRow
from streams.endoflife import EndOfLife
from streams.metrics import Metrics
from streams.retention import RetentionService
from tests.fixtures.seaweedfs import BucketFactory
from tests.streams.lifecycle_support import (
    Clock,
    WebServer,
    lifecycle_of,
    make_services,
    request,
    store_call,
)

POLICY = Path(__file__).resolve().parents[2] / "policies" / "data" / "policy.yaml"


def tags(services: Services, row: RecordingRow) -> dict[str, str]:
    return services.vault.head(row.object_key).tags


def test_a_policy_change_rewrites_the_tags_of_the_stored_objects(
    services: Services, clock: Clock, tmp_path: Path
) -> None:
    rows = [store_call(services, f"r-tag-{i}") for i in range(3)]
    lifecycle = lifecycle_of(services)
    lifecycle.sweep_and_resume()  # first start: the rules digest is recorded, nothing moves
    assert tags(services, rows[0])["retain-until"] == tag_time(rows[0].retain_until)
    assert tags(services, rows[0])["legal-hold"] == "off"
    longer = tmp_path / "policy-400d.yaml"
    longer.write_text(POLICY.read_text().replace("    days: 90\n", "    days: 400\n", 1))
    changed = dataclasses.replace(services, policy=load_policy(longer))
    result = EndOfLife.from_services(changed, actor="worker:test").sweep_and_resume()
    assert result.rescheduled == 3
    assert services.mirror.pending() == 0
    for row in rows:
        now = services.catalog.get_recording(row.recording_id)
        assert now is not None and now.retain_until == row.ended_at + timedelta(days=400)
        assert tags(services, row) == {
            "purposes": "/".join(row.purposes),
            "retention-class": row.retention_class,
            "retain-until": tag_time(now.retain_until),
            "legal-hold": "off",
            "data-class": "call-audio",
            "format": OBJECT_FORMAT,
        }


def test_the_tag_rewrite_is_resumable(
    services: Services, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [store_call(services, f"r-resume-{i}") for i in range(4)]
    retention = RetentionService(services, actor="worker:test")
    retention.reschedule_if_policy_changed()
    shorter = tmp_path / "policy-30d.yaml"
    shorter.write_text(POLICY.read_text().replace("    days: 90\n", "    days: 30\n", 1))
    changed = RetentionService(
        dataclasses.replace(services, policy=load_policy(shorter)), actor="worker:test"
    )
    assert changed.reschedule_if_policy_changed().changed == 4
    assert services.mirror.pending() == 4
    real = services.vault.put_tags
    broken = rows[1].object_key

    def flaky(key: str, new_tags: Any, **kwargs: Any) -> None:
        if key == broken:
            raise StorageError("S3 put_object_tagging failed: 503 SlowDown (test)")
        real(key, new_tags, **kwargs)

    monkeypatch.setattr(services.vault, "put_tags", flaky)
    first = services.mirror.sync()
    assert (first.tagged, first.failed) == (3, ["r-resume-1"])
    assert services.mirror.pending() == 1  # the failed one stays queued
    monkeypatch.setattr(services.vault, "put_tags", real)
    second = services.mirror.sync()
    assert (second.tagged, second.failed, services.mirror.pending()) == (1, [], 0)
    for row in rows:
        assert tags(services, row)["retain-until"] == tag_time(row.ended_at + timedelta(days=30))


@pytest.fixture
def lock_services(
    tmp_path: Path,
    catalog_url: str,
    clock: Clock,
    seaweed_env: None,
    seaweed_endpoint: str,
    seaweed_buckets: BucketFactory,
) -> Iterator[Services]:
    bucket = seaweed_buckets.make("cv-lock", object_lock=True)
    opened = make_services(
        tmp_path, catalog_url, "s3", clock, s3_endpoint=seaweed_endpoint, s3_bucket=bucket
    )
    yield opened
    opened.close()


def versions(client: Any, bucket: str, key: str) -> list[str]:
    listing = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def held(client: Any, bucket: str, key: str) -> list[bool]:
    """The S3 legal hold of every version of ``key``, newest first."""
    found = []
    for version in versions(client, bucket, key):
        try:
            answer = client.get_object_legal_hold(Bucket=bucket, Key=key, VersionId=version)
        except ClientError as exc:  # never held: no legal hold configuration at all
            assert exc.response["Error"]["Code"] == "NoSuchObjectLegalHold"
            found.append(False)
            continue
        found.append(answer["LegalHold"]["Status"] == "ON")
    return found


def version_tags(client: Any, bucket: str, row: RecordingRow) -> dict[str, str]:
    info = client.get_object_tagging(
        Bucket=bucket, Key=row.object_key, VersionId=row.object_version
    )
    return {tag["Key"]: tag["Value"] for tag in info["TagSet"]}


def place(lifecycle: EndOfLife, scope: str, target: str, reference: str) -> LegalHold:
    return lifecycle.holds.place(
        tenant="acme",
        scope=scope,
        target=target,
        reason="litigation",
        reference=reference,
        placed_by="counsel-1",
        actor="user:counsel-1",
    )


def test_a_hold_sets_the_s3_legal_hold_on_every_version_and_s3_refuses_deletion(
    lock_services: Services, clock: Clock, seaweed_client: Any
) -> None:
    services = lock_services
    bucket = services.settings.vault.removeprefix("s3://")
    lifecycle = lifecycle_of(services)
    kept = [store_call(services, f"r-lit-{i}", customer="C-LIT") for i in range(2)]
    free = store_call(services, "r-free", customer="C-FREE")
    # a second version of one held object (written outside callvault)
    assert services.vault.put(kept[0].object_key, b"stray", tags={}).version_id
    customer_hold = place(lifecycle, "subject", kept[0].subject_ref, "CASE-1")
    call_hold = place(lifecycle, "call", kept[1].call_id, "CASE-2")
    mirrored = lifecycle.sync_vault()
    assert mirrored is not None and mirrored.held == 2 and not mirrored.failed
    assert held(seaweed_client, bucket, kept[0].object_key) == [True, True]
    assert held(seaweed_client, bucket, kept[1].object_key) == [True]
    assert held(seaweed_client, bucket, free.object_key) == [False]
    for row in kept:  # the tags of the version the catalog kept
        assert version_tags(seaweed_client, bucket, row)["legal-hold"] == "on"

    # S3 itself refuses, whoever asks: the vault, or anyone with delete rights
    assert services.vault.delete_many([kept[0].object_key]) == [kept[0].object_key]
    with pytest.raises(ClientError):
        seaweed_client.delete_object(
            Bucket=bucket, Key=kept[1].object_key, VersionId=kept[1].object_version
        )
    assert len(versions(seaweed_client, bucket, kept[0].object_key)) == 2

    # a recording of the held customer stored later is held in S3 too
    late = store_call(services, "r-lit-late", customer="C-LIT")
    lifecycle.sync_vault()
    assert held(seaweed_client, bucket, late.object_key) == [True]

    # releasing one of two holds keeps the S3 hold the other one needs
    lifecycle.holds.release(
        customer_hold.hold_id, released_by="counsel-1", reason="settled", actor="user:counsel-1"
    )
    lifecycle.sync_vault()
    assert held(seaweed_client, bucket, kept[0].object_key) == [False, False]
    assert held(seaweed_client, bucket, kept[1].object_key) == [True]
    assert version_tags(seaweed_client, bucket, kept[0])["legal-hold"] == "off"
    lifecycle.holds.release(
        call_hold.hold_id, released_by="counsel-1", reason="settled", actor="user:counsel-1"
    )
    clock.now = free.retain_until + timedelta(days=1)
    result = lifecycle.sweep_and_resume()  # the release is mirrored, then the sweep deletes
    assert held(seaweed_client, bucket, kept[1].object_key) == []
    assert sorted(result.expired) == ["r-free", "r-lit-0", "r-lit-1", "r-lit-late"]
    assert seaweed_client.list_object_versions(Bucket=bucket).get("Versions") is None


def test_a_hold_placed_over_http_is_in_s3_before_the_answer(
    lock_services: Services, clock: Clock, seaweed_client: Any
) -> None:
    services = lock_services
    bucket = services.settings.vault.removeprefix("s3://")
    row = store_call(services, "r-http-held")
    server = WebServer(services, lifecycle_of(services), Metrics()).start()
    try:
        token = server.token("officer-7", "compliance-officer")
        body = {"scope": "recording", "recording_id": row.recording_id}
        placed = request(
            server.port,
            "POST",
            "/v1/holds",
            token=token,
            body={**body, "reason": "litigation", "reference": "C-9"},
        )
        assert placed.status == 201, placed.body
        assert held(seaweed_client, bucket, row.object_key) == [True]
        released = request(
            server.port, "DELETE", f"/v1/holds/{placed.json()['hold_id']}?reason=done", token=token
        )
        assert released.status == 200, released.body
        assert held(seaweed_client, bucket, row.object_key) == [False]
    finally:
        server.stop()


def test_without_object_lock_a_hold_is_mirrored_in_the_tags_only(
    services: Services, clock: Clock
) -> None:
    row = store_call(services, "r-tag-held")
    lifecycle = lifecycle_of(services)
    place(lifecycle, "recording", row.recording_id, "CASE-3")
    mirrored = lifecycle.sync_vault()
    assert mirrored is not None and (mirrored.tagged, mirrored.held) == (1, 0)
    assert tags(services, row)["legal-hold"] == "on"  # no lifecycle rule matches it


def test_a_corrected_recording_keeps_the_version_of_its_new_object(
    s3_services: Services, clock: Clock, seaweed_client: Any
) -> None:
    services = s3_services
    bucket = services.settings.vault.removeprefix("s3://")
    wrong = store_call(services, "r-rekeyed", customer="C-WRONG")
    lifecycle = lifecycle_of(services)
    lifecycle.privacy.submit(
        {
            "type": "correct",
            "tenant": "acme",
            "customer_ref": "C-WRONG",
            "identity_verification": {"verified_by": "officer-7", "method": "id-document"},
            "corrections": {"customer_ref": "C-RIGHT"},
        },
        requested_by="officer-7",
    )
    row = services.catalog.get_recording("r-rekeyed")
    assert row is not None and row.object_key != wrong.object_key
    assert versions(seaweed_client, bucket, row.object_key) == [row.object_version]
    place(lifecycle, "recording", row.recording_id, "CASE-4")
    mirrored = lifecycle.sync_vault()
    assert mirrored is not None and (mirrored.tagged, mirrored.missing) == (1, [])
    assert version_tags(seaweed_client, bucket, row)["legal-hold"] == "on"
