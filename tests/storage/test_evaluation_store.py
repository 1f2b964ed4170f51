"""The evaluation store (assignments, sealed evaluations and notes) on SQLite and a real
PostgreSQL (``catalog_url`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from storage.catalog import Catalog, open_catalog
from storage.catalog.audit import AuditDraft
from storage.catalog.evaluations import (
    Assignment,
    AssignmentState,
    EvaluationStore,
    new_assignment_id,
)
from storage.errors import AssignmentNotFound, EvaluationError
from storage.types import RecordingState
from tests.storage.test_catalog import make_row, stored

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with open_catalog(catalog_url, migrate=True) as opened:
        rows = [make_row(f"r{i}") for i in range(4)]
        opened.store_recordings([(row, stored(row.recording_id)) for row in rows])
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(catalog: Catalog, clock: Clock) -> EvaluationStore:
    return EvaluationStore(catalog, clock=clock)


def assignment(rid: str, reviewer: str = "rita", **changes: object) -> Assignment:
    made = Assignment(
        assignment_id=new_assignment_id(),
        tenant="acme",
        recording_id=rid,
        form_id="call-quality",
        purpose="quality-improvement",
        reviewer=reviewer,
        assigned_by="user:sam",
        assigned_at=T0,
        due_at=T0 + timedelta(days=7),
        plan_id="weekly",
        period="2026-W48",
        stratum="acme/agent-1",
    )
    return replace(made, **changes)  # type: ignore[arg-type]


def test_a_plan_assigns_a_recording_once_per_period(store: EvaluationStore) -> None:
    first = assignment("r0")
    assert store.assign([first, assignment("r1")], actor="user:sam") == [True, True]
    again = [assignment("r0"), assignment("r2"), assignment("r0", period="2026-W49")]
    assert store.assign(again, actor="user:sam") == [False, True, True]
    manual = [assignment("r0", plan_id=None, period=None), assignment("r0", plan_id=None)]
    assert store.assign(manual, actor="user:sam") == [True, True]
    assert store.get(first.assignment_id) == replace(first, updated_at=T0)
    assert {a.recording_id for a in store.sampled("weekly", "2026-W48")} == {"r0", "r1", "r2"}
    assert store.open_load(["rita", "nobody"]) == {"rita": 6, "nobody": 0}
    with pytest.raises(AssignmentNotFound):
        store.get("asg-000000000000")
    with pytest.raises(EvaluationError, match="due after"):
        store.assign([assignment("r3", due_at=T0)], actor="user:sam")


def test_evaluations_are_revisioned_and_completion_closes(
    store: EvaluationStore, catalog: Catalog
) -> None:
    item = assignment("r0")
    store.assign([item], actor="user:sam")
    aid = item.assignment_id
    _, rev = store.save_evaluation(
        aid, subject_key_id="key-1", sealed=b"v1", based_on=0, actor="user:rita",
        author="rita", complete=False,
    )  # fmt: skip
    assert rev == 1
    with pytest.raises(EvaluationError) as stale:
        store.save_evaluation(
            aid, subject_key_id="key-1", sealed=b"v1b", based_on=0, actor="user:rita",
            author="rita", complete=False,
        )  # fmt: skip
    assert stale.value.reason == "stale"
    done, rev = store.save_evaluation(
        aid, subject_key_id="key-1", sealed=b"v2", based_on=1, actor="user:rita",
        author="rita", complete=True,
    )  # fmt: skip
    assert (rev, done.status, done.completed_at) == (2, AssignmentState.COMPLETED, T0)
    sealed = store.evaluation(aid)
    assert sealed is not None and (sealed.sealed, sealed.revision) == (b"v2", 2)
    with pytest.raises(EvaluationError) as closed:
        store.add_note(
            aid, note_id="note-1", subject_key_id="key-1", sealed=b"n", actor="x", author="x"
        )
    assert closed.value.reason == "assignment-closed"
    assert store.set_status(aid, AssignmentState.OPEN, actor="user:sam").status == "open"
    store.add_note(
        aid, note_id="note-1", subject_key_id="key-1", sealed=b"n", actor="x", author="x"
    )
    assert [n.key for n in store.notes(aid)] == ["note-1"]
    actions = [e.action for e in catalog.audit.iter_entries() if e.action.startswith("qa.")]
    assert actions == ["qa.assigned", "qa.scored", "qa.completed", "qa.reopened", "qa.note-added"]


def test_counts_and_purge_when_the_recording_ends(
    store: EvaluationStore, catalog: Catalog, clock: Clock
) -> None:
    items = [assignment(f"r{i}") for i in range(3)]
    store.assign(items, actor="user:sam")
    store.save_evaluation(
        items[0].assignment_id, subject_key_id="k", sealed=b"x", based_on=0, actor="a",
        author="a", complete=True,
    )  # fmt: skip
    store.add_note(
        items[1].assignment_id, note_id="note-9", subject_key_id="k", sealed=b"n", actor="a",
        author="a",
    )  # fmt: skip
    clock.now = T0 + timedelta(days=8)
    counts = store.counts(clock.now)
    assert (counts.open, counts.overdue, counts.completed, counts.cancelled) == (2, 2, 1, 0)
    assert store.purge_ended(actor="worker:w") == 0
    draft = AuditDraft("system:retention", "retention.expired", "ok")
    catalog.set_state("r0", RecordingState.EXPIRED, audit=draft)
    catalog.set_state("r1", RecordingState.ERASED, audit=draft)
    assert store.purge_ended(actor="worker:w") == 2
    assert store.evaluation(items[0].assignment_id) is None
    assert store.notes(items[1].assignment_id) == []
    assert store.get(items[1].assignment_id).status is AssignmentState.CANCELLED
    assert store.get(items[0].assignment_id).status is AssignmentState.COMPLETED
    assert store.get(items[2].assignment_id).status is AssignmentState.OPEN
    assert store.purge_ended(actor="worker:w") == 0
    counts = store.counts(clock.now)
    assert (counts.open, counts.completed, counts.cancelled) == (1, 1, 1)
