"""Legal holds: recordings that must survive retention and erasure (table ``legal_holds``).

What a caller may rely on:

- A hold covers recordings of one tenant by **recording** (``recording_id``), by
  **subject** (the customer's pseudonymous ``subject_ref``: every recording of that
  customer, including ones ingested after the hold was placed) or by **call**
  (``call_id``). It is active from :meth:`HoldStore.place` until
  :meth:`HoldStore.release`; a released hold stays in the table as evidence.
- Placing and releasing are audited (``hold.placed`` / ``hold.released``) in the same
  transaction as the change. The audit record carries the hold id, scope, target (a
  recording id, call id or pseudonym: never a raw customer reference), reason and
  reference; :func:`storage.catalog.audit.check_details` refuses reasons that look like
  e-mail addresses or phone numbers (:class:`~storage.errors.AuditError`).
- :meth:`HoldStore.holds_for` answers "which active holds cover these recordings?"
  for a batch in two queries; the sweep and erasure use it to say which hold won.
- :func:`hold_match_sql` is the SQL condition (for ``recordings r``) that the
  retention queries use to skip held recordings without loading them.
- Placing or releasing a hold queues the stored recordings it names for the vault
  mirror (:mod:`storage.catalog.vaultsync`) in the same transaction, so their S3 legal
  hold and ``legal-hold`` tag follow.

Errors: :class:`HoldError` (bad arguments), :class:`HoldNotFound`, and
:class:`~storage.errors.CatalogError` / :class:`~storage.errors.AuditError` from the
database and audit layers.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from storage.catalog.audit import AuditDraft
from storage.catalog.catalog import Catalog
from storage.catalog.holdsql import hold_match_sql
from storage.catalog.sql import Row, Transaction, from_db_time, to_db_time
from storage.catalog.vaultsync import HOLD, enqueue_select, new_token
from storage.errors import HoldError, HoldNotFound
from storage.types import RecordingRow

__all__ = [
    "HoldError",
    "HoldNotFound",
    "HoldScope",
    "LegalHold",
    "HoldStore",
    "hold_match_sql",
    "first_hold",
]

_MAX_TEXT = 500
_HOLD_COLUMNS = (
    "hold_id, tenant, scope, target, reason, reference, placed_by, placed_at, "
    "released_at, released_by, release_reason"
)


class HoldScope(StrEnum):
    """What a hold is placed on."""

    RECORDING = "recording"
    SUBJECT = "subject"  # a customer, by pseudonymous subject_ref
    CALL = "call"


@dataclass(frozen=True)
class LegalHold:
    """One legal hold; ``released_at`` is ``None`` while it is active."""

    hold_id: str
    tenant: str
    scope: HoldScope
    target: str
    reason: str
    reference: str
    placed_by: str
    placed_at: datetime
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def covers(self, row: RecordingRow) -> bool:
        """True when this (active or not) hold names ``row``."""
        if row.tenant != self.tenant:
            return False
        if self.scope is HoldScope.RECORDING:
            return row.recording_id == self.target
        if self.scope is HoldScope.SUBJECT:
            return row.subject_ref == self.target
        return row.call_id == self.target

    def summary(self) -> dict[str, str]:
        """Hold id, reason, reference and placer: what a sweep or request result reports."""
        return {
            "hold_id": self.hold_id,
            "scope": self.scope.value,
            "reason": self.reason,
            "reference": self.reference,
            "placed_by": self.placed_by,
            "placed_at": self.placed_at.isoformat(),
        }


#: The recordings column a hold's target is matched against.
_SCOPE_COLUMN = {
    HoldScope.RECORDING: "recording_id",
    HoldScope.SUBJECT: "subject_ref",
    HoldScope.CALL: "call_id",
}


def _hold_from_row(values: Row) -> LegalHold:
    (
        hold_id,
        tenant,
        scope,
        target,
        reason,
        reference,
        placed_by,
        placed_at,
        released_at,
        released_by,
        release_reason,
    ) = values
    return LegalHold(
        hold_id=hold_id,
        tenant=tenant,
        scope=HoldScope(scope),
        target=target,
        reason=reason,
        reference=reference,
        placed_by=placed_by,
        placed_at=from_db_time(placed_at),
        released_at=None if released_at is None else from_db_time(released_at),
        released_by=released_by,
        release_reason=release_reason,
    )


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise HoldError(f"{name} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise HoldError(f"{name} must be at most {_MAX_TEXT} characters")
    return value.strip()


class HoldStore:
    """Place, release and look up legal holds in the catalog database."""

    def __init__(self, catalog: Catalog, *, clock: Callable[[], datetime] | None = None) -> None:
        self._catalog = catalog
        self._clock = clock or (lambda: datetime.now(UTC))

    def place(
        self,
        *,
        tenant: str,
        scope: HoldScope | str,
        target: str,
        reason: str,
        reference: str,
        placed_by: str,
        actor: str,
        sealed_target: Mapping[str, Any] | None = None,
    ) -> LegalHold:
        """Place an active hold (audited ``hold.placed``) and return it.

        ``target`` is a recording id, a subject_ref or a call id according to ``scope``.
        For a customer hold, ``sealed_target`` (``storage.subjectdetails.sealed_subject``)
        is what the audit record carries instead of the pseudonym.

        Raises:
            HoldError: an unknown scope or an empty / overlong field.
            AuditError: the reason or reference looks like personal data.
            CatalogError: the database failed.
        """
        try:
            kind = HoldScope(scope)
        except ValueError:
            raise HoldError(f"scope must be one of {', '.join(HoldScope)}, got {scope!r}") from None
        hold = LegalHold(
            hold_id=f"hold_{secrets.token_hex(8)}",
            tenant=_text(tenant, "tenant"),
            scope=kind,
            target=_text(target, "target"),
            reason=_text(reason, "reason"),
            reference=_text(reference, "reference"),
            placed_by=_text(placed_by, "placed_by"),
            placed_at=self._clock(),
        )
        draft = AuditDraft(
            actor=actor,
            action="hold.placed",
            outcome="ok",
            reason="legal-hold",
            recording_id=hold.target if kind is HoldScope.RECORDING else None,
            details={
                "hold_id": hold.hold_id,
                "tenant": hold.tenant,
                "scope": kind.value,
                **(
                    dict(sealed_target)
                    if kind is HoldScope.SUBJECT and sealed_target is not None
                    else {"target": hold.target}
                ),
                "hold_reason": hold.reason,
                "reference": hold.reference,
                "placed_by": hold.placed_by,
            },
        )
        with self._catalog.database.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            tx.execute(
                f"INSERT INTO legal_holds ({_HOLD_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
                (
                    hold.hold_id,
                    hold.tenant,
                    kind.value,
                    hold.target,
                    hold.reason,
                    hold.reference,
                    hold.placed_by,
                    to_db_time(hold.placed_at),
                ),
            )
            self._queue_covered(tx, hold)
            self._catalog.audit.append(draft, tx=tx)
        return hold

    def release(self, hold_id: str, *, released_by: str, reason: str, actor: str) -> LegalHold:
        """Release an active hold (audited ``hold.released``); releasing twice changes nothing.

        Raises:
            HoldNotFound: no hold ``hold_id``.
            HoldError: an empty ``released_by`` or ``reason``.
            CatalogError / AuditError: the database or audit layer failed.
        """
        by = _text(released_by, "released_by")
        why = _text(reason, "reason")
        now = self._clock()
        with self._catalog.database.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            row = tx.fetch_one(
                f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE hold_id = ?"
                + tx.dialect.for_update,
                (hold_id,),
            )
            if row is None:
                raise HoldNotFound(f"no legal hold {hold_id!r}")
            hold = _hold_from_row(row)
            if not hold.active:
                return hold
            tx.execute(
                "UPDATE legal_holds SET released_at = ?, released_by = ?, release_reason = ? "
                "WHERE hold_id = ?",
                (to_db_time(now), by, why, hold_id),
            )
            self._queue_covered(tx, hold)
            self._catalog.audit.append(
                AuditDraft(
                    actor=actor,
                    action="hold.released",
                    outcome="ok",
                    reason="hold-released",
                    recording_id=hold.target if hold.scope is HoldScope.RECORDING else None,
                    details={
                        "hold_id": hold_id,
                        "tenant": hold.tenant,  # whose auditors see it (audit_log.tenant)
                        "scope": hold.scope.value,
                        "released_by": by,
                        "release_reason": why,
                    },
                ),
                tx=tx,
            )
        return LegalHold(
            **{**hold.__dict__, "released_at": now, "released_by": by, "release_reason": why}
        )

    def _queue_covered(self, tx: Transaction, hold: LegalHold) -> None:
        """Queue the stored recordings ``hold`` names for the vault mirror (its legal
        hold in S3 follows the catalog), in the transaction that places or releases it."""
        tx.execute(
            enqueue_select(
                f"SELECT recording_id, {HOLD}, ?, ? FROM recordings "
                f"WHERE tenant = ? AND {_SCOPE_COLUMN[hold.scope]} = ? AND state = 'stored'"
            ),
            (new_token(), to_db_time(self._clock()), hold.tenant, hold.target),
        )

    def get(self, hold_id: str) -> LegalHold:
        """The hold ``hold_id`` (active or released).

        Raises:
            HoldNotFound: no such hold.
            CatalogError: the database failed.
        """
        row = self._catalog.database.fetch_one(
            f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE hold_id = ?", (hold_id,)
        )
        if row is None:
            raise HoldNotFound(f"no legal hold {hold_id!r}")
        return _hold_from_row(row)

    def list_holds(self, *, active_only: bool = True, tenant: str | None = None) -> list[LegalHold]:
        """Holds in placement order (only active ones unless ``active_only=False``).

        Raises:
            CatalogError: the database failed.
        """
        where: list[str] = []
        params: list[str] = []
        if active_only:
            where.append("released_at IS NULL")
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        sql = f"SELECT {_HOLD_COLUMNS} FROM legal_holds"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY placed_at, hold_id"
        return [_hold_from_row(row) for row in self._catalog.database.fetch_all(sql, params)]

    def count_active(self) -> int:
        """How many holds are active (the ``holds active`` gauge).

        Raises:
            CatalogError: the database failed.
        """
        row = self._catalog.database.fetch_one(
            "SELECT COUNT(*) FROM legal_holds WHERE released_at IS NULL"
        )
        return int(row[0]) if row else 0

    def holds_for(self, rows: Iterable[RecordingRow]) -> dict[str, list[LegalHold]]:
        """Active holds covering each of ``rows``, by recording id (only covered ones),
        each list ordered by hold id (the first is the one reported as winning).

        Raises:
            CatalogError: the database failed.
        """
        wanted = list(rows)
        if not wanted:
            return {}
        tenants = sorted({row.tenant for row in wanted})
        marks = ", ".join("?" for _ in tenants)
        active = [
            _hold_from_row(values)
            for values in self._catalog.database.fetch_all(
                f"SELECT {_HOLD_COLUMNS} FROM legal_holds "
                f"WHERE released_at IS NULL AND tenant IN ({marks}) ORDER BY hold_id",
                tenants,
            )
        ]
        found: dict[str, list[LegalHold]] = {}
        for row in wanted:
            covering = [hold for hold in active if hold.covers(row)]
            if covering:
                found[row.recording_id] = covering
        return found

    def covered_recording_ids(self, hold: LegalHold, *, limit: int = 1000) -> list[str]:
        """Recording ids (any state) the hold names, up to ``limit``.

        Raises:
            CatalogError: the database failed.
        """
        column = _SCOPE_COLUMN[hold.scope]
        rows = self._catalog.database.fetch_all(
            f"SELECT recording_id FROM recordings WHERE tenant = ? AND {column} = ? "
            "ORDER BY recording_id LIMIT ?",
            (hold.tenant, hold.target, limit),
        )
        return [row[0] for row in rows]


def first_hold(holds: Sequence[LegalHold]) -> LegalHold | None:
    """The hold reported as winning: the smallest hold id (as policies.retention does)."""
    return min(holds, key=lambda hold: hold.hold_id) if holds else None
