"""Prometheus metrics of a callvault process (names start with ``callvault_``).

Each :class:`Metrics` owns its own ``CollectorRegistry`` (no global state), so tests
and benchmarks can build several pipelines in one process. Label values are
bounded sets (outcomes, reason codes, stage names, roles, purposes); no label ever
carries a person's identifier, a recording id or a customer reference.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "STAGES"]

STAGES = (
    "validate",
    "keys",
    "read",
    "decode",
    "redact",
    "encrypt",
    "vault",
    "stream",  # read, redact, encrypt and write in one pass (streamed recordings)
    "flush",
    "catalog",
    "landing",
)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """All series callvault exports. Construct one per process (or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ingest_events = Counter(
            "callvault_ingest_events",
            "Recording events processed, by outcome (stored, duplicate, declined, dlq) and reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self.ingest_bytes = Counter(
            "callvault_ingest_bytes",
            "Audio bytes read from landing (in) and written to the vault (out).",
            ["direction"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "callvault_ingest_stage_seconds",
            "Time per ingest stage: per recording, except keys, flush and catalog (per batch).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.oldest_event_age = Gauge(
            "callvault_ingest_oldest_event_age_seconds",
            "Age of the oldest event in the batch being processed (call end to now).",
            registry=r,
        )
        self.landing_backlog = Gauge(
            "callvault_landing_backlog",
            "Landing audio files and event sidecars older than the reconcile age that no "
            "stored, declined or dead-lettered recording accounts for yet, and landing "
            "entries nothing can ingest as they are (FIFO, socket, symlink, a name with "
            "control characters or bytes that are not UTF-8).",
            registry=r,
        )
        self.landing_orphan_sidecars = Gauge(
            "callvault_landing_orphan_sidecars",
            "Event sidecars whose audio is gone, their recording not stored, declined or "
            "dead-lettered yet (part of callvault_landing_backlog).",
            registry=r,
        )
        self.landing_cleaned = Counter(
            "callvault_landing_cleaned",
            "Landing audio files and sidecars the janitor removed after their recording was "
            "stored (vault object verified), declined or dead-lettered, by kind.",
            ["kind"],
            registry=r,
        )
        self.ingest_batch_failures = Counter(
            "callvault_ingest_batch_failures",
            "Ingest batches that failed (vault, catalog or landing down) and are being retried.",
            registry=r,
        )
        self.infrastructure_retries = Counter(
            "callvault_ingest_infrastructure_retries",
            "Retries of ingest work after an infrastructure failure, by backend (vault, "
            "catalog, keyring, landing, broker); the work is never skipped.",
            ["backend"],
            registry=r,
        )
        self.dlq_open = Gauge(
            "callvault_dlq_open_entries",
            "Dead letters not replayed yet (callvault dlq list).",
            registry=r,
        )
        self.ready = Gauge(
            "callvault_ready",
            "1 when this worker is ready (GET /readyz answers 200), else 0.",
            registry=r,
        )
        self.not_ready = Gauge(
            "callvault_not_ready",
            "1 for each reason this worker is not ready (catalog-unreachable, "
            "catalog-timeout, vault-unreachable, broker-unreachable, ingest-stalled, "
            "disk-full, not-checked), else 0.",
            ["reason"],
            registry=r,
        )
        self.ingest_stalled_seconds = Gauge(
            "callvault_ingest_stalled_seconds",
            "Seconds since the last ingest batch finished while events wait (0 while "
            "ingest moves or nothing waits; counted once past CALLVAULT_READY_STALL_SECONDS).",
            registry=r,
        )
        self.audit_published = Counter(
            "callvault_audit_published",
            "Audit records published to callvault.audit and acknowledged by the broker.",
            registry=r,
        )
        self.audit_publish_failures = Counter(
            "callvault_audit_publish_failures",
            "Rounds of the audit publisher that failed (broker or catalog); the next round "
            "resumes after the last acknowledged record.",
            registry=r,
        )
        self.reconciled = Counter(
            "callvault_landing_reannounced",
            "Landing files re-announced by the reconciler (event presumed lost).",
            registry=r,
        )
        self.pci_redacted_seconds = Counter(
            "callvault_pci_redacted_seconds",
            "Seconds of audio silenced because a PCI pause covered them.",
            registry=r,
        )
        self.audit_records = Counter(
            "callvault_audit_records",
            "Audit records appended, by action family.",
            ["family"],
            registry=r,
        )
        self.http_requests = Counter(
            "callvault_http_requests",
            "HTTP requests by route and status code class.",
            ["route", "status"],
            registry=r,
        )
        # Governance gauges, refreshed from the catalog by streams.governance (every worker
        # reports the same catalog-wide values: aggregate with max(), not sum()).
        self.recordings_stored = Gauge(
            "callvault_recordings_stored",
            "Recordings currently stored (state stored), by retention class.",
            ["retention_class"],
            registry=r,
        )
        self.recordings_overdue_deletion = Gauge(
            "callvault_recordings_overdue_deletion",
            "Stored recordings past retain-until and not under a legal hold (normally 0).",
            registry=r,
        )
        self.master_key_age = Gauge(
            "callvault_master_key_age_seconds",
            "Age of the current master key (time since it was created or rotated).",
            registry=r,
        )
        self.governance_refreshed = Gauge(
            "callvault_governance_refresh_timestamp_seconds",
            "Unix time of the last successful refresh of the governance gauges.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "callvault_consumer_lag",
            "Messages not yet committed by this worker, per assigned topic partition.",
            ["topic", "partition"],
            registry=r,
        )
        # QA access (streams.http): labels are bounded (policy roles/purposes, reason codes).
        self.access_decisions = Counter(
            "callvault_access_decisions",
            "Access decisions on recordings, by outcome, reason code, role, purpose and action.",
            ["outcome", "reason", "role", "purpose", "action"],
            registry=r,
        )
        self.rate_guard_trips = Counter(
            "callvault_access_rate_guard_trips",
            "Audio requests denied because the principal exceeded its recordings-per-hour limit.",
            ["role"],
            registry=r,
        )
        self.integrity_failures = Counter(
            "callvault_access_integrity_failures",
            "Reads of a stored recording that failed authentication (tampered or missing object).",
            registry=r,
        )
        self.audio_bytes_served = Counter(
            "callvault_access_audio_bytes_served",
            "Decrypted audio bytes sent to clients, by mode (play, download).",
            ["mode"],
            registry=r,
        )
        # Retention, legal holds and privacy requests (streams.retention / streams.privacy).
        self.deletions = Counter(
            "callvault_deletions",
            "Recordings ended, by reason (retention, erasure).",
            ["reason"],
            registry=r,
        )
        self.legal_holds_active = Gauge(
            "callvault_legal_holds_active", "Legal holds placed and not released.", registry=r
        )
        self.privacy_requests_open = Gauge(
            "callvault_privacy_requests_open",
            "Privacy requests received and not yet answered (received, in progress, failed).",
            registry=r,
        )
        self.privacy_requests_overdue = Gauge(
            "callvault_privacy_requests_overdue",
            "Open privacy requests past the policy's response deadline (normally 0).",
            registry=r,
        )
        self.retention_sweep_seconds = Histogram(
            "callvault_retention_sweep_seconds",
            "Duration of one retention sweep.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.qa_assignments_open = Gauge(
            "callvault_qa_assignments_open",
            "Quality evaluation assignments not yet completed (overdue ones included).",
            registry=r,
        )
        self.qa_assignments_overdue = Gauge(
            "callvault_qa_assignments_overdue",
            "Open evaluation assignments past their due date.",
            registry=r,
        )
        self.qa_assignments_completed = Gauge(
            "callvault_qa_assignments_completed",
            "Completed evaluation assignments whose recording is still stored.",
            registry=r,
        )
        self.qa_assignments_created = Counter(
            "callvault_qa_assignments_created",
            "Evaluation assignments made, by sampling plan ('manual' when assigned by hand).",
            ["plan"],
            registry=r,
        )
        self.qa_evaluations_completed = Counter(
            "callvault_qa_evaluations_completed",
            "Evaluations completed, by form.",
            ["form"],
            registry=r,
        )
        # Telephony sources (streams/sources): what each adapter received, mapped to a
        # RecordingCompleted event, refused (by reason) or skipped (by reason).
        self.source_received = Counter(
            "callvault_source_notifications_received",
            "Notifications received by a telephony source adapter.",
            ["source"],
            registry=r,
        )
        self.source_mapped = Counter(
            "callvault_source_notifications_mapped",
            "Notifications a source adapter turned into a RecordingCompleted event.",
            ["source"],
            registry=r,
        )
        self.source_refused = Counter(
            "callvault_source_notifications_refused",
            "Notifications a source adapter refused, by reason code (nothing is deleted).",
            ["source", "reason"],
            registry=r,
        )
        self.source_skipped = Counter(
            "callvault_source_notifications_skipped",
            "Notifications a source adapter passed over, by reason (duplicate, waiting, ...).",
            ["source", "reason"],
            registry=r,
        )
        for reason in ("retention", "erasure"):
            self.deletions.labels(reason)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for direction in ("in", "out"):
            self.ingest_bytes.labels(direction)
        for mode in ("play", "download"):
            self.audio_bytes_served.labels(mode)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(name).observe(time.perf_counter() - start)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
