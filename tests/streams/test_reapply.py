"""The erasure journal (storage.erasures) and its re-application
(streams.privacy.reapply): a restored catalog is erased again in-process, a start reads
only what was journaled since the catalog's cursor, a forged entry erases nothing."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from callvault.cli import cli
from callvault.services import Services
from storage.erasures import ERASURE_PREFIX, ErasureEntry
from storage.types import RecordingState
from streams.dlq import DeadLetterQueue, DlqSource
from streams.ingest import IngestOutcome
from streams.privacy.reapply import CURSOR_SETTING, reapply_erasures
from tests.streams.lifecycle_support import NOW, lifecycle_of, store_call, verification


def _erase(services: Services, customer: str, request_id: str) -> None:
    done = lifecycle_of(services).privacy.submit(
        {"type": "erase", "tenant": "acme", "customer_ref": customer,
         "request_id": request_id, "identity_verification": verification()},
        requested_by="officer-7",
    )  # fmt: skip
    assert done.result["subject_key_destroyed"] is True


def _unerase(services: Services, recording_id: str, key_id: str, subject_ref: str) -> None:
    """What restoring an older backup does to one recording and its key."""
    with services.catalog.database.transaction() as tx:
        tx.execute(
            "UPDATE recordings SET state = 'stored', subject_ref = ? WHERE recording_id = ?",
            (subject_ref, recording_id),
        )
        tx.execute(
            "UPDATE subject_keys SET wrapped_key = ?, destroyed_at = NULL WHERE key_id = ?",
            (b"restored", key_id),
        )


def test_a_start_reads_what_was_journaled_since_its_cursor(file_services: Services) -> None:
    services = file_services
    row = store_call(services, "r-rj-1", customer="C-RJ")
    _erase(services, "C-RJ", "PR-RJ-1")
    keys = sorted(services.vault.iter_keys(ERASURE_PREFIX))
    assert len(keys) == 2 and all(k.startswith(f"{ERASURE_PREFIX}{NOW:%Y-%m}/") for k in keys)
    intent, done = sorted(services.erasure_journal().entries(), key=lambda e: len(e.receipt_ids))
    assert intent.subject_key_ids == done.subject_key_ids == (row.subject_key_id,)
    assert intent.receipt_ids == () and len(done.receipt_ids) == 1  # the signed receipt's id
    assert services.receipts.get(done.receipt_ids[0]).payload["recording_id"] == "r-rj-1"
    first = reapply_erasures(services, actor="test")
    assert first.entries == 2 and not first.changed  # applied already: nothing to do
    assert services.endoflife.get_setting(CURSOR_SETTING) is not None

    # an entry journaled three months ago is outside the months a start lists
    old = store_call(services, "r-rj-old", customer="C-OLD")
    services.erasure_journal().record(
        ErasureEntry(request_id="PR-OLD", tenant="acme", erased_at=NOW - timedelta(days=90),
                     object_keys=(old.object_key,))
    )  # fmt: skip
    assert reapply_erasures(services, actor="test").entries == 2
    kept = services.catalog.get_recording("r-rj-old")
    assert kept is not None and kept.state is RecordingState.STORED
    full = reapply_erasures(services, actor="test", full=True)
    assert full.entries == 3 and full.recordings_erased == ["r-rj-old"]

    # the restore brings r-rj-1 back; the backup's cursor is older than the erasure
    _unerase(services, "r-rj-1", row.subject_key_id, row.subject_ref)
    services.endoflife.set_setting(CURSOR_SETTING, "2026-11-20T00:00:00.000000Z")
    again = reapply_erasures(services, actor="test")
    assert again.keys_destroyed == [row.subject_key_id]
    assert again.recordings_erased == ["r-rj-1"]
    erased = services.catalog.get_recording("r-rj-1")
    assert erased is not None and erased.state is RecordingState.ERASED


def test_a_forged_entry_erases_nothing(file_services: Services, tmp_path: Path) -> None:
    services = file_services
    victim = store_call(services, "r-victim", customer="C-VICTIM")
    forged = (
        '{"payload":{"kind":"callvault.erasure.v1","request_id":"PR-X","tenant":"acme",'
        '"erased_at":"2026-11-25T09:00:00.000000Z","subject_key_ids":["'
        + victim.subject_key_id
        + '"],"object_keys":[],"receipt_ids":[]},"signature":"sig1.AAAA"}'
    )
    services.vault.put(f"{ERASURE_PREFIX}2026-11/forged.json", forged.encode(), tags={})
    report = reapply_erasures(services, actor="test", full=True)
    assert report.unsigned_entries == [f"{ERASURE_PREFIX}2026-11/forged.json"]
    assert not report.changed
    key = services.catalog.get_subject_key_by_id(victim.subject_key_id)
    assert key is not None and key.wrapped_key is not None
    env = {k: None for k in os.environ if k.startswith("CALLVAULT_")}
    env.update({"CALLVAULT_DATA_DIR": str(tmp_path / "data"),
                "CALLVAULT_CATALOG": f"sqlite:///{tmp_path}/catalog.sqlite3"})  # fmt: skip
    result = CliRunner().invoke(cli, ["keys", "reconcile", "--full"], env=env)
    assert result.exit_code == 1 and "do not verify" in result.output


def test_a_restored_catalog_loses_the_erased_customer_s_dead_letters_again(
    file_services: Services,
) -> None:
    """A catalog restored from a backup older than the erasure brings back the
    customer's live key and their dead letters: the reapply removes the letters (while
    the restored key can still open them for the landing files they name), then
    destroys the key again."""
    services = file_services
    store_call(services, "r-rj-dl", customer="C-RJD")
    event = b'{"recording_id": "r-rj-dead", "tenant": "acme", "customer_ref": "C-RJD"}'
    queue = DeadLetterQueue.from_services(services)
    (message,) = queue.record(
        [
            (
                IngestOutcome(
                    "dlq", "r-rj-dead", "audio-undecodable", payload=event, tenant="acme"
                ),
                DlqSource("callvault.recordings", 0, 7, key=b"r-rj-dead"),
            )
        ]
    )
    entry_id = message.header("cv-dlq-id") or ""
    db = services.catalog.database
    letter_row = db.fetch_one("SELECT * FROM dead_letters WHERE entry_id = ?", (entry_id,))
    key_row = db.fetch_one(
        "SELECT key_id, subject_ref, wrapped_key FROM subject_keys WHERE subject_ref = ?",
        (services.keys.subject_ref("acme", "C-RJD"),),
    )
    assert letter_row is not None and key_row is not None
    _erase(services, "C-RJD", "PR-RJ-DL")
    assert services.dead_letters.get(entry_id) is None

    with db.transaction() as tx:  # the older backup comes back
        marks = ", ".join("?" for _ in letter_row)
        tx.execute(f"INSERT INTO dead_letters VALUES ({marks})", tuple(letter_row))
        tx.execute(
            "UPDATE subject_keys SET wrapped_key = ?, subject_ref = ?, destroyed_at = NULL "
            "WHERE key_id = ?",
            (key_row[2], key_row[1], key_row[0]),
        )
    assert queue.original(services.dead_letters.get(entry_id)) == event  # type: ignore[arg-type]

    report = reapply_erasures(services, actor="test", full=True)
    assert report.dead_letters_removed == 1 and key_row[0] in report.keys_destroyed
    assert services.dead_letters.get(entry_id) is None
    assert services.keys.key_destroyed(key_row[0])
    reasons = [e.reason for e in services.audit.iter_entries() if e.action == "dlq.erased"]
    assert reasons == ["erasure-requested", "catalog-restored"]
