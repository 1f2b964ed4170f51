"""Hash-chained audit log, run against SQLite and a real PostgreSQL (``catalog_url``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.catalog import Catalog, open_catalog
from storage.catalog.audit import (
    GENESIS_HASH,
    AuditDraft,
    AuditLog,
    check_details,
    entry_hash,
)
from storage.catalog.sql import open_database, to_db_time
from storage.errors import AuditError
from storage.types import AuditEntry


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with open_catalog(catalog_url, migrate=True) as opened:
        yield opened


def draft(index: int, **changes: Any) -> AuditDraft:
    base = AuditDraft(
        actor="user:qa-7",
        action="access.granted",
        outcome="granted",
        reason="purpose_quality",
        recording_id=f"rec-{index}",
        details={"purpose": "quality", "n": index, "ratio": 0.5, "tags": ["a", "b"]},
    )
    return replace(base, **changes)


def fill(log: AuditLog, count: int) -> list[AuditEntry]:
    return log.append_many([draft(i) for i in range(count)])


def raw(catalog: Catalog, sql: str, params: tuple[Any, ...] = ()) -> None:
    with catalog.database.transaction() as tx:
        tx.execute(sql, params)


# -- the chain ------------------------------------------------------------------------


def test_empty_log_verifies(catalog: Catalog) -> None:
    assert catalog.audit.head() is None
    result = catalog.audit.verify()
    assert (result.ok, result.checked, result.first_broken_seq) == (True, 0, None)


def test_appended_records_form_a_verifiable_chain(catalog: Catalog) -> None:
    log = catalog.audit
    singles = [log.append(draft(i)) for i in range(3)]
    batch = log.append_many([draft(i, action="access.denied", outcome="denied") for i in (3, 4)])
    entries = singles + batch
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    for previous, entry in zip(entries, entries[1:], strict=False):
        assert entry.prev_hash == previous.hash
    assert all(entry_hash(e) == e.hash and len(e.hash) == 64 for e in entries)
    assert list(log.iter_entries()) == entries  # what was returned is what is stored
    assert log.head() == entries[-1]
    assert entries[0].details == {"purpose": "quality", "n": 0, "ratio": 0.5, "tags": ["a", "b"]}
    result = log.verify()
    assert (result.ok, result.checked) == (True, 5)


def test_hash_covers_every_field(catalog: Catalog) -> None:
    entry = catalog.audit.append(draft(1))
    changes: dict[str, Any] = {
        "seq": 2,
        "at": entry.at + timedelta(microseconds=1),
        "actor": "user:other",
        "action": "access.denied",
        "outcome": "denied",
        "reason": "other",
        "recording_id": None,
        "details": {**entry.details, "n": 2},
        "prev_hash": "1" * 64,
    }
    for name, value in changes.items():
        assert entry_hash(replace(entry, **{name: value})) != entry.hash, name


def test_iter_entries_filters_and_pages(catalog: Catalog) -> None:
    log = catalog.audit
    drafts = [draft(i % 7) for i in range(2100)]
    drafts[5] = draft(1, action="ingest.stored", outcome="ok")
    drafts[2050] = draft(1, action="Ingest.Stored", outcome="ok")
    log.append_many(drafts)
    assert len(list(log.iter_entries())) == 2100
    assert [e.seq for e in log.iter_entries(after_seq=2095)] == [2096, 2097, 2098, 2099, 2100]
    assert [e.seq for e in log.iter_entries(after_seq=10, limit=3)] == [11, 12, 13]
    assert len(list(log.iter_entries(limit=2050))) == 2050
    per_recording = list(log.iter_entries(recording_id="rec-1"))
    assert len(per_recording) == 302 and {e.recording_id for e in per_recording} == {"rec-1"}
    # The prefix match is exact (case-sensitive) on both databases; _ and % are literal.
    assert [e.seq for e in log.iter_entries(action_prefix="ingest.")] == [6]
    assert [e.seq for e in log.iter_entries(action_prefix="Ingest")] == [2051]
    assert list(log.iter_entries(action_prefix="access_")) == []
    assert len(list(log.iter_entries(action_prefix="access.", limit=5))) == 5
    with pytest.raises(AuditError):
        list(log.iter_entries(limit=-1))
    seen: list[int] = []
    assert log.verify(progress=seen.append).ok
    assert seen[-1] == 2100 and seen == sorted(seen)


def test_append_is_durable_for_another_connection(catalog: Catalog, catalog_url: str) -> None:
    entry = catalog.audit.append(draft(1))
    other = open_database(catalog_url)
    try:
        assert AuditLog(other).head() == entry
    finally:
        other.close()


# -- tampering ------------------------------------------------------------------------


def test_edited_field_is_named(catalog: Catalog) -> None:
    fill(catalog.audit, 6)
    raw(catalog, "UPDATE audit_log SET outcome = ? WHERE seq = ?", ("denied", 4))
    result = catalog.audit.verify()
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 4, 3)
    assert "edited" in result.problem


def test_edited_details_are_named(catalog: Catalog) -> None:
    fill(catalog.audit, 6)
    raw(catalog, "UPDATE audit_log SET details = ? WHERE seq = ?", ('{"purpose":"sales"}', 2))
    result = catalog.audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 2)


def test_edited_hash_is_named(catalog: Catalog) -> None:
    fill(catalog.audit, 6)
    raw(catalog, "UPDATE audit_log SET hash = ? WHERE seq = ?", ("f" * 64, 5))
    assert catalog.audit.verify().first_broken_seq == 5


def test_deleted_row_is_named(catalog: Catalog) -> None:
    fill(catalog.audit, 6)
    raw(catalog, "DELETE FROM audit_log WHERE seq = ?", (3,))
    result = catalog.audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 3)
    assert "seq 3 is missing" in result.problem


def test_deleted_first_row_is_named(catalog: Catalog) -> None:
    fill(catalog.audit, 3)
    raw(catalog, "DELETE FROM audit_log WHERE seq = ?", (1,))
    assert catalog.audit.verify().first_broken_seq == 1


def test_truncated_tail_is_named(catalog: Catalog) -> None:
    fill(catalog.audit, 6)
    raw(catalog, "DELETE FROM audit_log WHERE seq >= ?", (5,))
    result = catalog.audit.verify()
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 5, 4)
    assert "tail truncated" in result.problem


def test_swapped_rows_are_named(catalog: Catalog) -> None:
    fill(catalog.audit, 6)
    raw(catalog, "UPDATE audit_log SET seq = 1000 WHERE seq = 3")
    raw(catalog, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    raw(catalog, "UPDATE audit_log SET seq = 4 WHERE seq = 1000")
    result = catalog.audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 3)


def _forge(after: AuditEntry, seq: int) -> AuditEntry:
    """A record as a careful forger would write it: correct prev_hash and hash."""
    forged = AuditEntry(
        seq=seq,
        at=after.at,
        actor="user:forger",
        action="access.granted",
        outcome="granted",
        reason="",
        recording_id="rec-1",
        details={},
        prev_hash=after.hash,
    )
    return replace(forged, hash=entry_hash(forged))


def _insert(catalog: Catalog, entry: AuditEntry) -> None:
    raw(
        catalog,
        "INSERT INTO audit_log (seq, at, actor, action, outcome, reason, recording_id, details,"
        " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.seq,
            to_db_time(entry.at),
            entry.actor,
            entry.action,
            entry.outcome,
            entry.reason,
            entry.recording_id,
            "{}",
            entry.prev_hash,
            entry.hash,
        ),
    )


@pytest.mark.clause("management.safety")
def test_forged_row_inserted_in_the_middle_is_named(catalog: Catalog) -> None:
    entries = fill(catalog.audit, 6)
    raw(catalog, "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3")
    raw(catalog, "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000")
    _insert(catalog, _forge(entries[1], seq=3))
    result = catalog.audit.verify()
    # The forged record itself is internally consistent; the chain breaks right after it.
    assert (result.ok, result.first_broken_seq) == (False, 4)


def test_forged_row_appended_by_raw_sql_is_named(catalog: Catalog) -> None:
    entries = fill(catalog.audit, 4)
    _insert(catalog, _forge(entries[-1], seq=5))
    result = catalog.audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 5)
    assert "beyond the recorded head" in result.problem


# -- concurrency ----------------------------------------------------------------------


def test_concurrent_appends_never_fork_the_chain(catalog: Catalog, catalog_url: str) -> None:
    # Two independent catalogs (separate connections, as two worker processes would
    # have) on the same database, each used by several threads at once.
    with open_catalog(catalog_url) as second:
        logs = [catalog.audit, second.audit]
        threads, rounds = 6, 8
        barrier = threading.Barrier(threads)

        def work(index: int) -> list[int]:
            log = logs[index % 2]
            barrier.wait()
            seqs: list[int] = []
            for i in range(rounds):
                if i % 2:
                    seqs.extend(e.seq for e in log.append_many([draft(index), draft(index)]))
                else:
                    seqs.append(log.append(draft(index)).seq)
            return seqs

        with ThreadPoolExecutor(threads) as pool:
            per_thread = list(pool.map(work, range(threads)))
    total = threads * (rounds + rounds // 2)
    all_seqs = sorted(seq for seqs in per_thread for seq in seqs)
    assert all_seqs == list(range(1, total + 1))
    result = catalog.audit.verify()
    assert (result.ok, result.checked) == (True, total)


# -- on_append hook -------------------------------------------------------------------


def test_on_append_sees_committed_entries_only(catalog: Catalog) -> None:
    published: list[AuditEntry] = []
    log = AuditLog(catalog.database, on_append=published.append)
    first = log.append(draft(1))
    assert published == [first]

    with pytest.raises(RuntimeError), catalog.database.transaction() as tx:
        log.append(draft(2), tx=tx)
        assert published == [first]  # not yet committed
        raise RuntimeError("abort")
    assert published == [first]
    assert catalog.audit.head() == first

    with catalog.database.transaction() as tx:
        batch = log.append_many([draft(3), draft(4)], tx=tx)
        assert published == [first]
    assert published == [first, *batch]


def test_failing_on_append_hook_does_not_undo_the_append(
    catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(entry: AuditEntry) -> None:
        raise ConnectionError("topic unavailable")

    entry = AuditLog(catalog.database, on_append=broken).append(draft(1))
    assert catalog.audit.head() == entry
    assert "on_append hook failed" in caplog.text


def test_clock_is_injected(catalog: Catalog) -> None:
    fixed = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    entry = AuditLog(catalog.database, clock=lambda: fixed).append(draft(1))
    assert entry.at == fixed
    assert catalog.audit.head() == entry


# -- personal-data guard and bad drafts -----------------------------------------------


@pytest.mark.parametrize(
    "details",
    [
        {"customer_ref": "C-1001"},
        {"phone": "555-0100"},
        {"Name": "Jane"},
        {"e-mail": "x"},
        {"caller_email": "x"},
        {"call": {"caller": {"phone_number": "x"}}},
        {"people": [{"last_name": "Doe"}]},
        {"note": "reach me at jane.doe@example.com"},
        {"callback": "+44 20 7946 0958"},
        {"ok": ["fine", "+15551234567"]},
    ],
)
def test_personal_data_in_details_is_rejected(catalog: Catalog, details: dict[str, Any]) -> None:
    with pytest.raises(AuditError, match="personal data"):
        catalog.audit.append(draft(1, details=details))
    assert catalog.audit.head() is None


def test_pseudonyms_codes_and_dates_are_allowed() -> None:
    check_details(
        {
            "subject_ref": "9f86d081884c7d65",
            "purpose": "quality",
            "queue_name": "billing",
            "started": "2026-11-25T10:00:00Z",
            "bytes": 123456789,
            "ids": ["123456789", "rec-1"],
            "restricted": True,
            "ratio": 0.25,
            "nothing": None,
        }
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (draft(1, actor=""), "actor must be a non-empty string"),
        (draft(1, action=""), "action must be a non-empty string"),
        (draft(1, details={"n": float("nan")}), "not JSON"),
        (draft(1, details={"when": datetime(2026, 1, 1)}), "not a JSON value"),
        (draft(1, details={1: "x"}), "keys must be strings"),
        (draft(1, recording_id=7), "recording_id must be a string"),
    ],
)
def test_invalid_drafts_are_rejected(catalog: Catalog, bad: AuditDraft, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        catalog.audit.append_many([draft(0), bad])
    assert catalog.audit.head() is None  # all or nothing


def test_unmigrated_database_gives_a_clear_error(catalog_url: str) -> None:
    database = open_database(catalog_url)
    try:
        with pytest.raises(AuditError, match="catalog migrated"):
            AuditLog(database).append(draft(1))
    finally:
        database.close()
