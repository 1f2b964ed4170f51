"""Disclosure exports: a signed manifest per ``disclose`` request, never files.

A disclosure used to write decrypted WAVs under ``<data_dir>/exports/``; now it stores
only a **manifest** (table ``privacy_exports``, catalog migration 11): which recordings
the customer gets (recording id, object key, ciphertext digest and size, stored
format), which are withheld and why, the listing of everything held about the
customer, when it was made and until when it may be downloaded; signed with the
keyring (``Keyring.sign`` over its canonical JSON). The audio is decrypted only while
``GET /v1/privacy-requests/{id}/export`` streams the ZIP (``streams/http/exports.py``).

What a caller may rely on:

- :meth:`ExportStore.save` is idempotent per request (a resumed disclosure keeps its
  first export id and replaces the manifest).
- :meth:`ExportStore.get` returns the export with ``verified`` telling whether the
  manifest's signature still verifies (an edited row is refused by the route).
- :meth:`ExportStore.count_download` counts a download and appends its audit record in
  one transaction (the audit record before any byte is sent).
- The manifest holds no customer reference: the subject is its pseudonym, recordings
  are named by id.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage.catalog.audit import AuditDraft, AuditLog, canonical_json
from storage.catalog.sql import Database, Row, from_db_time, to_db_time
from storage.crypto.keyring import Keyring
from storage.errors import CatalogError

__all__ = ["EXPORT_KIND", "DisclosureExport", "ExportStore"]

EXPORT_KIND = "callvault.disclosure-export.v1"
_COLUMNS = (
    "export_id, request_id, tenant, subject_ref, created_at, expires_at, manifest, "
    "signature, downloads"
)


@dataclass(frozen=True)
class DisclosureExport:
    """One stored export. ``manifest`` is the signed payload; ``verified`` whether its
    signature verifies with the keyring now."""

    export_id: str
    request_id: str
    tenant: str
    subject_ref: str
    created_at: datetime
    expires_at: datetime
    manifest: dict[str, Any]
    signature: str
    downloads: int = 0
    verified: bool = False

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def signed_manifest(self) -> dict[str, Any]:
        """What the ZIP carries as ``manifest.json``: the payload and its signature."""
        return {"manifest": self.manifest, "signature": self.signature}


class ExportStore:
    """The ``privacy_exports`` table (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        keyring: Keyring,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._database = database
        self._audit = audit
        self._keyring = keyring
        self._clock = clock or (lambda: datetime.now(UTC))

    def save(
        self,
        *,
        request_id: str,
        tenant: str,
        subject_ref: str,
        expires_at: datetime,
        manifest: dict[str, Any],
    ) -> DisclosureExport:
        """Sign and store the manifest of ``request_id`` (replacing an earlier one).

        ``manifest`` gains ``kind``, ``export_id``, ``request_id``, ``created_at`` and
        ``expires_at``.

        Raises:
            CatalogError: the database failed; AuditError: the manifest is not JSON.
        """
        now = self._clock()
        existing = self._database.fetch_one(
            "SELECT export_id FROM privacy_exports WHERE request_id = ?", (request_id,)
        )
        export_id = str(existing[0]) if existing else f"exp_{secrets.token_hex(12)}"
        payload = {
            **manifest,
            "kind": EXPORT_KIND,
            "export_id": export_id,
            "request_id": request_id,
            "created_at": to_db_time(now),
            "expires_at": to_db_time(expires_at),
        }
        body = canonical_json(payload)
        signature = self._keyring.sign(body.encode())
        with self._database.transaction() as tx:
            tx.execute(
                f"INSERT INTO privacy_exports ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0) "
                "ON CONFLICT (request_id) DO UPDATE SET created_at = excluded.created_at, "
                "expires_at = excluded.expires_at, manifest = excluded.manifest, "
                "signature = excluded.signature",
                (
                    export_id,
                    request_id,
                    tenant,
                    subject_ref,
                    to_db_time(now),
                    to_db_time(expires_at),
                    body,
                    signature,
                ),
            )
        return self.get(request_id)

    def get(self, request_id: str) -> DisclosureExport:
        """The export of ``request_id``.

        Raises:
            CatalogError: no export for that request, or the database failed.
        """
        found = self.find(request_id)
        if found is None:
            raise CatalogError(f"no export for privacy request {request_id!r}")
        return found

    def find(self, request_id: str) -> DisclosureExport | None:
        """The export of ``request_id``, or None.

        Raises:
            CatalogError: the database failed.
        """
        row = self._database.fetch_one(
            f"SELECT {_COLUMNS} FROM privacy_exports WHERE request_id = ?", (request_id,)
        )
        return None if row is None else self._from_row(row)

    def count_download(self, export: DisclosureExport, audit: AuditDraft) -> int:
        """Count one download and append its audit record, in one transaction; returns
        the download's number (1 for the first).

        Raises:
            CatalogError / AuditError: nothing is written (and nothing must be sent).
        """
        with self._database.transaction() as tx:
            tx.execute(
                "UPDATE privacy_exports SET downloads = downloads + 1 WHERE export_id = ?",
                (export.export_id,),
            )
            row = tx.fetch_one(
                "SELECT downloads FROM privacy_exports WHERE export_id = ?", (export.export_id,)
            )
            number = int(row[0]) if row else 0
            self._audit.append(
                AuditDraft(
                    actor=audit.actor,
                    action=audit.action,
                    outcome=audit.outcome,
                    reason=audit.reason,
                    recording_id=audit.recording_id,
                    details={**audit.details, "download": number},
                ),
                tx=tx,
            )
        return number

    def _from_row(self, row: Row) -> DisclosureExport:
        body = str(row[6])
        try:
            manifest = json.loads(body)
        except ValueError:
            manifest = {}
        return DisclosureExport(
            export_id=str(row[0]),
            request_id=str(row[1]),
            tenant=str(row[2]),
            subject_ref=str(row[3]),
            created_at=from_db_time(row[4]),
            expires_at=from_db_time(row[5]),
            manifest=manifest,
            signature=str(row[7]),
            downloads=int(row[8]),
            verified=isinstance(manifest, dict)
            and self._keyring.verify(body.encode(), str(row[7]))
            and manifest.get("expires_at") == row[5]
            and manifest.get("request_id") == row[1],
        )
