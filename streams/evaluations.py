"""Quality evaluations: sampling plans run, assignments made, scores and timeline notes
sealed under the customer's key, supervisors' summaries. The policy decides (forms,
plans, :func:`policies.sampling_exclusion`, :func:`policies.score_evaluation`); the
catalog stores (:class:`storage.catalog.EvaluationStore`); this module joins them.

- :meth:`EvaluationService.run_plan`: the plan's period (default: the last complete
  one), the stored recordings of that period tagged with the plan's purpose, minus
  what the policy excludes (restricted, erasure held back by a legal hold, outside a
  vendor's contract, other queues), ranked by a keyed hash of (plan, period, recording)
  (random to reviewers and agents, the same on a re-run), ``count`` per agent or queue
  (per tenant), each given to the reviewer with the least open work (never the agent
  who took the call). Re-running tops a stratum up to ``count``, never duplicates.
- Scores (``{"answers", "comment"}``) and notes (``{"at_ms", "channel", "text"}``)
  are sealed with ``KeyService.seal_named`` under the recording's subject key, as
  ``qa-eval/<assignment id>`` and ``qa-note/<note id>``: an erasure shreds them; a
  recording that is no longer stored gets them purged (:meth:`purge`).
- Every change is audited by the store; reading an evaluation is audited here
  (``qa.viewed``).

Errors: :class:`~storage.errors.EvaluationError`,
:class:`~storage.errors.AssignmentNotFound`, :class:`~policies.PolicyInputError`
(bad answers, unknown plan, no reviewers), :class:`~storage.errors.KeyDestroyed`
(the customer was erased), and the store's errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import mean
from typing import Any

from policies import (
    AssignmentFacts,
    EvaluationForm,
    PolicyInputError,
    SampleCandidate,
    SamplingPlan,
    period_bounds,
    pick_sample,
    previous_period,
    sampling_exclusion,
    score_evaluation,
)
from storage.catalog import listing_cursor
from storage.catalog.audit import AuditDraft
from storage.catalog.evaluations import (
    Assignment,
    AssignmentState,
    EvaluationStore,
    SealedRecord,
    new_assignment_id,
    new_note_id,
)
from storage.catalog.requests import OPEN_STATUSES, RequestStatus
from storage.errors import EvaluationError, KeyDestroyed
from storage.types import RecordingRow, RecordingState
from streams.facts import facts_of
from streams.metrics import Metrics
from streams.services import Services

__all__ = [
    "EvaluationService",
    "EvaluationView",
    "Note",
    "SamplingRun",
    "assignment_facts",
    "MAX_NOTE_CHARS",
]

MAX_NOTE_CHARS = 2000
MAX_COMMENT_CHARS = 4000
_SCAN_PAGE = 1000


def assignment_facts(assignment: Assignment) -> AssignmentFacts:
    """What an access decision needs of an assignment."""
    return AssignmentFacts(
        assignment_id=assignment.assignment_id,
        reviewer=assignment.reviewer,
        recording_id=assignment.recording_id,
        purpose=assignment.purpose,
        status=assignment.status.value,
    )


@dataclass(frozen=True)
class SamplingRun:
    """What one run of a plan did: the period, the new assignments, and how many
    recordings of the period each exclusion reason kept out."""

    plan_id: str
    period: str
    assigned: tuple[Assignment, ...]
    candidates: int
    excluded: Mapping[str, int]
    already: int

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "period": self.period,
            "assigned": [a.to_json(now) for a in self.assigned],
            "candidates": self.candidates,
            "excluded": dict(self.excluded),
            "already_assigned": self.already,
        }


@dataclass(frozen=True)
class Note:
    note_id: str
    at_ms: int
    channel: int | None
    text: str
    author: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "note_id": self.note_id,
            "at_ms": self.at_ms,
            "channel": self.channel,
            "text": self.text,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class EvaluationView:
    """An assignment with its form, decrypted answers, score and notes. ``shredded``:
    the customer was erased, so what was written is gone."""

    assignment: Assignment
    form: EvaluationForm
    answers: Mapping[str, int | None] = field(default_factory=dict)
    comment: str | None = None
    revision: int = 0
    notes: tuple[Note, ...] = ()
    shredded: bool = False

    def to_json(self, now: datetime) -> dict[str, Any]:
        score = score_evaluation(self.form, self.answers)
        return {
            "assignment": self.assignment.to_json(now),
            "form": form_json(self.form),
            "answers": dict(self.answers),
            "comment": self.comment,
            "revision": self.revision,
            "score": {
                "total": score.total,
                "sections": dict(score.sections),
                "missing": list(score.missing),
                "failed_critical": list(score.failed_critical),
                "passed": score.passed,
                "complete": score.complete,
            },
            "notes": [n.to_json() for n in sorted(self.notes, key=lambda n: n.at_ms)],
            "shredded": self.shredded,
        }


def form_json(form: EvaluationForm) -> dict[str, Any]:
    """A form as the page renders it."""
    return {
        "form_id": form.id,
        "title": form.title,
        "scale": {"min": form.scale.low, "max": form.scale.high, "labels": list(form.scale.labels)},
        "pass_mark": form.pass_mark,
        "sections": [
            {
                "id": s.id,
                "title": s.title,
                "weight": s.weight,
                "questions": [
                    {"id": q.id, "text": q.text, "weight": q.weight, "critical": q.critical}
                    for q in s.questions
                ],
            }
            for s in form.sections
        ],
    }


class EvaluationService:
    """Runs plans, makes assignments, seals and opens evaluations and notes."""

    def __init__(self, services: Services, metrics: Metrics | None = None) -> None:
        self.services = services
        self.metrics = metrics

    @property
    def _store(self) -> EvaluationStore:
        return self.services.evaluations

    def form(self, form_id: str) -> EvaluationForm:
        forms = self.services.policy.evaluation_forms
        if form_id not in forms:
            raise PolicyInputError(f"unknown evaluation form {form_id!r}")
        return forms[form_id]

    def plan(self, plan_id: str) -> SamplingPlan:
        plans = self.services.policy.sampling_plans
        if plan_id not in plans:
            known = ", ".join(sorted(plans)) or "none"
            raise PolicyInputError(f"unknown sampling plan {plan_id!r} (known: {known})")
        return plans[plan_id]

    # -- sampling ----------------------------------------------------------------------------
    def run_plan(
        self,
        plan_id: str,
        *,
        actor: str,
        period: str | None = None,
        reviewers: Sequence[str] | None = None,
        tenant: str | None = None,
    ) -> SamplingRun:
        """Run ``plan_id`` for ``period`` (default: the last complete one).

        Raises:
            PolicyInputError: an unknown plan, a malformed period, no reviewers.
            CatalogError / AuditError: the catalog failed (nothing is assigned).
        """
        plan = self.plan(plan_id)
        now = self.services.clock()
        label = period or previous_period(plan.period, now)
        start, end = period_bounds(plan.period, label)
        pool = [r for r in dict.fromkeys(reviewers or plan.reviewers) if r]
        if not pool:
            raise PolicyInputError(
                f"plan {plan_id!r} names no reviewers: give them (--reviewer, 'reviewers')"
            )
        existing = self._store.sampled(plan.id, label)
        taken = {a.recording_id for a in existing}
        already: dict[str, int] = {}
        for a in existing:
            if a.status is not AssignmentState.CANCELLED and a.stratum:
                already[a.stratum] = already.get(a.stratum, 0) + 1
        pending = self._erasures_held()
        excluded: dict[str, int] = {}
        candidates: list[SampleCandidate] = []
        rows: dict[str, RecordingRow] = {}
        scanned = 0
        for row in self._period_rows(start, end, plan.purpose, tenant):
            scanned += 1
            if row.recording_id in taken:
                continue
            why = sampling_exclusion(
                plan,
                facts_of(row),
                self.services.policy,
                now,
                queue=row.queue,
                erasure_pending=row.subject_ref in pending,
            )
            if why is not None:
                excluded[why.value] = excluded.get(why.value, 0) + 1
                continue
            stratum = f"{row.tenant}/{row.agent_id if plan.per == 'agent' else row.queue}"
            rank = self.services.keyring.pseudonymize(
                row.tenant, f"qa-sample/{plan.id}/{label}/{row.recording_id}"
            )
            candidates.append(SampleCandidate(row.recording_id, stratum, rank))
            rows[row.recording_id] = row
        load = self._store.open_load(pool)

        def eligible(candidate: SampleCandidate) -> list[str]:
            agent = rows[candidate.recording_id].agent_id
            return [r for r in pool if r != agent] or pool

        # The most constrained calls (fewest eligible reviewers) are given out first.
        picked = sorted(pick_sample(plan, candidates, already), key=lambda c: len(eligible(c)))
        drafts: list[Assignment] = []
        for candidate in picked:
            row = rows[candidate.recording_id]
            reviewer = min(eligible(candidate), key=lambda r: (load[r], r))
            load[reviewer] += 1
            drafts.append(
                _new_assignment(
                    row,
                    plan.form,
                    plan.purpose,
                    reviewer,
                    actor,
                    now,
                    plan.due_days,
                    plan_id=plan.id,
                    period=label,
                    stratum=candidate.stratum,
                )  # fmt: skip
            )
        flags = self._store.assign(drafts, actor=actor) if drafts else []
        made = tuple(a for a, new in zip(drafts, flags, strict=True) if new)
        if self.metrics is not None and made:
            self.metrics.qa_assignments_created.labels(plan.id).inc(len(made))
        return SamplingRun(
            plan_id=plan.id,
            period=label,
            assigned=made,
            candidates=scanned,
            excluded=excluded,
            already=len(existing),
        )

    def _period_rows(
        self, start: datetime, end: datetime, purpose: str, tenant: str | None
    ) -> Iterable[RecordingRow]:
        after = None
        while True:
            page = self.services.catalog.list_recordings(
                tenant=tenant,
                started_from=start,
                started_to=end,
                purpose=purpose,
                states=(RecordingState.STORED,),
                after=after,
                limit=_SCAN_PAGE,
            )
            yield from page
            if len(page) < _SCAN_PAGE:
                return
            after = listing_cursor(page[-1])

    def _erasures_held(self) -> set[str]:
        """Customers (subject refs) whose erasure is not done: held back by a legal hold,
        or still open."""
        requests = self.services.requests.list_requests(
            statuses=(*OPEN_STATUSES, RequestStatus.HELD), kind="erase", limit=10_000
        )
        return {r.subject_ref for r in requests}

    # -- assigning by hand ---------------------------------------------------------------------
    def assign(
        self,
        recording_id: str,
        *,
        reviewer: str,
        actor: str,
        form_id: str | None = None,
        purpose: str = "quality-improvement",
        due_days: int = 7,
    ) -> Assignment:
        """Give one recording to one reviewer (a supervisor's choice).

        Raises:
            EvaluationError: no such recording, or one the policy keeps from review
                (``reason`` in the message: restricted, not tagged, erasure held...).
            PolicyInputError: an unknown form.
        """
        policy = self.services.policy
        form = self.form(form_id or next(iter(policy.evaluation_forms), ""))
        if not 1 <= due_days <= 365:
            raise EvaluationError("due_days must be between 1 and 365")
        row = self.services.catalog.get_recording(recording_id)
        if row is None:
            raise EvaluationError(f"no recording {recording_id!r}", "no-recording")
        now = self.services.clock()
        manual = SamplingPlan(
            id="manual", description="assigned by hand", clause="", form=form.id, count=1,
            purpose=purpose,
        )  # fmt: skip
        why = sampling_exclusion(
            manual,
            facts_of(row),
            policy,
            now,
            queue=row.queue,
            erasure_pending=row.subject_ref in self._erasures_held(),
        )
        if why is not None:
            raise EvaluationError(
                f"recording {recording_id} may not be assigned: {why.value}", why.value
            )
        assignment = _new_assignment(row, form.id, purpose, reviewer, actor, now, due_days)
        self._store.assign([assignment], actor=actor)
        if self.metrics is not None:
            self.metrics.qa_assignments_created.labels("manual").inc()
        return assignment

    # -- evaluations -------------------------------------------------------------------------
    def view(self, assignment: Assignment, *, reader: str) -> EvaluationView:
        """The assignment's form, answers, score and notes, decrypted (audited ``qa.viewed``).

        Raises:
            PolicyInputError: the assignment's form is no longer in the policy.
        """
        form = self.form(assignment.form_id)
        keys = self.services.keys
        answers: dict[str, int | None] = {}
        comment, revision, shredded = None, 0, False
        sealed = self._store.evaluation(assignment.assignment_id)
        if sealed is not None:
            revision = sealed.revision
            try:
                content = json.loads(keys.open_named(sealed.sealed, _eval_name(assignment)))
                answers, comment = dict(content.get("answers", {})), content.get("comment")
            except KeyDestroyed:
                shredded = True
        notes: list[Note] = []
        for record in self._store.notes(assignment.assignment_id):
            try:
                notes.append(_open_note(keys, record))
            except KeyDestroyed:
                shredded = True
        self.services.audit.append(
            AuditDraft(
                actor=reader,
                action="qa.viewed",
                outcome="ok",
                recording_id=assignment.recording_id,
                details={"assignment_id": assignment.assignment_id, "revision": revision},
            )
        )
        return EvaluationView(
            assignment, form, answers, comment, revision, tuple(notes), shredded=shredded
        )

    def save(
        self,
        assignment: Assignment,
        *,
        answers: Mapping[str, int | None],
        comment: str | None,
        based_on: int,
        complete: bool,
        actor: str,
        author: str,
    ) -> EvaluationView:
        """Seal and store the evaluation; ``complete`` requires every question answered.

        Raises:
            PolicyInputError: an answer off the form or its scale, or incomplete on
                ``complete``.
            EvaluationError: not open, stale ``based_on``, the recording is not stored.
            KeyDestroyed: the customer was erased.
        """
        form = self.form(assignment.form_id)
        score = score_evaluation(form, answers)
        if complete and not score.complete:
            raise PolicyInputError(
                f"answer every question before completing (missing: {', '.join(score.missing)})"
            )
        if comment is not None and len(comment) > MAX_COMMENT_CHARS:
            raise PolicyInputError(f"the comment is longer than {MAX_COMMENT_CHARS} characters")
        row = self._stored_row(assignment)
        content = json.dumps({"answers": dict(answers), "comment": comment}, sort_keys=True)
        sealed = self.services.keys.seal_named(
            row.subject_key_id, _eval_name(assignment), content.encode()
        )
        changed, revision = self._store.save_evaluation(
            assignment.assignment_id,
            subject_key_id=row.subject_key_id,
            sealed=sealed,
            based_on=based_on,
            actor=actor,
            author=author,
            complete=complete,
        )
        if complete and self.metrics is not None:
            self.metrics.qa_evaluations_completed.labels(form.id).inc()
        notes = tuple(
            _open_note(self.services.keys, n) for n in self._store.notes(changed.assignment_id)
        )
        return EvaluationView(changed, form, dict(answers), comment, revision, notes)

    def add_note(
        self,
        assignment: Assignment,
        *,
        at_ms: int,
        text: str,
        channel: int | None,
        actor: str,
        author: str,
    ) -> Note:
        """Seal and store a timeline note at ``at_ms`` (optionally on one channel).

        Raises:
            PolicyInputError: empty or overlong text, a position outside the call, a
                channel the recording does not have.
            EvaluationError / KeyDestroyed: as :meth:`save`.
        """
        row = self._stored_row(assignment)
        text = text.strip()
        if not text or len(text) > MAX_NOTE_CHARS:
            raise PolicyInputError(f"a note is 1 to {MAX_NOTE_CHARS} characters")
        if (
            isinstance(at_ms, bool)
            or not isinstance(at_ms, int)
            or not 0 <= at_ms <= row.duration_ms
        ):
            raise PolicyInputError(
                f"at_ms must be a position within the call (0..{row.duration_ms})"
            )
        if channel is not None and (
            isinstance(channel, bool)
            or not isinstance(channel, int)
            or not 0 <= channel < row.channels
        ):
            raise PolicyInputError(f"channel must be 0..{row.channels - 1} or null")
        note_id = new_note_id()
        content = json.dumps({"at_ms": at_ms, "channel": channel, "text": text}, sort_keys=True)
        sealed = self.services.keys.seal_named(
            row.subject_key_id, f"qa-note/{note_id}", content.encode()
        )
        record = self._store.add_note(
            assignment.assignment_id,
            note_id=note_id,
            subject_key_id=row.subject_key_id,
            sealed=sealed,
            actor=actor,
            author=author,
        )
        return Note(note_id, at_ms, channel, text, author, record.at)

    def _stored_row(self, assignment: Assignment) -> RecordingRow:
        row = self.services.catalog.get_recording(assignment.recording_id)
        if row is None or row.state is not RecordingState.STORED:
            raise EvaluationError(
                f"recording {assignment.recording_id} was expired or erased",
                "recording-not-stored",
            )
        return row

    # -- supervisors -------------------------------------------------------------------------
    def summary(
        self,
        *,
        by: str,
        tenant: str | None = None,
        plan_id: str | None = None,
        completed_from: datetime | None = None,
        completed_to: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Completed evaluations grouped by ``agent`` or ``queue``: count, mean, min and
        max total score, pass rate, mean per section. Erased customers' evaluations are
        gone (they no longer decrypt) and are not counted.

        Raises:
            PolicyInputError: ``by`` is not agent or queue.
        """
        if by not in ("agent", "queue"):
            raise PolicyInputError("group by agent or queue")
        done = [
            a
            for a in self._store.list_assignments(
                statuses=[AssignmentState.COMPLETED], tenant=tenant, plan_id=plan_id, limit=1000
            )
            if a.completed_at is not None
            and (completed_from is None or a.completed_at >= completed_from)
            and (completed_to is None or a.completed_at < completed_to)
        ]
        sealed = self._store.evaluations(a.assignment_id for a in done)
        groups: dict[
            tuple[str, str], list[tuple[float, bool | None, Mapping[str, float | None]]]
        ] = {}
        for assignment in done:
            record = sealed.get(assignment.assignment_id)
            row = self.services.catalog.get_recording(assignment.recording_id)
            if record is None or row is None or row.state is not RecordingState.STORED:
                continue
            try:
                content = json.loads(
                    self.services.keys.open_named(record.sealed, _eval_name(assignment))
                )
            except KeyDestroyed:
                continue
            form = self.services.policy.evaluation_forms.get(assignment.form_id)
            if form is None:
                continue
            score = score_evaluation(form, content.get("answers", {}))
            if score.total is None:
                continue
            key = (row.tenant, row.agent_id if by == "agent" else row.queue)
            groups.setdefault(key, []).append((score.total, score.passed, score.sections))
        result: list[dict[str, Any]] = []
        for (group_tenant, name), scores in sorted(groups.items()):
            totals = [t for t, _, _ in scores]
            verdicts = [p for _, p, _ in scores if p is not None]
            sections: dict[str, list[float]] = {}
            for _, _, parts in scores:
                for sid, value in parts.items():
                    if value is not None:
                        sections.setdefault(sid, []).append(value)
            result.append(
                {
                    "tenant": group_tenant,
                    by: name,
                    "evaluations": len(scores),
                    "mean": round(mean(totals), 1),
                    "min": min(totals),
                    "max": max(totals),
                    "pass_rate": round(sum(verdicts) / len(verdicts), 3) if verdicts else None,
                    "sections": {sid: round(mean(v), 1) for sid, v in sections.items()},
                }
            )
        return result

    # -- housekeeping ------------------------------------------------------------------------
    def refresh_metrics(self) -> None:
        if self.metrics is None:
            return
        counts = self._store.counts(self.services.clock())
        self.metrics.qa_assignments_open.set(counts.open)
        self.metrics.qa_assignments_overdue.set(counts.overdue)
        self.metrics.qa_assignments_completed.set(counts.completed)

    def purge(self, *, actor: str) -> int:
        """Purge scores and notes of recordings no longer stored (see the store)."""
        purged: int = self._store.purge_ended(actor=actor)
        return purged


def _new_assignment(
    row: RecordingRow,
    form_id: str,
    purpose: str,
    reviewer: str,
    actor: str,
    now: datetime,
    due_days: int,
    *,
    plan_id: str | None = None,
    period: str | None = None,
    stratum: str | None = None,
) -> Assignment:
    return Assignment(
        assignment_id=new_assignment_id(),
        tenant=row.tenant,
        recording_id=row.recording_id,
        form_id=form_id,
        purpose=purpose,
        reviewer=reviewer,
        assigned_by=actor,
        assigned_at=now,
        due_at=now + timedelta(days=due_days),
        plan_id=plan_id,
        period=period,
        stratum=stratum,
    )


def _eval_name(assignment: Assignment) -> str:
    return f"qa-eval/{assignment.assignment_id}"


def _open_note(keys: Any, record: SealedRecord) -> Note:
    content = json.loads(keys.open_named(record.sealed, f"qa-note/{record.key}"))
    return Note(
        record.key,
        int(content["at_ms"]),
        content.get("channel"),
        str(content["text"]),
        record.author,
        record.at,
    )
