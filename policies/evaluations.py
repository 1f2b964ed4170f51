"""Quality evaluations: scoring a form, sampling periods, which recordings a plan may
sample and which ones it picks. Pure functions (no I/O, no clock).

- :func:`score_evaluation`: answers (question id -> value on the form's scale, or
  ``None`` = not applicable) -> :class:`EvaluationScore`. A question's score is
  ``(value - low) / (high - low)``; a section's is the weighted mean of its answered
  questions; the total the weighted mean of the sections with an answer, in percent
  (rounded to 0.1). A critical question answered ``low`` makes the total 0.
  ``complete`` is true when every question has an answer (a value or ``None``).
- :func:`period_of` / :func:`period_bounds`: a period label (``2026-11-25``,
  ``2026-W48``, ``2026-11``) and its ``[start, end)`` in UTC.
- :func:`sampling_exclusion`: why a recording may not be sampled by a plan (None: it
  may): its purposes must include the plan's, it must be stored, not restricted, not
  awaiting an erasure held back by a legal hold, and for a plan of an entrusted
  organisation the call must fall inside its contract, which must be live.
- :func:`pick_sample`: per stratum (agent or queue), the ``count`` candidates with the
  lowest rank (a keyed hash the caller computes, so the choice is random to reviewers
  and agents yet reproducible: running a plan twice picks the same calls), minus what
  the stratum already has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from policies.errors import PolicyInputError
from policies.forms import EvaluationForm, SamplePeriod, SamplingPlan
from policies.model import Policy, RecordingFacts, RecordingStatus, require_aware

__all__ = [
    "EvaluationScore",
    "SampleExclusion",
    "SampleCandidate",
    "score_evaluation",
    "period_of",
    "period_bounds",
    "previous_period",
    "sampling_exclusion",
    "pick_sample",
    "balanced_reviewers",
]


@dataclass(frozen=True)
class EvaluationScore:
    """``total`` and ``sections`` in percent (None: nothing answered there);
    ``missing``: question ids without an answer; ``failed_critical``: critical
    questions answered at the bottom of the scale; ``passed`` None without a pass mark."""

    total: float | None
    sections: Mapping[str, float | None]
    missing: tuple[str, ...]
    failed_critical: tuple[str, ...]
    passed: bool | None

    @property
    def complete(self) -> bool:
        return not self.missing


def score_evaluation(form: EvaluationForm, answers: Mapping[str, int | None]) -> EvaluationScore:
    """Score ``answers`` on ``form``.

    Raises:
        PolicyInputError: an unknown question id, or a value that is not a whole number
            on the form's scale.
    """
    questions = form.questions()
    for qid, value in answers.items():
        if qid not in questions:
            raise PolicyInputError(f"question {qid!r} is not on form {form.id!r}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not form.scale.contains(value):
            raise PolicyInputError(
                f"question {qid!r}: answer {value!r} is not a whole number from "
                f"{form.scale.low} to {form.scale.high} (or null for not applicable)"
            )
    span = form.scale.high - form.scale.low
    sections: dict[str, float | None] = {}
    weighted, weights = 0.0, 0
    for section in form.sections:
        got, of = 0.0, 0
        for question in section.questions:
            value = answers.get(question.id)
            if value is None:
                continue
            got += question.weight * (value - form.scale.low) / span
            of += question.weight
        if of:
            sections[section.id] = round(100 * got / of, 1)
            weighted += section.weight * got / of
            weights += section.weight
        else:
            sections[section.id] = None
    failed = tuple(
        q.id for q in questions.values() if q.critical and answers.get(q.id) == form.scale.low
    )
    total = None if not weights else (0.0 if failed else round(100 * weighted / weights, 1))
    passed = None if form.pass_mark is None or total is None else total >= form.pass_mark
    return EvaluationScore(
        total=total,
        sections=sections,
        missing=tuple(q for q in questions if q not in answers),
        failed_critical=failed,
        passed=passed,
    )


# -- periods ---------------------------------------------------------------------------------


def period_of(kind: SamplePeriod | str, moment: datetime) -> str:
    """The label of the period ``moment`` falls in: ``2026-11-25``, ``2026-W48``, ``2026-11``.

    Raises:
        PolicyInputError: a naive ``moment`` or an unknown kind.
    """
    day = require_aware(moment, "moment").astimezone(UTC).date()
    kind = _kind(kind)
    if kind is SamplePeriod.DAY:
        return day.isoformat()
    if kind is SamplePeriod.WEEK:
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def period_bounds(kind: SamplePeriod | str, label: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of the period ``label`` (UTC midnights).

    Raises:
        PolicyInputError: ``label`` is not a period of ``kind``.
    """
    kind = _kind(kind)
    try:
        if not label.isascii():  # int() reads '２０２６' too
            raise ValueError(label)
        if kind is SamplePeriod.DAY and len(label) == 10:
            start = date.fromisoformat(label)
            end = start + timedelta(days=1)
        elif kind is SamplePeriod.WEEK and len(label) == 8 and label[4:6] == "-W":
            start = date.fromisocalendar(int(label[:4]), int(label[6:]), 1)
            end = start + timedelta(days=7)
        elif kind is SamplePeriod.MONTH and len(label) == 7 and label[4] == "-":
            start = date(int(label[:4]), int(label[5:]), 1)
            end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        else:
            raise ValueError(label)
    except (ValueError, OverflowError):  # OverflowError: the period ends after 9999
        example = {"day": "2026-11-25", "week": "2026-W48", "month": "2026-11"}[kind.value]
        raise PolicyInputError(f"period {label!r} is not a {kind.value} (e.g. {example})") from None
    return datetime.combine(start, time(0), UTC), datetime.combine(end, time(0), UTC)


def previous_period(kind: SamplePeriod | str, now: datetime) -> str:
    """The last complete period before ``now`` (what a plan samples by default)."""
    start, _ = period_bounds(kind, period_of(kind, now))
    return period_of(kind, start - timedelta(microseconds=1))


def _kind(kind: SamplePeriod | str) -> SamplePeriod:
    if kind not in set(SamplePeriod):
        raise PolicyInputError(f"unknown period kind {kind!r}")
    return SamplePeriod(kind)


# -- sampling --------------------------------------------------------------------------------


class SampleExclusion(StrEnum):
    """Why a plan may not sample a recording (reported per run as counts)."""

    PURPOSE_NOT_TAGGED = "purpose-not-tagged"
    NOT_STORED = "recording-not-stored"
    RESTRICTED = "recording-restricted"
    ERASURE_HELD = "erasure-held"
    OUTSIDE_CONTRACT = "outside-contract"
    QUEUE_NOT_IN_PLAN = "queue-not-in-plan"


def sampling_exclusion(
    plan: SamplingPlan,
    recording: RecordingFacts,
    policy: Policy,
    now: datetime,
    *,
    queue: str,
    erasure_pending: bool = False,
) -> SampleExclusion | None:
    """Why ``plan`` may not sample ``recording`` now (None: it may).

    ``erasure_pending``: the customer asked for erasure and a legal hold keeps the
    recording meanwhile (the caller knows the privacy requests).

    Raises:
        PolicyInputError: a naive ``now``, or a plan naming an unknown organisation.
    """
    require_aware(now, "now")
    if plan.queues and queue not in plan.queues:
        return SampleExclusion.QUEUE_NOT_IN_PLAN
    if plan.purpose not in recording.purposes:
        return SampleExclusion.PURPOSE_NOT_TAGGED
    if recording.state != RecordingStatus.STORED:
        return SampleExclusion.NOT_STORED
    if recording.restricted:
        return SampleExclusion.RESTRICTED
    if erasure_pending:
        return SampleExclusion.ERASURE_HELD
    if plan.org is not None:
        organisation = policy.organisations.get(plan.org)
        if organisation is None:
            raise PolicyInputError(f"plan {plan.id!r} names unknown organisation {plan.org!r}")
        if not organisation.is_live(now) or not organisation.is_live(recording.started_at):
            return SampleExclusion.OUTSIDE_CONTRACT
    return None


@dataclass(frozen=True)
class SampleCandidate:
    recording_id: str
    stratum: str  # the agent or queue the plan counts per
    rank: str  # keyed hash: the order in which candidates are taken


def pick_sample(
    plan: SamplingPlan,
    candidates: Iterable[SampleCandidate],
    already: Mapping[str, int] | None = None,
) -> list[SampleCandidate]:
    """Per stratum, the ``plan.count - already[stratum]`` candidates of lowest rank
    (ties by recording id), strata in name order."""
    by_stratum: dict[str, list[SampleCandidate]] = {}
    for candidate in candidates:
        by_stratum.setdefault(candidate.stratum, []).append(candidate)
    picked: list[SampleCandidate] = []
    for stratum in sorted(by_stratum):
        room = plan.count - (already or {}).get(stratum, 0)
        if room <= 0:
            continue
        ordered = sorted(by_stratum[stratum], key=lambda c: (c.rank, c.recording_id))
        picked.extend(ordered[:room])
    return picked


def balanced_reviewers(reviewers: Sequence[str], load: Mapping[str, int], n: int) -> list[str]:
    """``n`` reviewers, each time the one with the least open work (then by name)."""
    if not reviewers:
        raise PolicyInputError("a sampling run needs at least one reviewer")
    counts = {r: load.get(r, 0) for r in reviewers}
    chosen: list[str] = []
    for _ in range(n):
        reviewer = min(counts, key=lambda r: (counts[r], r))
        chosen.append(reviewer)
        counts[reviewer] += 1
    return chosen
