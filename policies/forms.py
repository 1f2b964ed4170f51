"""Quality evaluation data from the policy file: forms and sampling plans.

Reviewed data, like the rest of the policy (``evaluation_forms:`` and
``sampling_plans:`` in ``data/policy.yaml``), each entry naming the privacy-policy
clause it serves (``purpose.3-improvement``: QA review improves the service). The
decisions over them (scoring, which recordings a plan may sample, an assignment
as the basis of access) are in :mod:`policies.evaluations` and :mod:`policies.access`.

- An :class:`EvaluationForm` has sections, each with a weight and questions; every
  question is answered with a whole number on the form's :class:`Scale` or marked
  not applicable. A *critical* question answered at the bottom of the scale fails
  the whole evaluation (score 0), as QA teams do for e.g. a missed identity check.
- A :class:`SamplingPlan` picks ``count`` recordings per agent (or queue) per period
  (``day``, ``week``: ISO week, ``month``; UTC) among the recordings tagged with its
  purpose, and assigns them to reviewers of ``reviewer_role`` (optionally only the
  ``reviewers`` listed, or an entrusted ``org``), due ``due_days`` later.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Scale",
    "FormQuestion",
    "FormSection",
    "EvaluationForm",
    "SamplePer",
    "SamplePeriod",
    "SamplingPlan",
]


@dataclass(frozen=True)
class Scale:
    """Whole-number answers from ``low`` to ``high`` (``low`` < ``high``); ``labels``
    optionally names each value (``len(labels) == high - low + 1``)."""

    low: int
    high: int
    labels: tuple[str, ...] = ()

    def contains(self, value: int) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class FormQuestion:
    id: str
    text: str
    weight: int = 1
    critical: bool = False


@dataclass(frozen=True)
class FormSection:
    id: str
    title: str
    weight: int
    questions: tuple[FormQuestion, ...]


@dataclass(frozen=True)
class EvaluationForm:
    """An evaluation form. Question ids are unique across the whole form."""

    id: str
    title: str
    clause: str
    scale: Scale
    sections: tuple[FormSection, ...]
    pass_mark: float | None = None  # percent; None: no pass/fail

    @property
    def rule(self) -> str:
        return f"evaluation-form:{self.id}"

    def questions(self) -> dict[str, FormQuestion]:
        """Every question by id, in form order."""
        return {q.id: q for section in self.sections for q in section.questions}


class SamplePer(StrEnum):
    """What a plan's ``count`` is per."""

    AGENT = "agent"
    QUEUE = "queue"


class SamplePeriod(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class SamplingPlan:
    """``count`` recordings per ``per`` per ``period``, evaluated with ``form``."""

    id: str
    description: str
    clause: str
    form: str
    count: int
    per: SamplePer = SamplePer.AGENT
    period: SamplePeriod = SamplePeriod.WEEK
    purpose: str = "quality-improvement"
    due_days: int = 7
    queues: tuple[str, ...] = ()  # empty: every queue
    reviewer_role: str = "qa-reviewer"
    reviewers: tuple[str, ...] = ()  # empty: given when the plan is run
    org: str | None = None  # an entrusted organisation whose reviewers evaluate

    @property
    def rule(self) -> str:
        return f"sampling-plan:{self.id}"
