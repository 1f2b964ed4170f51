"""Signed audit checkpoints (storage.checkpoints): the issue's rewrite (a grant turned
into a denial, every later record re-chained, the head updated) passes the bare chain
check but not ``callvault audit verify``; deleted, forged and outrun checkpoints are
named; a rewritten log is never signed; on an Object Lock bucket the checkpoints are
under the S3 legal hold."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callvault.cli import cli
from callvault.services import Services, build_services
from callvault.settings import load_settings
from storage.catalog.audit import AuditDraft, entry_hash
from storage.catalog.sql import from_db_time
from storage.checkpoints import (
    CHECKPOINT_PREFIX,
    AuditCheckpoints,
    Checkpoint,
    CheckpointError,
    checkpoint_key,
)
from storage.types import AuditEntry


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CALLVAULT_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def services(env: dict[str, str]) -> Iterator[Services]:
    built = build_services(load_settings(env))
    yield built
    built.close()


def _append(services: Services, n: int, *, granted_at: int | None = None) -> None:
    for i in range(n):
        outcome = "granted" if i == granted_at else "ok"
        services.audit.append(
            AuditDraft(actor="user:alice", action="access.play", outcome=outcome,
                       reason="allowed", recording_id=f"rec-{i}")
        )  # fmt: skip


def _rewrite(services: Services, seq: int) -> None:
    """Exactly the issue's attack: turn record ``seq`` from granted to denied, re-chain
    every later record and update the head, by SQL on the catalog."""
    db = services.catalog.database
    rows = db.fetch_all(
        "SELECT seq, at, actor, action, outcome, reason, recording_id, details, prev_hash, hash, "
        "tenant, hash_form FROM audit_log WHERE seq >= ? ORDER BY seq",
        (seq - 1,),
    )
    prev = rows[0][9]
    with db.transaction() as tx:
        for row in rows[1:]:
            entry = AuditEntry(
                seq=int(row[0]), at=from_db_time(row[1]), actor=row[2], action=row[3],
                outcome="denied" if int(row[0]) == seq else row[4], reason=row[5],
                recording_id=row[6], details=json.loads(row[7]), prev_hash=prev,
                tenant=row[10], hash_form=int(row[11]),
            )  # fmt: skip
            entry = replace(entry, hash=entry_hash(entry))
            tx.execute(
                "UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (entry.outcome, entry.prev_hash, entry.hash, entry.seq),
            )
            prev = entry.hash
        tx.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))


def _verify_cli(env: dict[str, str]) -> Any:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CALLVAULT_")}
    clean.update(env)
    return CliRunner().invoke(cli, ["audit", "verify"], env=clean, catch_exceptions=False)


@pytest.mark.clause("management.safety")
def test_the_issue_s_rewrite_passes_the_chain_but_not_the_checkpoints(
    services: Services, env: dict[str, str]
) -> None:
    checkpoints = services.audit_checkpoints()
    _append(services, 10, granted_at=4)
    first = checkpoints.write_due(services.clock())
    assert first is not None
    _append(services, 10)
    second = checkpoints.write(services.audit.head(), first)  # type: ignore[arg-type]
    assert (second.prev_seq, second.prev_digest) == (first.seq, first.digest)
    services.audit.append(AuditDraft(actor="user:bob", action="access.play", outcome="granted"))
    target = services.audit.head().seq  # type: ignore[union-attr]
    assert checkpoints.write(services.audit.head(), second).seq == target  # type: ignore[arg-type]
    ok = _verify_cli(env)
    assert ok.exit_code == 0, ok.output
    assert "audit chain intact" in ok.output and "checkpoints intact: 3" in ok.output

    _rewrite(services, target)
    assert services.audit.verify().ok  # the bare chain cannot tell
    result = checkpoints.verify()
    assert not result.ok and result.first_broken_seq == target
    (problem,) = result.problems
    assert f"checkpoint seq {target}" in problem and "rewritten" in problem
    cli = _verify_cli(env)
    assert cli.exit_code == 1
    assert "audit chain intact" in cli.output
    assert f"checkpoints BROKEN (first affected record {target})" in cli.output
    # and the worker will not sign the rewritten log
    services.audit.append(AuditDraft(actor="user:eve", action="access.play", outcome="ok"))
    fresh = services.audit_checkpoints()  # a restarted worker: the last one from the vault
    with pytest.raises(CheckpointError, match="rewritten"):
        fresh.write(services.audit.head(), fresh.latest())  # type: ignore[arg-type]


def test_a_rewrite_inside_an_earlier_span_names_the_checkpoint_after_it(
    services: Services,
) -> None:
    checkpoints = services.audit_checkpoints()
    _append(services, 5)
    first = checkpoints.write_due(services.clock())
    _append(services, 5, granted_at=2)
    second = checkpoints.write(services.audit.head(), first)  # type: ignore[arg-type]
    _append(services, 5)
    checkpoints.write(services.audit.head(), second)  # type: ignore[arg-type]
    _rewrite(services, 8)
    result = checkpoints.verify()
    assert result.first_broken_seq == second.seq == 10
    assert any("after seq 5" in p for p in result.problems)


def test_deleted_forged_and_outrun_checkpoints_are_named(services: Services) -> None:
    checkpoints = services.audit_checkpoints()
    written: list[Checkpoint] = []
    for _ in range(3):
        _append(services, 3)
        written.append(checkpoints.write(services.audit.head(), written[-1] if written else None))  # type: ignore[arg-type]
    assert checkpoints.verify().ok
    # a checkpoint deleted from the vault: the next one names it
    services.vault.delete(checkpoint_key(written[1].seq))
    result = checkpoints.verify()
    assert any(
        f"follows checkpoint seq {written[1].seq}, which is missing" in p for p in result.problems
    )
    # a forged one (a hash changed, the old signature kept)
    forged = replace(written[2], hash="0" * 64)
    services.vault.put(checkpoint_key(forged.seq), forged.to_bytes(), tags={})
    assert any("signature does not verify" in p for p in checkpoints.verify().problems)
    # the log truncated below a signed seq
    db = services.catalog.database
    with db.transaction() as tx:
        tx.execute("DELETE FROM audit_log WHERE seq > ?", (written[0].seq - 1,))
        tx.execute("UPDATE audit_head SET seq = ? WHERE id = 1", (written[0].seq - 1,))
    result = checkpoints.verify()
    assert any("were removed" in p for p in result.problems)
    assert list(services.vault.iter_keys(CHECKPOINT_PREFIX))  # evidence stays in the vault


def test_checkpoints_are_due_every_n_records_or_seconds(services: Services) -> None:
    checkpoints = AuditCheckpoints(
        services.audit, services.vault, services.keyring, every_records=5, every_seconds=60
    )
    now = services.clock()
    assert checkpoints.write_due(now) is None  # empty log
    _append(services, 2)
    first = checkpoints.write_due(now)
    assert first is not None and first.seq == 2
    _append(services, 3)
    assert checkpoints.write_due(now) is None  # 3 records, 0 s
    _append(services, 2)
    by_count = checkpoints.write_due(now)
    assert by_count is not None and by_count.seq == 7
    _append(services, 1)
    from datetime import timedelta

    assert checkpoints.write_due(now + timedelta(seconds=59)) is None
    by_time = checkpoints.write_due(now + timedelta(seconds=61))
    assert by_time is not None and by_time.seq == 8
    # a fresh writer (a restarted worker) continues from the vault
    again = services.audit_checkpoints()
    assert again.latest() == by_time


def test_on_an_object_lock_bucket_checkpoints_are_under_legal_hold(
    tmp_path: Path,
    seaweed_env: None,
    seaweed_endpoint: str,
    seaweed_lock_bucket: str,
    seaweed_client: Any,
) -> None:
    services = build_services(
        load_settings(
            {
                "CALLVAULT_DATA_DIR": str(tmp_path / "data"),
                "CALLVAULT_VAULT": f"s3://{seaweed_lock_bucket}",
                "CALLVAULT_S3_ENDPOINT": seaweed_endpoint,
            }
        )
    )
    try:
        _append(services, 3)
        written = services.audit_checkpoints().write_due(services.clock())
        assert written is not None
        key = checkpoint_key(written.seq)
        hold = seaweed_client.get_object_legal_hold(Bucket=seaweed_lock_bucket, Key=key)
        assert hold["LegalHold"]["Status"] == "ON"
        version = seaweed_client.head_object(Bucket=seaweed_lock_bucket, Key=key)["VersionId"]
        with pytest.raises(Exception, match="AccessDenied|locked|legal hold|Forbidden"):
            seaweed_client.delete_object(Bucket=seaweed_lock_bucket, Key=key, VersionId=version)
        assert services.audit_checkpoints().verify().ok
    finally:
        services.close()


def _restore_older_backup(services: Services, keep_through: int) -> None:
    """What restoring an older catalog backup does to the log: the tail is gone."""
    db = services.catalog.database
    kept = db.fetch_one("SELECT hash FROM audit_log WHERE seq = ?", (keep_through,))
    assert kept is not None
    with db.transaction() as tx:
        tx.execute("DELETE FROM audit_log WHERE seq > ?", (keep_through,))
        tx.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (keep_through, kept[0]))


def test_a_deliberate_restore_begins_a_new_epoch_that_still_catches_rewrites(
    services: Services, env: dict[str, str]
) -> None:
    checkpoints = services.audit_checkpoints()
    _append(services, 5)
    first = checkpoints.write(services.audit.head(), None)  # type: ignore[arg-type]
    _append(services, 5)
    checkpoints.write(services.audit.head(), first)  # type: ignore[arg-type]
    _restore_older_backup(services, 7)  # the backup had records 1..7
    assert any("were removed" in p for p in checkpoints.verify().problems)
    with pytest.raises(CheckpointError, match="--restart"):
        services.audit_checkpoints().write_due(services.clock())

    clean = {k: None for k in os.environ if k.startswith("CALLVAULT_")} | env
    restarted = CliRunner().invoke(
        cli, ["audit", "checkpoint", "--restart", "restored the nightly backup (INC-42)"],
        env=clean, catch_exceptions=False,
    )  # fmt: skip
    assert restarted.exit_code == 0, restarted.output
    assert "new checkpoint epoch 1 at seq 8" in restarted.output
    result = checkpoints.verify()
    assert result.ok, result.problems
    assert any("restored the nightly backup" in n and "1 checkpoint(s)" in n for n in result.notes)
    ok = _verify_cli(env)
    assert ok.exit_code == 0 and "note: restart at seq 8" in ok.output
    # the new epoch continues as before
    _append(services, 3)
    worker = services.audit_checkpoints()
    worker.every_records = 1
    nxt = worker.write_due(services.clock())
    assert nxt is not None and (nxt.epoch, nxt.prev_seq) == (1, 8)
    assert checkpoints.verify().ok
    # and records the restore kept are still covered by the old epoch's checkpoint
    _rewrite(services, 3)
    broken = checkpoints.verify()
    assert not broken.ok and broken.first_broken_seq == first.seq


def test_a_restart_over_a_rewritten_log_is_refused(services: Services) -> None:
    checkpoints = services.audit_checkpoints()
    _append(services, 6)
    first = checkpoints.write(services.audit.head(), None)  # type: ignore[arg-type]
    _append(services, 4)
    checkpoints.write(services.audit.head(), first)  # type: ignore[arg-type]
    _restore_older_backup(services, 8)
    _rewrite(services, 2)  # not a restore: the kept records differ
    with pytest.raises(CheckpointError, match="rewritten"):
        checkpoints.restart("cover it up")


def test_the_checkpoint_command_waits_for_the_signing_worker(
    services: Services, env: dict[str, str]
) -> None:
    """`callvault audit checkpoint` signs under the workers' audit-checkpoint lease: while
    a worker holds it, the command signs nothing (exit 1); once released, it signs."""
    from datetime import timedelta

    from storage.catalog.leases import CHECKPOINT_LEASE, LeaseStore

    _append(services, 3)
    leases = LeaseStore(services.catalog.database, services.clock)
    assert leases.acquire(CHECKPOINT_LEASE, "worker-1:4242", timedelta(minutes=5))
    clean = {k: None for k in os.environ if k.startswith("CALLVAULT_")} | env
    refused = CliRunner().invoke(cli, ["audit", "checkpoint"], env=clean, catch_exceptions=False)
    assert refused.exit_code == 1, refused.output
    assert "checkpoint not signed now" in refused.output and "worker-1:4242" in refused.output
    assert services.audit_checkpoints().latest() is None
    assert leases.release(CHECKPOINT_LEASE, "worker-1:4242")
    signed = CliRunner().invoke(cli, ["audit", "checkpoint"], env=clean, catch_exceptions=False)
    assert signed.exit_code == 0, signed.output
    assert "checkpoint signed at seq 3" in signed.output
    latest = services.audit_checkpoints().latest()
    assert latest is not None and latest.seq == 3
