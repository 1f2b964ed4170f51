"""The collaborators of :class:`streams.privacy.PrivacyService` and the helpers its
request types share (the request types are mixins over :class:`PrivacyBase`:
:mod:`streams.privacy_export`, :mod:`streams.privacy_erasure`,
:mod:`streams.privacy_correction`, and restrict / contract-terminated in
:mod:`streams.privacy`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from policies import Policy
from storage.catalog import Catalog
from storage.catalog.disclosures import DisclosureLedger
from storage.catalog.endoflife import EndOfLifeStore
from storage.catalog.holds import HoldStore
from storage.catalog.receipts import ReceiptSigner, ReceiptStore
from storage.catalog.requests import PrivacyRequest, PrivacyRequestStore
from storage.catalog.restrictions import SubjectRestrictions
from storage.crypto.keys import KeyService
from storage.types import RecordingRow, RecordingState
from storage.vault import Vault
from streams.metrics import Metrics
from streams.retention import RetentionService

__all__ = ["PrivacyBase"]


class PrivacyBase:
    """What every privacy request type works with (see :mod:`streams.privacy`)."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        vault: Vault,
        keys: KeyService,
        policy: Policy,
        clock: Callable[[], datetime],
        retention: RetentionService,
        export_root: Path,
        actor: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.vault = vault
        self.keys = keys
        self.policy = policy
        self.clock = clock
        self.retention = retention
        self.export_root = export_root
        self.actor = actor
        self.metrics = metrics
        self.store = PrivacyRequestStore(catalog, clock=clock)
        self.holds: HoldStore = retention.holds
        self.lifecycle: EndOfLifeStore = retention.lifecycle
        self.receipts = ReceiptStore(catalog)
        self.signer = ReceiptSigner(keys.keyring)
        self.ledger = DisclosureLedger(catalog.database, catalog.audit, clock=clock)
        self.restrictions = SubjectRestrictions(catalog.database)

    # -- helpers ------------------------------------------------------------------------------
    def _digest(self, tenant: str, name: str, value: str) -> str:
        """Keyed digest of a corrected value: comparable, not reversible."""
        return self.keys.keyring.pseudonymize(tenant, f"correction:{name}:{value}")[:32]

    def _rows(
        self, request: PrivacyRequest, states: tuple[RecordingState, ...] | None = None
    ) -> list[RecordingRow]:
        rows = self.lifecycle.rows_of_subject(request.tenant, request.subject_ref, states)
        wanted = request.params.get("recording_ids")
        if wanted is not None:
            rows = [row for row in rows if row.recording_id in set(wanted)]
        return rows
