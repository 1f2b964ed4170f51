"""Ingest decisions: is a new recording stored, with which purposes and retention?

:func:`decide_ingest` is pure. A declined recording is a normal outcome
(``store=False``: destroy the landing copy, audit the decision); input that
cannot be decided on (an unknown consent value, an unknown or disclosure
purpose) raises :class:`~policies.errors.PolicyInputError`, which the ingest
agent turns into a dead-letter event (the landing audio is kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from policies.errors import PolicyInputError
from policies.model import Policy, StorageCodec
from policies.retention import retain_until, retention_class_for

__all__ = ["CONSENT_VALUES", "IngestReason", "IngestDecision", "resolve_purposes", "decide_ingest"]

#: Consent values an event may carry; only "declined" prevents storage.
CONSENT_VALUES: tuple[str, ...] = ("notified", "granted", "declined")


class IngestReason(StrEnum):
    STORE = "stored"
    CONSENT_DECLINED = "consent-declined"


@dataclass(frozen=True)
class IngestDecision:
    """``purposes``, ``retention_class`` and ``retain_until`` are set only when storing."""

    store: bool
    reason: IngestReason
    rule: str
    purposes: tuple[str, ...] = ()
    retention_class: str | None = None
    retain_until: datetime | None = None
    storage_codec: StorageCodec = StorageCodec.AS_SENT  # the retention class's


def resolve_purposes(requested: Sequence[str] | None, policy: Policy) -> tuple[str, ...]:
    """The purposes to tag a recording with: ``requested`` (deduplicated, in order) or,
    when ``None``, the policy's ``default_purposes``.

    Raises:
        PolicyInputError: an empty list, a string instead of a list, or a purpose that
            is unknown or not taggable (a disclosure purpose).
    """
    if requested is None:
        return policy.default_purposes
    if isinstance(requested, str):
        raise PolicyInputError("purposes must be a list of purpose ids, not one string")
    if not requested:
        raise PolicyInputError("purposes must name at least one purpose (omit it for the default)")
    resolved: list[str] = []
    for purpose in requested:
        if purpose not in policy.purposes:
            raise PolicyInputError(f"unknown purpose {purpose!r}")
        if not policy.purposes[purpose].tag_bound:
            raise PolicyInputError(f"{purpose!r} is a disclosure purpose, not a recording tag")
        if purpose not in resolved:
            resolved.append(purpose)
    return tuple(resolved)


def decide_ingest(
    consent: str,
    purposes: Sequence[str] | None,
    policy: Policy,
    *,
    started_at: datetime,
    ended_at: datetime,
) -> IngestDecision:
    """Decide what becomes of a newly completed recording.

    ``declined`` wins over everything else (the other inputs are not even checked).

    Raises:
        PolicyInputError: unknown consent value, bad purposes (see
            :func:`resolve_purposes`), naive datetimes or a call ending before it starts.
    """
    if consent not in CONSENT_VALUES:
        raise PolicyInputError(
            f"consent must be one of {', '.join(CONSENT_VALUES)}, got {consent!r}"
        )
    if consent == "declined":
        # Decided before anything else: a declined recording is never kept, not
        # even in the dead-letter path because of some other defect of its event.
        return IngestDecision(False, IngestReason.CONSENT_DECLINED, "ingest:consent")
    resolved = resolve_purposes(purposes, policy)
    retention_class = retention_class_for(resolved, policy)
    until = retain_until(started_at, ended_at, retention_class, policy)
    return IngestDecision(
        True,
        IngestReason.STORE,
        "ingest:purposes",
        resolved,
        retention_class.id,
        until,
        retention_class.storage_codec,
    )
