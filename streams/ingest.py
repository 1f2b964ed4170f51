"""The ingest pipeline: a ``RecordingCompleted`` event becomes one encrypted,
purpose-tagged vault object, one catalog row and one "stored" audit record.

Order of effects for one batch (what makes crash-and-redeliver safe):

1. validate each event (within the bounds of :mod:`streams.bounds`); resolve its
   landing URI inside the landing roots; refuse a file another recording id claimed
   (``landing-claimed``, :mod:`storage.catalog.claims`);
2. drop events whose ``recording_id`` is already in the catalog (idempotency key):
   the landing copy is removed only when the stored recording's own claim names it;
3. consent ``declined``: verify the audio is the event's (sha256), claim it, audit
   the decision, then destroy the landing copy;
4. read -> sha256 check -> decode (bounded by the declared duration) -> silence PCI
   pauses -> encode -> encrypt -> vault put (in a thread pool: I/O and C code overlap);
5. ONE catalog transaction claims the files, inserts the rows and their audit
   records (and the audit records of the rejections);
6. only then the landing copies are deleted and their claims released; the caller
   commits offsets after :meth:`IngestPipeline.process_batch` returns.

A crash anywhere before 5 leaves the landing copy, and at worst an object that the
redelivered event overwrites under the same key; after 5, the redelivered event is
a duplicate.

Failures are typed (see :mod:`callvault.errors`): an *infrastructure* failure (an
error that is, or was raised from, :class:`~callvault.errors.Unavailable`: vault,
catalog, keyring, landing store down) raises out of :meth:`IngestPipeline.process_batch`,
so offsets are not committed and the caller retries the batch. Anything else is
permanent for the event that caused it: it comes back as a ``dlq`` outcome with a
reason code (``internal-error`` and the exception type for an unexpected one) and
its landing audio is kept. A non-infrastructure failure of a batch-wide step is
retried event by event, so it is pinned on the event that causes it.
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

from callvault.errors import is_unavailable
from policies import IngestDecision, Policy, PolicyInputError, decide_ingest
from storage.audio import DEFAULT_MAX_PCM_BYTES, DecodeLimit, decode, encode_wav, silence
from storage.catalog import Catalog
from storage.catalog.audit import AuditDraft, AuditLog
from storage.catalog.claims import ClaimState, LandingClaim, LandingClaims
from storage.catalog.restrictions import SubjectRestrictions
from storage.crypto.keys import KeyService
from storage.errors import AudioError, AudioTooLong, LandingError, UnsupportedAudioFormat
from storage.landing import Landing, LandingRef, LandingRejected
from storage.mirror import recording_tags
from storage.types import RecordingRow, SubjectKeyRecord
from storage.vault import Vault
from streams.bounds import DEFAULT_WINDOW, TimeWindow
from streams.errors import EventRejected
from streams.events import (
    RECORDING_ID,
    TENANT,
    RecordingEvent,
    RejectReason,
    parse_recording_event,
)
from streams.metrics import Metrics
from streams.refs import landing_key, ref_or_dash
from streams.services import Services

__all__ = ["IngestOutcome", "IngestPipeline", "decide_event", "object_key_for"]

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
    tenant: str | None = None  # the event's tenant, when it is a well-formed one


@dataclass
class _Prepared:
    event: RecordingEvent
    ref: LandingRef
    decision: IngestDecision
    subject_ref: str
    landing_key: str  # keyed name of the landing file (claims)
    payload: bytes | str | dict[str, Any] = field(repr=False, default=b"")
    restricted: bool = False  # the customer asked to stop use: stored, but unusable
    row: RecordingRow | None = None
    bytes_in: int = 0
    verified: bool = False  # the landing audio matched the event's sha256
    subject_key: SubjectKeyRecord | None = None  # the batch's lookup of the live key


def object_key_for(keys: KeyService, tenant: str, recording_id: str) -> str:
    """Vault key of a recording: a keyed hash, so keys never reveal call or customer ids."""
    digest = keys.keyring.pseudonymize(tenant, f"object:{recording_id}")
    return f"rec/{tenant}/{digest[:2]}/{digest}.cvlt"


def _payload_bytes(payload: bytes | str | dict[str, Any]) -> bytes | None:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    try:
        return json.dumps(payload).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return None


def decide_event(event: RecordingEvent, policy: Policy) -> IngestDecision:
    """The policy's ingest decision for a validated event (consent, purposes, class).

    Raises:
        EventRejected: ``unknown-purpose`` (what the policy refuses as input).
    """
    try:
        return decide_ingest(
            event.consent,
            event.purposes,
            policy,
            started_at=event.started_at,
            ended_at=event.ended_at,
        )
    except PolicyInputError as exc:
        raise EventRejected(str(RejectReason.UNKNOWN_PURPOSE), str(exc)) from exc


def _foreign(claim: LandingClaim | None, recording_id: str) -> bool:
    """Whether another recording id holds the file (a released claim holds nothing)."""
    return (
        claim is not None
        and claim.recording_id != recording_id
        and claim.state is not ClaimState.RELEASED
    )


#: What a DLQ entry / log line says about a landing problem. Never the URI itself:
#: PBXs often name files after the caller's number.
_LANDING_DETAIL = {
    "uri-invalid": "audio.uri is not a valid file:// or s3:// URI",
    "uri-outside-landing": "audio.uri lies outside CALLVAULT_LANDING_ROOTS",
    "landing-missing": "the landing audio does not exist (any more)",
    "landing-too-large": "the landing audio is larger than CALLVAULT_MAX_AUDIO_BYTES",
    "landing-not-regular": "the landing audio is a FIFO, socket or device, not a file",
    "landing-unsafe": "the landing file has several hard links or was replaced while read",
    "landing-unreadable": "the landing audio cannot be read (permissions or S3 refusal)",
    "landing-claimed": "the landing audio belongs to another recording id",
}


def _landing_rejection(exc: LandingError) -> EventRejected:
    reason = exc.reason if isinstance(exc, LandingRejected) else "landing-unreadable"
    return EventRejected(reason, _LANDING_DETAIL.get(reason, "landing audio rejected"))


def _claimed() -> EventRejected:
    return EventRejected(str(RejectReason.LANDING_CLAIMED), _LANDING_DETAIL["landing-claimed"])


def _internal(exc: BaseException) -> EventRejected:
    """An unexpected failure, pinned on one event: the exception type, never its message
    (which may quote a value)."""
    return EventRejected(str(RejectReason.INTERNAL_ERROR), type(exc).__name__)


#: Fields a redacted event shows as a marker: personal data (customer reference), and
#: what names or proves the landing audio (URI, sha256), which another sender could
#: use to claim it.
REDACTED = "[redacted]"


def redacted_event(payload: bytes | None) -> dict[str, Any] | None:
    """The event as an operator may see it (``callvault dlq show``): ``customer_ref``,
    ``audio.uri`` and ``audio.sha256`` replaced by markers. ``None`` when the payload is
    not a JSON object: then only its source offset identifies it."""
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if "customer_ref" in data:
        data["customer_ref"] = REDACTED
    audio = data.get("audio")
    if isinstance(audio, dict):
        for name in ("uri", "sha256"):
            if name in audio:
                audio[name] = REDACTED
    return data


def _loose_fields(payload: bytes | str | dict[str, Any]) -> tuple[str | None, str | None]:
    """The recording id and tenant of a rejected event, each if well-formed (audit, DLQ)."""
    data: Any = payload
    if not isinstance(payload, dict):
        if len(payload) > 1 << 20:
            return None, None
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None, None
    if not isinstance(data, dict):
        return None, None
    rid, tenant = data.get("recording_id"), data.get("tenant")
    return (
        rid if isinstance(rid, str) and RECORDING_ID.match(rid) else None,
        tenant if isinstance(tenant, str) and TENANT.match(tenant) else None,
    )


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
        claims: LandingClaims | None = None,
        window: TimeWindow = DEFAULT_WINDOW,
        max_pcm_bytes: int = DEFAULT_MAX_PCM_BYTES,
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
        self.claims = claims or LandingClaims(catalog.database, clock=clock)
        self.window = window
        self.max_pcm_bytes = max_pcm_bytes
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
        """A pipeline over the services' landing, vault, keys, catalog, policy, clock,
        restrictions, landing claims and call-time window (what the worker builds)."""
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
            claims=services.claims,
            window=services.config.call_window,
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # -- public ---------------------------------------------------------------------------
    def process_batch(
        self, payloads: Sequence[bytes | str | dict[str, Any]]
    ) -> list[IngestOutcome]:
        """Process a batch; returns one outcome per payload, in order.

        Raises:
            StorageError (and any error that is infrastructure, see
            :func:`callvault.errors.is_unavailable`): the vault, catalog, keyring or
            landing store is unavailable; retry the batch. Nothing else escapes.
        """
        payloads = list(payloads)
        if not payloads:
            return []
        try:
            outcomes = self._process(payloads)
        except Exception as exc:
            if is_unavailable(exc):
                raise
            if len(payloads) == 1:
                outcomes = self._dead_letter_alone(payloads[0], exc)
            else:
                log.error(
                    "ingest batch step failed (%s); processing its %d events one by one",
                    type(exc).__name__,
                    len(payloads),
                )
                return [o for payload in payloads for o in self.process_batch([payload])]
        self._count(outcomes)
        return outcomes

    def _dead_letter_alone(
        self, payload: bytes | str | dict[str, Any], exc: Exception
    ) -> list[IngestOutcome]:
        """One event whose processing failed unexpectedly: ``internal-error``."""
        drafts: list[AuditDraft] = []
        outcome = self._dlq(payload, _internal(exc), drafts)
        log.error(
            "event %s failed unexpectedly (%s); dead-lettered as internal-error",
            ref_or_dash(self.keys.keyring, outcome.recording_id),
            type(exc).__name__,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        self.audit.append_many(drafts)
        return [outcome]

    def _process(self, payloads: list[bytes | str | dict[str, Any]]) -> list[IngestOutcome]:
        now = self.clock()
        outcomes: list[IngestOutcome | None] = [None] * len(payloads)
        prepared: dict[int, _Prepared] = {}
        seen: dict[str, int] = {}
        files: set[str] = set()
        deferred: list[int] = []  # a second event naming the same file: after this batch
        rejected_audit: list[AuditDraft] = []

        with self.metrics.stage("validate"):
            for index, payload in enumerate(payloads):
                try:
                    item = self._validate(payload, now)
                except EventRejected as exc:
                    outcomes[index] = self._dlq(payload, exc, rejected_audit)
                    continue
                except Exception as exc:
                    if is_unavailable(exc):
                        raise
                    outcomes[index] = self._dlq(payload, _internal(exc), rejected_audit)
                    continue
                if item.event.recording_id in seen:  # the same event twice in one batch
                    outcomes[index] = IngestOutcome(
                        "duplicate", item.event.recording_id, tenant=item.event.tenant
                    )
                    continue
                if item.landing_key in files:
                    deferred.append(index)
                    continue
                seen[item.event.recording_id] = index
                files.add(item.landing_key)
                prepared[index] = item

        if prepared:
            oldest = min(p.event.ended_at for p in prepared.values())
            self.metrics.oldest_event_age.set(max(0.0, (now - oldest).total_seconds()))
            claims = self.claims.get(p.landing_key for p in prepared.values())
            for index in list(prepared):
                claim = claims.get(prepared[index].landing_key)
                if _foreign(claim, prepared[index].event.recording_id):
                    item = prepared.pop(index)
                    outcomes[index] = self._dlq(item.payload, _claimed(), rejected_audit)
            present = self.catalog.recording_ids_present(
                p.event.recording_id for p in prepared.values()
            )
            for index in [i for i, p in prepared.items() if p.event.recording_id in present]:
                item = prepared.pop(index)
                self._discard_duplicate(item, claims.get(item.landing_key))
                outcomes[index] = IngestOutcome(
                    "duplicate", item.event.recording_id, tenant=item.event.tenant
                )

            for index in [i for i, p in prepared.items() if not p.decision.store]:
                item = prepared.pop(index)
                outcomes[index] = self._guarded(item, self._decline, rejected_audit)

        if prepared:
            # New customers' keys of the whole batch in one commit (not one each).
            with self.metrics.stage("keys"):
                keys = self.keys.live_subject_keys(
                    (p.event.tenant, p.subject_ref) for p in prepared.values()
                )
            for item in prepared.values():  # sealing needs no query of its own
                item.subject_key = keys.get(item.subject_ref)
            restricted = self.restrictions.restricted_among(
                p.subject_ref for p in prepared.values()
            )
            for item in prepared.values():
                item.restricted = item.subject_ref in restricted
        # Heavy stage: in parallel, each item independently.
        futures = {i: self._executor.submit(self._prepare, p) for i, p in prepared.items()}
        stored: list[tuple[int, _Prepared]] = []
        dead: list[tuple[int, _Prepared]] = []  # verified audio, dead-lettered: claim it
        unavailable: Exception | None = None
        for index, future in futures.items():
            try:
                stored.append((index, future.result()))
                continue
            except EventRejected as exc:
                rejection = exc
            except Exception as exc:
                if is_unavailable(exc):
                    unavailable = unavailable or exc
                    continue
                rejection = _internal(exc)
                log.error(
                    "event %s failed unexpectedly (%s)",
                    ref_or_dash(self.keys.keyring, prepared[index].event.recording_id),
                    type(exc).__name__,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
            outcomes[index] = self._dlq(payloads[index], rejection, rejected_audit)
            if prepared[index].verified:
                dead.append((index, prepared[index]))
        if unavailable is not None:
            raise unavailable  # after every thread finished: retry the whole batch

        if stored:
            with self.metrics.stage("flush"):
                self.vault.flush()
        if stored or dead or rejected_audit:
            with self.metrics.stage("catalog"):
                stored = self._commit(stored, dead, outcomes, rejected_audit, payloads)
            with self.metrics.stage("landing"):
                for _, item in stored:
                    self._discard_landing(item.ref)
                self.claims.set_state(
                    [(item.landing_key, item.event.recording_id) for _, item in stored],
                    ClaimState.RELEASED,
                )

        if deferred:
            later = self._process([payloads[i] for i in deferred])
            for index, outcome in zip(deferred, later, strict=True):
                outcomes[index] = outcome
        final = [o for o in outcomes if o is not None]
        assert len(final) == len(payloads)
        return final

    def _commit(
        self,
        stored: list[tuple[int, _Prepared]],
        dead: list[tuple[int, _Prepared]],
        outcomes: list[IngestOutcome | None],
        rejected_audit: list[AuditDraft],
        payloads: list[bytes | str | dict[str, Any]],
    ) -> list[tuple[int, _Prepared]]:
        """One transaction: claim the files, insert the rows and every audit record.
        Returns the items that were stored (a file another worker claimed meanwhile is
        refused ``landing-claimed``; its object, written under this id, is removed)."""
        refused: list[tuple[int, _Prepared]] = []
        with self.catalog.database.transaction() as tx:
            owners = self.claims.claim(
                [(p.landing_key, p.event.recording_id, p.event.tenant) for _, p in stored],
                tx=tx,
            )
            kept = []
            for index, item in stored:
                if owners.get(item.landing_key) == item.event.recording_id:
                    kept.append((index, item))
                else:
                    refused.append((index, item))
                    outcomes[index] = self._dlq(payloads[index], _claimed(), rejected_audit)
            for index, item in dead:
                outcome = outcomes[index]
                self.claims.claim(
                    [(item.landing_key, item.event.recording_id, item.event.tenant)],
                    state=ClaimState.DEAD_LETTERED,
                    reason=outcome.reason if outcome else "",
                    tx=tx,
                )
            items = []
            for _, item in kept:
                assert item.row is not None
                items.append((item.row, self._stored_draft(item.row)))
            inserted = self.catalog.store_recordings(items) if items else []
            if rejected_audit:
                self.audit.append_many(rejected_audit, tx=tx)
        for (index, item), was_new in zip(kept, inserted, strict=True):
            row = item.row
            assert row is not None
            outcomes[index] = IngestOutcome(
                "stored" if was_new else "duplicate",
                row.recording_id,
                object_key=row.object_key,
                bytes_in=item.bytes_in,
                bytes_out=row.stored_size,
                tenant=row.tenant,
            )
        for _, item in refused:
            if item.row is not None:
                try:
                    self.vault.delete(item.row.object_key)
                except Exception as exc:  # an orphan object, found by `callvault vault check`
                    log.warning("could not remove a refused object (%s)", type(exc).__name__)
        return kept

    def _guarded(
        self,
        item: _Prepared,
        step: Callable[[_Prepared], IngestOutcome],
        rejected_audit: list[AuditDraft],
    ) -> IngestOutcome:
        """Run one event's ``step``; a rejection or an unexpected error dead-letters it,
        infrastructure propagates."""
        try:
            return step(item)
        except EventRejected as exc:
            return self._dlq(item.payload, exc, rejected_audit)
        except Exception as exc:
            if is_unavailable(exc):
                raise
            return self._dlq(item.payload, _internal(exc), rejected_audit)

    # -- stages ---------------------------------------------------------------------------
    def _validate(self, payload: bytes | str | dict[str, Any], now: datetime) -> _Prepared:
        event = parse_recording_event(payload, now=now, window=self.window)
        decision = decide_event(event, self.policy)
        ref = self._resolve(event)
        return _Prepared(
            event,
            ref,
            decision,
            self.keys.subject_ref(event.tenant, event.customer_ref),
            landing_key(self.keys.keyring, ref.uri),
            payload,
        )

    def _resolve(self, event: RecordingEvent) -> LandingRef:
        try:
            return self.landing.resolve(event.audio.uri)
        except LandingRejected as exc:  # LandingStoreUnavailable propagates (retried)
            raise _landing_rejection(exc) from exc

    def _check_sidecar(self, item: _Prepared) -> None:
        """A sidecar event beside the audio (written by ``POST /v1/recordings`` or the
        PBX) names the file's owner: an event of another recording id is refused."""
        try:
            sidecar = self.landing.read_sidecar(item.ref)
        except LandingError as exc:
            if is_unavailable(exc):
                raise
            return  # an unusable sidecar proves nothing either way
        owner = sidecar.get("recording_id") if sidecar else None
        if isinstance(owner, str) and owner != item.event.recording_id:
            raise _claimed()

    def _read_verified(self, item: _Prepared) -> bytes:
        """The landing audio, checked against the event's sha256 (``item.verified``),
        after checking that no sidecar names another owner."""
        self._check_sidecar(item)
        try:
            data = self.landing.read(item.ref)
        except LandingError as exc:
            if is_unavailable(exc):
                raise  # the landing store is down: retried
            raise _landing_rejection(exc) from exc
        if hashlib.sha256(data).hexdigest() != item.event.audio.sha256:
            raise EventRejected(
                str(RejectReason.SHA256_MISMATCH), "landing audio does not match audio.sha256"
            )
        item.verified = True
        return data

    def _prepare(self, item: _Prepared) -> _Prepared:
        event = item.event
        with self.metrics.stage("read"):
            data = self._read_verified(item)
        item.bytes_in = len(data)
        with self.metrics.stage("decode"):
            limit = DecodeLimit.for_call(event.duration_ms, max_pcm_bytes=self.max_pcm_bytes)
            try:
                audio = decode(data, event.audio.format, limit=limit)
            except UnsupportedAudioFormat as exc:
                raise EventRejected(str(RejectReason.AUDIO_UNSUPPORTED), str(exc)) from exc
            except AudioTooLong as exc:
                raise EventRejected(str(RejectReason.AUDIO_TOO_LONG), str(exc)) from exc
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
                subject_key_record=item.subject_key,
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
        """Consent declined: nothing is stored, the landing copy is destroyed -- but only
        a copy that is this event's own (its sha256 matches, and no other recording id
        claimed it first)."""
        rid, tenant = item.event.recording_id, item.event.tenant
        destroy = True
        try:
            self._read_verified(item)
        except EventRejected as exc:
            if exc.reason == RejectReason.LANDING_CLAIMED:
                raise  # another recording's audio: refused, not declined
            if exc.reason != RejectReason.LANDING_MISSING:
                log.warning(
                    "landing audio of declined event %s kept (%s)",
                    ref_or_dash(self.keys.keyring, rid),
                    exc.reason,
                )
            destroy = False  # already gone (a redelivery), or not this event's audio
        if destroy:
            owners = self.claims.claim([(item.landing_key, rid, tenant)])
            if owners.get(item.landing_key) != rid:
                raise _claimed()
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
                    details={"landing_destroyed": destroy, "tenant": tenant},
                )
            )
        if destroy:
            self._discard_landing(item.ref)
            self.claims.set_state([(item.landing_key, rid)], ClaimState.RELEASED)
        return IngestOutcome("declined", rid, reason="consent-declined", tenant=tenant)

    def _dlq(
        self, payload: bytes | str | dict[str, Any], exc: EventRejected, audit: list[AuditDraft]
    ) -> IngestOutcome:
        rid, tenant = _loose_fields(payload)
        log.warning(
            "event %s rejected (%s): %s",
            ref_or_dash(self.keys.keyring, rid),
            exc.reason,
            exc.detail[:200],
        )
        audit.append(
            AuditDraft(
                actor=self.actor,
                action="ingest.rejected",
                outcome="dlq",
                reason=exc.reason,
                recording_id=rid,
                details={"tenant": tenant} if tenant else {},
            )
        )
        return IngestOutcome(
            "dlq",
            rid,
            reason=exc.reason,
            detail=exc.detail[:500],
            payload=_payload_bytes(payload),
            tenant=tenant,
        )

    def _discard_landing(self, ref: LandingRef) -> None:
        self.landing.discard(ref)  # the audio, then its sidecar

    def _discard_duplicate(self, item: _Prepared, claim: LandingClaim | None) -> None:
        """A redelivered event of a stored recording: delete the landing copy only when
        it is the file the stored recording claimed (and has not released yet). An event
        reusing a stored id and naming another call's file never destroys it."""
        rid = item.event.recording_id
        if claim is None or claim.recording_id != rid or claim.state is not ClaimState.CLAIMED:
            return
        self._discard_landing(item.ref)
        self.claims.set_state([(item.landing_key, rid)], ClaimState.RELEASED)

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
