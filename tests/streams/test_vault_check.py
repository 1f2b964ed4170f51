"""``callvault vault check [--repair]`` (storage/vaultcheck.py): objects without a stored
recording (a crash between the vault put and the catalog commit, a deletion that left
its object), recordings without their object, against a folder and SeaweedFS, SQLite
and PostgreSQL; repair deletes orphans past the grace period, audited."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner

from callvault.cli import cli
from callvault.services import Services
from storage.catalog.audit import AuditDraft
from storage.catalog.deadletters import DeadLetterDraft, DeadLetterStore
from storage.types import RecordingState
from storage.vaultcheck import VaultCheck
from streams.ingest import object_key_for
from tests.streams.lifecycle_support import Clock, lifecycle_of, store_call


def crash_between_put_and_commit(services: Services, rid: str) -> str:
    """What a worker killed after the vault put and before the catalog commit leaves."""
    subject = services.keys.subject_ref("acme", "C-CRASH")
    sealed = services.keys.seal_recording(
        recording_id=rid, tenant="acme", subject_ref=subject, plaintext=b"RIFF" + bytes(100)
    )
    key = object_key_for(services.keys, "acme", rid)
    services.vault.put(key, sealed.blob, tags={"retention-class": "standard-90d"})
    return key


def check(services: Services, **options: Any) -> Any:
    return VaultCheck(services.catalog, services.vault, actor="cli:test", clock=services.clock).run(
        **options
    )


def test_a_vault_that_matches_its_catalog_is_clean(services: Services, clock: Clock) -> None:
    for i in range(3):
        store_call(services, f"r-ok-{i}")
    result = check(services)
    assert (result.objects, result.recordings, result.clean) == (3, 3, True)
    assert result.orphans == [] and result.missing == [] and result.pending == 0


def test_orphans_and_missing_objects_are_found(services: Services, clock: Clock) -> None:
    ok = store_call(services, "r-ok")
    crashed = crash_between_put_and_commit(services, "r-crashed")
    ended = store_call(services, "r-expired-left")
    services.catalog.set_state(
        "r-expired-left",
        RecordingState.EXPIRED,
        audit=AuditDraft(actor="worker:test", action="retention.expired", outcome="ok"),
    )
    gone = store_call(services, "r-gone")
    services.vault.delete(gone.object_key)
    deleting = store_call(services, "r-deleting")  # a sweep is deleting it right now
    lifecycle_of(services).retention.endoflife.mark(
        [deleting], reason="retention-due", rule="retention:due", actor="worker:test"
    )
    result = check(services)
    assert {(f.object_key, f.reason, f.recording_id) for f in result.orphans} == {
        (crashed, "no-row", None),
        (ended.object_key, "expired", "r-expired-left"),
    }
    assert [(f.object_key, f.reason, f.recording_id) for f in result.missing] == [
        (gone.object_key, "no-object", "r-gone")
    ]
    assert result.pending == 1 and not result.clean
    assert services.vault.exists(ok.object_key) and services.vault.exists(crashed)  # read only


def test_a_sealed_dead_letter_original_is_not_an_orphan(services: Services, clock: Clock) -> None:
    store_call(services, "r-ok")
    blob_key = "dlq/ab/dlq-abcdef0123456789abcdef01.cvsr"
    services.vault.put(blob_key, b"sealed original", tags={"data-class": "dead-letter"})
    DeadLetterStore(services.catalog.database).record(
        [
            DeadLetterDraft(
                entry_id="dlq-abcdef0123456789abcdef01",
                reason="malformed",
                detail="not JSON",
                source_topic="callvault.recordings",
                source_partition=0,
                source_offset=7,
                original_key=None,
                sealed_value=None,
                blob_key=blob_key,
                value_size=15,
            )
        ]
    )
    services.vault.put("dlq/cd/dlq-forgotten.cvsr", b"no index row", tags={})
    result = check(services)
    assert result.dead_letters == 1
    assert [f.object_key for f in result.orphans] == ["dlq/cd/dlq-forgotten.cvsr"]


def test_a_lost_version_is_missing_even_when_a_newer_one_exists(
    s3_services: Services, clock: Clock, seaweed_client: Any
) -> None:
    services = s3_services
    row = store_call(services, "r-overwritten")
    services.vault.put(row.object_key, b"someone else's bytes", tags={})
    bucket = services.settings.vault.removeprefix("s3://")
    seaweed_client.delete_object(Bucket=bucket, Key=row.object_key, VersionId=row.object_version)
    result = check(services)
    assert [(f.recording_id, f.reason) for f in result.missing] == [
        ("r-overwritten", "version-missing")
    ]


def test_repair_deletes_orphans_past_the_grace_period_audited(
    services: Services, clock: Clock
) -> None:
    keep = store_call(services, "r-keep")
    orphans = [crash_between_put_and_commit(services, f"r-crash-{i}") for i in range(3)]
    written = datetime.now(UTC)
    clock.now = written + timedelta(minutes=30)  # an ingest may still be committing
    young = check(services, repair=True, grace=timedelta(hours=1))
    assert (young.repaired, young.too_young, young.clean) == ([], 3, False)
    assert all(services.vault.exists(key) for key in orphans)
    clock.now = written + timedelta(hours=2)
    repaired = check(services, repair=True, grace=timedelta(hours=1))
    assert sorted(repaired.repaired) == sorted(orphans) and repaired.clean
    assert not any(services.vault.exists(key) for key in orphans)
    assert services.vault.exists(keep.object_key)
    (entry,) = services.audit.iter_entries(action_prefix="vault.orphans-deleted")
    assert entry.details["deleted"] == 3 and sorted(entry.details["object_keys"]) == sorted(orphans)
    assert entry.details["reasons"] == {"no-row": 3}
    assert services.audit.verify().ok
    assert check(services).clean


def test_cli_vault_check_reports_repairs_and_exits_by_outcome(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    store_call(services, "r-cli-ok")
    orphan = crash_between_put_and_commit(services, "r-cli-crash")
    env = {
        "CALLVAULT_DATA_DIR": str(services.settings.data_dir),
        "CALLVAULT_CATALOG": services.settings.catalog,
    }
    runner = CliRunner()
    found = runner.invoke(cli, ["vault", "check"], env=env)
    assert found.exit_code == 1, found.output
    assert "1 orphan(s), 0 missing" in found.output and orphan in found.output
    young = runner.invoke(cli, ["vault", "check", "--repair"], env=env)  # grace 1h: too young
    assert young.exit_code == 1 and "1 younger than 1h left" in young.output
    fixed = runner.invoke(cli, ["vault", "check", "--repair", "--grace", "0s", "--json"], env=env)
    assert fixed.exit_code == 0, fixed.output
    body = json.loads(fixed.output[fixed.output.index("{") :])
    assert (body["orphans"], body["repaired"], body["clean"]) == (1, 1, True)
    assert not services.vault.exists(orphan)
    assert runner.invoke(cli, ["vault", "check"], env=env).exit_code == 0
    bad = runner.invoke(cli, ["vault", "check", "--grace", "soon"], env=env)
    assert bad.exit_code == 2 and "duration" in bad.output


def test_cli_vault_sync_all_retags_objects_written_before_the_tags_existed(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    row = store_call(services, "r-old-tags")
    services.vault.put_tags(row.object_key, {"retention-class": row.retention_class})
    env = {
        "CALLVAULT_DATA_DIR": str(services.settings.data_dir),
        "CALLVAULT_CATALOG": services.settings.catalog,
    }
    synced = CliRunner().invoke(cli, ["vault", "sync", "--all"], env=env)
    assert synced.exit_code == 0, synced.output
    assert "tags rewritten on 1 object(s)" in synced.output
    tags = services.vault.head(row.object_key).tags
    assert tags["legal-hold"] == "off" and tags["retention-class"] == row.retention_class
    assert hashlib.sha256(services.vault.get(row.object_key)).hexdigest() == row.ciphertext_sha256
