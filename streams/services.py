"""What a worker runs on: every collaborator opened once, handed down to everything.

The composition root (:func:`callvault.services.build_services`) opens the backends
the settings name and the governance stores over the catalog, and hands this bundle
to the worker, the CLI commands, the benchmarks and the tests. Nothing in
``streams`` opens a store of its own or reads the settings: what it needs of them is
in :class:`WorkerConfig`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from policies import Policy
from storage.catalog import (
    AuditLog,
    Catalog,
    DisclosureLedger,
    EndOfLifeStore,
    EvaluationStore,
    HoldStore,
    PrivacyRequestStore,
    ReceiptSigner,
    ReceiptStore,
    SubjectRestrictions,
)
from storage.catalog.claims import LandingClaims
from storage.catalog.deadletters import DeadLetterStore
from storage.catalog.exports import ExportStore
from storage.checkpoints import AuditCheckpoints, Checkpoint
from storage.crypto import Keyring, KeyService
from storage.erasures import ErasureJournal
from storage.landing import Landing
from storage.mirror import VaultMirror
from storage.types import AuditEntry
from storage.vault import Vault
from streams.bounds import DEFAULT_WINDOW, TimeWindow
from streams.sources.config import SourceBindings

__all__ = ["Services", "WorkerConfig", "DEFAULT_MAX_AUDIO_BYTES"]

DEFAULT_MAX_AUDIO_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class WorkerConfig:
    """The settings ``streams`` uses (made from :class:`callvault.settings.Settings`)."""

    worker_id: str = "worker-1"
    data_dir: Path = Path("var")
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    reconcile_after_seconds: int = 600
    metrics_interval_seconds: int = 15
    #: Partitions of the input topics a worker creates (an existing topic keeps its own).
    partitions: int = 8
    #: A signed audit checkpoint every so many records or seconds (storage.checkpoints).
    audit_checkpoint_records: int = 1000
    audit_checkpoint_seconds: int = 300
    log_level: str = "info"
    max_audio_bytes: int = DEFAULT_MAX_AUDIO_BYTES
    #: Longest pause between two retries of infrastructure failures (with jitter).
    retry_cap_seconds: float = 5.0
    #: No ingest progress this long while events wait: not ready (ingest-stalled).
    ready_stall_seconds: int = 120
    #: Free bytes under the data folder and file:// landing roots below which: not ready.
    ready_min_free_bytes: int = 256 * 1024 * 1024
    landing_roots: tuple[str, ...] = ()
    #: The range call times of events, uploads and imports must fall in.
    call_window: TimeWindow = DEFAULT_WINDOW

    @property
    def actor(self) -> str:
        """The audit actor of this worker."""
        return f"worker:{self.worker_id}"


@dataclass
class Services:
    """Everything a callvault process talks to, opened once."""

    config: WorkerConfig
    policy: Policy
    keyring: Keyring
    catalog: Catalog
    audit: AuditLog
    keys: KeyService
    vault: Vault
    landing: Landing
    clock: Callable[[], datetime]
    holds: HoldStore
    receipts: ReceiptStore
    signer: ReceiptSigner
    endoflife: EndOfLifeStore
    requests: PrivacyRequestStore
    ledger: DisclosureLedger
    restrictions: SubjectRestrictions
    claims: LandingClaims
    dead_letters: DeadLetterStore
    evaluations: EvaluationStore
    #: Brings vault tags and S3 legal holds in line with the catalog (storage.mirror).
    mirror: VaultMirror
    #: Called with every audit entry after it committed (the worker publishes them).
    audit_listeners: list[Callable[[AuditEntry], None]] = field(default_factory=list)
    #: Makes the boto3 S3 client for ``s3://`` archives and landing roots (None: AWS defaults).
    s3_client_factory: Callable[[], Any] | None = None
    #: Which bucket, Twilio account, Connect instance or PBX folder is whose (streams/sources).
    sources: SourceBindings = field(default_factory=SourceBindings)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.catalog.close()

    def exports(self) -> ExportStore:
        """Disclosure exports: signed manifests (storage.catalog.exports)."""
        return ExportStore(self.catalog.database, self.audit, self.keyring, clock=self.clock)

    def erasure_journal(self) -> ErasureJournal:
        """The signed erasure journal in the vault (storage.erasures)."""
        return ErasureJournal(self.vault, self.keyring)

    def audit_checkpoints(
        self, publish: Callable[[Checkpoint], None] | None = None
    ) -> AuditCheckpoints:
        """The signed checkpoints of the audit chain in the vault (storage.checkpoints)."""
        return AuditCheckpoints(
            self.audit,
            self.vault,
            self.keyring,
            every_records=max(1, self.config.audit_checkpoint_records),
            every_seconds=float(self.config.audit_checkpoint_seconds),
            publish=publish,
        )

    @classmethod
    def over(
        cls,
        *,
        config: WorkerConfig,
        policy: Policy,
        keyring: Keyring,
        catalog: Catalog,
        vault: Vault,
        landing: Landing,
        clock: Callable[[], datetime],
        audit_listeners: list[Callable[[AuditEntry], None]] | None = None,
        **extra: Any,
    ) -> Self:
        """The bundle over already opened backends: the governance stores are made here,
        once, over ``catalog`` (``extra``: fields of a subclass)."""
        receipts = ReceiptStore(catalog)
        holds = HoldStore(catalog, clock=clock)
        endoflife = EndOfLifeStore(catalog, receipts, clock=clock)
        return cls(
            config=config,
            policy=policy,
            keyring=keyring,
            catalog=catalog,
            audit=catalog.audit,
            keys=KeyService(keyring, catalog),
            vault=vault,
            landing=landing,
            clock=clock,
            holds=holds,
            receipts=receipts,
            signer=ReceiptSigner(keyring),
            endoflife=endoflife,
            requests=PrivacyRequestStore(catalog, clock=clock),
            ledger=DisclosureLedger(catalog.database, catalog.audit, clock=clock),
            restrictions=SubjectRestrictions(catalog.database),
            claims=LandingClaims(catalog.database, clock=clock),
            dead_letters=DeadLetterStore(catalog.database, clock=clock),
            evaluations=EvaluationStore(catalog, clock=clock),
            mirror=VaultMirror(catalog, vault, holds=holds, endoflife=endoflife, clock=clock),
            audit_listeners=audit_listeners if audit_listeners is not None else [],
            **extra,
        )
