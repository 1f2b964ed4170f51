"""The catalog's selection of expiry candidates is exactly the expiry rule's cut
(policies.expiry_cut): on SQLite and PostgreSQL, at the microsecond boundary, for
every state, with holds taken out, and the gauge counts the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from policies import RecordingFacts, deletion_decision, expiry_cut, load_policy
from storage.catalog import AuditDraft, Catalog, EndOfLifeStore, HoldScope, HoldStore, open_catalog
from storage.catalog.stats import governance_counts
from storage.types import RecordingRow, RecordingState
from tests.storage.test_catalog import make_row

UNTIL = datetime(2027, 2, 1, 12, 0, 0, 500_000, tzinfo=UTC)
TICK = timedelta(microseconds=1)


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with open_catalog(catalog_url, migrate=True) as opened:
        yield opened


def _facts(row: RecordingRow, held: bool) -> RecordingFacts:
    return RecordingFacts(
        recording_id=row.recording_id,
        tenant=row.tenant,
        purposes=row.purposes,
        state=RecordingState(row.state).value,
        restricted=row.restricted,
        held=held,
        retain_until=row.retain_until,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )


def test_due_selects_what_the_rule_decides(catalog: Catalog) -> None:
    rows = [
        make_row("before", retain_until=UNTIL + TICK),
        make_row("at", retain_until=UNTIL),
        make_row("past", retain_until=UNTIL - timedelta(days=30)),
        make_row("held", retain_until=UNTIL - timedelta(days=1)),
        make_row("gone", retain_until=UNTIL - timedelta(days=2)),
    ]
    catalog.store_recordings(
        [(row, AuditDraft("worker:test", "ingest.stored", "ok")) for row in rows]
    )
    catalog.set_state(
        "gone",
        RecordingState.EXPIRED,
        audit=AuditDraft("system:retention", "retention.expired", "ok"),
    )
    HoldStore(catalog).place(
        tenant="acme",
        scope=HoldScope.RECORDING,
        target="held",
        reason="litigation",
        reference="CASE-1",
        placed_by="legal",
        actor="user:legal",
    )
    store = EndOfLifeStore(catalog)
    policy = load_policy()
    for now in (UNTIL - TICK, UNTIL, UNTIL + timedelta(days=1)):
        cutoff = expiry_cut(now).cutoff
        current = {
            row.recording_id: row for row in store.rows_by_id(r.recording_id for r in rows).values()
        }
        decided = sorted(
            rid
            for rid, row in current.items()
            if deletion_decision(_facts(row, held=rid == "held"), policy, now).delete
        )
        assert sorted(row.recording_id for row in store.due(cutoff, 100)) == decided
        unheld, held = store.count_overdue(cutoff)
        assert unheld == len(decided)
        assert held == (1 if expiry_cut(now).admits(_facts(current["held"], False)) else 0)
        gauge = governance_counts(
            catalog.database, cutoff, held=lambda ids: [i for i in ids if i == "held"]
        )
        assert (gauge.overdue, gauge.held_past_retention) == (unheld, held)
    assert sorted(r.recording_id for r in store.due(expiry_cut(UNTIL).cutoff, 100)) == [
        "at",
        "past",
    ]
