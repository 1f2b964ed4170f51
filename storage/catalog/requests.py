"""Customers' privacy requests and their progress (table ``privacy_requests``).

What a caller may rely on:

- A request is identified by ``request_id`` (the caller's idempotency key): filing the
  same id twice returns the stored request and changes nothing.
- It records **who verified the customer's identity and how** (``verified_by``,
  ``verification_method``, ``verified_at``), who filed it (``requested_by``), when it
  was received and when it is due (``due_at``, from the policy's response deadline),
  its ``status`` and timestamps, and JSON ``params`` / ``progress`` / ``result`` that
  hold codes, counts, recording ids and pseudonyms only: the customer appears as
  ``subject_ref`` (keyed hash), never as the raw reference.
- Statuses: ``received`` -> ``in-progress`` -> ``completed`` | ``held`` (done except
  recordings a legal hold keeps; an erasure resumes when the hold is released) |
  ``failed`` (an infrastructure error; processing it again continues where it stopped).
  ``received`` and ``in-progress`` (and ``failed``) are *open*; an open request past
  ``due_at`` is *overdue*.

Errors: :class:`PrivacyRequestError`, :class:`PrivacyRequestNotFound`,
:class:`~storage.errors.CatalogError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from storage.catalog.audit import canonical_json
from storage.catalog.catalog import Catalog
from storage.catalog.sql import Row, from_db_time, to_db_time
from storage.errors import PrivacyRequestError, PrivacyRequestNotFound, StorageError

__all__ = [
    "OPEN_STATUSES",
    "PrivacyRequest",
    "PrivacyRequestError",
    "PrivacyRequestNotFound",
    "PrivacyRequestStore",
    "RequestStatus",
]

_COLUMNS = (
    "request_id, kind, tenant, subject_ref, status, requested_by, verified_by, "
    "verification_method, verified_at, received_at, due_at, updated_at, completed_at, "
    "params, progress, result"
)


class RequestStatus(StrEnum):
    RECEIVED = "received"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    HELD = "held"
    FAILED = "failed"


OPEN_STATUSES = (RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS, RequestStatus.FAILED)


@dataclass(frozen=True)
class PrivacyRequest:
    """One customer's request and where it stands."""

    request_id: str
    kind: str
    tenant: str
    subject_ref: str
    status: RequestStatus
    requested_by: str
    verified_by: str | None
    verification_method: str | None
    verified_at: datetime | None
    received_at: datetime
    due_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    params: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES

    def overdue(self, now: datetime) -> bool:
        return self.open and now >= self.due_at

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """What ``GET /v1/privacy-requests/{id}`` returns (no raw customer data)."""
        body: dict[str, Any] = {
            "request_id": self.request_id,
            "type": self.kind,
            "tenant": self.tenant,
            "subject_ref": self.subject_ref,
            "status": self.status.value,
            "requested_by": self.requested_by,
            "identity_verification": {
                "verified_by": self.verified_by,
                "method": self.verification_method,
                "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            },
            "received_at": self.received_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "params": self.params,
            "progress": self.progress,
            "result": self.result,
        }
        if now is not None:
            body["overdue"] = self.overdue(now)
        return body


def _from_row(values: Row) -> PrivacyRequest:
    (
        request_id,
        kind,
        tenant,
        subject_ref,
        status,
        requested_by,
        verified_by,
        method,
        verified_at,
        received_at,
        due_at,
        updated_at,
        completed_at,
        params,
        progress,
        result,
    ) = values
    return PrivacyRequest(
        request_id=request_id,
        kind=kind,
        tenant=tenant,
        subject_ref=subject_ref,
        status=RequestStatus(status),
        requested_by=requested_by,
        verified_by=verified_by,
        verification_method=method,
        verified_at=None if verified_at is None else from_db_time(verified_at),
        received_at=from_db_time(received_at),
        due_at=from_db_time(due_at),
        updated_at=from_db_time(updated_at),
        completed_at=None if completed_at is None else from_db_time(completed_at),
        params=json.loads(params),
        progress=json.loads(progress),
        result=json.loads(result),
    )


class PrivacyRequestStore:
    """Privacy requests in the catalog database."""

    def __init__(self, catalog: Catalog, *, clock: Callable[[], datetime] | None = None) -> None:
        self._catalog = catalog
        self._db = catalog.database
        self._clock = clock or (lambda: datetime.now(UTC))

    def create(self, request: PrivacyRequest) -> tuple[PrivacyRequest, bool]:
        """Store a new request; return (stored request, created?). An existing
        ``request_id`` returns the stored one with ``False``.

        Raises:
            PrivacyRequestError: the JSON fields are not JSON.
            CatalogError: the database failed.
        """
        try:
            params, progress, result = (
                canonical_json(request.params),
                canonical_json(request.progress),
                canonical_json(request.result),
            )
        except StorageError as exc:
            raise PrivacyRequestError(str(exc)) from exc
        with self._db.transaction() as tx:
            inserted = tx.execute(
                f"INSERT INTO privacy_requests ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (request_id) DO NOTHING",
                (
                    request.request_id,
                    request.kind,
                    request.tenant,
                    request.subject_ref,
                    request.status.value,
                    request.requested_by,
                    request.verified_by,
                    request.verification_method,
                    None if request.verified_at is None else to_db_time(request.verified_at),
                    to_db_time(request.received_at),
                    to_db_time(request.due_at),
                    to_db_time(request.updated_at),
                    None if request.completed_at is None else to_db_time(request.completed_at),
                    params,
                    progress,
                    result,
                ),
            )
            row = tx.fetch_one(
                f"SELECT {_COLUMNS} FROM privacy_requests WHERE request_id = ?",
                (request.request_id,),
            )
        assert row is not None
        return _from_row(row), inserted == 1

    def get(self, request_id: str) -> PrivacyRequest:
        """The request ``request_id``.

        Raises:
            PrivacyRequestNotFound: no such request.
            CatalogError: the database failed.
        """
        row = self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM privacy_requests WHERE request_id = ?", (request_id,)
        )
        if row is None:
            raise PrivacyRequestNotFound(f"no privacy request {request_id!r}")
        return _from_row(row)

    def update(
        self,
        request: PrivacyRequest,
        *,
        status: RequestStatus | None = None,
        progress: Mapping[str, Any] | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> PrivacyRequest:
        """Store a new status / progress / result; ``completed_at`` is stamped when the
        status becomes ``completed`` or ``held``.

        Raises:
            CatalogError: the database failed.
        """
        now = self._clock()
        new = replace(
            request,
            status=status or request.status,
            progress=dict(progress) if progress is not None else request.progress,
            result=dict(result) if result is not None else request.result,
            updated_at=now,
        )
        if new.status in (RequestStatus.COMPLETED, RequestStatus.HELD):
            new = replace(new, completed_at=request.completed_at or now)
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE privacy_requests SET status = ?, progress = ?, result = ?, "
                "updated_at = ?, completed_at = ? WHERE request_id = ?",
                (
                    new.status.value,
                    canonical_json(new.progress),
                    canonical_json(new.result),
                    to_db_time(now),
                    None if new.completed_at is None else to_db_time(new.completed_at),
                    new.request_id,
                ),
            )
        return new

    def list_requests(
        self,
        *,
        statuses: tuple[RequestStatus, ...] | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[PrivacyRequest]:
        """Requests (optionally by status / kind), oldest received first.

        Raises:
            CatalogError: the database failed.
        """
        where: list[str] = []
        params: list[Any] = []
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(s.value for s in statuses)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = f"SELECT {_COLUMNS} FROM privacy_requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY received_at, request_id LIMIT ?"
        params.append(limit)
        return [_from_row(row) for row in self._db.fetch_all(sql, params)]

    def count_open(self, now: datetime) -> tuple[int, int]:
        """(open, overdue) request counts.

        Raises:
            CatalogError: the database failed.
        """
        marks = ", ".join("?" for _ in OPEN_STATUSES)
        row = self._db.fetch_one(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN due_at <= ? THEN 1 ELSE 0 END), 0) "
            f"FROM privacy_requests WHERE status IN ({marks})",
            (to_db_time(now), *(s.value for s in OPEN_STATUSES)),
        )
        assert row is not None
        return int(row[0]), int(row[1])
