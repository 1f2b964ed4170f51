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
- The workflow (statuses): ``received`` -> ``verified`` (the customer's identity, who
  verified it and how) -> ``approved`` | ``refused`` (a closed reason,
  :class:`policies.RefusalReason`, and a note; final) -> ``executing`` ->
  ``completed`` | ``held`` (done except recordings a legal hold keeps; an erasure
  resumes when the hold is released) | ``failed`` (an infrastructure error; processing
  it again continues where it stopped). Each step keeps its true time: ``received_at``,
  ``verified_at``, ``decided_at`` (+ ``decided_by``), ``executing_at`` (the first start),
  ``completed_at`` (only when ``completed`` or ``refused``: a held erasure gets it when
  it finally completes). Every status but ``completed``, ``refused`` and ``held`` is
  *open*; an open request past ``due_at`` (the policy's SLA for its kind) is *overdue*.

Errors: :class:`PrivacyRequestError`, :class:`PrivacyRequestNotFound`,
:class:`~storage.errors.CatalogError`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from storage.catalog.audit import canonical_json
from storage.catalog.catalog import Catalog
from storage.catalog.sql import MAX_CURSOR_CHARS, Row, from_db_time, to_db_time
from storage.errors import CatalogError, PrivacyRequestError, PrivacyRequestNotFound, StorageError

__all__ = [
    "OPEN_STATUSES",
    "RUNNABLE_STATUSES",
    "PrivacyRequest",
    "PrivacyRequestError",
    "PrivacyRequestNotFound",
    "PrivacyRequestStore",
    "RequestStatus",
]

_COLUMNS = (
    "request_id, kind, tenant, subject_ref, status, requested_by, verified_by, "
    "verification_method, verified_at, received_at, due_at, updated_at, completed_at, "
    "params, progress, result, decided_by, decided_at, refusal_reason, refusal_note, "
    "executing_at"
)


class RequestStatus(StrEnum):
    RECEIVED = "received"
    VERIFIED = "verified"
    APPROVED = "approved"
    REFUSED = "refused"
    EXECUTING = "executing"
    COMPLETED = "completed"
    HELD = "held"
    FAILED = "failed"


OPEN_STATUSES = (
    RequestStatus.RECEIVED,
    RequestStatus.VERIFIED,
    RequestStatus.APPROVED,
    RequestStatus.EXECUTING,
    RequestStatus.FAILED,
)
#: Approved and not finished: what processing (again) carries out.
RUNNABLE_STATUSES = (RequestStatus.APPROVED, RequestStatus.EXECUTING, RequestStatus.FAILED)


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
    decided_by: str | None = None
    decided_at: datetime | None = None
    refusal_reason: str | None = None
    refusal_note: str | None = None
    executing_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES

    def overdue(self, now: datetime) -> bool:
        return self.open and now >= self.due_at

    @property
    def approved(self) -> bool:
        return self.decided_at is not None and self.refusal_reason is None

    def timeline(self) -> list[dict[str, Any]]:
        """The workflow's steps so far, in order: ``{step, at, by}``."""
        steps: list[tuple[str, datetime | None, str | None]] = [
            ("received", self.received_at, self.requested_by),
            ("verified", self.verified_at, self.verified_by),
        ]
        if self.refusal_reason is not None:
            steps.append(("refused", self.decided_at, self.decided_by))
        else:
            steps.append(("approved", self.decided_at, self.decided_by))
            steps.append(("executing", self.executing_at, None))
            steps.append(("completed", self.completed_at, None))
        return [
            {"step": step, "at": at.isoformat(), "by": by}
            for step, at, by in steps
            if at is not None
        ]

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
            "decision": None
            if self.decided_at is None
            else {
                "outcome": "refused" if self.refusal_reason else "approved",
                "by": self.decided_by,
                "at": self.decided_at.isoformat(),
                "reason": self.refusal_reason,
                "note": self.refusal_note,
            },
            "executing_at": self.executing_at.isoformat() if self.executing_at else None,
            "timeline": self.timeline(),
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
        decided_by,
        decided_at,
        refusal_reason,
        refusal_note,
        executing_at,
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
        decided_by=decided_by,
        decided_at=_time(decided_at),
        refusal_reason=refusal_reason,
        refusal_note=refusal_note,
        executing_at=_time(executing_at),
    )


def _time(value: str | None) -> datetime | None:
    return None if value is None else from_db_time(value)


def _db(value: datetime | None) -> str | None:
    return None if value is None else to_db_time(value)


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
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
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
                    request.decided_by,
                    _db(request.decided_at),
                    request.refusal_reason,
                    request.refusal_note,
                    _db(request.executing_at),
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
        """Store a new status / progress / result. ``executing_at`` is stamped the first
        time the status becomes ``executing``, ``completed_at`` when it becomes
        ``completed`` (not ``held``: a held erasure is not complete).

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
        if new.status is RequestStatus.EXECUTING and new.executing_at is None:
            new = replace(new, executing_at=now)
        if new.status is RequestStatus.COMPLETED:
            if request.status is not RequestStatus.COMPLETED or request.completed_at is None:
                new = replace(new, completed_at=now)
        elif new.status is not RequestStatus.REFUSED:
            new = replace(new, completed_at=None)
        return self._write(new)

    def verify(
        self, request: PrivacyRequest, *, verified_by: str, method: str, verified_at: datetime
    ) -> PrivacyRequest:
        """Record who verified the customer's identity and how: ``received`` -> ``verified``.

        Raises:
            PrivacyRequestError: the request is not ``received``.
            CatalogError: the database failed.
        """
        if request.status is not RequestStatus.RECEIVED:
            raise PrivacyRequestError(
                f"request {request.request_id} is {request.status.value}, not received"
            )
        return self._write(
            replace(
                request,
                status=RequestStatus.VERIFIED,
                verified_by=verified_by,
                verification_method=method,
                verified_at=verified_at,
                updated_at=self._clock(),
            ),
            expect=RequestStatus.RECEIVED,
        )

    def decide(
        self,
        request: PrivacyRequest,
        *,
        by: str,
        refusal_reason: str | None = None,
        note: str | None = None,
    ) -> PrivacyRequest:
        """Approve (``refusal_reason`` None: -> ``approved``) or refuse (-> ``refused``,
        final, ``completed_at`` stamped) a request. Approval needs ``verified``; a refusal
        may come before verification (``identity-unverified``).

        Raises:
            PrivacyRequestError: the request was decided already, or is not verified.
            CatalogError: the database failed.
        """
        allowed = (
            (RequestStatus.VERIFIED,)
            if refusal_reason is None
            else (RequestStatus.RECEIVED, RequestStatus.VERIFIED)
        )
        if request.status not in allowed:
            raise PrivacyRequestError(
                f"request {request.request_id} is {request.status.value}: it can be "
                + (
                    "approved only once verified"
                    if refusal_reason is None
                    else "refused only before it is approved"
                )
            )
        now = self._clock()
        refused = refusal_reason is not None
        return self._write(
            replace(
                request,
                status=RequestStatus.REFUSED if refused else RequestStatus.APPROVED,
                decided_by=by,
                decided_at=now,
                refusal_reason=refusal_reason,
                refusal_note=note,
                completed_at=now if refused else None,
                updated_at=now,
            ),
            expect=request.status,
        )

    def _write(self, new: PrivacyRequest, *, expect: RequestStatus | None = None) -> PrivacyRequest:
        """Store every mutable column of ``new`` (only while its status is ``expect``)."""
        sql = (
            "UPDATE privacy_requests SET status = ?, progress = ?, result = ?, "
            "updated_at = ?, completed_at = ?, verified_by = ?, verification_method = ?, "
            "verified_at = ?, decided_by = ?, decided_at = ?, refusal_reason = ?, "
            "refusal_note = ?, executing_at = ? WHERE request_id = ?"
        )
        values: list[Any] = [
            new.status.value,
            canonical_json(new.progress),
            canonical_json(new.result),
            to_db_time(new.updated_at),
            _db(new.completed_at),
            new.verified_by,
            new.verification_method,
            _db(new.verified_at),
            new.decided_by,
            _db(new.decided_at),
            new.refusal_reason,
            new.refusal_note,
            _db(new.executing_at),
            new.request_id,
        ]
        if expect is not None:
            sql += " AND status = ?"
            values.append(expect.value)
        with self._db.transaction() as tx:
            changed = tx.execute(sql, values)
        if expect is not None and changed != 1:
            raise PrivacyRequestError(f"request {new.request_id} changed meanwhile; reload it")
        return new

    def erased_subjects(self, subject_refs: Iterable[str]) -> dict[str, datetime]:
        """Of these customers, those a completed erasure covered whole (not one naming
        ``recording_ids``), each with when the latest such request was received: a call
        that ended by then is covered by it (ingest refuses to store it again).

        Raises:
            CatalogError: the database failed.
        """
        refs = sorted(set(subject_refs))
        found: dict[str, datetime] = {}
        for start in range(0, len(refs), 500):
            chunk = refs[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._db.fetch_all(
                "SELECT subject_ref, received_at, params FROM privacy_requests "
                f"WHERE kind = 'erase' AND status = 'completed' AND subject_ref IN ({marks})",
                tuple(chunk),
            )
            for subject_ref, received_at, params in rows:
                try:
                    scope = json.loads(params).get("recording_ids")
                except (ValueError, AttributeError):
                    scope = None
                if scope is not None:
                    continue
                at = from_db_time(str(received_at))
                ref = str(subject_ref)
                if ref not in found or at > found[ref]:
                    found[ref] = at
        return found

    def list_requests(
        self,
        *,
        statuses: tuple[RequestStatus, ...] | None = None,
        kind: str | None = None,
        limit: int = 100,
        tenant: str | None = None,
    ) -> list[PrivacyRequest]:
        """Requests (optionally by status / kind / tenant), oldest received first.

        Raises:
            CatalogError: the database failed.
        """
        where, params = _filters(statuses, kind, tenant)
        sql = f"SELECT {_COLUMNS} FROM privacy_requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY received_at, request_id LIMIT ?"
        params.append(limit)
        return [_from_row(row) for row in self._db.fetch_all(sql, params)]

    def page_requests(
        self,
        *,
        statuses: tuple[RequestStatus, ...] | None = None,
        tenant: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[PrivacyRequest], str | None]:
        """One page of requests in the office's order: open ones first, then by due
        time (so the overdue lead: they are the open ones due earliest), then id; ordered
        and cut in SQL (keyset paging, however many there are). Returns the page and the
        cursor of the next one (``after``), None on the last page.

        Raises:
            PrivacyRequestError: ``after`` is not a cursor this method returned.
            CatalogError: the database failed.
        """
        if limit < 1:
            raise ValueError("a page holds at least one request")
        marks = ", ".join("?" for _ in OPEN_STATUSES)
        rank = f"(CASE WHEN status IN ({marks}) THEN 0 ELSE 1 END)"
        open_values = [s.value for s in OPEN_STATUSES]
        where, params = _filters(statuses, None, tenant)
        if after is not None:
            after_rank, after_due, after_id = _decode_page_cursor(after)
            where.append(
                f"({rank} > ? OR ({rank} = ? AND due_at > ?) "
                f"OR ({rank} = ? AND due_at = ? AND request_id > ?))"
            )
            params.extend([*open_values, after_rank, *open_values, after_rank, after_due])
            params.extend([*open_values, after_rank, after_due, after_id])
        sql = f"SELECT {_COLUMNS} FROM privacy_requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {rank}, due_at, request_id LIMIT ?"
        params.extend([*open_values, limit + 1])
        found = [_from_row(row) for row in self._db.fetch_all(sql, params)]
        if len(found) <= limit:
            return found, None
        page = found[:limit]
        return page, _page_cursor(page[-1])

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


def _filters(
    statuses: tuple[RequestStatus, ...] | None, kind: str | None, tenant: str | None
) -> tuple[list[str], list[Any]]:
    """The ``WHERE`` terms and parameters of a request listing."""
    where: list[str] = []
    params: list[Any] = []
    if statuses:
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        params.extend(s.value for s in statuses)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if tenant is not None:
        where.append("tenant = ?")
        params.append(tenant)
    return where, params


def _page_cursor(last: PrivacyRequest) -> str:
    """The opaque cursor after ``last`` (:meth:`PrivacyRequestStore.page_requests`)."""
    raw = json.dumps([0 if last.open else 1, last.due_at.isoformat(), last.request_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_page_cursor(cursor: str) -> tuple[int, str, str]:
    try:
        if len(cursor) > MAX_CURSOR_CHARS:  # ours have about 120
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        rank, due, request_id = json.loads(raw)
        at = datetime.fromisoformat(due)
        if rank not in (0, 1) or not isinstance(request_id, str) or at.tzinfo is None:
            raise ValueError(cursor)
        return int(rank), to_db_time(at), request_id
    # RecursionError: JSON nested too deep; CatalogError: a time that cannot move to UTC
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError, CatalogError):
        raise PrivacyRequestError("not a privacy-request list cursor (take 'next')") from None
