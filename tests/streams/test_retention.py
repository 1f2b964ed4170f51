"""Retention sweep, legal holds, rescheduling and receipts against real backends
(file vault and a versioned S3 bucket on SeaweedFS over HTTP; SQLite and PostgreSQL), with a
settable clock."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from callvault.cli import cli
from callvault.services import Services
from storage.catalog.receipts import DeletionReceipt
from storage.types import RecordingRow, RecordingState
from streams.metrics import Metrics
from streams.retention import RULES_DIGEST_SETTING, RetentionService
from tests.streams.lifecycle_support import Clock, lifecycle_of, make_services, store_call

POLICY = Path(__file__).resolve().parents[2] / "policies" / "data" / "policy.yaml"


def object_versions(services: Services, key: str) -> int:
    """How many versions / delete markers of ``key`` the vault still holds."""
    if services.settings.vault.startswith("s3://"):
        client = boto3.client(
            "s3", endpoint_url=services.settings.s3_endpoint, region_name="us-east-1"
        )
        bucket = services.settings.vault.removeprefix("s3://").split("/", 1)[0]
        listing = client.list_object_versions(Bucket=bucket, Prefix=key)
        return len(listing.get("Versions", [])) + len(listing.get("DeleteMarkers", []))
    return 1 if services.vault.exists(key) else 0


@pytest.mark.clause("storage-period", "storage-period.statistics")
def test_recordings_expire_exactly_at_the_boundary_everywhere(
    services: Services, clock: Clock
) -> None:
    metrics = Metrics()
    lifecycle = lifecycle_of(services, metrics)
    row = store_call(services, "r-boundary")
    other = store_call(services, "r-later", ended_at=row.ended_at + timedelta(seconds=1))
    # an old version too (a re-ingest overwrote the object): it must go as well
    services.vault.put(row.object_key, services.vault.get(row.object_key), tags={"a": "b"})
    stats_before = services.catalog.daily_stats()

    clock.now = row.retain_until - timedelta(microseconds=1)
    assert lifecycle.sweep_and_resume().expired == []
    assert services.catalog.get_recording("r-boundary").state is RecordingState.STORED  # type: ignore[union-attr]

    clock.now = row.retain_until
    result = lifecycle.sweep_and_resume()
    assert result.expired == ["r-boundary"]
    assert services.catalog.get_recording("r-boundary").state is RecordingState.EXPIRED  # type: ignore[union-attr]
    assert services.catalog.get_recording("r-later").state is RecordingState.STORED  # type: ignore[union-attr]
    assert object_versions(services, row.object_key) == 0  # every version gone
    assert object_versions(services, other.object_key) >= 1
    # receipt: stored, signed, verifiable, without personal data
    (receipt,) = lifecycle.receipts.for_recording("r-boundary")
    assert lifecycle.signer.verify(receipt)
    text = json.dumps(receipt.to_json())
    for personal in ("C-1001", row.subject_ref, "agent-7", row.call_id):
        assert personal not in text
    assert receipt.payload["rule"] == "retention:due"
    assert receipt.payload["clauses"] == ["storage-period"]
    assert receipt.payload["actor"] == "worker:test"
    # anonymous statistics outlive the recording; the audit chain is intact
    assert services.catalog.daily_stats() == stats_before
    assert services.audit.verify().ok
    assert [e.action for e in services.audit.iter_entries(recording_id="r-boundary")][
        -1
    ] == "retention.expired"
    assert metrics.deletions.labels("retention")._value.get() == 1
    # a second sweep at the same instant finds nothing more
    assert lifecycle.sweep_and_resume().expired == []


@pytest.mark.clause("storage-period.law")
def test_a_hold_beats_retention_and_a_released_hold_is_swept(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    by_recording = store_call(services, "r-held-rec")
    by_customer = store_call(services, "r-held-cust", customer="C-LIT")
    by_call = store_call(services, "r-held-call", call_id="CALL-99")
    free = store_call(services, "r-free", customer="C-FREE")
    holds = [
        lifecycle.holds.place(
            tenant="acme",
            scope="recording",
            target="r-held-rec",
            reason="litigation",
            reference="CASE-1",
            placed_by="counsel-1",
            actor="user:counsel-1",
        ),
        lifecycle.holds.place(
            tenant="acme",
            scope="subject",
            target=by_customer.subject_ref,
            reason="regulator inquiry",
            reference="REG-7",
            placed_by="counsel-2",
            actor="user:counsel-2",
        ),
        lifecycle.holds.place(
            tenant="acme",
            scope="call",
            target="CALL-99",
            reason="fraud case",
            reference="FR-3",
            placed_by="counsel-3",
            actor="user:counsel-3",
        ),
    ]
    clock.now = free.retain_until + timedelta(days=400)
    result = lifecycle.sweep_and_resume()
    assert result.expired == ["r-free"]
    held = {item["recording_id"]: item["hold"] for item in result.held}
    assert held["r-held-rec"]["hold_id"] == holds[0].hold_id
    assert held["r-held-cust"] == {**holds[1].summary()}
    assert held["r-held-call"]["placed_by"] == "counsel-3"
    assert held["r-held-call"]["reason"] == "fraud case"
    for row in (by_recording, by_customer, by_call):
        assert services.vault.exists(row.object_key)
    # a recording of the held customer ingested later is held too
    late = store_call(
        services, "r-held-cust-2", customer="C-LIT", ended_at=clock.now - timedelta(days=100)
    )
    assert "r-held-cust-2" in {i["recording_id"] for i in lifecycle.sweep_and_resume().held}

    for hold in holds:
        lifecycle.holds.release(
            hold.hold_id, released_by="counsel-1", reason="case closed", actor="user:counsel-1"
        )
    assert lifecycle.holds.count_active() == 0
    result = lifecycle.sweep_and_resume()
    assert sorted(result.expired) == ["r-held-call", "r-held-cust", "r-held-cust-2", "r-held-rec"]
    assert not services.vault.exists(late.object_key)
    assert services.audit.verify().ok


@pytest.mark.clause("storage-period")
def test_a_policy_change_reschedules_stored_recordings(
    catalog_url: str, tmp_path: Path, clock: Clock
) -> None:
    services = make_services(tmp_path, catalog_url, "file", clock)
    try:
        row = store_call(services, "r-policy")
        lifecycle = lifecycle_of(services)
        first = lifecycle.retention.reschedule_if_policy_changed()
        assert first.previous_digest is None and first.changed == 0
        assert lifecycle.retention.reschedule_if_policy_changed().checked == 0  # unchanged: no work
        shorter = tmp_path / "policy-30d.yaml"
        shorter.write_text(POLICY.read_text().replace("    days: 90\n", "    days: 30\n", 1))
        from policies import load_policy

        retention = RetentionService(
            dataclasses.replace(services, policy=load_policy(shorter)), actor="worker:test"
        )
        result = retention.reschedule_if_policy_changed()
        assert (result.changed, result.checked) == (1, 1)
        assert result.previous_digest == first.digest != result.digest
        new_until = services.catalog.get_recording("r-policy").retain_until  # type: ignore[union-attr]
        assert new_until == row.ended_at + timedelta(days=30)
        assert retention.endoflife.get_setting(RULES_DIGEST_SETTING) == result.digest
        (entry,) = services.audit.iter_entries(
            recording_id="r-policy", action_prefix="retention.rescheduled"
        )
        assert entry.details["retain_until"] == [
            row.retain_until.isoformat(),
            new_until.isoformat(),
        ]
        clock.now = new_until
        assert retention.sweep().expired == ["r-policy"]
    finally:
        services.close()


@pytest.mark.clause("storage-period")
def test_contract_termination_moves_recordings_to_the_end_of_contract_schedule(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    row = store_call(services, "r-contract", customer="C-LEAVING")
    bystander = store_call(services, "r-stay", customer="C-STAYING")
    terminated = clock.now + timedelta(days=2)
    out = lifecycle.privacy.submit(
        {
            "type": "contract-terminated",
            "tenant": "acme",
            "customer_ref": "C-LEAVING",
            "terminated_at": terminated.isoformat(),
        },
        requested_by="billing",
    )
    assert out.status.value == "completed" and out.result["rescheduled"] == 1
    until = services.catalog.get_recording("r-contract").retain_until  # type: ignore[union-attr]
    assert until == terminated + timedelta(days=30) < row.retain_until
    assert services.catalog.get_recording("r-stay").retain_until == bystander.retain_until  # type: ignore[union-attr]
    # a call of the former customer after the termination is caught up by the sweep
    late = store_call(
        services, "r-contract-late", customer="C-LEAVING", ended_at=terminated + timedelta(days=1)
    )
    clock.now = until
    result = lifecycle.sweep_and_resume()
    assert result.expired == ["r-contract"] and result.rescheduled == 1
    assert services.catalog.get_recording(
        "r-contract-late"
    ).retain_until == late.ended_at + timedelta(days=30)  # type: ignore[union-attr]


@pytest.mark.clause("storage-period")
def test_a_sweep_interrupted_after_deleting_objects_is_finished_next_time(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    rows = [store_call(services, f"r-crash-{i}") for i in range(3)]
    clock.now = rows[0].retain_until
    # the crash: intents written and objects deleted, catalog not yet changed
    store = lifecycle.retention.endoflife
    store.mark(rows[:2], reason="retention-due", rule="retention:due", actor="worker:test")
    services.vault.delete_many([rows[0].object_key])
    assert [i.recording_id for i in store.pending_intents()] == ["r-crash-0", "r-crash-1"]
    result = lifecycle.sweep_and_resume()
    assert result.resumed == 2
    assert sorted(result.expired) == ["r-crash-0", "r-crash-1", "r-crash-2"]
    assert store.pending_intents() == []
    for row in rows:
        assert not services.vault.exists(row.object_key)
        assert len(lifecycle.receipts.for_recording(row.recording_id)) == 1  # exactly one receipt
    assert services.audit.verify().ok


def test_a_hold_placed_after_the_due_query_keeps_its_recording(
    services: Services, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = lifecycle_of(services)
    row = store_call(services, "r-late-hold")
    free = store_call(services, "r-late-free", customer="C-FREE")
    store = lifecycle.retention.endoflife
    listed = store.due

    def due_then_hold(now: datetime, limit: int) -> list[RecordingRow]:
        rows = listed(now, limit)
        if "r-late-hold" in {r.recording_id for r in rows}:  # counsel is faster than us
            lifecycle.holds.place(
                tenant="acme",
                scope="recording",
                target="r-late-hold",
                reason="litigation",
                reference="CASE-9",
                placed_by="counsel-1",
                actor="user:counsel-1",
            )
        return rows

    monkeypatch.setattr(store, "due", due_then_hold)
    clock.now = max(row.retain_until, free.retain_until)
    result = lifecycle.sweep_and_resume()
    assert result.expired == ["r-late-free"]
    assert services.catalog.get_recording("r-late-hold").state is RecordingState.STORED  # type: ignore[union-attr]
    assert services.vault.exists(row.object_key)
    assert lifecycle.receipts.for_recording("r-late-hold") == []
    assert store.pending_intents() == []
    assert "r-late-hold" in {item["recording_id"] for item in result.held}
    assert services.audit.verify().ok


def test_a_leftover_intent_of_a_now_held_recording_is_dropped_not_executed(
    services: Services, clock: Clock
) -> None:
    lifecycle = lifecycle_of(services)
    held = store_call(services, "r-intent-held")
    free = store_call(services, "r-intent-free", customer="C-FREE")
    clock.now = max(held.retain_until, free.retain_until)
    store = lifecycle.retention.endoflife
    # a sweep marked both and crashed; then a hold was placed on the customer
    marked = store.mark(
        [held, free], reason="retention-due", rule="retention:due", actor="worker:test"
    )
    assert marked == ["r-intent-held", "r-intent-free"]
    hold = lifecycle.holds.place(
        tenant="acme",
        scope="subject",
        target=held.subject_ref,
        reason="regulator inquiry",
        reference="REG-9",
        placed_by="counsel-2",
        actor="user:counsel-2",
    )
    result = lifecycle.sweep_and_resume()
    assert result.expired == ["r-intent-free"] and result.resumed == 1
    assert services.catalog.get_recording("r-intent-held").state is RecordingState.STORED  # type: ignore[union-attr]
    assert object_versions(services, held.object_key) >= 1
    assert object_versions(services, free.object_key) == 0
    assert store.pending_intents() == []
    (dropped,) = services.audit.iter_entries(action_prefix="retention.intent-dropped")
    assert dropped.recording_id == "r-intent-held" and dropped.reason == "legal-hold"
    # marking a held recording marks nothing
    assert store.mark([held], reason="retention-due", rule="retention:due", actor="x") == []
    lifecycle.holds.release(
        hold.hold_id, released_by="counsel-2", reason="closed", actor="user:counsel-2"
    )
    assert lifecycle.sweep_and_resume().expired == ["r-intent-held"]
    assert services.audit.verify().ok


def test_dry_run_changes_nothing(file_services: Services, clock: Clock) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    row = store_call(services, "r-dry")
    clock.now = row.retain_until
    head = services.audit.head()
    result = lifecycle.sweep_and_resume(dry_run=True)
    assert result.expired == ["r-dry"] and result.dry_run
    assert services.vault.exists(row.object_key)
    assert services.audit.head() == head
    assert services.catalog.get_recording("r-dry").state is RecordingState.STORED  # type: ignore[union-attr]


def test_a_tampered_receipt_does_not_verify(
    file_services: Services, clock: Clock, tmp_path: Path
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    row = store_call(services, "r-receipt")
    clock.now = row.retain_until
    lifecycle.sweep_and_resume()
    (receipt,) = lifecycle.receipts.for_recording("r-receipt")
    forged = DeletionReceipt(
        {**receipt.payload, "deleted_at": "2030-01-01T00:00:00.000000Z"}, receipt.signature
    )
    assert lifecycle.signer.verify(receipt) and not lifecycle.signer.verify(forged)
    # through the CLI, by id and from a file
    env = {
        "CALLVAULT_DATA_DIR": str(services.settings.data_dir),
        "CALLVAULT_CATALOG": services.settings.catalog,
    }
    runner = CliRunner()
    ok = runner.invoke(cli, ["retention", "receipt", "verify", receipt.receipt_id], env=env)
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output and "r-receipt" in ok.output
    bad_file = tmp_path / "forged.json"
    bad_file.write_text(json.dumps(forged.to_json()))
    bad = runner.invoke(cli, ["retention", "receipt", "verify", str(bad_file)], env=env)
    assert bad.exit_code == 1 and "INVALID" in bad.output
    missing = runner.invoke(cli, ["retention", "receipt", "verify", "rcpt_nope"], env=env)
    assert missing.exit_code == 2 and "no deletion receipt" in missing.output


def test_cli_sweep_holds_and_dry_run(file_services: Services, clock: Clock) -> None:
    services = file_services
    row = store_call(services, "r-cli")
    store_call(services, "r-cli-held", customer="C-HOLD")
    env = {
        "CALLVAULT_DATA_DIR": str(services.settings.data_dir),
        "CALLVAULT_CATALOG": services.settings.catalog,
    }
    runner = CliRunner()
    placed = runner.invoke(
        cli,
        [
            "hold",
            "place",
            "--scope",
            "customer",
            "--target",
            "C-HOLD",
            "--tenant",
            "acme",
            "--reason",
            "litigation",
            "--reference",
            "CASE-9",
            "--by",
            "counsel-1",
        ],
        env=env,
    )
    assert placed.exit_code == 0, placed.output
    assert "covers 1 recording" in placed.output
    hold_id = placed.output.split(":")[0]
    listed = runner.invoke(cli, ["hold", "list"], env=env)
    assert hold_id in listed.output and "C-HOLD" not in listed.output  # pseudonym, not the raw ref
    when = (row.retain_until + timedelta(seconds=1)).isoformat()
    dry = runner.invoke(cli, ["retention", "sweep", "--dry-run", "--now", when], env=env)
    assert dry.exit_code == 0 and "would expire 1" in dry.output
    assert services.catalog.get_recording("r-cli").state is RecordingState.STORED  # type: ignore[union-attr]
    swept = runner.invoke(cli, ["retention", "sweep", "--now", when, "--json"], env=env)
    assert swept.exit_code == 0, swept.output
    body = json.loads(swept.output[swept.output.index("{") :])
    assert body["expired_ids"] == ["r-cli"] and body["held"][0]["hold"]["hold_id"] == hold_id
    released = runner.invoke(
        cli, ["hold", "release", hold_id, "--reason", "closed", "--by", "counsel-1"], env=env
    )
    assert released.exit_code == 0
    again = runner.invoke(cli, ["retention", "sweep", "--now", when], env=env)
    assert "expired 1 recording" in again.output
    bad = runner.invoke(cli, ["retention", "sweep", "--now", "yesterday"], env=env)
    assert bad.exit_code == 2 and "ISO 8601" in bad.output
    unknown = runner.invoke(
        cli, ["hold", "release", "hold_nope", "--reason", "x", "--by", "y"], env=env
    )
    assert unknown.exit_code == 2 and "no legal hold" in unknown.output


def test_worker_refuses_to_start_on_an_invalid_policy(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(POLICY.read_text().replace("    days: 90\n", "    days: -5\n", 1))
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "data"), "CALLVAULT_POLICY": str(bad)}
    for command in (["worker"], ["up"]):
        result = CliRunner().invoke(cli, command, env=env)
        assert result.exit_code == 2, result.output
        assert "retention_classes.standard-90d.days" in result.output
        assert "error:" in result.output


def test_policy_response_deadline_is_validated(tmp_path: Path) -> None:
    from policies import check_policy

    bad = tmp_path / "policy.yaml"
    bad.write_text(POLICY.read_text().replace("  response_days: 14\n", "  response_days: 0\n"))
    problems = [str(p) for p in check_policy(bad)]
    assert any("privacy_requests.response_days" in p for p in problems), problems
