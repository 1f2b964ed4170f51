"""The ingest pipeline's orchestration (:class:`IngestPipeline`): a batch validated,
checked against the landing claims and the catalog, declined events handled, the audio
of the others prepared (:class:`~streams.ingest.preparer.AudioPreparer`), then one
catalog commit, the landing copies discarded and refused events dead-lettered. The
order of effects and the failure rules: :mod:`streams.ingest`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callvault.errors import is_unavailable
from policies import IngestDecision, Policy, PolicyInputError, decide_ingest
from storage.audio import DEFAULT_MAX_PCM_BYTES
from storage.catalog import Catalog
from storage.catalog.audit import AuditDraft, AuditLog
from storage.catalog.claims import ClaimState, LandingClaim, LandingClaims
from storage.catalog.requests import PrivacyRequestStore
from storage.catalog.restrictions import SubjectRestrictions
from storage.crypto.keys import KeyService
from storage.landing import Landing, LandingRef, LandingRejected
from storage.types import RecordingRow
from storage.vault import Vault
from streams.bounds import DEFAULT_WINDOW, TimeWindow
from streams.errors import EventRejected
from streams.events import RecordingEvent, RejectReason, parse_recording_event
from streams.ingest.outcomes import (
    IngestOutcome,
    claimed,
    internal,
    landing_rejection,
    loose_fields,
    payload_bytes,
)
from streams.ingest.prepared import Prepared
from streams.ingest.preparer import AudioPreparer
from streams.ingest.workdir import default_work_dir, work_folder
from streams.metrics import Metrics
from streams.refs import landing_key, ref_or_dash
from streams.services import Services

log = logging.getLogger(__name__)


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


def _run_here(fn: Callable[[Prepared], Prepared], item: Prepared) -> Future[Prepared]:
    """``fn(item)`` run in this thread, its result or exception held as a done future."""
    future: Future[Prepared] = Future()
    try:
        future.set_result(fn(item))
    except Exception as exc:
        future.set_exception(exc)
    return future


#: Reason codes of a declined event: the customer declined recording, or had erased
#: their data before the call's event arrived.
DECLINED_CONSENT = "consent-declined"
DECLINED_ERASED = "customer-erased"


def _covered(item: Prepared, erased: dict[str, datetime]) -> bool:
    """Whether a completed erasure of the item's customer covers its call (it ended by
    the time the request was received)."""
    at = erased.get(item.subject_ref)
    return at is not None and item.event.ended_at <= at


def _foreign(claim: LandingClaim | None, recording_id: str) -> bool:
    """Whether another recording id holds the file (a released claim holds nothing)."""
    return (
        claim is not None
        and claim.recording_id != recording_id
        and claim.state is not ClaimState.RELEASED
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
        work_dir: Path | None = None,
        requests: PrivacyRequestStore | None = None,
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
        #: Completed erasures: a call of an erased customer that ended before their
        #: request is not stored again when its event comes late.
        self.requests = requests or PrivacyRequestStore(catalog, clock=clock)
        self.window = window
        #: Reads, checks, decodes, silences, seals and writes each event's audio. Working
        #: copies of compressed audio (plaintext): the worker, ``over`` and the import pass
        #: ``<data_dir>/work/ingest`` (:func:`work_folder`); ``None`` (a bare library
        #: pipeline) uses a private folder in the system temp folder.
        self.preparer = AudioPreparer(
            landing=landing,
            vault=vault,
            keys=keys,
            metrics=metrics,
            clock=clock,
            max_pcm_bytes=max_pcm_bytes,
            work_dir=work_dir if work_dir is not None else default_work_dir(),
        )
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
            work_dir=work_folder(services.config.data_dir),
            requests=services.requests,
        )

    @property
    def max_pcm_bytes(self) -> int:
        """The bound on one call's decoded audio (:attr:`AudioPreparer.max_pcm_bytes`)."""
        return self.preparer.max_pcm_bytes

    @property
    def work_dir(self) -> Path:
        """Where working copies of compressed audio go (:attr:`AudioPreparer.work_dir`)."""
        return self.preparer.work_dir

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # -- public ---------------------------------------------------------------------------
    def process_batch(
        self,
        payloads: Sequence[bytes | str | dict[str, Any]],
        *,
        unclaimed: Collection[int] = (),
    ) -> list[IngestOutcome]:
        """Process a batch; returns one outcome per payload, in order.

        ``unclaimed``: positions of payloads whose ``audio.sha256`` is a placeholder,
        not a claim -- for an in-process caller that vouches for the landing file (the
        importer, for manifest rows without a sha256); their audio is taken as the file
        holds it and not hashed. Events from outside never pass here.

        Raises:
            StorageError (and any error that is infrastructure, see
            :func:`callvault.errors.is_unavailable`): the vault, catalog, keyring or
            landing store is unavailable; retry the batch. Nothing else escapes.
        """
        payloads = list(payloads)
        if not payloads:
            return []
        try:
            outcomes = self._process(payloads, frozenset(unclaimed))
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
                return [
                    outcome
                    for index, payload in enumerate(payloads)
                    for outcome in self.process_batch(
                        [payload], unclaimed=(0,) if index in unclaimed else ()
                    )
                ]
        self._count(outcomes)
        return outcomes

    def _dead_letter_alone(
        self, payload: bytes | str | dict[str, Any], exc: Exception
    ) -> list[IngestOutcome]:
        """One event whose processing failed unexpectedly: ``internal-error``."""
        drafts: list[AuditDraft] = []
        outcome = self._dlq(payload, internal(exc), drafts)
        log.error(
            "event %s failed unexpectedly (%s); dead-lettered as internal-error",
            ref_or_dash(self.keys.keyring, outcome.recording_id),
            type(exc).__name__,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        self.audit.append_many(drafts)
        return [outcome]

    def _process(
        self, payloads: list[bytes | str | dict[str, Any]], unclaimed: frozenset[int]
    ) -> list[IngestOutcome]:
        now = self.clock()
        outcomes: list[IngestOutcome | None] = [None] * len(payloads)
        prepared: dict[int, Prepared] = {}
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
                    outcomes[index] = self._dlq(payload, internal(exc), rejected_audit)
                    continue
                item.digests_claimed = index not in unclaimed
                if item.event.recording_id in seen:  # the same event twice in one batch
                    outcomes[index] = IngestOutcome(
                        "duplicate", item.event.recording_id, tenant=item.event.tenant
                    )
                    continue
                if files.intersection(item.landing_keys):
                    deferred.append(index)
                    continue
                seen[item.event.recording_id] = index
                files.update(item.landing_keys)
                prepared[index] = item

        if prepared:
            oldest = min(p.event.ended_at for p in prepared.values())
            self.metrics.oldest_event_age.set(max(0.0, (now - oldest).total_seconds()))
            claims = self.claims.get(k for p in prepared.values() for k in p.landing_keys)
            for index in list(prepared):
                rid = prepared[index].event.recording_id
                if any(_foreign(claims.get(k), rid) for k in prepared[index].landing_keys):
                    item = prepared.pop(index)
                    outcomes[index] = self._dlq(item.payload, claimed(), rejected_audit)
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

            # A late event (a backlog, a PBX uploading hours later, a replay) of a call
            # its customer had erased before: declined, its audio destroyed, no new key.
            erased = self.requests.erased_subjects(p.subject_ref for p in prepared.values())
            for index in [i for i, p in prepared.items() if _covered(p, erased)]:
                item = prepared.pop(index)
                outcomes[index] = self._guarded(item, self._decline_erased, rejected_audit)

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
        # Heavy stage, each item independently: what waits on the network or on ffmpeg in
        # the threads, what only holds the GIL (a local file into a local folder) here
        # meanwhile; threads would add contention to it, not speed (--processes scales it).
        futures: dict[int, Future[Prepared]] = {
            i: self._executor.submit(self.preparer.prepare, p)
            for i, p in prepared.items()
            if not self.preparer.cpu_only(p)
        }
        for index, item in prepared.items():
            if index not in futures:
                futures[index] = _run_here(self.preparer.prepare, item)
        stored: list[tuple[int, Prepared]] = []
        dead: list[tuple[int, Prepared]] = []  # verified audio, dead-lettered: claim it
        unavailable: Exception | None = None
        for index in prepared:
            future = futures[index]
            try:
                stored.append((index, future.result()))
                continue
            except EventRejected as exc:
                rejection = exc
            except Exception as exc:
                if is_unavailable(exc):
                    unavailable = unavailable or exc
                    continue
                rejection = internal(exc)
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
                    self._discard_landing(item)
                self.claims.set_state(
                    [row for _, item in stored for row in item.release_rows()],
                    ClaimState.RELEASED,
                )

        if deferred:
            later = self._process(
                [payloads[i] for i in deferred],
                frozenset(n for n, i in enumerate(deferred) if i in unclaimed),
            )
            for index, outcome in zip(deferred, later, strict=True):
                outcomes[index] = outcome
        final = [o for o in outcomes if o is not None]
        assert len(final) == len(payloads)
        return final

    def _commit(
        self,
        stored: list[tuple[int, Prepared]],
        dead: list[tuple[int, Prepared]],
        outcomes: list[IngestOutcome | None],
        rejected_audit: list[AuditDraft],
        payloads: list[bytes | str | dict[str, Any]],
    ) -> list[tuple[int, Prepared]]:
        """One transaction: claim the files, insert the rows and every audit record.
        Returns the items that were stored (a file another worker claimed meanwhile is
        refused ``landing-claimed``; its object, written under this id, is removed)."""
        refused: list[tuple[int, Prepared]] = []
        with self.catalog.database.transaction() as tx:
            owners = self.claims.claim(
                [row for _, p in stored for row in p.claim_rows()],
                tx=tx,
            )
            kept = []
            for index, item in stored:
                rid = item.event.recording_id
                if all(owners.get(key) == rid for key in item.landing_keys):
                    kept.append((index, item))
                else:
                    refused.append((index, item))
                    outcomes[index] = self._dlq(payloads[index], claimed(), rejected_audit)
            for index, item in dead:
                outcome = outcomes[index]
                self.claims.claim(
                    item.claim_rows(),
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
        item: Prepared,
        step: Callable[[Prepared], IngestOutcome],
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
            return self._dlq(item.payload, internal(exc), rejected_audit)

    # -- stages ---------------------------------------------------------------------------
    def _validate(self, payload: bytes | str | dict[str, Any], now: datetime) -> Prepared:
        event = parse_recording_event(payload, now=now, window=self.window)
        decision = decide_event(event, self.policy)
        refs = tuple(self._resolve(uri) for uri, _ in event.audio.files)
        keys = tuple(landing_key(self.keys.keyring, ref.uri) for ref in refs)
        if len(set(keys)) != len(keys):
            raise EventRejected(
                str(RejectReason.INVALID_FIELD), "audio.legs: each leg is its own file"
            )
        return Prepared(
            event,
            refs,
            decision,
            self.keys.subject_ref(event.tenant, event.customer_ref),
            keys,
            payload,
        )

    def _resolve(self, uri: str) -> LandingRef:
        try:
            return self.landing.resolve(uri)
        except LandingRejected as exc:  # LandingStoreUnavailable propagates (retried)
            raise landing_rejection(exc) from exc

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

    def _decline_erased(self, item: Prepared) -> IngestOutcome:
        return self._decline(item, DECLINED_ERASED)

    def _decline(self, item: Prepared, reason: str = DECLINED_CONSENT) -> IngestOutcome:
        """Consent declined (or the customer erased, ``reason``): nothing is stored, the
        landing copy is destroyed -- but only a copy that is this event's own (its
        sha256 matches, and no other recording id claimed it first)."""
        rid, tenant = item.event.recording_id, item.event.tenant
        destroy = True
        try:
            self.preparer.check_verified(item)
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
            owners = self.claims.claim(item.claim_rows())
            if any(owners.get(key) != rid for key in item.landing_keys):
                raise claimed()
        already = next(
            self.audit.iter_entries(recording_id=rid, action_prefix="ingest.declined"), None
        )
        if already is None:
            self.audit.append(
                AuditDraft(
                    actor=self.actor,
                    action="ingest.declined",
                    outcome="ok",
                    reason=reason,
                    recording_id=rid,
                    details={"landing_destroyed": destroy, "tenant": tenant},
                )
            )
        if destroy:
            self._discard_landing(item)
            self.claims.set_state(item.release_rows(), ClaimState.RELEASED)
        return IngestOutcome("declined", rid, reason=reason, tenant=tenant)

    def _dlq(
        self, payload: bytes | str | dict[str, Any], exc: EventRejected, audit: list[AuditDraft]
    ) -> IngestOutcome:
        rid, tenant = loose_fields(payload)
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
            payload=payload_bytes(payload),
            tenant=tenant,
        )

    def _discard_landing(self, item: Prepared) -> None:
        self.landing.discard(item.ref, *item.refs[1:])  # the sidecar goes last

    def _discard_duplicate(self, item: Prepared, claim: LandingClaim | None) -> None:
        """A redelivered event of a stored recording: delete the landing copy only when
        it is the file the stored recording claimed (and has not released yet). An event
        reusing a stored id and naming another call's file never destroys it."""
        rid = item.event.recording_id
        if claim is None or claim.recording_id != rid or claim.state is not ClaimState.CLAIMED:
            return
        self._discard_landing(item)
        self.claims.set_state(item.release_rows(), ClaimState.RELEASED)

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
