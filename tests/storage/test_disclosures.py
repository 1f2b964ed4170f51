"""The disclosure ledger on SQLite and PostgreSQL: row and audit record in one commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.catalog import Catalog, open_catalog
from storage.catalog.audit import AuditDraft
from storage.catalog.disclosures import DisclosureLedger
from storage.catalog.migrations import MIGRATIONS
from storage.errors import AuditError, CatalogError


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with open_catalog(catalog_url, migrate=True) as opened:
        yield opened


def _draft(**details: object) -> AuditDraft:
    return AuditDraft(
        actor="user:carol",
        action="access.download",
        outcome="granted",
        reason="granted",
        details={"purpose": "legal-disclosure", **details},
    )


def _record(ledger: DisclosureLedger, **overrides: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = dict(
        recording_id="rec-1",
        tenant="demo",
        actor="user:carol",
        role="compliance-officer",
        org=None,
        purpose="legal-disclosure",
        legal_basis="legal-requirement",
        reference="CASE-2026/17",
        mode="download",
        audit=_draft(),
    )
    args.update(overrides)
    return ledger.record(**args)  # type: ignore[arg-type]


def test_migration_2_is_the_disclosure_ledger() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert 2 in versions and versions == sorted(versions)
    assert any("disclosures" in s for s in MIGRATIONS[versions.index(2)].statements)


def test_record_writes_the_row_and_its_audit_record_together(catalog: Catalog) -> None:
    ledger = DisclosureLedger(catalog.database, catalog.audit)
    stored = _record(ledger)
    assert stored.disclosure_id.startswith("dsc_")
    entry = catalog.audit.head()
    assert entry is not None
    assert stored.audit_seq == entry.seq
    assert entry.recording_id == "rec-1"
    assert entry.details["disclosure_id"] == stored.disclosure_id
    assert ledger.get(stored.disclosure_id) == stored
    assert ledger.list(recording_id="rec-1") == [stored]
    assert ledger.list(recording_id="other") == []
    assert catalog.audit.verify().ok


def test_list_pages_in_order(catalog: Catalog) -> None:
    ledger = DisclosureLedger(catalog.database, catalog.audit)
    made = [_record(ledger, reference=f"CASE-{i}") for i in range(5)]
    first = ledger.list(limit=2)
    rest = ledger.list(after=(first[-1].disclosed_at, first[-1].disclosure_id), limit=10)
    assert [d.disclosure_id for d in first + rest] == [
        d.disclosure_id for d in sorted(made, key=lambda d: (d.disclosed_at, d.disclosure_id))
    ]
    with pytest.raises(CatalogError, match="limit"):
        ledger.list(limit=0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reference", "has spaces in it", "reference"),
        ("reference", "", "reference"),
        ("mode", "stream", "mode"),
        ("legal_basis", "Because I said so", "legal basis"),
        ("recording_id", "", "recording_id"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    catalog: Catalog, field: str, value: str, message: str
) -> None:
    ledger = DisclosureLedger(catalog.database, catalog.audit)
    with pytest.raises(CatalogError, match=message):
        _record(ledger, **{field: value})
    assert ledger.list() == []
    assert catalog.audit.head() is None


def test_audit_failure_leaves_no_ledger_row(catalog: Catalog) -> None:
    ledger = DisclosureLedger(catalog.database, catalog.audit)
    with pytest.raises(AuditError, match="personal data"):
        _record(ledger, audit=_draft(email="someone@example.com"))
    assert ledger.list() == []
    assert catalog.audit.head() is None
