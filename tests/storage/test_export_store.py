"""The export manifests (storage.catalog.exports) on both catalogs: signed, one per
request (a resumed disclosure keeps its export id), an edited row no longer verifies,
each download counted with its audit record in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.catalog import Catalog, open_catalog
from storage.catalog.audit import AuditDraft
from storage.catalog.exports import EXPORT_KIND, ExportStore
from storage.crypto import LocalKeyring

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with open_catalog(catalog_url, migrate=True) as opened:
        yield opened


def test_manifests_are_signed_kept_per_request_and_downloads_audited(
    catalog: Catalog, tmp_path: Path
) -> None:
    keyring = LocalKeyring.from_url(f"file://{tmp_path}/keys/master.json")
    store = ExportStore(catalog.database, catalog.audit, keyring, clock=lambda: NOW)
    assert store.find("PR-1") is None
    first = store.save(
        request_id="PR-1", tenant="acme", subject_ref="s" * 64,
        expires_at=NOW + timedelta(days=7), manifest={"exported": [{"recording_id": "r-1"}]},
    )  # fmt: skip
    assert first.verified and first.manifest["kind"] == EXPORT_KIND
    assert first.manifest["request_id"] == "PR-1" and not first.expired(NOW)
    assert first.expired(NOW + timedelta(days=7))
    again = store.save(
        request_id="PR-1", tenant="acme", subject_ref="s" * 64,
        expires_at=NOW + timedelta(days=7), manifest={"exported": []},
    )  # fmt: skip
    assert again.export_id == first.export_id and again.manifest["exported"] == []

    draft = AuditDraft(actor="user:o", action="privacy.export-downloaded", outcome="granted",
                       details={"request_id": "PR-1"})  # fmt: skip
    assert store.count_download(again, draft) == 1
    assert store.count_download(again, draft) == 2
    last = catalog.audit.head()
    assert last is not None and last.details == {"request_id": "PR-1", "download": 2}

    with catalog.database.transaction() as tx:
        tx.execute(
            "UPDATE privacy_exports SET expires_at = ? WHERE request_id = ?",
            ("2099-01-01T00:00:00.000000Z", "PR-1"),
        )
    assert not store.get("PR-1").verified  # the expiry is part of what was signed
