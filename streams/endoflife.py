"""How recordings end, as the worker runs it: one bundle (:class:`EndOfLife`) of the
retention sweep, legal holds and privacy requests over one set of services, and the
thin handler of the ``callvault.privacy-requests`` topic.

Topic messages are privacy request JSON objects (:mod:`streams.privacy`) with
``requested_by`` (who filed it); a malformed one is logged and audited
(``privacy.rejected``), never retried; an infrastructure failure leaves the request
``failed`` (re-processed by the next sweep). The HTTP routes over this bundle are in
:mod:`streams.http.holds` and :mod:`streams.http.privacy`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from callvault.errors import CallvaultError
from storage.catalog import AuditDraft, HoldStore, ReceiptSigner, ReceiptStore
from storage.catalog.vaultsync import HOLD
from storage.errors import CatalogError, StorageError
from storage.mirror import MirrorResult
from streams.errors import PrivacyRequestRejected
from streams.metrics import Metrics
from streams.privacy import PrivacyService
from streams.retention import RetentionService, SweepResult
from streams.services import Services

__all__ = ["EndOfLife", "MIRROR_PER_SWEEP"]

log = logging.getLogger(__name__)

#: Recordings the vault mirror rewrites the tags of per sweep (a policy change that
#: reschedules millions is mirrored over many sweeps, or at once by `callvault vault sync`).
MIRROR_PER_SWEEP = 10_000


@dataclass
class EndOfLife:
    """Holds, retention and privacy requests over one set of services."""

    services: Services
    retention: RetentionService
    privacy: PrivacyService
    actor: str

    @classmethod
    def from_services(
        cls, services: Services, *, actor: str, metrics: Metrics | None = None
    ) -> EndOfLife:
        retention = RetentionService(services, actor=actor, metrics=metrics)
        privacy = PrivacyService(services, retention=retention, actor=actor, metrics=metrics)
        return cls(services=services, retention=retention, privacy=privacy, actor=actor)

    @property
    def holds(self) -> HoldStore:
        return self.services.holds

    @property
    def receipts(self) -> ReceiptStore:
        return self.services.receipts

    @property
    def signer(self) -> ReceiptSigner:
        return self.services.signer

    def held_filter(self, recording_ids: Iterable[str]) -> set[str]:
        """Of ``recording_ids``, those an active hold covers (for the governance gauges)."""
        rows = self.services.endoflife.rows_by_id(recording_ids)
        return set(self.holds.holds_for(rows.values()))

    def sweep_and_resume(self, **kwargs: Any) -> SweepResult:
        """One sweep, then erasures waiting on released holds and every request left
        open (approved, executing, failed) or with deletion intents; the vault mirror
        runs before (placed and released holds) and after (the tags of up to
        :data:`MIRROR_PER_SWEEP` rescheduled recordings).

        Raises:
            CallvaultError: the catalog or the vault failed.
        """
        if not kwargs.get("dry_run"):
            self.sync_vault(holds_only=True)  # a released S3 legal hold refuses deletion
        result = self.retention.sweep(**kwargs)
        if not kwargs.get("dry_run"):
            self.privacy.resume_held()
            self.privacy.refresh_gauges()
            self.sync_vault(limit=MIRROR_PER_SWEEP)  # the tags of what was rescheduled
        return result

    def sync_vault(
        self, *, holds_only: bool = False, limit: int | None = None
    ) -> MirrorResult | None:
        """Bring vault tags and S3 legal holds in line with the catalog (what reschedules
        and holds queued; ``holds_only``: what placing or releasing holds queued, which
        a sweep or an erasure must not wait for); a vault failure is logged, the queue
        keeps the work.

        Raises:
            CallvaultError: the catalog failed.
        """
        try:
            return self.services.mirror.sync(limit=limit, needs=HOLD if holds_only else None)
        except StorageError as exc:
            if isinstance(exc, CatalogError):
                raise
            log.error("vault mirror failed (retried at the next sweep): %s", exc)
            return None

    def handle_message(self, payload: bytes) -> str:
        """Carry out one topic message; returns the outcome (``completed``, ``held``,
        ``rejected:<reason>``, ``failed``). Never raises for a bad message.

        Raises:
            CallvaultError: only for a failure to audit a rejection (catalog down).
        """
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):  # submit says why (malformed, too deep)
            data = None
        requested_by = data.get("requested_by") if isinstance(data, dict) else None
        if not isinstance(requested_by, str) or not requested_by.strip():
            requested_by = "topic:callvault.privacy-requests"
        try:
            request = self.privacy.submit(
                data if data is not None else payload, requested_by=requested_by
            )
        except PrivacyRequestRejected as exc:
            log.warning("privacy request rejected: %s", exc.reason)
            self.services.audit.append(
                AuditDraft(
                    actor=self.actor,
                    action="privacy.rejected",
                    outcome="denied",
                    reason=exc.reason,
                    details={"source": "topic"},
                )
            )
            return f"rejected:{exc.reason}"
        except CallvaultError as exc:
            log.error("privacy request failed (left for the next sweep): %s", exc)
            return "failed"
        return request.status.value
