"""Retention decisions: how long a recording is kept, and whether it ends now.

Pure functions; boundaries are exact: a recording is due for deletion at
``now >= retain_until`` (at exactly ``retain_until``, not a microsecond before).

- :func:`retention_class_for`: several purposes -> the class with the *longest*
  horizon. A recording is one object: keeping it for the shortest purpose would
  defeat the others, and the longer retention does not widen its use (every
  release is still checked against the declared purpose). Ties go to the class
  listed first in the policy file.
- :func:`retain_until`: ``call-end`` classes keep ``days`` after the call ended;
  the ``contract-termination`` class keeps ``max_days`` after the call while the
  contract is live. When the customer's contract terminates, every recording's
  retain-until becomes ``min(rule, max(terminated_at, ended_at) + N)`` with ``N``
  the contract-termination class's ``days`` (policies/README.md explains why).
- **The expiry rule**, written once: :func:`expiry_cut` says which recordings the rule
  may end at ``now`` (stored, ``retain_until <= now``) in a form a database can
  evaluate; :func:`deletion_decision` is the whole rule (a legal hold always wins),
  :func:`is_overdue` what the overdue gauge counts. The sweep's selection, the gauge
  and the statistics pass ``expiry_cut(now).cutoff`` to the catalog and decide with
  :func:`deletion_decision`; nothing else writes the condition.
- :func:`erasure_decision`: a customer's deletion request; a legal hold always wins.
- :data:`RULE_VERSION` versions the code of these rules; :func:`retention_rules_digest`
  covers it and the policy's retention data, so changing either reschedules what is
  stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from policies.errors import PolicyInputError
from policies.model import (
    Anchor,
    Policy,
    RecordingFacts,
    RecordingStatus,
    RetentionClass,
    require_aware,
)

__all__ = [
    "RULE_VERSION",
    "RetentionReason",
    "RetentionDecision",
    "ExpiryCut",
    "expiry_cut",
    "is_overdue",
    "retention_class_for",
    "retain_until",
    "deletion_decision",
    "erasure_decision",
    "retention_rules_digest",
]

#: Version of the code below that decides schedules and expiry (:func:`retain_until`,
#: :func:`retention_class_for`, the expiry rule). Bump it with any change to that code:
#: :func:`retention_rules_digest` covers it, so stored schedules are recomputed.
RULE_VERSION = 1


class RetentionReason(StrEnum):
    DUE = "retention-due"
    NOT_DUE = "retention-not-due"
    HELD = "legal-hold"
    NOT_STORED = "recording-not-stored"
    ALREADY_ERASED = "already-erased"
    ERASURE_REQUESTED = "erasure-requested"


@dataclass(frozen=True)
class RetentionDecision:
    """``delete`` says whether to end the recording now; ``hold_id`` names the hold
    that prevented it (``None`` when the facts say held but no hold id was given)."""

    delete: bool
    reason: RetentionReason
    rule: str
    hold_id: str | None = None


@dataclass(frozen=True)
class ExpiryCut:
    """The part of the expiry rule a database evaluates: recordings in ``state`` whose
    ``retain_until`` is at or before ``cutoff`` are the candidates; the rest of the
    rule (legal holds) is applied by :func:`deletion_decision`."""

    state: RecordingStatus
    cutoff: datetime

    def admits(self, recording: RecordingFacts) -> bool:
        return recording.state == self.state and recording.retain_until <= self.cutoff


def expiry_cut(now: datetime) -> ExpiryCut:
    """Which recordings the expiry rule may end at ``now`` (exact: at ``retain_until``,
    not a microsecond before).

    Raises:
        PolicyInputError: ``now`` is naive.
    """
    return ExpiryCut(RecordingStatus.STORED, require_aware(now, "now"))


def retention_rules_digest(policy: Policy) -> str:
    """sha256 of the effective retention rules: the classes, the purpose -> class
    mapping and :data:`RULE_VERSION` (a stored schedule is recomputed when it changes)."""
    data = {
        "rule_version": RULE_VERSION,
        "classes": [
            [c.id, c.anchor.value, c.days, c.max_days] for c in policy.retention_classes.values()
        ],
        "rules": [[r.purpose, r.retention_class] for r in policy.retention_rules],
    }
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def retention_class_for(purposes: Sequence[str], policy: Policy) -> RetentionClass:
    """The retention class of a recording tagged with ``purposes``.

    Raises:
        PolicyInputError: ``purposes`` is empty, or names a purpose without retention
            rule (unknown, or a disclosure purpose).
    """
    if isinstance(purposes, str) or not purposes:
        raise PolicyInputError("a recording needs at least one purpose to get a retention class")
    chosen: RetentionClass | None = None
    order = list(policy.retention_classes)
    for purpose in purposes:
        retention_class = policy.retention_class_of_purpose(purpose)
        if retention_class is None:
            raise PolicyInputError(f"purpose {purpose!r} has no retention rule in the policy")
        if chosen is None or (retention_class.horizon_days, -order.index(retention_class.id)) > (
            chosen.horizon_days,
            -order.index(chosen.id),
        ):
            chosen = retention_class
    assert chosen is not None
    return chosen


def retain_until(
    started_at: datetime,
    ended_at: datetime,
    retention_class: RetentionClass,
    policy: Policy,
    *,
    contract_terminated_at: datetime | None = None,
) -> datetime:
    """When a recording made from ``started_at`` to ``ended_at`` is due for deletion.

    Raises:
        PolicyInputError: a naive datetime, or the call ends before it starts.
    """
    require_aware(started_at, "started_at")
    require_aware(ended_at, "ended_at")
    if ended_at < started_at:
        raise PolicyInputError(
            f"the call ends ({ended_at.isoformat()}) before it starts ({started_at.isoformat()})"
        )
    if retention_class.anchor is Anchor.CALL_END:
        until = ended_at + timedelta(days=retention_class.days)
    else:
        until = ended_at + timedelta(days=retention_class.horizon_days)
    if contract_terminated_at is not None:
        require_aware(contract_terminated_at, "contract_terminated_at")
        # A call made after the termination (a former customer calling) gets the
        # end-of-contract period from the call, not from an earlier termination.
        anchor = max(contract_terminated_at, ended_at)
        until = min(until, anchor + timedelta(days=policy.termination_class.days))
    return until


def _active_hold(recording: RecordingFacts, holds: Collection[str]) -> tuple[bool, str | None]:
    if isinstance(holds, str):
        raise PolicyInputError("holds must be a collection of hold ids, not one string")
    hold_ids = sorted(h for h in holds if h)
    return (recording.held or bool(hold_ids)), (hold_ids[0] if hold_ids else None)


def deletion_decision(
    recording: RecordingFacts, policy: Policy, now: datetime, holds: Collection[str] = ()
) -> RetentionDecision:
    """Should the retention sweep delete ``recording`` now?

    ``holds`` are the ids of the active legal holds covering the recording (the
    facts' ``held`` flag counts too). Only stored recordings are deleted.

    Raises:
        PolicyInputError: ``now`` is naive or ``holds`` is a string.
    """
    cut = expiry_cut(now)
    held, hold_id = _active_hold(recording, holds)
    if recording.state != cut.state:
        return RetentionDecision(False, RetentionReason.NOT_STORED, "retention:due")
    if held:
        return RetentionDecision(False, RetentionReason.HELD, "retention:legal-hold", hold_id)
    if cut.admits(recording):
        return RetentionDecision(True, RetentionReason.DUE, "retention:due")
    return RetentionDecision(False, RetentionReason.NOT_DUE, "retention:due")


def is_overdue(
    recording: RecordingFacts, policy: Policy, now: datetime, holds: Collection[str] = ()
) -> bool:
    """Whether ``recording`` should be gone already: due for deletion and still stored
    (what ``callvault_recordings_overdue_deletion`` counts; normally none).

    Raises:
        PolicyInputError: ``now`` is naive or ``holds`` is a string.
    """
    return deletion_decision(recording, policy, now, holds).delete


def erasure_decision(
    recording: RecordingFacts, policy: Policy, now: datetime, holds: Collection[str] = ()
) -> RetentionDecision:
    """Should a customer's deletion request end ``recording`` now?

    A legal hold is the "reasonable basis to refuse" and always wins. An expired
    recording is still erased (its object is gone, but its key is destroyed and its
    row becomes an erasure tombstone); an erased one needs nothing more.

    Raises:
        PolicyInputError: ``now`` is naive or ``holds`` is a string.
    """
    require_aware(now, "now")
    held, hold_id = _active_hold(recording, holds)
    if recording.state == RecordingStatus.ERASED:
        return RetentionDecision(False, RetentionReason.ALREADY_ERASED, "retention:erasure")
    if held:
        return RetentionDecision(False, RetentionReason.HELD, "retention:legal-hold", hold_id)
    return RetentionDecision(True, RetentionReason.ERASURE_REQUESTED, "retention:erasure")
