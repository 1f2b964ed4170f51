"""Catalog contract, run against SQLite and a real PostgreSQL (``catalog_url`` fixture)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from callvault.errors import ConfigError
from storage.catalog import Catalog, DailyStat, listing_cursor, open_catalog
from storage.catalog.audit import AuditDraft
from storage.catalog.endoflife import EndOfLifeStore
from storage.catalog.migrations import MIGRATIONS
from storage.catalog.sql import Database, open_database
from storage.errors import AuditError, CatalogError, KeyDestroyed, RecordingNotFound
from storage.types import AuditEntry, RecordingRow, RecordingState, SubjectKeyRecord
from tests.fixtures.syncs import record_syncs

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def make_row(recording_id: str, **changes: object) -> RecordingRow:
    started_at = changes.pop("started_at", T0)
    assert isinstance(started_at, datetime)
    row = RecordingRow(
        recording_id=recording_id,
        call_id=f"call-{recording_id}",
        tenant="acme",
        subject_ref="subj-1",
        agent_id="agent-1",
        queue="billing",
        direction="inbound",
        started_at=started_at,
        ended_at=started_at + timedelta(minutes=3),
        duration_ms=180_000,
        consent="notified",
        purposes=("quality", "training"),
        retention_class="standard",
        retain_until=started_at + timedelta(days=90),
        object_key=f"obj/{recording_id}",
        subject_key_id="key-1",
        ciphertext_sha256="ab" * 32,
        stored_size=2048,
        audio_bytes=1900,
        audio_format="wav/mulaw",
        sample_rate=8000,
        channels=1,
        pci_redacted_ms=1500,
        created_at=started_at + timedelta(minutes=4),
    )
    return replace(row, **changes)  # type: ignore[arg-type]


def stored(recording_id: str) -> AuditDraft:
    return AuditDraft(actor="worker:test", action="ingest.stored", outcome="ok")


def make_key(key_id: str, subject_ref: str = "subj-1") -> SubjectKeyRecord:
    return SubjectKeyRecord(
        key_id=key_id,
        subject_ref=subject_ref,
        tenant="acme",
        wrapped_key=b"wrapped:" + key_id.encode(),
        master_key_id="master-1",
        created_at=T0,
    )


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with open_catalog(catalog_url, migrate=True) as opened:
        yield opened


ALL_VERSIONS = [migration.version for migration in MIGRATIONS]


def audit_count(catalog: Catalog) -> int:
    return len(list(catalog.audit.iter_entries()))


# -- migrations -----------------------------------------------------------------------


def test_migrations_apply_once_and_are_idempotent(catalog_url: str) -> None:
    with open_catalog(catalog_url) as first:
        assert first.migrate() == ALL_VERSIONS
        assert first.migrate() == []
    with open_catalog(catalog_url) as second:
        assert second.migrate() == []
        rows = second.database.fetch_all("SELECT version FROM schema_migrations")
        assert sorted(row[0] for row in rows) == ALL_VERSIONS
        assert second.audit.verify().ok


def test_migrate_refuses_a_schema_newer_than_the_code(catalog: Catalog) -> None:
    with catalog.database.transaction() as tx:
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (99, "from the future", "2030-01-01T00:00:00.000000Z"),
        )
    with pytest.raises(CatalogError, match=r"version\(s\) \[99\].*upgrade"):
        catalog.migrate()


# -- storing recordings ---------------------------------------------------------------


def test_stored_recording_round_trips(catalog: Catalog) -> None:
    paris = timezone(timedelta(hours=1))
    row = make_row("r1", started_at=T0.astimezone(paris), restricted=True)
    assert catalog.store_recordings([(row, stored("r1"))]) == [True]
    got = catalog.get_recording("r1")
    assert got == row
    assert got is not None and got.started_at.tzinfo == UTC
    assert got.purposes == ("quality", "training")
    assert catalog.get_recording("nope") is None


def test_channel_roles_and_pci_pauses_round_trip(catalog: Catalog) -> None:
    pauses = ({"start_ms": 5000, "end_ms": 9500, "channels": [0]},)
    row = make_row("r-st", channels=2, channel_roles=("customer", "agent"), pci_pauses=pauses)
    catalog.store_recordings([(row, stored("r-st")), (make_row("r-mono"), stored("r-mono"))])
    assert catalog.get_recording("r-st") == row
    mono = catalog.get_recording("r-mono")
    assert mono is not None and (mono.channel_roles, mono.pci_pauses) == ((), ())
    # A row stored before migration 9 has NULL in both columns: read as "not known".
    with catalog.database.transaction() as tx:
        tx.execute(
            "UPDATE recordings SET channel_roles = NULL, pci_pauses = NULL WHERE recording_id = ?",
            ("r-st",),
        )
    old = catalog.get_recording("r-st")
    assert old is not None and (old.channel_roles, old.pci_pauses) == ((), ())


def test_storing_the_same_recording_twice_keeps_one_row_and_one_audit_record(
    catalog: Catalog,
) -> None:
    row = make_row("r1")
    assert catalog.store_recordings([(row, stored("r1"))]) == [True]
    assert catalog.store_recordings([(replace(row, queue="other"), stored("r1"))]) == [False]
    assert catalog.database.fetch_all("SELECT COUNT(*) FROM recordings") == [(1,)]
    entries = list(catalog.audit.iter_entries())
    assert [(e.recording_id, e.action) for e in entries] == [("r1", "ingest.stored")]
    assert catalog.get_recording("r1") == row  # the second write changed nothing
    assert catalog.daily_stats() == [DailyStat(T0.date(), "acme", "billing", 1, 180_000)]


def test_batch_of_new_and_existing_recordings(catalog: Catalog) -> None:
    catalog.store_recordings([(make_row(i), stored(i)) for i in ("r1", "r3")])
    batch = [make_row(i) for i in ("r1", "r2", "r3", "r4", "r2")]
    assert catalog.store_recordings([(row, stored(row.recording_id)) for row in batch]) == [
        False,
        True,
        False,
        True,
        False,
    ]
    assert catalog.recording_ids_present(["r1", "r2", "r4", "r5"]) == {"r1", "r2", "r4"}
    assert [e.recording_id for e in catalog.audit.iter_entries()] == ["r1", "r3", "r2", "r4"]
    assert catalog.daily_stats()[0].recordings == 4
    assert catalog.audit.verify().ok


def test_recording_ids_present_handles_large_batches(catalog: Catalog) -> None:
    rows = [make_row(f"r{i:04d}") for i in range(1200)]
    flags = catalog.store_recordings([(row, stored(row.recording_id)) for row in rows])
    assert all(flags)
    asked = [f"r{i:04d}" for i in range(0, 2400, 2)]
    assert catalog.recording_ids_present(asked) == {f"r{i:04d}" for i in range(0, 1200, 2)}


def test_a_bad_item_rolls_back_the_whole_batch(catalog: Catalog) -> None:
    leaky = AuditDraft("worker:test", "ingest.stored", "ok", details={"phone": "555"})
    with pytest.raises(AuditError, match="personal data"):
        catalog.store_recordings([(make_row("r1"), stored("r1")), (make_row("r2"), leaky)])
    naive = make_row("r3", started_at=datetime(2026, 1, 1))
    with pytest.raises(CatalogError, match="naive datetime"):
        catalog.store_recordings([(make_row("r1"), stored("r1")), (naive, stored("r3"))])
    other = AuditDraft("worker:test", "ingest.stored", "ok", recording_id="r9")
    with pytest.raises(CatalogError, match="not about 'r1'"):
        catalog.store_recordings([(make_row("r1"), other)])
    assert catalog.recording_ids_present(["r1", "r2", "r3"]) == set()
    assert audit_count(catalog) == 0
    assert catalog.daily_stats() == []


# -- subject keys ---------------------------------------------------------------------


def test_subject_key_protocol(catalog: Catalog) -> None:
    first = make_key("k1")
    assert catalog.get_subject_key("subj-1") is None
    assert catalog.put_subject_key(first) == first
    assert catalog.get_subject_key("subj-1") == first
    # A second key for the same subject loses: the live one comes back.
    assert catalog.put_subject_key(make_key("k2")) == first
    assert catalog.get_subject_key_by_id("k2") is None

    catalog.replace_wrapped_subject_key("k1", b"rewrapped", "master-2")
    rewrapped = catalog.get_subject_key("subj-1")
    assert rewrapped is not None
    assert (rewrapped.wrapped_key, rewrapped.master_key_id) == (b"rewrapped", "master-2")

    catalog.destroy_subject_key("k1")
    catalog.destroy_subject_key("k1")  # idempotent
    assert catalog.get_subject_key("subj-1") is None
    destroyed = catalog.get_subject_key_by_id("k1")
    assert destroyed is not None
    assert destroyed.wrapped_key is None and destroyed.destroyed_at is not None
    assert destroyed.subject_ref == ""  # the destroyed key no longer names its customer
    with pytest.raises(KeyDestroyed):
        catalog.replace_wrapped_subject_key("k1", b"again", "master-3")

    # After shredding, the subject may get a new key.
    assert catalog.put_subject_key(make_key("k3")).key_id == "k3"
    catalog.put_subject_key(make_key("k4", subject_ref="subj-2"))
    assert [k.key_id for k in catalog.iter_subject_keys()] == ["k1", "k3", "k4"]


def test_subject_key_bad_calls(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="no subject key 'ghost'"):
        catalog.destroy_subject_key("ghost")
    with pytest.raises(CatalogError, match="no subject key 'ghost'"):
        catalog.replace_wrapped_subject_key("ghost", b"x", "m")
    with pytest.raises(CatalogError, match="live key"):
        catalog.put_subject_key(replace(make_key("k1"), wrapped_key=None))
    catalog.put_subject_key(make_key("k1"))
    catalog.destroy_subject_key("k1")
    with pytest.raises(CatalogError, match="already used"):
        catalog.put_subject_key(make_key("k1", subject_ref="subj-9"))


def test_database_enforces_one_live_key_per_subject(catalog: Catalog) -> None:
    catalog.put_subject_key(make_key("k1"))
    with pytest.raises(CatalogError), catalog.database.transaction() as tx:
        tx.execute(
            "INSERT INTO subject_keys (key_id, subject_ref, tenant, wrapped_key, master_key_id,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            ("k2", "subj-1", "acme", b"w", "m", "2026-01-01T00:00:00.000000Z"),
        )


def test_racing_writers_agree_on_one_live_key(catalog_url: str) -> None:
    with open_catalog(catalog_url, migrate=True) as one, open_catalog(catalog_url) as two:
        workers = 8
        barrier = threading.Barrier(workers)

        def put(index: int) -> str:
            barrier.wait()
            target = one if index % 2 else two
            return target.put_subject_key(make_key(f"k{index}")).key_id

        with ThreadPoolExecutor(workers) as pool:
            winners = set(pool.map(put, range(workers)))
        assert len(winners) == 1
        live = one.database.fetch_all(
            "SELECT key_id FROM subject_keys WHERE subject_ref = ? AND destroyed_at IS NULL",
            ("subj-1",),
        )
        assert live == [(winners.pop(),)]


# -- listing --------------------------------------------------------------------------


@pytest.fixture
def populated(catalog: Catalog) -> list[RecordingRow]:
    rows: list[RecordingRow] = []
    for i in range(24):
        rows.append(
            make_row(
                f"r{i:02d}",
                tenant="acme" if i % 3 else "globex",
                agent_id=f"agent-{i % 4}",
                queue="billing" if i % 2 else "support",
                subject_ref=f"subj-{i % 5}",
                purposes=("quality",) if i % 2 else ("quality", "training"),
                started_at=T0 + timedelta(minutes=i // 2),  # pairs share started_at
            )
        )
    catalog.store_recordings([(row, stored(row.recording_id)) for row in rows])
    draft = AuditDraft("user:privacy", "privacy.erased", "ok")
    catalog.set_state("r05", RecordingState.ERASED, audit=draft)
    catalog.set_state("r06", RecordingState.EXPIRED, audit=draft)
    catalog.set_restricted(["r07"], True, audit=draft)
    return [catalog.get_recording(row.recording_id) for row in rows]  # type: ignore[misc]


def ids(rows: list[RecordingRow]) -> list[str]:
    return [row.recording_id for row in rows]


def test_listing_filters(catalog: Catalog, populated: list[RecordingRow]) -> None:
    def expect(predicate: object) -> list[str]:
        return ids([r for r in populated if r.state == "stored" and predicate(r)])  # type: ignore[operator]

    def listed(**filters: object) -> list[str]:
        return ids(catalog.list_recordings(limit=100, **filters))  # type: ignore[arg-type]

    assert listed() == expect(lambda r: True)
    assert "r05" not in listed() and "r06" not in listed()
    assert listed(tenant="globex") == expect(lambda r: r.tenant == "globex")
    assert listed(agent_id="agent-2") == expect(lambda r: r.agent_id == "agent-2")
    assert listed(queue="support") == expect(lambda r: r.queue == "support")
    assert listed(subject_ref="subj-3") == expect(lambda r: r.subject_ref == "subj-3")
    assert listed(purpose="training") == expect(lambda r: "training" in r.purposes)
    assert listed(purpose="Training") == []
    assert listed(restricted=True) == ["r07"]
    start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    assert listed(started_from=start, started_to=end) == expect(
        lambda r: start <= r.started_at < end
    )
    assert listed(tenant="acme", queue="billing", agent_id="agent-1") == expect(
        lambda r: (r.tenant, r.queue, r.agent_id) == ("acme", "billing", "agent-1")
    )
    assert listed(states=[RecordingState.ERASED, RecordingState.EXPIRED]) == ["r05", "r06"]
    assert listed(states=None) == ids(populated)


def test_keyset_pagination_has_no_duplicates_or_gaps(
    catalog: Catalog, populated: list[RecordingRow]
) -> None:
    pages: list[list[str]] = []
    after = None
    while True:
        page = catalog.list_recordings(states=None, limit=5, after=after)
        if not page:
            break
        pages.append(ids(page))
        if len(pages) == 2:
            # Rows added mid-listing before the cursor never shift later pages.
            early = make_row("r-early", started_at=T0 - timedelta(days=1))
            catalog.store_recordings([(early, stored("r-early"))])
        after = listing_cursor(page[-1])
    flat = [rid for page in pages for rid in page]
    assert flat == ids(sorted(populated, key=lambda r: (r.started_at, r.recording_id)))
    assert [len(p) for p in pages] == [5, 5, 5, 5, 4]


def test_find_the_call_filters_and_newest_first(catalog: Catalog) -> None:
    rows = [
        make_row(
            f"f{i:02d}",
            call_id=f"call-{i % 5}",
            direction=("inbound", "outbound", "internal")[i % 3],
            duration_ms=30_000 * (i + 1),
            started_at=T0 + timedelta(minutes=i // 2),  # pairs share started_at
        )
        for i in range(14)
    ]
    catalog.store_recordings([(row, stored(row.recording_id)) for row in rows])

    def listed(**filters: object) -> list[str]:
        return ids(catalog.list_recordings(limit=100, **filters))  # type: ignore[arg-type]

    def expect(predicate: object) -> list[str]:
        return ids([r for r in rows if predicate(r)])  # type: ignore[operator]

    assert listed(call_id="call-3") == expect(lambda r: r.call_id == "call-3")
    assert listed(recording_id="f04") == ["f04"]
    assert listed(direction="outbound") == expect(lambda r: r.direction == "outbound")
    assert listed(min_duration_ms=90_000, max_duration_ms=150_000) == expect(
        lambda r: 90_000 <= r.duration_ms <= 150_000
    )
    assert listed(direction="internal", min_duration_ms=200_000) == expect(
        lambda r: r.direction == "internal" and r.duration_ms >= 200_000
    )
    newest = sorted(rows, key=lambda r: (r.started_at, r.recording_id), reverse=True)
    assert listed(newest_first=True) == ids(newest)
    # Keyset pages newest first: no duplicates, no gaps, ties on started_at included.
    pages: list[str] = []
    after = None
    while True:
        page = catalog.list_recordings(newest_first=True, limit=3, after=after)
        if not page:
            break
        pages.extend(ids(page))
        after = listing_cursor(page[-1])
    assert pages == ids(newest)


def test_listing_rejects_bad_arguments(catalog: Catalog) -> None:
    deep = base64.urlsafe_b64encode(b"[" * 3000).decode()  # past the JSON parser's recursion
    for cursor in ("not-a-cursor", deep, "A" * 5000):
        with pytest.raises(CatalogError, match="invalid listing cursor"):
            catalog.list_recordings(after=cursor)
    with pytest.raises(CatalogError, match="limit"):
        catalog.list_recordings(limit=0)
    with pytest.raises(CatalogError, match="limit"):
        catalog.list_recordings(limit=5000)
    with pytest.raises(CatalogError, match="at least one state"):
        catalog.list_recordings(states=[])
    with pytest.raises(CatalogError, match="naive"):
        catalog.list_recordings(started_from=datetime(2026, 1, 1))


# -- state changes --------------------------------------------------------------------


def test_set_state_changes_row_and_audits_atomically(catalog: Catalog) -> None:
    catalog.store_recordings([(make_row("r1"), stored("r1"))])
    draft = AuditDraft("user:privacy", "privacy.erased", "ok", reason="erasure_request")
    catalog.set_state("r1", RecordingState.ERASED, audit=draft)
    row = catalog.get_recording("r1")
    assert row is not None and row.state is RecordingState.ERASED
    assert row.updated_at is not None
    last = catalog.audit.head()
    assert last is not None
    assert (last.recording_id, last.action, last.reason) == (
        "r1",
        "privacy.erased",
        "erasure_request",
    )

    before = audit_count(catalog)
    with pytest.raises(CatalogError, match="cannot go from erased to stored"):
        catalog.set_state("r1", RecordingState.STORED, audit=draft)
    with pytest.raises(RecordingNotFound):
        catalog.set_state("ghost", RecordingState.EXPIRED, audit=draft)
    with pytest.raises(AuditError, match="personal data"):
        catalog.set_state("r1", RecordingState.ERASED, audit=replace(draft, details={"email": "x"}))
    assert audit_count(catalog) == before
    assert catalog.audit.verify().ok


def test_set_restricted_is_all_or_nothing_with_one_record_each(catalog: Catalog) -> None:
    catalog.store_recordings([(make_row(i), stored(i)) for i in ("r1", "r2", "r3")])
    draft = AuditDraft("user:privacy", "privacy.restricted", "ok")
    catalog.set_restricted(["r1", "r2"], True, audit=draft)
    assert [catalog.get_recording(i).restricted for i in ("r1", "r2", "r3")] == [  # type: ignore[union-attr]
        True,
        True,
        False,
    ]
    restricted = list(catalog.audit.iter_entries(action_prefix="privacy.restricted"))
    assert sorted(e.recording_id or "" for e in restricted) == ["r1", "r2"]

    with pytest.raises(RecordingNotFound, match="1 recording"):
        catalog.set_restricted(["r3", "ghost"], True, audit=draft)
    assert catalog.get_recording("r3").restricted is False  # type: ignore[union-attr]
    catalog.set_restricted(["r1"], False, audit=draft)
    assert catalog.get_recording("r1").restricted is False  # type: ignore[union-attr]
    assert len(list(catalog.audit.iter_entries(action_prefix="privacy."))) == 3


def test_due_boundary(catalog: Catalog) -> None:
    due = EndOfLifeStore(catalog).due
    due_at = datetime(2027, 2, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    catalog.store_recordings(
        [
            (make_row("r1", retain_until=due_at), stored("r1")),
            (make_row("r2", retain_until=due_at + timedelta(days=1)), stored("r2")),
            (make_row("r0", retain_until=due_at - timedelta(days=1)), stored("r0")),
        ]
    )
    assert ids(due(due_at - timedelta(microseconds=1), 10)) == ["r0"]
    assert ids(due(due_at, 10)) == ["r0", "r1"]
    assert ids(due(due_at, 1)) == ["r0"]
    catalog.set_state(
        "r0",
        RecordingState.EXPIRED,
        audit=AuditDraft("system:retention", "retention.expired", "ok"),
    )
    assert ids(due(due_at, 10)) == ["r1"]
    with pytest.raises(CatalogError, match="limit"):
        due(due_at, 0)


def test_daily_stats_are_anonymous_and_survive_state_changes(catalog: Catalog) -> None:
    day2 = T0 + timedelta(days=1)
    catalog.store_recordings(
        [
            (make_row("r1"), stored("r1")),
            (make_row("r2", duration_ms=1000), stored("r2")),
            (make_row("r3", queue="support", started_at=day2), stored("r3")),
        ]
    )
    expected = [
        DailyStat(T0.date(), "acme", "billing", 2, 181_000),
        DailyStat(day2.date(), "acme", "support", 1, 180_000),
    ]
    assert catalog.daily_stats() == expected
    draft = AuditDraft("user:privacy", "privacy.erased", "ok")
    catalog.set_state("r1", RecordingState.ERASED, audit=draft)
    catalog.set_state("r3", RecordingState.EXPIRED, audit=draft)
    assert catalog.daily_stats() == expected
    assert catalog.daily_stats(queue="support") == expected[1:]
    assert catalog.daily_stats(day_from=day2.date()) == expected[1:]
    assert catalog.daily_stats(day_to=T0.date(), tenant="acme") == expected[:1]
    assert catalog.daily_stats(tenant="globex", day_from=date(2020, 1, 1)) == []
    columns = catalog.database.fetch_all("SELECT * FROM daily_stats")[0]
    assert len(columns) == 5  # day, tenant, queue, count, duration: no identifiers


# -- the SQL layer --------------------------------------------------------------------


def test_placeholders_percent_signs_and_quoted_question_marks(catalog: Catalog) -> None:
    row = catalog.database.fetch_one("SELECT 'a?b', ?, '100%', 'it''s?'", ("x",))
    assert row == ("a?b", "x", "100%", "it's?")


def test_transaction_rolls_back_and_skips_commit_callbacks(catalog: Catalog) -> None:
    called: list[str] = []
    with pytest.raises(RuntimeError), catalog.database.transaction() as tx:
        tx.on_commit(lambda: called.append("outer"))
        with catalog.database.transaction() as inner:  # joins the outer transaction
            inner.execute(
                "INSERT INTO daily_stats VALUES (?, ?, ?, ?, ?)", ("2026-01-01", "t", "q", 1, 1)
            )
        raise RuntimeError("boom")
    assert called == []
    assert catalog.daily_stats() == []
    with catalog.database.transaction() as tx:
        tx.on_commit(lambda: called.append("committed"))
    assert called == ["committed"]


def test_a_swallowed_statement_error_cannot_be_committed(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="rolled back"), catalog.database.transaction() as tx:
        tx.execute("INSERT INTO daily_stats VALUES (?, ?, ?, ?, ?)", ("d", "t", "q", 1, 1))
        with pytest.raises(CatalogError, match="no_such_table"):
            tx.execute("SELECT * FROM no_such_table")
    assert catalog.daily_stats() == []


def test_closed_catalog_raises_catalog_error(catalog_url: str) -> None:
    opened = open_catalog(catalog_url, migrate=True)
    opened.close()
    with pytest.raises(CatalogError, match="closed"):
        opened.get_recording("r1")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("mysql://db/callvault", "unsupported catalog URL"),
        ("catalog.sqlite3", "unsupported catalog URL"),
        ("sqlite://relative.sqlite3", "sqlite:///abs/path"),
        ("sqlite:///", "names no file"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:////tmp/x.sqlite3?journal=off", "unknown option"),
        ("sqlite:////tmp/x.sqlite3?synchronous=never", "synchronous must be"),
        ("postgresql://u:pw@localhost:notaport/db", "malformed"),
    ],
)
def test_bad_urls_raise_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_catalog(url)


def test_unreachable_or_unusable_databases_raise_catalog_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CatalogError, match="cannot create the folder"):
        open_database(f"sqlite:///{blocker}/catalog.sqlite3")
    with pytest.raises(CatalogError, match="cannot connect") as caught:
        open_database("postgresql://postgres:s3cret@127.0.0.1:1/nothing")
    assert "s3cret" not in str(caught.value)
    assert "***" in str(caught.value)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError):
        open_catalog(f"sqlite:///{garbage}", migrate=True)


def test_the_four_slash_spelling_settings_produce_works(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'catalog.sqlite3'}"
    assert url.startswith("sqlite:////")
    with open_catalog(url, migrate=True) as catalog:
        catalog.store_recordings([(make_row("r1"), stored("r1"))])
    assert (tmp_path / "nested" / "catalog.sqlite3").exists()
    with open_catalog(url, migrate=True) as again:
        assert again.recording_ids_present(["r1"]) == {"r1"}


def _settled_count(database: Database, marker: str, at_most: int) -> int:
    """Backends exit a moment after their client closes: wait (bounded) for the count."""
    count = -1
    for _ in range(100):
        row = database.fetch_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = ?", (marker,)
        )
        count = int(row[0]) if row else -1
        if 0 <= count <= at_most:
            break
        time.sleep(0.05)
    return count


@pytest.mark.integration
def test_connections_of_finished_threads_are_reclaimed(postgres_url: str) -> None:
    marker = "callvault_reclaim_test"
    database = open_database(f"{postgres_url}?application_name={marker}")
    probe = open_database(postgres_url)
    try:
        for _ in range(12):  # one short-lived thread after another, like a recycled pool
            worker = threading.Thread(target=database.fetch_all, args=("SELECT 1",))
            worker.start()
            worker.join()
        database.fetch_all("SELECT 1")
        # Without reclaiming, 12 dead threads would still hold 12 connections.
        assert _settled_count(probe, marker, at_most=2) <= 2
        database.close()
        assert _settled_count(probe, marker, at_most=0) == 0
    finally:
        database.close()
        probe.close()


def test_catalog_writes_reach_the_on_append_hook_after_commit(catalog_url: str) -> None:
    published: list[AuditEntry] = []
    with open_catalog(catalog_url, migrate=True, on_append=published.append) as catalog:
        catalog.store_recordings([(make_row("r1"), stored("r1")), (make_row("r2"), stored("r2"))])
        catalog.set_state("r1", RecordingState.EXPIRED, audit=stored("r1"))
        catalog.set_restricted(["r2"], True, audit=stored("r2"))
        assert published == list(catalog.audit.iter_entries())
        assert [e.recording_id for e in published] == ["r1", "r2", "r1", "r2"]
        with pytest.raises(RecordingNotFound):
            catalog.set_state("ghost", RecordingState.EXPIRED, audit=stored("ghost"))
        assert len(published) == 4


def test_opening_without_migrate_leaves_the_schema_alone(catalog_url: str) -> None:
    with open_catalog(catalog_url) as catalog:
        with pytest.raises(CatalogError):
            catalog.get_recording("r1")
        assert catalog.migrate() == ALL_VERSIONS


def test_unpadded_years_older_versions_wrote_are_read_and_repadded(catalog: Catalog) -> None:
    """Found on main: a call dated year 999 was stored as "999-..." (strftime %Y is not
    padded on glibc): listing answered 500, the row was never swept. Rows like that are
    read, and the hardening migration re-pads them so text order is time order again."""
    from storage.catalog.migrations import _repad

    catalog.store_recordings([(make_row("old-999"), stored("old-999"))])
    database = catalog.database
    with database.transaction() as tx:  # what an older callvault wrote
        tx.execute(
            "UPDATE recordings SET started_at = ?, ended_at = ?, retain_until = ? "
            "WHERE recording_id = ?",
            (
                "999-03-01T10:00:00.000000Z",
                "999-03-01T10:01:00.000000Z",
                "999-05-30T10:01:00.000000Z",
                "old-999",
            ),
        )
    row = catalog.get_recording("old-999")
    assert row is not None and row.started_at.year == 999  # read, not refused
    assert [r.recording_id for r in catalog.list_recordings()] == ["old-999"]
    with database.transaction() as tx:
        for column in ("started_at", "ended_at", "retain_until"):
            tx.execute(_repad("recordings", column))
    (text,) = database.fetch_one(
        "SELECT retain_until FROM recordings WHERE recording_id = ?", ("old-999",)
    ) or ("",)
    assert text == "0999-05-30T10:01:00.000000Z"
    from storage.catalog.endoflife import EndOfLifeStore

    due = EndOfLifeStore(catalog).due(datetime(2026, 1, 1, tzinfo=UTC), 10)
    assert [r.recording_id for r in due] == ["old-999"]  # due again: the sweep finds it


def _append_as_before_12(catalog: Catalog, recording_id: str | None, action: str) -> None:
    """An audit record written the way the code before migration 12 did (no tenant)."""
    from storage.catalog.audit import canonical_json, entry_hash
    from storage.catalog.sql import to_db_time
    from storage.types import AuditEntry

    with catalog.database.transaction() as tx:
        seq, prev = catalog.audit.lock_head(tx)
        entry = AuditEntry(
            seq=seq + 1, at=T0, actor="worker:w", action=action, outcome="ok", reason="",
            recording_id=recording_id, details={}, prev_hash=prev,
        )  # fmt: skip
        entry = replace(entry, hash=entry_hash(entry))
        tx.execute(
            "INSERT INTO audit_log (seq, at, actor, action, outcome, reason, recording_id,"
            " details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.seq, to_db_time(entry.at), entry.actor, entry.action, entry.outcome,
             entry.reason, entry.recording_id, canonical_json(entry.details),
             entry.prev_hash, entry.hash),
        )  # fmt: skip
        tx.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (entry.seq, entry.hash))


def test_migration_12_gives_old_audit_records_their_tenant_and_old_requests_the_workflow(
    catalog_url: str,
) -> None:
    from storage.catalog.migrations import apply_migrations
    from storage.catalog.requests import PrivacyRequestStore

    with open_catalog(catalog_url) as old:
        apply_migrations(old.database, tuple(m for m in MIGRATIONS if m.version < 12))
        columns = [
            "recording_id", "call_id", "tenant", "subject_ref", "agent_id", "queue",
            "direction", "started_at", "ended_at", "duration_ms", "consent", "purposes",
            "retention_class", "retain_until", "object_key", "subject_key_id",
            "ciphertext_sha256", "stored_size", "audio_bytes", "audio_format", "sample_rate",
            "channels", "pci_redacted_ms", "created_at", "state",
        ]  # fmt: skip
        at = "2026-11-20T10:00:00.000000Z"
        values = ["r-old", "c", "globex", "s", "a", "q", "inbound", at, at, 1, "notified",
                  "[]", "standard-90d", at, "k", "sk", "x", 1, 1, "wav", 8000, 1, 0, at,
                  "stored"]  # fmt: skip
        with old.database.transaction() as tx:
            marks = ", ".join("?" for _ in columns)
            tx.execute(f"INSERT INTO recordings ({', '.join(columns)}) VALUES ({marks})", values)
        _append_as_before_12(old, "r-old", "ingest.stored")
        _append_as_before_12(old, None, "retention.sweep")
        for request_id, status, completed in (
            ("PR-RUN", "in-progress", None),
            ("PR-HELD", "held", at),
            ("PR-DONE", "completed", at),
        ):
            with old.database.transaction() as tx:
                tx.execute(
                    "INSERT INTO privacy_requests (request_id, kind, tenant, subject_ref,"
                    " status, requested_by, received_at, due_at, updated_at, completed_at,"
                    " params, progress, result) VALUES (?, 'erase', 'acme', 's', ?, 'o-7',"
                    " ?, ?, ?, ?, '{}', '{}', '{}')",
                    (request_id, status, at, at, at, completed),
                )
    with open_catalog(catalog_url) as new:
        assert [v for v in new.migrate() if v <= 12] == [12]
        assert [e.action for e in new.audit.iter_entries(tenant="globex")] == ["ingest.stored"]
        untenanted = list(new.audit.iter_entries(tenant="acme", untenanted=True))
        assert [e.action for e in untenanted] == ["retention.sweep"]
        assert new.audit.verify().ok  # the chain is untouched
        store = PrivacyRequestStore(new)
        running, held, done = (store.get(i) for i in ("PR-RUN", "PR-HELD", "PR-DONE"))
        assert (running.status.value, running.decided_by) == ("executing", "o-7")
        assert (held.status.value, held.completed_at) == ("held", None)
        assert done.completed_at is not None and done.approved


def test_a_catalog_in_new_folders_makes_their_entries_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite syncs the folder it creates its WAL in, never the folders above it: those
    created for the database file are synced when it is created, or a crash can lose the
    whole catalog folder after its first commit."""
    synced = record_syncs(monkeypatch, ("fsync",))
    database = open_database(f"sqlite://{tmp_path}/var/catalog/db.sqlite3")
    try:
        assert database.fetch_one("SELECT 1") == (1,)
    finally:
        database.close()
    assert synced == [str(tmp_path / "var"), str(tmp_path)]  # catalog/ in var/, var/ in tmp
    synced.clear()
    database = open_database(f"sqlite://{tmp_path}/var/catalog/db.sqlite3")
    database.fetch_one("SELECT 1")
    database.close()
    assert synced == []  # nothing created the second time
