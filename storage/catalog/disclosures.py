"""The disclosure ledger: every release of a recording for a disclosure purpose.

A disclosure is audio released outside the operational purposes: to a third party
under a legal basis from the policy's closed list (``legal-disclosure``) or to the
customer on a verified request (``customer-disclosure``). Each one is a row of the
``disclosures`` table (catalog migration 2), written in ONE transaction with its
audit record, so the ledger and the hash-chained audit log never disagree.

What a caller may rely on:

- :meth:`DisclosureLedger.record` commits the ledger row and the audit record
  together (both or neither) and returns the stored :class:`Disclosure`, whose
  ``audit_seq`` is the seq of that audit record.
- ``reference`` and ``legal_basis`` are validated (short codes, no spaces); the ledger
  never stores a customer identifier: recordings are named by ``recording_id``.
- :meth:`DisclosureLedger.list` pages in (``disclosed_at``, ``disclosure_id``) order.
- Errors: :class:`~storage.errors.CatalogError` (bad arguments, database failure),
  :class:`~storage.errors.AuditError` (the audit part failed; nothing is written).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from storage.catalog.audit import AuditDraft, AuditLog
from storage.catalog.sql import Database, Row, from_db_time, to_db_time
from storage.errors import CatalogError

__all__ = ["Disclosure", "DisclosureLedger", "REFERENCE_PATTERN"]

#: What a disclosure reference (case number, privacy request id) may look like.
REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,127}$")
_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_MODES = ("play", "download")
_MAX_LIMIT = 1000
_COLUMNS = (
    "disclosure_id, recording_id, tenant, disclosed_at, actor, role, org, purpose, "
    "legal_basis, reference, mode, audit_seq"
)


@dataclass(frozen=True)
class Disclosure:
    """One ledger row. ``legal_basis`` is ``None`` for a disclosure to the customer."""

    disclosure_id: str
    recording_id: str
    tenant: str
    disclosed_at: datetime
    actor: str
    role: str
    org: str | None
    purpose: str
    legal_basis: str | None
    reference: str
    mode: str
    audit_seq: int = 0


def _from_row(row: Row) -> Disclosure:
    values = list(row)
    values[3] = from_db_time(values[3])
    values[11] = int(values[11])
    return Disclosure(*values)


def _check(disclosure: Disclosure) -> None:
    if not disclosure.recording_id or not disclosure.tenant or not disclosure.actor:
        raise CatalogError("a disclosure needs a recording_id, a tenant and an actor")
    if not _CODE.match(disclosure.purpose) or not _CODE.match(disclosure.role):
        raise CatalogError(f"bad purpose/role code {disclosure.purpose!r}/{disclosure.role!r}")
    if disclosure.legal_basis is not None and not _CODE.match(disclosure.legal_basis):
        raise CatalogError(f"bad legal basis code {disclosure.legal_basis!r}")
    if not REFERENCE_PATTERN.match(disclosure.reference):
        raise CatalogError(
            f"disclosure reference must match {REFERENCE_PATTERN.pattern} (a case or request id)"
        )
    if disclosure.mode not in _MODES:
        raise CatalogError(f"disclosure mode must be one of {_MODES}, got {disclosure.mode!r}")


class DisclosureLedger:
    """The ``disclosures`` table of the catalog database, beside its audit log."""

    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._database = database
        self._audit = audit
        self._clock = clock or (lambda: datetime.now(UTC))

    def record(
        self,
        *,
        recording_id: str,
        tenant: str,
        actor: str,
        role: str,
        org: str | None,
        purpose: str,
        legal_basis: str | None,
        reference: str,
        mode: str,
        audit: AuditDraft,
    ) -> Disclosure:
        """Write one disclosure and its audit record in one transaction.

        The audit draft's details gain ``disclosure_id``; its ``recording_id`` must be
        ``recording_id`` (filled in when ``None``).

        Raises:
            CatalogError: bad arguments, or the database failed (nothing is written).
            AuditError: the draft is invalid or the audit write failed (nothing is written).
        """
        disclosure = Disclosure(
            disclosure_id=f"dsc_{secrets.token_hex(12)}",
            recording_id=recording_id,
            tenant=tenant,
            disclosed_at=self._clock(),
            actor=actor,
            role=role,
            org=org,
            purpose=purpose,
            legal_basis=legal_basis,
            reference=reference,
            mode=mode,
        )
        _check(disclosure)
        if audit.recording_id not in (None, recording_id):
            raise CatalogError("the audit draft is about another recording")
        draft = replace(
            audit,
            recording_id=recording_id,
            details={**audit.details, "disclosure_id": disclosure.disclosure_id},
        )
        try:
            with self._database.transaction() as tx:
                entry = self._audit.append(draft, tx=tx)
                stored = replace(disclosure, audit_seq=entry.seq)
                tx.execute(
                    f"INSERT INTO disclosures ({_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        stored.disclosure_id,
                        stored.recording_id,
                        stored.tenant,
                        to_db_time(stored.disclosed_at),
                        stored.actor,
                        stored.role,
                        stored.org,
                        stored.purpose,
                        stored.legal_basis,
                        stored.reference,
                        stored.mode,
                        stored.audit_seq,
                    ),
                )
        except CatalogError as exc:
            raise CatalogError(f"disclosure ledger write failed: {exc}") from exc
        return stored

    def get(self, disclosure_id: str) -> Disclosure | None:
        """The disclosure ``disclosure_id``, or ``None``.

        Raises:
            CatalogError: the database failed.
        """
        row = self._database.fetch_one(
            f"SELECT {_COLUMNS} FROM disclosures WHERE disclosure_id = ?", (disclosure_id,)
        )
        return None if row is None else _from_row(row)

    def list(
        self,
        *,
        recording_id: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 100,
        tenant: str | None = None,
    ) -> list[Disclosure]:
        """Disclosures in (disclosed_at, disclosure_id) order, after ``after`` (exclusive),
        optionally of one ``tenant`` only.

        Raises:
            CatalogError: ``limit`` outside 1..1000, or the database failed.
        """
        if not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
            raise CatalogError(f"limit must be between 1 and {_MAX_LIMIT}, got {limit!r}")
        where: list[str] = []
        params: list[object] = []
        if recording_id is not None:
            where.append("recording_id = ?")
            params.append(recording_id)
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if after is not None:
            at = to_db_time(after[0])
            where.append("(disclosed_at > ? OR (disclosed_at = ? AND disclosure_id > ?))")
            params.extend((at, at, after[1]))
        sql = f"SELECT {_COLUMNS} FROM disclosures"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY disclosed_at, disclosure_id LIMIT ?"
        params.append(limit)
        return [_from_row(row) for row in self._database.fetch_all(sql, params)]
