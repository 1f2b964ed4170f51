"""The ingest pipeline: a ``RecordingCompleted`` event becomes one encrypted,
purpose-tagged vault object, one catalog row and one "stored" audit record.

Order of effects for one batch (what makes crash-and-redeliver safe):

1. validate each event; resolve its landing URI inside the landing roots;
2. drop events whose ``recording_id`` is already in the catalog (idempotency key):
   their landing copy is removed, nothing else happens;
3. consent ``declined``: audit the decision, then destroy the landing copy;
4. read -> sha256 check -> decode (pydub) -> silence PCI pauses -> encode -> encrypt
   -> vault put (in a thread pool: I/O and C code overlap);
5. ONE catalog transaction inserts the rows and their audit records;
6. only then the landing copies are deleted; the caller commits offsets after
   :meth:`IngestPipeline.process_batch` returns.

A crash anywhere before 5 leaves the landing copy, and at worst an object that the
redelivered event overwrites under the same key; after 5, the redelivered event is
a duplicate. Bad events raise nothing: they come back as ``dlq`` outcomes (the
caller publishes them to ``callvault.dlq``) and their landing audio is kept.
Infrastructure failures (vault, catalog down) do raise, so offsets are not
committed and the batch is retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from policies import IngestDecision, Policy, PolicyInputError, decide_ingest
from storage.audio import decode, encode_wav, silence
from storage.catalog import Catalog
from storage.catalog.audit import AuditDraft, AuditLog
from storage.catalog.restrictions import SubjectRestrictions
from storage.crypto.keys import KeyService
from storage.errors import AudioError, UnsupportedAudioFormat
from storage.landing import Landing, LandingRef, LandingRejected
from storage.mirror import recording_tags
from storage.types import RecordingRow
from storage.vault import Vault
from streams.errors import EventRejected
from streams.events import RECORDING_ID, RecordingEvent, RejectReason, parse_recording_event
from streams.metrics import Metrics
from streams.services import Services

__all__ = ["IngestOutcome", "IngestPipeline", "object_key_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOutcome:
    """What became of one event. ``status``: stored | duplicate | declined | dlq."""

    status: str
    recording_id: str | None = None
    reason: str = ""
    detail: str = ""
    object_key: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    payload: bytes | None = field(default=None, repr=False)  # original event, for the DLQ


@dataclass
class _Prepared:
    event: RecordingEvent
    ref: LandingRef
    decision: IngestDecision
    subject_ref: str
    restricted: bool = False  # the customer asked to stop use: stored, but unusable
    row: RecordingRow | None = None
    bytes_in: int = 0


def object_key_for(keys: KeyService, tenant: str, recording_id: str) -> str:
    """Vault key of a recording: a keyed hash, so keys never reveal call or customer ids."""
    digest = keys.keyring.pseudonymize(tenant, f"object:{recording_id}")
    return f"rec/{tenant}/{digest[:2]}/{digest}.cvlt"


def _payload_bytes(payload: bytes | str | dict[str, Any]) -> bytes | None:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return None


#: What a DLQ entry / log line says about a landing problem. Never the URI itself:
#: PBXs often name files after the caller's number.
_LANDING_DETAIL = {
    "uri-invalid": "audio.uri is not a valid file:// or s3:// URI",
    "uri-outside-landing": "audio.uri lies outside CALLVAULT_LANDING_ROOTS",
    "landing-missing": "the landing audio does not exist (any more)",
    "landing-too-large": "the landing audio is larger than CALLVAULT_MAX_AUDIO_BYTES",
}


def _landing_rejection(exc: LandingRejected) -> EventRejected:
    return EventRejected(exc.reason, _LANDING_DETAIL.get(exc.reason, "landing audio rejected"))


def redacted_event(payload: bytes | None) -> dict[str, Any] | None:
    """The event as a DLQ entry may carry it: ``customer_ref`` and ``audio.uri`` replaced
    by markers (a digest for the URI). ``None`` when the payload is not a JSON object:
    then only its source offset identifies it."""
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if "customer_ref" in data:
        data["customer_ref"] = "[redacted]"
    audio = data.get("audio")
    if isinstance(audio, dict) and isinstance(audio.get("uri"), str):
        digest = hashlib.sha256(audio["uri"].encode()).hexdigest()[:16]
        audio["uri"] = f"[redacted uri sha256:{digest}]"
    return data


def _loose_recording_id(payload: bytes | str | dict[str, Any]) -> str | None:
    """The recording id of a rejected event, if it has a well-formed one (for audit/DLQ)."""
    data: Any = payload
    if not isinstance(payload, dict):
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return None
    rid = data.get("recording_id") if isinstance(data, dict) else None
    return rid if isinstance(rid, str) and RECORDING_ID.match(rid) else None


class IngestPipeline:
    """Processes batches of raw events. Thread-safe for one caller at a time."""

    def __init__(
        self,
        *,
        landing: Landing,
        vault: Vault,
        keys: KeyService,
        catalog: Catalog,
        audit: AuditLog,
        policy: Policy,
        metrics: Metrics,
        actor: str,
        executor: Executor | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        restrictions: SubjectRestrictions | None = None,
    ) -> None:
        self.landing = landing
        self.vault = vault
        self.keys = keys
        self.catalog = catalog
        self.audit = audit
        self.policy = policy
        self.metrics = metrics
        self.actor = actor
        self.clock = clock
        self.restrictions = restrictions or SubjectRestrictions(catalog.database)
        self._executor = executor or ThreadPoolExecutor(max_workers=4, thread_name_prefix="ingest")

    @classmethod
    def over(
        cls,
        services: Services,
        *,
        actor: str,
        metrics: Metrics | None = None,
        executor: Executor | None = None,
    ) -> IngestPipeline:
        """A pipeline over the services' landing, vault, keys, catalog, policy, clock and
        restrictions (what the worker builds)."""
        return cls(
            landing=services.landing,
            vault=services.vault,
            keys=services.keys,
            catalog=services.catalog,
            audit=services.audit,
            policy=services.policy,
            metrics=metrics or Metrics(),
            actor=actor,
            executor=executor,
            clock=services.clock,
            restrictions=services.restrictions,
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # -- public ---------------------------------------------------------------------------
    def process_batch(
        self, payloads: Sequence[bytes | str | dict[str, Any]]
    ) -> list[IngestOutcome]:
        """Process a batch; returns one outcome per payload, in order.

        Raises:
            StorageError: the vault, catalog or audit log failed (retry the batch).
        """
        now = self.clock()
        outcomes: list[IngestOutcome | None] = [None] * len(payloads)
        prepared: dict[int, _Prepared] = {}
        seen: dict[str, int] = {}
        rejected_audit: list[AuditDraft] = []

        with self.metrics.stage("validate"):
            for index, payload in enumerate(payloads):
                try:
                    event = parse_recording_event(payload, now=now)
                    decision = self._decide(event)
                    ref = self._resolve(event)
                except EventRejected as exc:
                    outcomes[index] = self._dlq(payload, exc, rejected_audit)
                    continue
                if event.recording_id in seen:  # the same event twice in one batch
                    outcomes[index] = IngestOutcome("duplicate", event.recording_id)
                    continue
                seen[event.recording_id] = index
                prepared[index] = _Prepared(
                    event, ref, decision, self.keys.subject_ref(event.tenant, event.customer_ref)
                )

        if prepared:
            oldest = min(p.event.ended_at for p in prepared.values())
            self.metrics.oldest_event_age.set(max(0.0, (now - oldest).total_seconds()))
            present = self.catalog.recording_ids_present(
                p.event.recording_id for p in prepared.values()
            )
            for index in [i for i, p in prepared.items() if p.event.recording_id in present]:
                item = prepared.pop(index)
                self._discard_landing_if_its_own(item)
                outcomes[index] = IngestOutcome("duplicate", item.event.recording_id)

            for index in [i for i, p in prepared.items() if not p.decision.store]:
                item = prepared.pop(index)
                outcomes[index] = self._decline(item)

        if prepared:
            # New customers' keys of the whole batch in one commit (not one each).
            with self.metrics.stage("keys"):
                self.keys.ensure_subject_keys(
                    (p.event.tenant, p.subject_ref) for p in prepared.values()
                )
            restricted = self.restrictions.restricted_among(
                p.subject_ref for p in prepared.values()
            )
            for item in prepared.values():
                item.restricted = item.subject_ref in restricted
        # Heavy stage: in parallel, each item independently.
        futures = {i: self._executor.submit(self._prepare, p) for i, p in prepared.items()}
        stored: list[tuple[int, _Prepared]] = []
        for index, future in futures.items():
            try:
                stored.append((index, future.result()))
            except EventRejected as exc:
                outcomes[index] = self._dlq(payloads[index], exc, rejected_audit)

        if stored:
            with self.metrics.stage("flush"):
                self.vault.flush()
        if stored or rejected_audit:
            with self.metrics.stage("catalog"):
                items = []
                for _, item in stored:
                    assert item.row is not None
                    items.append((item.row, self._stored_draft(item.row)))
                inserted = self.catalog.store_recordings(items) if items else []
                if rejected_audit:
                    self.audit.append_many(rejected_audit)
            for (index, item), was_new in zip(stored, inserted, strict=True):
                row = item.row
                assert row is not None
                outcomes[index] = IngestOutcome(
                    "stored" if was_new else "duplicate",
                    row.recording_id,
                    object_key=row.object_key,
                    bytes_in=item.bytes_in,
                    bytes_out=row.stored_size,
                )
            with self.metrics.stage("landing"):
                for _, item in stored:
                    self._discard_landing(item.ref)

        final = [o for o in outcomes if o is not None]
        assert len(final) == len(payloads)
        self._count(final)
        return final

    # -- stages ---------------------------------------------------------------------------
    def _decide(self, event: RecordingEvent) -> IngestDecision:
        try:
            return decide_ingest(
                event.consent,
                event.purposes,
                self.policy,
                started_at=event.started_at,
                ended_at=event.ended_at,
            )
        except PolicyInputError as exc:
            raise EventRejected(str(RejectReason.UNKNOWN_PURPOSE), str(exc)) from exc

    def _resolve(self, event: RecordingEvent) -> LandingRef:
        try:
            return self.landing.resolve(event.audio.uri)
        except LandingRejected as exc:  # a plain LandingError is transient: it propagates
            raise _landing_rejection(exc) from exc

    def _prepare(self, item: _Prepared) -> _Prepared:
        event = item.event
        with self.metrics.stage("read"):
            try:
                data = self.landing.read(item.ref)
            except LandingRejected as exc:  # missing / too large; S3 outages propagate
                raise _landing_rejection(exc) from exc
            if hashlib.sha256(data).hexdigest() != event.audio.sha256:
                raise EventRejected(
                    str(RejectReason.SHA256_MISMATCH), "landing audio does not match audio.sha256"
                )
        item.bytes_in = len(data)
        with self.metrics.stage("decode"):
            try:
                audio = decode(data, event.audio.format)
            except UnsupportedAudioFormat as exc:
                raise EventRejected(str(RejectReason.AUDIO_UNSUPPORTED), str(exc)) from exc
            except AudioError as exc:
                raise EventRejected(str(RejectReason.AUDIO_UNDECODABLE), str(exc)) from exc
            del data
        with self.metrics.stage("redact"):
            try:
                audio, redacted_ms = silence(audio, event.pci_pauses)
            except AudioError as exc:
                raise EventRejected(str(RejectReason.PCI_OUT_OF_RANGE), str(exc)) from exc
            wav, audio_format = encode_wav(audio)
        subject_ref = item.subject_ref
        with self.metrics.stage("encrypt"):
            sealed = self.keys.seal_recording(
                recording_id=event.recording_id,
                tenant=event.tenant,
                subject_ref=subject_ref,
                plaintext=wav,
            )
        decision = item.decision
        assert decision.retention_class is not None and decision.retain_until is not None
        key = object_key_for(self.keys, event.tenant, event.recording_id)
        tags = recording_tags(
            purposes=decision.purposes,
            retention_class=decision.retention_class,
            retain_until=decision.retain_until,
            held=False,  # a hold that covers it already is mirrored after the commit
        )
        with self.metrics.stage("vault"):
            # Group commit: the batch is flushed once before the catalog commit.
            written = self.vault.put(key, sealed.blob, tags=tags, durable=False)
        self.metrics.pci_redacted_seconds.inc(redacted_ms / 1000)
        item.row = RecordingRow(
            recording_id=event.recording_id,
            call_id=event.call_id,
            tenant=event.tenant,
            subject_ref=subject_ref,
            agent_id=event.agent_id,
            queue=event.queue,
            direction=event.direction,
            started_at=event.started_at,
            ended_at=event.ended_at,
            duration_ms=audio.duration_ms,
            consent=event.consent,
            purposes=decision.purposes,
            retention_class=decision.retention_class,
            retain_until=decision.retain_until,
            object_key=key,
            subject_key_id=sealed.subject_key_id,
            ciphertext_sha256=hashlib.sha256(sealed.blob).hexdigest(),
            stored_size=len(sealed.blob),
            audio_bytes=len(wav),
            audio_format=audio_format,
            sample_rate=audio.sample_rate,
            channels=audio.channels,
            pci_redacted_ms=redacted_ms,
            created_at=self.clock(),
            restricted=item.restricted,
            object_version=written.version_id,
        )
        return item

    def _stored_draft(self, row: RecordingRow) -> AuditDraft:
        return AuditDraft(
            actor=self.actor,
            action="ingest.stored",
            outcome="ok",
            reason="",
            recording_id=row.recording_id,
            details={
                "object_key": row.object_key,
                "ciphertext_sha256": row.ciphertext_sha256,
                "purposes": list(row.purposes),
                "retention_class": row.retention_class,
                "retain_until": row.retain_until.isoformat(),
                "pci_redacted_ms": row.pci_redacted_ms,
                "restricted": row.restricted,
            },
        )

    def _decline(self, item: _Prepared) -> IngestOutcome:
        rid = item.event.recording_id
        already = next(
            self.audit.iter_entries(recording_id=rid, action_prefix="ingest.declined"), None
        )
        if already is None:
            self.audit.append(
                AuditDraft(
                    actor=self.actor,
                    action="ingest.declined",
                    outcome="ok",
                    reason="consent-declined",
                    recording_id=rid,
                    details={"landing_destroyed": True},
                )
            )
        self._discard_landing_if_its_own(item)
        return IngestOutcome("declined", rid, reason="consent-declined")

    def _dlq(
        self, payload: bytes | str | dict[str, Any], exc: EventRejected, audit: list[AuditDraft]
    ) -> IngestOutcome:
        rid = _loose_recording_id(payload)
        log.warning("event rejected (%s): %s", exc.reason, exc.detail)
        audit.append(
            AuditDraft(
                actor=self.actor,
                action="ingest.rejected",
                outcome="dlq",
                reason=exc.reason,
                recording_id=rid,
                details={},
            )
        )
        return IngestOutcome(
            "dlq", rid, reason=exc.reason, detail=exc.detail, payload=_payload_bytes(payload)
        )

    def _discard_landing(self, ref: LandingRef) -> None:
        self.landing.delete(ref)
        self.landing.delete_sidecar(ref)

    def _discard_landing_if_its_own(self, item: _Prepared) -> None:
        """Delete the landing copy of a duplicate or declined event only when it holds
        the audio the event declares (its sha256): an event with a reused id or a wrong
        URI must never destroy another call's pending audio."""
        try:
            data = self.landing.read(item.ref)
        except LandingRejected:
            return  # already gone (the usual case for a redelivered event)
        if hashlib.sha256(data).hexdigest() == item.event.audio.sha256:
            self._discard_landing(item.ref)
        else:
            log.warning(
                "landing audio of %s does not match the event's sha256; kept",
                item.event.recording_id,
            )

    def _count(self, outcomes: list[IngestOutcome]) -> None:
        for outcome in outcomes:
            self.metrics.ingest_events.labels(outcome.status, outcome.reason).inc()
            if outcome.status == "stored":
                self.metrics.ingest_bytes.labels("in").inc(outcome.bytes_in)
                self.metrics.ingest_bytes.labels("out").inc(outcome.bytes_out)
        families: dict[str, int] = {}
        for outcome in outcomes:
            if outcome.status in ("stored", "declined", "dlq"):
                families["ingest"] = families.get("ingest", 0) + 1
        for family, count in families.items():
            self.metrics.audit_records.labels(family).inc(count)
