"""What every privacy request handler works with, and the helpers they share.

A handler (one per :class:`~streams.privacy.kinds.RequestKind`, see
:mod:`streams.privacy.kinds`) is built over one :class:`PrivacyContext`; it never
opens a store of its own: every store comes from the worker's
:class:`~streams.services.Services`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from callvault.errors import CallvaultError
from policies import Policy
from storage.catalog import (
    AuditDraft,
    Catalog,
    DisclosureLedger,
    EndOfLifeStore,
    HoldStore,
    PrivacyRequest,
    PrivacyRequestStore,
    ReceiptSigner,
    ReceiptStore,
    SubjectRestrictions,
)
from storage.crypto import KeyService
from storage.subjectdetails import sealed_subject
from storage.types import RecordingRow, RecordingState
from storage.vault import Vault
from streams.metrics import Metrics
from streams.retention import RetentionService
from streams.services import Services

__all__ = ["PrivacyContext", "RequestHandler", "BaseHandler", "RequestParams"]

#: The kind-specific part of a validated request, as stored in ``PrivacyRequest.params``.
RequestParams = dict[str, Any]


@dataclass
class PrivacyContext:
    """The collaborators of the privacy handlers (one per worker or CLI command)."""

    services: Services
    retention: RetentionService
    actor: str
    #: The vault handlers read and delete through (``services.vault``; a test may swap it).
    vault: Vault
    metrics: Metrics | None = None

    # -- collaborators -------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        return self.services.catalog

    @property
    def keys(self) -> KeyService:
        return self.services.keys

    @property
    def policy(self) -> Policy:
        return self.services.policy

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.services.clock

    @property
    def store(self) -> PrivacyRequestStore:
        return self.services.requests

    @property
    def holds(self) -> HoldStore:
        return self.services.holds

    @property
    def endoflife(self) -> EndOfLifeStore:
        return self.services.endoflife

    @property
    def receipts(self) -> ReceiptStore:
        return self.services.receipts

    @property
    def signer(self) -> ReceiptSigner:
        return self.services.signer

    @property
    def ledger(self) -> DisclosureLedger:
        return self.services.ledger

    @property
    def restrictions(self) -> SubjectRestrictions:
        return self.services.restrictions

    # -- helpers ---------------------------------------------------------------------------
    def digest(self, tenant: str, name: str, value: str) -> str:
        """Keyed digest of a corrected value: comparable, not reversible."""
        return self.keys.keyring.pseudonymize(tenant, f"correction:{name}:{value}")[:32]

    def rows(
        self, request: PrivacyRequest, states: tuple[RecordingState, ...] | None = None
    ) -> list[RecordingRow]:
        """The customer's recordings (in ``states``), limited to ``recording_ids`` if given."""
        rows = self.endoflife.rows_of_subject(request.tenant, request.subject_ref, states)
        wanted = request.params.get("recording_ids")
        if wanted is not None:
            rows = [row for row in rows if row.recording_id in set(wanted)]
        return rows

    def audit(
        self, request: PrivacyRequest, action: str, outcome: str, details: dict[str, Any]
    ) -> None:
        """Append one audit record about ``request``: its id, and the customer sealed
        under their subject key (``storage.subjectdetails``; nothing once erased)."""
        try:
            subject = sealed_subject(self.keys, request.subject_ref)
        except CallvaultError:  # the key store failing must not hide what is recorded
            subject = {}
        self.catalog.audit.append(
            AuditDraft(
                actor=self.actor,
                action=action,
                outcome=outcome,
                reason=request.kind,
                details={
                    "request_id": request.request_id,
                    "tenant": request.tenant,
                    **subject,
                    **details,
                },
            )
        )


class RequestHandler(Protocol):
    """Carries out one kind of request (registered in :data:`streams.privacy.kinds.HANDLERS`).

    ``needs_identity``: whether the customer's identity must have been verified (every
    customer-originated kind; not ``contract-terminated``, which billing sends).
    """

    needs_identity: ClassVar[bool]

    def __init__(self, ctx: PrivacyContext) -> None: ...

    @staticmethod
    def read_input(data: Mapping[str, Any], customer_ref: str) -> RequestParams:
        """Validate the kind-specific fields of a request body (raw values, not stored).

        Raises:
            PrivacyRequestRejected: a kind-specific field is missing or malformed.
        """
        ...

    def stored_params(self, tenant: str, kind_input: RequestParams) -> RequestParams:
        """What of ``kind_input`` may be stored with the request (never a raw identifier)."""
        ...

    def execute(self, request: PrivacyRequest) -> PrivacyRequest:
        """Carry out ``request`` (idempotent; resumable after a crash at any point).

        Raises:
            CallvaultError: an infrastructure failure (the request is left ``failed``).
        """
        ...


class BaseHandler:
    """Defaults for a handler without kind-specific input (see :class:`RequestHandler`)."""

    needs_identity: ClassVar[bool] = True

    def __init__(self, ctx: PrivacyContext) -> None:
        self.ctx = ctx

    @staticmethod
    def read_input(data: Mapping[str, Any], customer_ref: str) -> RequestParams:
        return {}

    def stored_params(self, tenant: str, kind_input: RequestParams) -> RequestParams:
        return {}
