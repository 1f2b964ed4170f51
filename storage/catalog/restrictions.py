"""Customer-level restriction of use ("cessation of use", privacy policy: Disclosure,
correction, addition, and deletion).

A ``restrict`` request marks the customer's stored recordings restricted AND records
the customer (as the pseudonymous ``subject_ref``) here, so that recordings of that
customer ingested later are restricted from the start. ``lift-restriction`` removes
the entry. Nothing here holds a raw customer identifier.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from storage.catalog.sql import Database, Transaction, to_db_time

__all__ = ["SubjectRestrictions"]


class SubjectRestrictions:
    """The set of customers whose recordings may not be used (except legal disclosure).

    Raises:
        CatalogError: from every method, when the database fails.
    """

    def __init__(self, database: Database) -> None:
        self._database = database

    def restrict(
        self,
        *,
        subject_ref: str,
        tenant: str,
        request_id: str,
        at: datetime,
        tx: Transaction | None = None,
    ) -> None:
        """Record ``subject_ref`` as restricted (idempotent: the first request stays)."""
        sql = (
            "INSERT INTO subject_restrictions (subject_ref, tenant, request_id, restricted_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
        )
        params = (subject_ref, tenant, request_id, to_db_time(at))
        if tx is not None:
            tx.execute(sql, params)
            return
        with self._database.transaction() as own:
            own.execute(sql, params)

    def lift(self, subject_ref: str, *, tx: Transaction | None = None) -> None:
        """Forget the restriction of ``subject_ref`` (no error when there is none)."""
        sql, params = "DELETE FROM subject_restrictions WHERE subject_ref = ?", (subject_ref,)
        if tx is not None:
            tx.execute(sql, params)
            return
        with self._database.transaction() as own:
            own.execute(sql, params)

    def restricted_among(self, subject_refs: Iterable[str]) -> set[str]:
        """The subset of ``subject_refs`` that is restricted."""
        refs = sorted(set(subject_refs))
        found: set[str] = set()
        for start in range(0, len(refs), 500):
            chunk = refs[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._database.fetch_all(
                f"SELECT subject_ref FROM subject_restrictions WHERE subject_ref IN ({marks})",
                tuple(chunk),
            )
            found.update(str(row[0]) for row in rows)
        return found
