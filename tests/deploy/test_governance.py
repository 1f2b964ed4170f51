"""The governance gauges against a real catalog (SQLite and PostgreSQL) and key file."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storage.catalog import Catalog, open_catalog
from storage.catalog.audit import AuditDraft
from storage.catalog.stats import governance_counts
from storage.crypto.local import LocalKeyring
from storage.errors import KeyringError
from storage.types import RecordingRow, RecordingState
from streams.governance import GovernanceCollector
from streams.metrics import Metrics
from tests.storage.test_catalog import make_row as catalog_row

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
CLASSES = ("standard-90d", "end-of-contract")


def make_row(recording_id: str, retention_class: str, retain_until: datetime) -> RecordingRow:
    return catalog_row(
        recording_id,
        purposes=("quality-improvement",),
        retention_class=retention_class,
        retain_until=retain_until,
    )


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with open_catalog(catalog_url, migrate=True) as opened:
        rows = [
            make_row("r1", "standard-90d", T0 + timedelta(days=90)),
            make_row("r2", "standard-90d", T0 + timedelta(days=10)),
            make_row("r3", "standard-90d", T0 + timedelta(days=10)),
            make_row("r4", "end-of-contract", T0 + timedelta(days=4000)),
            make_row("r5", "standard-90d", T0 + timedelta(days=5)),
        ]
        opened.store_recordings(
            [
                (row, AuditDraft(actor="worker:test", action="ingest.stored", outcome="ok"))
                for row in rows
            ]
        )
        # r5 was already expired by the sweep: neither stored nor overdue.
        opened.set_state(
            "r5",
            RecordingState.EXPIRED,
            audit=AuditDraft(actor="system:retention", action="retention.expired", outcome="ok"),
        )
        yield opened


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_counts_by_class_and_overdue_at_the_boundary(catalog: Catalog) -> None:
    before = governance_counts(
        catalog.database, T0 + timedelta(days=10) - timedelta(microseconds=1)
    )
    assert before.stored_by_class == {"standard-90d": 3, "end-of-contract": 1}
    assert before.overdue == 0
    at = governance_counts(catalog.database, T0 + timedelta(days=10))
    assert at.overdue == 2  # retain_until <= now: due exactly at the boundary
    later = governance_counts(catalog.database, T0 + timedelta(days=91))
    assert later.overdue == 3 and later.stored == 4


def test_held_recordings_are_not_overdue(catalog: Catalog) -> None:
    asked: list[list[str]] = []

    def held(ids: Collection[str]) -> Collection[str]:
        asked.append(sorted(ids))
        return {"r2", "not-overdue-anyway"}

    counts = governance_counts(catalog.database, T0 + timedelta(days=11), held=held)
    assert asked == [["r2", "r3"]]
    assert counts.overdue == 1 and counts.held_past_retention == 1


def test_no_hold_lookup_when_nothing_is_overdue(catalog: Catalog) -> None:
    def held(ids: Collection[str]) -> Collection[str]:
        raise AssertionError("asked for holds although nothing is overdue")

    assert governance_counts(catalog.database, T0, held=held).overdue == 0


def test_naive_now_is_refused(catalog: Catalog) -> None:
    from storage.errors import CatalogError

    with pytest.raises(CatalogError, match="naive"):
        governance_counts(catalog.database, datetime(2026, 1, 1))


def test_collector_sets_the_gauges(catalog: Catalog, tmp_path: Path) -> None:
    keyring = LocalKeyring(tmp_path / "master.json")
    created = keyring.master_key_created_at()
    now = max(created, T0) + timedelta(days=100)
    metrics = Metrics()
    collector = GovernanceCollector(
        catalog=catalog,
        keyring=keyring,
        metrics=metrics,
        retention_classes=CLASSES + ("unused-class",),
        clock=lambda: now,
    )
    snapshot = collector.refresh()
    got = samples(metrics)
    assert got[("callvault_recordings_stored", (("retention_class", "standard-90d"),))] == 3
    assert got[("callvault_recordings_stored", (("retention_class", "end-of-contract"),))] == 1
    assert got[("callvault_recordings_stored", (("retention_class", "unused-class"),))] == 0
    assert got[("callvault_recordings_overdue_deletion", ())] == 3
    assert got[("callvault_master_key_age_seconds", ())] == pytest.approx(
        (now - created).total_seconds()
    )
    assert got[("callvault_governance_refresh_timestamp_seconds", ())] == now.timestamp()
    assert snapshot.counts is not None and snapshot.counts.overdue == 3

    # A class that empties goes to 0 instead of keeping its old value.
    for rid in ("r1", "r2", "r3"):
        catalog.set_state(
            rid,
            RecordingState.ERASED,
            audit=AuditDraft(actor="system:privacy", action="privacy.erased", outcome="ok"),
        )
    collector.refresh()
    got = samples(metrics)
    assert got[("callvault_recordings_stored", (("retention_class", "standard-90d"),))] == 0
    assert got[("callvault_recordings_overdue_deletion", ())] == 0


class BrokenKeyring:
    def master_key_created_at(self) -> datetime:
        raise KeyringError("KMS unreachable")


def test_a_failing_source_keeps_the_rest_and_the_last_value(catalog: Catalog) -> None:
    metrics = Metrics()
    metrics.master_key_age.set(42)
    collector = GovernanceCollector(
        catalog=catalog,
        keyring=BrokenKeyring(),  # type: ignore[arg-type]
        metrics=metrics,
        retention_classes=CLASSES,
        clock=lambda: T0 + timedelta(days=11),
    )
    snapshot = collector.refresh()
    got = samples(metrics)
    assert snapshot.master_key_age_seconds is None
    assert got[("callvault_master_key_age_seconds", ())] == 42
    assert got[("callvault_recordings_overdue_deletion", ())] == 2
    # Not a complete refresh: the freshness timestamp stays where it was.
    assert got[("callvault_governance_refresh_timestamp_seconds", ())] == 0
