"""The vault version id in the catalog and the vault mirror queue (migration 8), on
SQLite and PostgreSQL: every change the vault mirrors is queued in its own transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from storage.catalog import Catalog, EndOfLifeStore, HoldStore, ScheduleChange, open_catalog
from storage.catalog.audit import AuditDraft
from storage.catalog.vaultsync import HOLD, TAGS, VaultSyncQueue
from storage.errors import AuditError
from storage.types import RecordingState
from tests.storage.test_catalog import make_row, stored


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with open_catalog(catalog_url, migrate=True) as opened:
        yield opened


def queued(catalog: Catalog) -> dict[str, int]:
    return {item.recording_id: item.needs for item in VaultSyncQueue(catalog.database).pending()}


def place(holds: HoldStore, scope: str, target: str) -> str:
    return holds.place(
        tenant="acme",
        scope=scope,
        target=target,
        reason="litigation",
        reference="CASE-1",
        placed_by="counsel",
        actor="user:counsel",
    ).hold_id


def test_the_version_written_is_kept(catalog: Catalog) -> None:
    catalog.store_recordings(
        [
            (make_row("r1", object_version="3HL4kqtJvjVBH40Nrjfkd"), stored("r1")),
            (make_row("r2"), stored("r2")),
        ]
    )
    first, second = catalog.get_recording("r1"), catalog.get_recording("r2")
    assert first is not None and first.object_version == "3HL4kqtJvjVBH40Nrjfkd"
    assert second is not None and second.object_version is None
    assert EndOfLifeStore(catalog).rows_by_id(["r1"])["r1"].object_version == (
        "3HL4kqtJvjVBH40Nrjfkd"
    )


def test_reschedule_queues_the_changed_recordings_for_their_tags(catalog: Catalog) -> None:
    catalog.store_recordings([(make_row(rid), stored(rid)) for rid in ("r1", "r2", "r3")])
    endoflife = EndOfLifeStore(catalog)
    row = catalog.get_recording("r1")
    assert row is not None and queued(catalog) == {}
    draft = AuditDraft(actor="system:retention", action="retention.rescheduled", outcome="ok")
    changes = [
        ScheduleChange(rid, "end-of-contract", row.retain_until + timedelta(days=9), draft)
        for rid in ("r1", "r2", "gone")
    ]
    assert endoflife.reschedule(changes) == 2
    assert queued(catalog) == {"r1": TAGS, "r2": TAGS}


def test_holds_queue_the_stored_recordings_they_name(catalog: Catalog) -> None:
    catalog.store_recordings(
        [
            (make_row("r1", subject_ref="s-a"), stored("r1")),
            (make_row("r2", subject_ref="s-a", call_id="c-9"), stored("r2")),
            (make_row("r3", subject_ref="s-b"), stored("r3")),
            (make_row("r4", subject_ref="s-a", state=RecordingState.EXPIRED), stored("r4")),
        ]
    )
    holds = HoldStore(catalog)
    queue = VaultSyncQueue(catalog.database)
    hold_id = place(holds, "subject", "s-a")
    assert queued(catalog) == {"r1": HOLD, "r2": HOLD}  # not the expired one
    queue.done(queue.pending())
    assert queued(catalog) == {}
    place(holds, "call", "c-9")
    assert queued(catalog) == {"r2": HOLD}
    queue.done(queue.pending())
    holds.release(hold_id, released_by="counsel", reason="settled", actor="user:counsel")
    assert queued(catalog) == {"r1": HOLD, "r2": HOLD}


def test_a_recording_stored_under_an_active_hold_is_queued(catalog: Catalog) -> None:
    place(HoldStore(catalog), "subject", "s-held")
    catalog.store_recordings(
        [
            (make_row("new-held", subject_ref="s-held"), stored("new-held")),
            (make_row("new-free", subject_ref="s-free"), stored("new-free")),
        ]
    )
    assert queued(catalog) == {"new-held": HOLD}


def test_queueing_again_merges_needs_and_done_keeps_what_was_queued_meanwhile(
    catalog: Catalog,
) -> None:
    catalog.store_recordings([(make_row(rid), stored(rid)) for rid in ("r1", "r2")])
    queue = VaultSyncQueue(catalog.database)
    queue.enqueue(["r1", "r2"], TAGS)
    taken = queue.pending()
    queue.enqueue(["r2"], HOLD)  # a hold placed while the mirror was working on r2
    queue.done(taken)
    assert queued(catalog) == {"r2": TAGS | HOLD}
    assert queue.count() == 1
    queue.enqueue(["r1"], TAGS)
    assert [item.recording_id for item in queue.pending(needs=HOLD)] == ["r2"]
    assert [item.recording_id for item in queue.pending(needs=TAGS)] == ["r1", "r2"]
    queue.done(queue.pending(needs=TAGS))
    assert queued(catalog) == {}
    assert queue.enqueue_stored(TAGS) == 2
    assert queued(catalog) == {"r1": TAGS, "r2": TAGS}
    assert [item.recording_id for item in queue.pending(1, after="r1")] == ["r2"]


def test_a_failed_store_queues_nothing(catalog: Catalog) -> None:
    place(HoldStore(catalog), "subject", "s-held")
    bad = AuditDraft(
        actor="worker:test", action="ingest.stored", outcome="ok", details={"email": "a@b.c"}
    )
    with pytest.raises(AuditError):
        catalog.store_recordings([(make_row("r1", subject_ref="s-held"), bad)])
    assert catalog.get_recording("r1") is None
    assert queued(catalog) == {}
