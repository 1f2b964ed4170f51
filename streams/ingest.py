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
4. read -> sha256 check -> decode (bounded by the declared duration; headerless audio
   at the declared rate and channels, a container checked against them) -> join legs
   (``audio.legs``: one sample-aligned channel per file) -> silence PCI pauses on their
   channels -> encode -> encrypt -> vault put (in a thread pool: I/O and C code overlap);
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

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callvault.errors import is_unavailable
from policies import IngestDecision, Policy, PolicyInputError, decide_ingest
from storage.audio import (
    DEFAULT_MAX_PCM_BYTES,
    FFMPEG_FORMATS,
    DecodedAudio,
    DecodeLimit,
    Layout,
    PcmStream,
    SilencePlan,
    decode,
    encode_wav,
    ffmpeg_decoder,
    join_legs,
    silence,
    wav_needs_ffmpeg,
)
from storage.audio_chunks import (
    StreamPlan,
    join_plans,
    plan_stream,
    read_head,
    stream_legs,
    stream_plaintext,
)
from storage.audio_store import (
    STORAGE_CODECS,
    StorageCodec,
    content_type_of,
    reencode_file,
    stored_label,
    transcode_file,
)
from storage.catalog import Catalog
from storage.catalog.audit import AuditDraft, AuditLog
from storage.catalog.claims import ClaimState, LandingClaim, LandingClaims
from storage.catalog.restrictions import SubjectRestrictions
from storage.crypto.envelope import PieceReader, SupportsRead
from storage.crypto.keys import KeyService
from storage.errors import (
    AudioError,
    AudioMismatch,
    AudioTooLong,
    BackendUnavailable,
    LandingError,
    UnsupportedAudioFormat,
)
from storage.landing import Landing, LandingRef, LandingRejected, LandingStream
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
    refs: tuple[LandingRef, ...]  # the landing files, one per leg (the first names it)
    decision: IngestDecision
    subject_ref: str
    landing_keys: tuple[str, ...]  # keyed names of the landing files (claims)
    payload: bytes | str | dict[str, Any] = field(repr=False, default=b"")
    restricted: bool = False  # the customer asked to stop use: stored, but unusable
    row: RecordingRow | None = None
    bytes_in: int = 0
    verified: bool = False  # the landing audio matched the event's sha256
    subject_key: SubjectKeyRecord | None = None  # the batch's lookup of the live key

    @property
    def ref(self) -> LandingRef:
        """The recording's first landing file (its sidecar's)."""
        return self.refs[0]

    @property
    def landing_key(self) -> str:
        return self.landing_keys[0]

    def claim_rows(self) -> list[tuple[str, str, str]]:
        """``(landing key, recording id, tenant)`` of every file, for the claims."""
        rid, tenant = self.event.recording_id, self.event.tenant
        return [(key, rid, tenant) for key in self.landing_keys]

    def release_rows(self) -> list[tuple[str, str]]:
        return [(key, self.event.recording_id) for key in self.landing_keys]


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


def _check_pauses(event: RecordingEvent, frames: int, rate: int, channels: int) -> None:
    """Every pause must fall inside the decoded audio and on channels it has: a pause
    that cannot be silenced where the event says means the audio is not what the event
    describes (a stereo file read as mono halves every time), so nothing is stored."""
    total_ms = -(-frames * 1000 // rate)
    for index, pause in enumerate(event.pci_pauses):
        if pause.start_ms >= total_ms:
            raise EventRejected(
                str(RejectReason.PCI_OUT_OF_RANGE),
                f"pci_pauses[{index}]: starts after the decoded audio ends ({total_ms} ms)",
            )
        if pause.channels is not None and max(pause.channels) >= channels:
            raise EventRejected(
                str(RejectReason.PCI_OUT_OF_RANGE),
                f"pci_pauses[{index}]: the audio has {channels} channel(s)",
            )


#: Formats :meth:`IngestPipeline._prepare_streamed` may handle without holding them.
_STREAMED = frozenset({"wav", "sln", "sln16", "ulaw", "mulaw", "alaw"})


def _audio_rejection(exc: AudioError) -> EventRejected:
    """The reason code of an audio failure."""
    if isinstance(exc, UnsupportedAudioFormat):
        return EventRejected(str(RejectReason.AUDIO_UNSUPPORTED), str(exc))
    if isinstance(exc, AudioTooLong):
        return EventRejected(str(RejectReason.AUDIO_TOO_LONG), str(exc))
    if isinstance(exc, AudioMismatch):
        return EventRejected(str(RejectReason.AUDIO_MISMATCH), str(exc))
    return EventRejected(str(RejectReason.AUDIO_UNDECODABLE), str(exc))


class _Digested:
    """Landing streams read through their sha256, each to be the event's (``expected``)."""

    def __init__(self, streams: Sequence[LandingStream], expected: Sequence[str]) -> None:
        self._streams = list(streams)
        self._expected = list(expected)
        self._digests = [hashlib.sha256() for _ in self._streams]

    def head(self, index: int) -> bytes:
        """The first bytes of stream ``index`` (a WAV header's worth), digested."""
        head = read_head(self._streams[index])
        self._digests[index].update(head)
        return head

    def reader(self, index: int) -> SupportsRead:
        """Stream ``index`` as ``read(n)``, everything read digested."""
        stream, digest = self._streams[index], self._digests[index]

        class Digesting:
            def read(self, size: int = -1, /) -> bytes:
                piece = stream.read(size)
                digest.update(piece)
                return piece

        return Digesting()

    def matches(self) -> bool:
        return all(d.hexdigest() == e for d, e in zip(self._digests, self._expected, strict=True))

    def finish(self, item: _Prepared) -> None:
        """Every stream was read to its end: raise ``sha256-mismatch`` unless each is the
        event's audio (``item.verified`` then)."""
        if not self.matches():
            raise _sha256_mismatch()
        item.verified = True

    def refused(self, item: _Prepared, exc: EventRejected) -> None:
        """``exc`` refused the event before the files were read to the end. As on the
        whole-file path, a file that is not the event's is a ``sha256-mismatch`` whatever
        else is wrong with it (raised from here); files that are get claimed for the
        recording (``item.verified``), so the reconciler leaves them."""
        if item.verified or exc.reason == RejectReason.SHA256_MISMATCH:
            return
        for stream, digest in zip(self._streams, self._digests, strict=True):
            while piece := stream.read(1 << 20):
                digest.update(piece)
        item.verified = self.matches()
        if not item.verified:
            raise _sha256_mismatch() from exc


def _run_here(fn: Callable[[_Prepared], _Prepared], item: _Prepared) -> Future[_Prepared]:
    """``fn(item)`` run in this thread, its result or exception held as a done future."""
    future: Future[_Prepared] = Future()
    try:
        future.set_result(fn(item))
    except Exception as exc:
        future.set_exception(exc)
    return future


def _sha256_mismatch() -> EventRejected:
    return EventRejected(
        str(RejectReason.SHA256_MISMATCH), "landing audio does not match audio.sha256"
    )


def _translated(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``pieces`` with audio failures as rejections (they surface inside ``Vault.put``)."""
    try:
        yield from pieces
    except AudioError as exc:
        raise _audio_rejection(exc) from exc


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


def _work_unavailable(exc: OSError) -> BackendUnavailable:
    """A write to the ingest work folder failed (disk full, folder gone): retried."""
    return BackendUnavailable(f"the ingest work folder cannot be written: {exc.strerror or exc}")


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


#: Where a pipeline copies compressed audio aside (``<data_dir>/work/ingest``, 0700);
#: one ``callvault-ingest-<pid>-*`` folder per recording, removed when it is stored.
WORK_FOLDER = Path("work") / "ingest"
_WORK_PREFIX = "callvault-ingest-"


def work_folder(data_dir: Path) -> Path:
    """The private folder under ``data_dir`` where ingest keeps its working copies."""
    return data_dir / WORK_FOLDER


def _private_folder(folder: Path) -> Path:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot use the ingest work folder {folder}: {exc.strerror or exc}"
        ) from exc
    return folder


def _default_work_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"callvault-work-{os.getuid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's live process
    return True


def clear_work_folder(folder: Path) -> int:
    """Create the private work folder and delete the working copies (plaintext) a
    killed pipeline left in it: every ``callvault-ingest-*`` entry except those of
    another live process (sibling workers share the data dir). Returns how many
    were removed. Called by the worker before it consumes."""
    _private_folder(folder)
    removed = 0
    for entry in folder.glob(f"{_WORK_PREFIX}*"):
        owner = entry.name.removeprefix(_WORK_PREFIX).split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and _alive(int(owner)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d leftover ingest work folder(s) in %s", removed, folder)
    return removed


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
        #: Working copies of compressed audio (plaintext): the worker, ``over`` and the
        #: import pass ``<data_dir>/work/ingest`` (:func:`work_folder`); ``None`` (a bare
        #: library pipeline) uses a private folder in the system temp folder.
        self.work_dir = work_dir if work_dir is not None else _default_work_dir()
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
        # Heavy stage, each item independently: what waits on the network or on ffmpeg in
        # the threads, what only holds the GIL (a local file into a local folder) here
        # meanwhile; threads would add contention to it, not speed (--processes scales it).
        futures: dict[int, Future[_Prepared]] = {
            i: self._executor.submit(self._prepare, p)
            for i, p in prepared.items()
            if not self._cpu_only(p)
        }
        for index, item in prepared.items():
            if index not in futures:
                futures[index] = _run_here(self._prepare, item)
        stored: list[tuple[int, _Prepared]] = []
        dead: list[tuple[int, _Prepared]] = []  # verified audio, dead-lettered: claim it
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
                    self._discard_landing(item)
                self.claims.set_state(
                    [row for _, item in stored for row in item.release_rows()],
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
                    outcomes[index] = self._dlq(payloads[index], _claimed(), rejected_audit)
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
        refs = tuple(self._resolve(uri) for uri, _ in event.audio.files)
        keys = tuple(landing_key(self.keys.keyring, ref.uri) for ref in refs)
        if len(set(keys)) != len(keys):
            raise EventRejected(
                str(RejectReason.INVALID_FIELD), "audio.legs: each leg is its own file"
            )
        return _Prepared(
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

    def _read_verified(self, item: _Prepared) -> list[bytes]:
        """The landing audio of every file (one per leg), each checked against its
        sha256 (``item.verified`` once all match), after checking that no sidecar names
        another owner."""
        self._check_sidecar(item)
        files = []
        for ref, (_, digest) in zip(item.refs, item.event.audio.files, strict=True):
            try:
                data = self.landing.read(ref)
            except LandingError as exc:
                if is_unavailable(exc):
                    raise  # the landing store is down: retried
                raise _landing_rejection(exc) from exc
            if hashlib.sha256(data).hexdigest() != digest:
                where = "audio.sha256" if not item.event.audio.legs else "its leg's sha256"
                raise EventRejected(
                    str(RejectReason.SHA256_MISMATCH), f"landing audio does not match {where}"
                )
            files.append(data)
        item.verified = True
        return files

    def _check_verified(self, item: _Prepared) -> None:
        """What :meth:`_read_verified` checks, streaming: each file's sha256 is
        computed 1 MiB at a time (constant memory: a declined 2-hour call is checked,
        never read whole, before it is destroyed)."""
        self._check_sidecar(item)
        for ref, (_, expected) in zip(item.refs, item.event.audio.files, strict=True):
            digest = hashlib.sha256()
            try:
                with self.landing.open(ref) as stream:
                    while piece := stream.read(1 << 20):
                        digest.update(piece)
            except LandingError as exc:
                if is_unavailable(exc):
                    raise  # the landing store is down: retried
                raise _landing_rejection(exc) from exc
            if digest.hexdigest() != expected:
                where = "audio.sha256" if not item.event.audio.legs else "its leg's sha256"
                raise EventRejected(
                    str(RejectReason.SHA256_MISMATCH), f"landing audio does not match {where}"
                )
        item.verified = True

    def _cpu_only(self, item: _Prepared) -> bool:
        """Whether preparing ``item`` only computes and writes locally: one landing file
        in a local root, a format read and sealed in Python (no ffmpeg, no other storage
        codec), a vault whose puts do not wait on the network."""
        return (
            not self.vault.puts_wait_on_network
            and not item.event.audio.legs
            and item.ref.path is not None
            and item.event.audio.format in _STREAMED
            and str(item.decision.storage_codec) not in STORAGE_CODECS
        )

    def _prepare(self, item: _Prepared) -> _Prepared:
        fmt = item.event.audio.format
        if item.event.audio.legs:
            if fmt in _STREAMED:
                with self.metrics.stage("stream"):
                    if self._prepare_streamed_legs(item):
                        return item
            return self._prepare_whole(item)
        codec = str(item.decision.storage_codec)
        if codec in STORAGE_CODECS:  # the retention class stores in its own codec
            with self.metrics.stage("stream"):
                self._prepare_compressed(item, STORAGE_CODECS[codec])
            return item
        path = "ffmpeg" if fmt in FFMPEG_FORMATS else "whole"
        with self.metrics.stage("stream"):
            if fmt in _STREAMED:
                path = self._prepare_streamed(item)
            if path == "ffmpeg":
                self._prepare_compressed(item)
                return item
        return item if path == "done" else self._prepare_whole(item)

    def _prepare_compressed(self, item: _Prepared, target: StorageCodec | None = None) -> None:
        """Compressed audio (and GSM / ADPCM WAV), kept as sent in constant memory: the
        landing file is copied aside while its digest is checked, ffmpeg decodes it as a
        stream (bounded; the samples are only counted), and the copy is sealed and
        written chunk by chunk; around a PCI pause a second ffmpeg re-encodes the
        silenced samples in the same codec, rate, channels and bit rate. With a
        ``target`` codec (the retention class's ``storage_codec``) any format is
        transcoded to it instead, PCI pauses silenced on the way."""
        event = item.event
        self._check_sidecar(item)
        limit = DecodeLimit.for_call(event.duration_ms, max_pcm_bytes=self.max_pcm_bytes)
        layout = Layout(event.audio.sample_rate, event.audio.channels)
        fmt = event.audio.format
        with self._work_copy() as folder:
            sent = Path(folder) / f"sent.{fmt}"
            item.bytes_in = self._copy_verified(item, sent)
            try:
                decoder = ffmpeg_decoder(str(sent), fmt, layout=layout)
                with PcmStream(decoder, limit, what=fmt) as scan:
                    for _ in scan:
                        pass  # counted and bounded; kept as sent, not as samples
                codec = scan.codec or fmt
                layout.check(scan.sample_rate, scan.channels, f"{fmt} audio")
                rate, channels, frames = scan.sample_rate, scan.channels, scan.frames
                cuts = self._cuts(event, frames, rate, channels)
                stored = sent
                label = stored_label(fmt, codec)
                if target is not None:
                    options = target.options(channels)
                    stored = transcode_file(
                        sent, fmt, layout, cuts, options=options, muxer=target.muxer,
                        limit=limit, folder=Path(folder),
                    )  # fmt: skip
                    label = target.label
                    if target.decoded_rate:  # Opus decodes at 48 kHz, whatever it was fed
                        frames = frames * target.decoded_rate // rate
                        rate = target.decoded_rate
                elif cuts.cuts:
                    seconds = max(frames / rate, 0.001)
                    bit_rate = max(6000, round(item.bytes_in * 8 / seconds / 1000) * 1000)
                    stored = reencode_file(
                        sent, fmt, codec, cuts, bit_rate=bit_rate, limit=limit, folder=Path(folder)
                    )
            except AudioError as exc:
                raise _audio_rejection(exc) from exc
            except OSError as exc:  # the work folder is full or gone: infrastructure
                raise _work_unavailable(exc) from exc
            size = stored.stat().st_size
            with stored.open("rb") as plaintext:
                self._seal_and_put(
                    item,
                    plaintext,
                    size=size,
                    audio_format=label,
                    content_type=content_type_of(label),
                    frames=frames,
                    sample_rate=rate,
                    channels=channels,
                    redacted_ms=cuts.silenced_ms,
                )

    @contextlib.contextmanager
    def _work_copy(self) -> Iterator[str]:
        """A fresh private folder under :attr:`work_dir` (removed on the way out); a
        failure to create it is infrastructure (retried)."""
        _private_folder(self.work_dir)
        try:
            holder = tempfile.TemporaryDirectory(
                prefix=f"{_WORK_PREFIX}{os.getpid()}-", dir=self.work_dir
            )
        except OSError as exc:
            raise _work_unavailable(exc) from exc
        with holder as folder:
            yield folder

    def _copy_verified(self, item: _Prepared, target: Path) -> int:
        """Copy the landing file to ``target`` chunk by chunk, checking its sha256
        (``item.verified``); return its size. A failed write of the copy (disk full) is
        infrastructure (retried), not the event's fault."""
        digest = hashlib.sha256()
        try:
            with self.landing.open(item.ref) as stream, target.open("wb") as out:
                while piece := stream.read(1 << 20):
                    digest.update(piece)
                    out.write(piece)
                size = stream.position
        except LandingError as exc:
            if is_unavailable(exc):
                raise
            raise _landing_rejection(exc) from exc
        except OSError as exc:
            raise _work_unavailable(exc) from exc
        if digest.hexdigest() != item.event.audio.sha256:
            raise _sha256_mismatch()
        item.verified = True
        return size

    def _prepare_streamed(self, item: _Prepared) -> str:
        """PCM / G.711 WAV and headerless audio: read, silence, encrypt and write chunk by
        chunk, in constant memory. Returns ``done``, or the path this file needs instead:
        ``ffmpeg`` (a codec only ffmpeg expands) or ``whole`` (an unusual WAV layout)."""
        event = item.event
        self._check_sidecar(item)
        limit = DecodeLimit.for_call(event.duration_ms, max_pcm_bytes=self.max_pcm_bytes)
        layout = Layout(event.audio.sample_rate, event.audio.channels)
        try:
            with self.landing.open(item.ref) as stream:
                digested = _Digested([stream], [event.audio.sha256])
                try:
                    head = digested.head(0)
                    try:
                        plan = plan_stream(
                            head, stream.size, event.audio.format, layout=layout, limit=limit
                        )
                    except AudioError as exc:
                        raise _audio_rejection(exc) from exc
                    if plan is None:
                        return "ffmpeg" if wav_needs_ffmpeg(head) else "whole"
                    cuts = self._cuts(event, plan.frames, plan.sample_rate, plan.channels)
                    pieces = stream_plaintext(
                        plan, head, digested.reader(0), cuts, finish=lambda: digested.finish(item)
                    )
                    item.bytes_in = stream.size
                    self._put_streamed(item, plan, pieces, cuts)
                except EventRejected as exc:
                    digested.refused(item, exc)
                    raise
        except LandingError as exc:
            if is_unavailable(exc):
                raise  # the landing store is down: retried
            raise _landing_rejection(exc) from exc
        return "done"

    def _prepare_streamed_legs(self, item: _Prepared) -> bool:
        """Legs of PCM / G.711 WAV or headerless audio, interleaved chunk by chunk into one
        recording in constant memory (False: they need :meth:`_prepare_whole`, e.g. legs
        of different codecs)."""
        event = item.event
        self._check_sidecar(item)
        limit = DecodeLimit.for_call(event.duration_ms, max_pcm_bytes=self.max_pcm_bytes)
        layout = Layout(event.audio.sample_rate, None)  # each leg is one mono direction
        try:
            with contextlib.ExitStack() as stack:
                streams = [stack.enter_context(self.landing.open(ref)) for ref in item.refs]
                digested = _Digested(streams, [digest for _, digest in event.audio.files])
                try:
                    heads, plans = [], []
                    for index, stream in enumerate(streams):
                        heads.append(digested.head(index))
                        try:
                            plan = plan_stream(
                                heads[-1], stream.size, event.audio.format, layout=layout,
                                limit=limit,
                            )  # fmt: skip
                        except AudioError as exc:
                            raise _audio_rejection(exc) from exc
                        if plan is None:
                            return False
                        plans.append(plan)
                    if len({p.stored_codec for p in plans}) != 1:
                        return False  # mixed codecs: join_legs makes them 16-bit PCM
                    try:
                        joined = join_plans(plans)
                    except AudioError as exc:
                        raise _audio_rejection(exc) from exc
                    cuts = self._cuts(event, joined.frames, joined.sample_rate, joined.channels)
                    readers = [digested.reader(i) for i in range(len(streams))]
                    pieces = stream_legs(
                        plans, heads, readers, cuts, finish=lambda: digested.finish(item)
                    )
                    item.bytes_in = sum(s.size for s in streams)
                    self._put_streamed(item, joined, pieces, cuts)
                except EventRejected as exc:
                    digested.refused(item, exc)
                    raise
        except LandingError as exc:
            if is_unavailable(exc):
                raise
            raise _landing_rejection(exc) from exc
        return True

    def _put_streamed(
        self, item: _Prepared, plan: StreamPlan, pieces: Iterator[bytes], cuts: SilencePlan
    ) -> None:
        """Seal and write the stored WAV ``pieces`` of ``plan`` as they are produced."""
        self._seal_and_put(
            item,
            PieceReader(_translated(pieces)),
            size=plan.plaintext_size,
            audio_format=plan.audio_format,
            content_type="audio/wav",
            frames=plan.frames,
            sample_rate=plan.sample_rate,
            channels=plan.channels,
            redacted_ms=cuts.silenced_ms,
        )

    def _cuts(self, event: RecordingEvent, frames: int, rate: int, channels: int) -> SilencePlan:
        """The PCI cuts over audio of this layout (see :func:`_check_pauses`)."""
        roles = event.audio.channel_roles
        if roles and len(roles) != channels:
            raise EventRejected(
                str(RejectReason.AUDIO_MISMATCH),
                f"audio.channel_roles names {len(roles)} channel(s), the audio has {channels}",
            )
        _check_pauses(event, frames, rate, channels)
        spans = [(p.start_ms, p.end_ms, p.channels) for p in event.pci_pauses]
        try:
            return SilencePlan.of(spans, sample_rate=rate, channels=channels, frames=frames)
        except AudioError as exc:
            raise EventRejected(str(RejectReason.PCI_OUT_OF_RANGE), str(exc)) from exc

    def _seal_and_put(
        self,
        item: _Prepared,
        plaintext: SupportsRead,
        *,
        size: int,
        audio_format: str,
        content_type: str,
        frames: int,
        sample_rate: int,
        channels: int,
        redacted_ms: int,
    ) -> None:
        """Seal ``size`` bytes of ``plaintext`` and write them to the vault as they are
        sealed; the row of what was stored becomes ``item.row``."""
        event, decision = item.event, item.decision
        assert decision.retention_class is not None and decision.retain_until is not None
        sealing = self.keys.seal_recording_stream(
            recording_id=event.recording_id,
            tenant=event.tenant,
            subject_ref=item.subject_ref,
            plaintext=plaintext,
            size=size,
            content_type=content_type,
            subject_key_record=item.subject_key,
        )
        key = object_key_for(self.keys, event.tenant, event.recording_id)
        tags = recording_tags(
            purposes=decision.purposes,
            retention_class=decision.retention_class,
            retain_until=decision.retain_until,
            held=False,
        )
        # The pieces raise (sha256, truncation) before the object is complete: the vault
        # then discards what it wrote, and the event is dead-lettered.
        written = self.vault.put(key, sealing, tags=tags, durable=False)
        self.metrics.pci_redacted_seconds.inc(redacted_ms / 1000)
        item.row = self._row(
            item,
            key=key,
            subject_key_id=sealing.subject_key_id,
            ciphertext_sha256=sealing.sha256,
            stored_size=sealing.size,
            audio_bytes=size,
            audio_format=audio_format,
            duration_ms=frames * 1000 // sample_rate,
            sample_rate=sample_rate,
            channels=channels,
            redacted_ms=redacted_ms,
            version=written.version_id,
        )

    def _row(
        self,
        item: _Prepared,
        *,
        key: str,
        subject_key_id: str,
        ciphertext_sha256: str,
        stored_size: int,
        audio_bytes: int,
        audio_format: str,
        duration_ms: int,
        sample_rate: int,
        channels: int,
        redacted_ms: int,
        version: str | None,
    ) -> RecordingRow:
        event, decision = item.event, item.decision
        assert decision.retention_class is not None and decision.retain_until is not None
        return RecordingRow(
            recording_id=event.recording_id,
            call_id=event.call_id,
            tenant=event.tenant,
            subject_ref=item.subject_ref,
            agent_id=event.agent_id,
            queue=event.queue,
            direction=event.direction,
            started_at=event.started_at,
            ended_at=event.ended_at,
            duration_ms=duration_ms,
            consent=event.consent,
            purposes=decision.purposes,
            retention_class=decision.retention_class,
            retain_until=decision.retain_until,
            object_key=key,
            subject_key_id=subject_key_id,
            ciphertext_sha256=ciphertext_sha256,
            stored_size=stored_size,
            audio_bytes=audio_bytes,
            audio_format=audio_format,
            sample_rate=sample_rate,
            channels=channels,
            channel_roles=event.audio.channel_roles,
            pci_pauses=tuple(
                {
                    "start_ms": p.start_ms,
                    "end_ms": p.end_ms,
                    "channels": list(p.channels or range(channels)),
                }
                for p in event.pci_pauses
            ),
            pci_redacted_ms=redacted_ms,
            created_at=self.clock(),
            restricted=item.restricted,
            object_version=version,
        )

    def _prepare_whole(self, item: _Prepared) -> _Prepared:
        """Legs (joined into one recording) and WAVs of an unusual layout: decoded,
        silenced and encoded as the canonical WAV in memory."""
        event = item.event
        with self.metrics.stage("read"):
            files = self._read_verified(item)
        item.bytes_in = sum(len(data) for data in files)
        with self.metrics.stage("decode"):
            audio = self._decode(event, files)
            del files
        with self.metrics.stage("redact"):
            spans = [(p.start_ms, p.end_ms, p.channels) for p in event.pci_pauses]
            _check_pauses(event, audio.frames, audio.sample_rate, audio.channels)
            try:
                audio, redacted_ms = silence(audio, spans)
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
                content_type="audio/wav",
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
        item.row = self._row(
            item,
            key=key,
            subject_key_id=sealed.subject_key_id,
            ciphertext_sha256=hashlib.sha256(sealed.blob).hexdigest(),
            stored_size=len(sealed.blob),
            audio_bytes=len(wav),
            audio_format=audio_format,
            duration_ms=audio.duration_ms,
            sample_rate=audio.sample_rate,
            channels=audio.channels,
            redacted_ms=redacted_ms,
            version=written.version_id,
        )
        return item

    def _decode(self, event: RecordingEvent, files: list[bytes]) -> DecodedAudio:
        """The event's audio as one recording: each file decoded (bounded by the declared
        call; headerless audio at the declared layout), legs joined channel by channel."""
        limit = DecodeLimit.for_call(event.duration_ms, max_pcm_bytes=self.max_pcm_bytes)
        declared = event.audio
        # Each leg is one mono direction: the declared channel count is the recording's.
        layout = Layout(declared.sample_rate, None if declared.legs else declared.channels)
        try:
            decoded = [decode(data, declared.format, limit=limit, layout=layout) for data in files]
            audio = join_legs(decoded) if declared.legs else decoded[0]
            if declared.channel_roles and len(declared.channel_roles) != audio.channels:
                raise AudioMismatch(
                    f"audio.channel_roles names {len(declared.channel_roles)} channel(s), "
                    f"the audio has {audio.channels}"
                )
            limit.check(audio.frames, audio.sample_rate, audio.channels)
        except AudioError as exc:
            raise _audio_rejection(exc) from exc
        return audio

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
            self._check_verified(item)
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
            self._discard_landing(item)
            self.claims.set_state(item.release_rows(), ClaimState.RELEASED)
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

    def _discard_landing(self, item: _Prepared) -> None:
        for ref in item.refs[1:]:  # the other legs first: the sidecar goes last
            self.landing.delete(ref)
        self.landing.discard(item.ref)  # the first file, then its sidecar, resolved once

    def _discard_duplicate(self, item: _Prepared, claim: LandingClaim | None) -> None:
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
