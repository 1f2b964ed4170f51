"""Quality evaluations: assignments, their sealed scores and timeline notes
(tables ``qa_assignments``, ``qa_evaluations``, ``qa_notes``; migration 6).

What a caller may rely on:

- An :class:`Assignment` gives one recording to one reviewer, to be evaluated with one
  form for one purpose by ``due_at``. Assignments made by a sampling plan are unique per
  (plan, period, recording): :meth:`EvaluationStore.assign` skips one already there, so
  running a plan twice assigns nothing twice.
- Scores and notes are stored only sealed (the caller seals them with
  ``KeyService.seal_named`` under the recording's subject key): the catalog never holds
  them in clear, and erasing the customer (destroying the key) makes them unreadable
  with the audio. :meth:`EvaluationStore.purge_ended` deletes them for recordings that
  are no longer stored (expired, erased) and cancels their open assignments.
- Every change is audited in the same transaction (``qa.assigned``, ``qa.scored``,
  ``qa.completed``, ``qa.reopened``, ``qa.cancelled``, ``qa.note-added``,
  ``qa.purged``); records carry ids and codes, never a score or a note.
- Saving an evaluation names the revision it was based on; a stale one is refused
  (:class:`EvaluationError` ``stale``), so two tabs cannot overwrite each other unseen.

Errors: :class:`~storage.errors.EvaluationError` (a closed assignment, a stale write,
bad arguments), :class:`~storage.errors.AssignmentNotFound`, and
:class:`~storage.errors.CatalogError` / :class:`~storage.errors.AuditError`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from storage.catalog.audit import AuditDraft
from storage.catalog.catalog import Catalog
from storage.catalog.sql import Row, Transaction, from_db_time, to_db_time
from storage.errors import AssignmentNotFound, EvaluationError

__all__ = [
    "Assignment",
    "AssignmentState",
    "AssignmentCounts",
    "SealedRecord",
    "EvaluationStore",
    "new_assignment_id",
    "new_note_id",
]

_COLUMNS = (
    "assignment_id, tenant, recording_id, form_id, purpose, plan_id, period, stratum, "
    "reviewer, assigned_by, assigned_at, due_at, status, completed_at, updated_at"
)
_IN_CHUNK = 500


class AssignmentState(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


def new_assignment_id() -> str:
    """``asg-`` and 12 hex digits: short enough to type as a justification."""
    return f"asg-{secrets.token_hex(6)}"


def new_note_id() -> str:
    return f"note-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Assignment:
    """One recording given to one reviewer for evaluation."""

    assignment_id: str
    tenant: str
    recording_id: str
    form_id: str
    purpose: str
    reviewer: str
    assigned_by: str
    assigned_at: datetime
    due_at: datetime
    plan_id: str | None = None
    period: str | None = None
    stratum: str | None = None
    status: AssignmentState = AssignmentState.OPEN
    completed_at: datetime | None = None
    updated_at: datetime | None = None

    def overdue(self, now: datetime) -> bool:
        return self.status is AssignmentState.OPEN and now >= self.due_at

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "assignment_id": self.assignment_id,
            "tenant": self.tenant,
            "recording_id": self.recording_id,
            "form_id": self.form_id,
            "purpose": self.purpose,
            "plan_id": self.plan_id,
            "period": self.period,
            "reviewer": self.reviewer,
            "assigned_by": self.assigned_by,
            "assigned_at": self.assigned_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "status": self.status.value,
            "overdue": self.overdue(now),
            "completed_at": None if self.completed_at is None else self.completed_at.isoformat(),
        }


@dataclass(frozen=True)
class AssignmentCounts:
    open: int
    overdue: int
    completed: int
    cancelled: int


@dataclass(frozen=True)
class SealedRecord:
    """A sealed evaluation (``key`` = assignment id) or note (``key`` = note id)."""

    key: str
    assignment_id: str
    subject_key_id: str
    sealed: bytes
    author: str
    at: datetime
    revision: int = 0


def _from_row(values: Row) -> Assignment:
    (
        assignment_id, tenant, recording_id, form_id, purpose, plan_id, period, stratum,
        reviewer, assigned_by, assigned_at, due_at, status, completed_at, updated_at,
    ) = values  # fmt: skip
    return Assignment(
        assignment_id=assignment_id,
        tenant=tenant,
        recording_id=recording_id,
        form_id=form_id,
        purpose=purpose,
        plan_id=plan_id,
        period=period,
        stratum=stratum,
        reviewer=reviewer,
        assigned_by=assigned_by,
        assigned_at=from_db_time(assigned_at),
        due_at=from_db_time(due_at),
        status=AssignmentState(status),
        completed_at=None if completed_at is None else from_db_time(completed_at),
        updated_at=None if updated_at is None else from_db_time(updated_at),
    )


def _draft(
    actor: str, action: str, assignment: Assignment, reason: str = "", **details: Any
) -> AuditDraft:
    base: dict[str, Any] = {
        "assignment_id": assignment.assignment_id,
        "form_id": assignment.form_id,
        "reviewer": assignment.reviewer,
        "tenant": assignment.tenant,
    }
    if assignment.plan_id:
        base.update(plan_id=assignment.plan_id, period=assignment.period)
    base.update({k: v for k, v in details.items() if v is not None})
    return AuditDraft(
        actor=actor,
        action=action,
        outcome="ok",
        reason=reason,
        recording_id=assignment.recording_id,
        details=base,
    )


class EvaluationStore:
    """Assignments and their sealed evaluations and notes in the catalog database."""

    def __init__(self, catalog: Catalog, *, clock: Callable[[], datetime] | None = None) -> None:
        self._catalog = catalog
        self._db = catalog.database
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- assignments -----------------------------------------------------------------------
    def assign(self, assignments: Sequence[Assignment], *, actor: str) -> list[bool]:
        """Insert assignments (audited ``qa.assigned``) in one transaction; one flag per
        item, False for a plan's (plan, period, recording) already assigned.

        Raises:
            EvaluationError: an empty field or a due date before the assignment.
            CatalogError / AuditError: the database or audit layer failed.
        """
        for item in assignments:
            if not all((item.assignment_id, item.tenant, item.recording_id, item.reviewer)):
                raise EvaluationError("an assignment needs an id, tenant, recording and reviewer")
            if item.due_at <= item.assigned_at:
                raise EvaluationError("an assignment must be due after it is assigned")
        flags: list[bool] = []
        with self._db.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            for item in assignments:
                if item.plan_id is not None and tx.fetch_one(
                    "SELECT 1 FROM qa_assignments WHERE plan_id = ? AND period = ? "
                    "AND recording_id = ?",
                    (item.plan_id, item.period, item.recording_id),
                ):
                    flags.append(False)
                    continue
                tx.execute(
                    f"INSERT INTO qa_assignments ({_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                    (
                        item.assignment_id, item.tenant, item.recording_id, item.form_id,
                        item.purpose, item.plan_id, item.period, item.stratum, item.reviewer,
                        item.assigned_by, to_db_time(item.assigned_at), to_db_time(item.due_at),
                        AssignmentState.OPEN.value, to_db_time(item.assigned_at),
                    ),
                )  # fmt: skip
                self._catalog.audit.append(
                    _draft(actor, "qa.assigned", item, due_at=item.due_at.isoformat()), tx=tx
                )
                flags.append(True)
        return flags

    def find(self, assignment_id: str) -> Assignment | None:
        row = self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM qa_assignments WHERE assignment_id = ?", (assignment_id,)
        )
        return None if row is None else _from_row(row)

    def get(self, assignment_id: str) -> Assignment:
        """Raises AssignmentNotFound."""
        found = self.find(assignment_id)
        if found is None:
            raise AssignmentNotFound(f"no evaluation assignment {assignment_id!r}")
        return found

    def list_assignments(
        self,
        *,
        reviewer: str | None = None,
        statuses: Iterable[AssignmentState | str] | None = None,
        tenant: str | None = None,
        plan_id: str | None = None,
        recording_id: str | None = None,
        limit: int = 200,
    ) -> list[Assignment]:
        """Assignments, soonest due first.

        Raises:
            EvaluationError: ``limit`` outside 1..1000 or an unknown status.
        """
        if not 1 <= limit <= 1000:
            raise EvaluationError("limit must be between 1 and 1000")
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("reviewer", reviewer),
            ("tenant", tenant),
            ("plan_id", plan_id),
            ("recording_id", recording_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if statuses is not None:
            try:
                wanted = [AssignmentState(s).value for s in statuses]
            except ValueError:
                raise EvaluationError(
                    f"status must be one of {', '.join(AssignmentState)}"
                ) from None
            if wanted:
                where.append(f"status IN ({', '.join('?' for _ in wanted)})")
                params.extend(wanted)
        sql = f"SELECT {_COLUMNS} FROM qa_assignments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY due_at, assignment_id LIMIT ?"
        params.append(limit)
        return [_from_row(row) for row in self._db.fetch_all(sql, params)]

    def sampled(self, plan_id: str, period: str) -> list[Assignment]:
        """A plan's assignments of one period (any status)."""
        rows = self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM qa_assignments WHERE plan_id = ? AND period = ?",
            (plan_id, period),
        )
        return [_from_row(row) for row in rows]

    def open_load(self, reviewers: Iterable[str]) -> dict[str, int]:
        """Open assignments per reviewer (0 for none)."""
        names = list(dict.fromkeys(reviewers))
        load = dict.fromkeys(names, 0)
        for start in range(0, len(names), _IN_CHUNK):
            chunk = names[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for reviewer, count in self._db.fetch_all(
                "SELECT reviewer, COUNT(*) FROM qa_assignments WHERE status = 'open' "
                f"AND reviewer IN ({marks}) GROUP BY reviewer",
                chunk,
            ):
                load[reviewer] = int(count)
        return load

    def counts(self, now: datetime) -> AssignmentCounts:
        """Open, overdue (open and due), completed and cancelled assignments."""
        row = self._db.fetch_one(
            "SELECT "
            "COALESCE(SUM(CASE WHEN status = 'open' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN status = 'open' AND due_at <= ? THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END), 0) "
            "FROM qa_assignments",
            (to_db_time(now),),
        )
        assert row is not None
        return AssignmentCounts(*(int(v) for v in row))

    def set_status(
        self, assignment_id: str, status: AssignmentState, *, actor: str, reason: str = ""
    ) -> Assignment:
        """Cancel an open assignment, or reopen a completed one (audited).

        Raises:
            AssignmentNotFound: no such assignment.
            EvaluationError: the change is not allowed from its current status.
        """
        allowed = {
            AssignmentState.CANCELLED: (AssignmentState.OPEN,),
            AssignmentState.OPEN: (AssignmentState.COMPLETED,),
        }
        if status not in allowed:
            raise EvaluationError("an assignment is completed by saving a complete evaluation")
        now = self._clock()
        with self._db.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            current = self._locked(tx, assignment_id)
            if current.status not in allowed[status]:
                raise EvaluationError(
                    f"assignment {assignment_id} is {current.status.value}; "
                    f"it cannot become {status.value}",
                    "assignment-closed",
                )
            changed = replace(current, status=status, completed_at=None, updated_at=now)
            tx.execute(
                "UPDATE qa_assignments SET status = ?, completed_at = NULL, updated_at = ? "
                "WHERE assignment_id = ?",
                (status.value, to_db_time(now), assignment_id),
            )
            action = "qa.cancelled" if status is AssignmentState.CANCELLED else "qa.reopened"
            self._catalog.audit.append(_draft(actor, action, changed, reason), tx=tx)
        return changed

    def _locked(
        self, tx: Transaction, assignment_id: str, *, open_only: bool = False
    ) -> Assignment:
        """The assignment, locked for this transaction (``open_only``: refused unless open)."""
        row = tx.fetch_one(
            f"SELECT {_COLUMNS} FROM qa_assignments WHERE assignment_id = ?"
            + tx.dialect.for_update,
            (assignment_id,),
        )
        if row is None:
            raise AssignmentNotFound(f"no evaluation assignment {assignment_id!r}")
        found = _from_row(row)
        if open_only and found.status is not AssignmentState.OPEN:
            raise EvaluationError(
                f"assignment {assignment_id} is {found.status.value}", "assignment-closed"
            )
        return found

    # -- evaluations -------------------------------------------------------------------------
    def save_evaluation(
        self,
        assignment_id: str,
        *,
        subject_key_id: str,
        sealed: bytes,
        based_on: int,
        actor: str,
        author: str,
        complete: bool,
    ) -> tuple[Assignment, int]:
        """Store the sealed evaluation of an open assignment; ``complete`` also completes
        the assignment. Returns the assignment and the new revision (``based_on + 1``).

        Raises:
            AssignmentNotFound: no such assignment.
            EvaluationError: the assignment is not open, or ``based_on`` is not the stored
                revision (``stale``: someone saved in between).
        """
        now = self._clock()
        with self._db.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            current = self._locked(tx, assignment_id, open_only=True)
            row = tx.fetch_one(
                "SELECT revision FROM qa_evaluations WHERE assignment_id = ?", (assignment_id,)
            )
            stored = 0 if row is None else int(row[0])
            if based_on != stored:
                raise EvaluationError(
                    f"the evaluation is at revision {stored}, not {based_on}; reload it", "stale"
                )
            revision = stored + 1
            if row is None:
                tx.execute(
                    "INSERT INTO qa_evaluations (assignment_id, subject_key_id, revision, sealed, "
                    "updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (assignment_id, subject_key_id, revision, sealed, author, to_db_time(now)),
                )
            else:
                tx.execute(
                    "UPDATE qa_evaluations SET subject_key_id = ?, revision = ?, sealed = ?, "
                    "updated_by = ?, updated_at = ? WHERE assignment_id = ?",
                    (subject_key_id, revision, sealed, author, to_db_time(now), assignment_id),
                )
            changed = replace(current, updated_at=now)
            if complete:
                changed = replace(changed, status=AssignmentState.COMPLETED, completed_at=now)
                tx.execute(
                    "UPDATE qa_assignments SET status = 'completed', completed_at = ?, "
                    "updated_at = ? WHERE assignment_id = ?",
                    (to_db_time(now), to_db_time(now), assignment_id),
                )
            else:
                tx.execute(
                    "UPDATE qa_assignments SET updated_at = ? WHERE assignment_id = ?",
                    (to_db_time(now), assignment_id),
                )
            action = "qa.completed" if complete else "qa.scored"
            self._catalog.audit.append(_draft(actor, action, changed, revision=revision), tx=tx)
        return changed, revision

    def evaluation(self, assignment_id: str) -> SealedRecord | None:
        found = self.evaluations([assignment_id])
        return found.get(assignment_id)

    def evaluations(self, assignment_ids: Iterable[str]) -> dict[str, SealedRecord]:
        """The sealed evaluations of these assignments (those that have one)."""
        ids = list(dict.fromkeys(assignment_ids))
        found: dict[str, SealedRecord] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for aid, key_id, revision, sealed, by, at in self._db.fetch_all(
                "SELECT assignment_id, subject_key_id, revision, sealed, updated_by, updated_at "
                f"FROM qa_evaluations WHERE assignment_id IN ({marks})",
                chunk,
            ):
                found[aid] = SealedRecord(
                    aid, aid, key_id, bytes(sealed), by, from_db_time(at), int(revision)
                )
        return found

    # -- notes -------------------------------------------------------------------------------
    def add_note(
        self,
        assignment_id: str,
        *,
        note_id: str,
        subject_key_id: str,
        sealed: bytes,
        actor: str,
        author: str,
    ) -> SealedRecord:
        """Add a sealed timeline note to an open assignment (audited ``qa.note-added``).

        Raises:
            AssignmentNotFound, EvaluationError: as :meth:`save_evaluation`.
        """
        now = self._clock()
        with self._db.transaction() as tx:
            self._catalog.audit.lock_head(tx)
            current = self._locked(tx, assignment_id, open_only=True)
            tx.execute(
                "INSERT INTO qa_notes (note_id, assignment_id, subject_key_id, sealed, author, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (note_id, assignment_id, subject_key_id, sealed, author, to_db_time(now)),
            )
            self._catalog.audit.append(
                _draft(actor, "qa.note-added", current, note_id=note_id), tx=tx
            )
        return SealedRecord(note_id, assignment_id, subject_key_id, sealed, author, now)

    def notes(self, assignment_id: str) -> list[SealedRecord]:
        """The sealed notes of an assignment, oldest first."""
        rows = self._db.fetch_all(
            "SELECT note_id, subject_key_id, sealed, author, created_at FROM qa_notes "
            "WHERE assignment_id = ? ORDER BY created_at, note_id",
            (assignment_id,),
        )
        return [
            SealedRecord(nid, assignment_id, key_id, bytes(sealed), author, from_db_time(at))
            for nid, key_id, sealed, author, at in rows
        ]

    # -- the end of a recording -------------------------------------------------------------
    def purge_ended(self, *, actor: str, limit: int = 500) -> int:
        """Delete the scores and notes of assignments whose recording is no longer stored
        (expired, erased, or gone), and cancel those still open; one audit record
        ``qa.purged`` per assignment. Returns how many assignments were purged.

        Raises:
            CatalogError / AuditError: the database or audit layer failed (nothing purged).
        """
        sql = (
            f"SELECT {', '.join('a.' + c.strip() for c in _COLUMNS.split(','))} "
            "FROM qa_assignments a LEFT JOIN recordings r ON r.recording_id = a.recording_id "
            "WHERE (r.recording_id IS NULL OR r.state <> 'stored') AND ("
            "a.status = 'open' OR EXISTS (SELECT 1 FROM qa_evaluations e "
            "WHERE e.assignment_id = a.assignment_id) OR EXISTS (SELECT 1 FROM qa_notes n "
            "WHERE n.assignment_id = a.assignment_id)) ORDER BY a.assignment_id LIMIT ?"
        )
        if not self._db.fetch_all(sql, (1,)):  # the common case: no lock taken
            return 0
        now = self._clock()
        with self._db.transaction() as tx:
            # Selected again under the audit lock: two workers purging at once do not
            # both purge (and audit) the same assignment.
            self._catalog.audit.lock_head(tx)
            ended = [_from_row(row) for row in tx.fetch_all(sql, (limit,))]
            for item in ended:
                tx.execute("DELETE FROM qa_notes WHERE assignment_id = ?", (item.assignment_id,))
                tx.execute(
                    "DELETE FROM qa_evaluations WHERE assignment_id = ?", (item.assignment_id,)
                )
                if item.status is AssignmentState.OPEN:
                    tx.execute(
                        "UPDATE qa_assignments SET status = 'cancelled', updated_at = ? "
                        "WHERE assignment_id = ?",
                        (to_db_time(now), item.assignment_id),
                    )
                self._catalog.audit.append(
                    _draft(actor, "qa.purged", item, "recording-not-stored"), tx=tx
                )
        return len(ended)
