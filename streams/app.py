"""The faust-streaming application: topics, the ingest agent, the audit publisher,
the landing reconciler and the HTTP server, all in one worker process.

Agents stay thin: the ingest agent buffers events (``noack_take``, acked only after
the batch body finished), hands them to :class:`~streams.ingest.IngestPipeline` in a
thread, records and publishes DLQ entries (:mod:`streams.dlq`), and only then lets
faust ack (commit) the offsets.

Failures are typed (:mod:`callvault.errors`): an infrastructure failure (vault,
catalog, keyring, landing store or broker unavailable) is retried with capped,
jittered exponential back-off (0.5 s doubling to ``CALLVAULT_RETRY_CAP_SECONDS``, 5 s
by default; each pause drawn between half and all of it) inside the body and counted in
``callvault_ingest_infrastructure_retries_total{backend}``, so the offsets of an
unprocessed batch are never committed and nothing is skipped; anything else is
permanent for the event that caused it and comes back from the pipeline as a DLQ
outcome, so one poison event never stops the stream. Log lines carry keyed
references (:mod:`streams.refs`), never recording ids or landing URIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import faust
from aiohttp import web
from mode import Service

from callvault.errors import CallvaultError, StartupError, is_unavailable, unavailable_backend
from storage.catalog.claims import ClaimState
from storage.catalog.leases import CHECKPOINT_LEASE, RECONCILER_LEASE, SWEEP_LEASE, LeaseStore
from storage.catalog.outbox import OutboxCursors
from storage.checkpoints import Checkpoint, CheckpointError
from storage.errors import LandingError, LeaseHeld
from streams._faust import task, timer
from streams.dlq import DeadLetterQueue, DlqMessage, DlqSource
from streams.endoflife import EndOfLife
from streams.evaluations import EvaluationService
from streams.events import RejectReason
from streams.governance import GovernanceCollector, refresh_worker_gauges
from streams.http import WebContext, build_web_app
from streams.http.auth import TokenVerifier, local_tokens
from streams.http.oidc import verifier_for
from streams.ingest import IngestOutcome, IngestPipeline, clear_work_folder, work_folder
from streams.janitor import JanitorReport, LandingJanitor
from streams.metrics import Metrics
from streams.outbox import ROUND_MAX, AuditPublisher, KafkaTopicTail
from streams.privacy.disclose import remove_legacy_exports
from streams.privacy.reapply import reapply_erasures
from streams.readiness import Readiness
from streams.refs import landing_key, redact_text
from streams.services import Services
from streams.sources import CONNECT_CTR_TOPIC, S3_EVENTS_TOPIC, SourceOutcome, Sources
from streams.topics import declare_topics

__all__ = ["Worker", "TOPICS", "bind_web", "MAX_ANNOUNCEMENTS"]

T = TypeVar("T")

log = logging.getLogger(__name__)

TOPICS = {
    "recordings": "callvault.recordings",
    "privacy": "callvault.privacy-requests",
    "audit": "callvault.audit",
    "dlq": "callvault.dlq",
    "s3-events": S3_EVENTS_TOPIC,
    "connect-ctr": CONNECT_CTR_TOPIC,
}
BATCH_MAX = 256
BATCH_WITHIN = 0.2
#: Partitions of the input topics unless the settings say otherwise (CALLVAULT_PARTITIONS).
PARTITIONS = 8
#: How often the reconciler re-announces one landing file at most (with back-off).
MAX_ANNOUNCEMENTS = 3
RETRY_FIRST = 0.5
READY_INTERVAL = 2.0
#: A singleton's lease lasts this many of its intervals (at least LEASE_MIN_SECONDS): the
#: holder renews it on every tick, another worker takes over this long after it died.
LEASE_INTERVALS = 3
LEASE_MIN_SECONDS = 30.0
#: How often the audit checkpoint writer looks whether one is due (seconds).
CHECKPOINT_INTERVAL = 5.0


def bind_web(host: str, port: int) -> socket.socket:
    """The web server's listening socket, bound before anything else starts, so that a
    taken or invalid port is one clear error at start-up, not a crash later.

    Raises:
        StartupError: the address cannot be bound.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, OverflowError) as exc:
        raise StartupError(f"cannot use web address {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno == 98 else f"cannot be bound ({exc.strerror})"
        raise StartupError(
            f"web port {host}:{port} {reason} (CALLVAULT_WEB_HOST / CALLVAULT_WEB_PORT)"
        ) from None
    return sock


class Worker:
    """One callvault worker: the faust app plus the collaborators it drives."""

    def __init__(
        self,
        services: Services,
        *,
        broker_url: str,
        metrics: Metrics | None = None,
        tokens: TokenVerifier | None = None,
        web_port: int | None = None,
        reconcile_interval: float | None = None,
        sweep_interval: float | None = None,
        web_socket: socket.socket | None = None,
        retry_first: float = RETRY_FIRST,
        retry_cap: float | None = None,
    ) -> None:
        self.services = services
        self.metrics = metrics or Metrics()
        self.broker_url = broker_url
        self.started_at = time.monotonic()
        settings = services.config
        self.tokens = tokens or verifier_for(
            services.policy, local_tokens(services.keyring, services.policy)
        )
        self.web_port = settings.web_port if web_port is None else web_port
        self.reconcile_interval = reconcile_interval or max(
            5.0, settings.reconcile_after_seconds / 4
        )
        self.web_socket = web_socket
        self.retry_first = retry_first
        self.retry_cap = settings.retry_cap_seconds if retry_cap is None else retry_cap
        self.sweep_interval = sweep_interval or 60.0
        partitions = self.partitions = settings.partitions or PARTITIONS
        # The retention sweep and the landing reconciler run in one worker at a time,
        # whatever the number of workers and hosts: each tick takes (or renews) a lease in
        # the catalog first (storage/catalog/leases.py).
        self.leases = LeaseStore(services.catalog.database, services.clock)
        self.lease_holder = f"{settings.worker_id}:{os.getpid()}"
        self._unusable_landing = 0  # landing entries the last reconcile pass could not use
        self._held_leases: set[str] = set()
        self._singleton_locks: dict[str, asyncio.Lock] = {}
        self._lease_lost: dict[str, threading.Event] = {}
        #: Renewals of a singleton's lease per ttl (tests raise it to notice a loss soon).
        self.lease_renewals = 3.0
        self._checkpoints = services.audit_checkpoints()
        self._checkpoint_refusal = ""

        self.app = faust.App(
            "callvault",
            broker=broker_url,
            store="memory://",
            autodiscover=False,
            web_enabled=False,
            topic_partitions=partitions,
            topic_replication_factor=1,
            broker_session_timeout=6,
            broker_rebalance_timeout=6,
            broker_heartbeat_interval=1,
            broker_commit_interval=0.5,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            producer_request_timeout=30.0,
            stream_wait_empty=False,
        )
        self.recordings = self.app.topic(
            TOPICS["recordings"], value_serializer="raw", partitions=partitions
        )
        self.privacy_requests = self.app.topic(
            TOPICS["privacy"], value_serializer="raw", partitions=partitions
        )
        self.audit_topic = self.app.topic(TOPICS["audit"], value_serializer="raw", partitions=1)
        self.dlq = self.app.topic(TOPICS["dlq"], value_serializer="raw", partitions=1)
        self.s3_events = self.app.topic(
            TOPICS["s3-events"], key_serializer="raw", value_serializer="raw", partitions=partitions
        )
        self.connect_ctr = self.app.topic(
            TOPICS["connect-ctr"], value_serializer="raw", partitions=partitions
        )
        self.sources = Sources(
            bindings=services.sources,
            landing=services.landing,
            catalog=services.catalog,
            metrics=self.metrics,
            clock=services.clock,
            max_bytes=settings.max_audio_bytes,
        )
        self.pipeline = IngestPipeline(
            landing=services.landing,
            vault=services.vault,
            keys=services.keys,
            catalog=services.catalog,
            audit=services.audit,
            policy=services.policy,
            metrics=self.metrics,
            actor=f"worker:{settings.worker_id}",
            clock=services.clock,
            restrictions=services.restrictions,
            claims=services.claims,
            window=settings.call_window,
            work_dir=work_folder(settings.data_dir),
        )
        self.dead_letters = DeadLetterQueue.from_services(services)
        self.janitor = LandingJanitor(services)
        self._audit_wakeup = asyncio.Event()
        self.audit_publisher = AuditPublisher(
            services.audit,
            OutboxCursors(services.catalog.database, clock=services.clock),
            lambda: self.audit_topic.send,
            holder=f"{settings.worker_id}:{os.getpid()}:{id(self):x}",
            metrics=self.metrics,
            tail=KafkaTopicTail(kafka_bootstrap(broker_url), TOPICS["audit"]),
        )
        self._recordings_lag: int | None = None
        self._outages: set[str] = set()
        self._broker_tail = KafkaTopicTail(
            kafka_bootstrap(broker_url), TOPICS["audit"], request_timeout=3.0
        )
        self.readiness = Readiness(
            services,
            self.metrics,
            broker_probe=self._broker_tail.end_offset,
            lag=lambda: self._recordings_lag,
        )
        self.endoflife = EndOfLife.from_services(
            services, actor=f"worker:{settings.worker_id}", metrics=self.metrics
        )
        self.evaluations = EvaluationService(services, self.metrics)
        self.governance = GovernanceCollector(
            catalog=services.catalog,
            keyring=services.keyring,
            metrics=self.metrics,
            retention_classes=services.policy.retention_classes,
            clock=services.clock,
            held=self.endoflife.held_filter,
        )
        self._register()

    # -- wiring ---------------------------------------------------------------------------
    def _register(self) -> None:
        app = self.app

        @app.agent(self.recordings, name="ingest")
        async def ingest(stream: faust.StreamT[bytes]) -> None:
            # noack_take never acks by itself: a batch is acked (and its offsets become
            # committable) only after it was processed, never on an error or a
            # cancellation (faust's StreamT type stub does not declare noack_take).
            batches = stream.noack_take(BATCH_MAX, within=BATCH_WITHIN)  # type: ignore[attr-defined]
            async for events in batches:
                await self._ingest_batch(events)
                for event in events:
                    await stream.ack(event)

        @app.agent(self.s3_events, name="s3-events")
        async def s3_events(stream: faust.StreamT[bytes]) -> None:
            batches = stream.noack_take(BATCH_MAX, within=BATCH_WITHIN)  # type: ignore[attr-defined]
            async for events in batches:
                for event in events:  # one at a time: each acked once its outcome is out
                    handle = functools.partial(self.sources.on_s3_message, event.key, event.value)
                    await self._source_message(event, handle)
                    await stream.ack(event)

        @app.agent(self.connect_ctr, name="connect-ctr")
        async def connect_ctr(stream: faust.StreamT[bytes]) -> None:
            batches = stream.noack_take(BATCH_MAX, within=BATCH_WITHIN)  # type: ignore[attr-defined]
            async for events in batches:
                for event in events:
                    handle = functools.partial(self._ctr_outcomes, event.value)
                    await self._source_message(event, handle)
                    await stream.ack(event)

        @task(app)
        async def publish_audit() -> None:
            await self.run_audit_publisher()

        @timer(app, CHECKPOINT_INTERVAL, name="audit-checkpoints")
        async def audit_checkpoints() -> None:
            # one signer across every process and host (storage.checkpoints)
            await self.as_singleton(CHECKPOINT_LEASE, CHECKPOINT_INTERVAL, self.checkpoint_audit)

        @app.agent(self.privacy_requests, name="privacy-requests")
        async def privacy_requests(stream: faust.StreamT[bytes]) -> None:
            async for payload in stream:
                await asyncio.get_running_loop().run_in_executor(
                    None, self.endoflife.handle_message, payload
                )
                await self._flush_audit()

        @timer(app, self.sweep_interval, name="retention-sweep")
        async def retention_sweep() -> None:
            await self.as_singleton(SWEEP_LEASE, self.sweep_interval, self.run_sweep)

        @task(app)
        async def retention_on_start() -> None:
            # a changed policy reschedules at once (in the worker holding the lease)
            await self.as_singleton(SWEEP_LEASE, self.sweep_interval, self.run_sweep)

        @timer(app, self.reconcile_interval, name="landing-reconciler")
        async def reconcile() -> None:
            await self.as_singleton(
                RECONCILER_LEASE, self.reconcile_interval, self.reconcile_landing
            )

        @timer(app, max(1, self.services.config.metrics_interval_seconds), name="governance-gauges")
        async def governance_gauges() -> None:
            await refresh_worker_gauges(
                self.governance, app, self.metrics,
                recordings_topic=TOPICS["recordings"], topics=set(TOPICS.values()),
                on_lag=self._lag_seen,
            )  # fmt: skip

        @timer(app, READY_INTERVAL, name="readiness")
        async def readiness() -> None:
            await self.readiness.refresh()

        @timer(app, max(1, self.services.config.metrics_interval_seconds), name="qa-evaluations")
        async def qa_evaluations() -> None:
            await self.tend_evaluations()

        worker = self

        class WebServer(Service):
            runner: web.AppRunner | None = None

            async def on_start(self) -> None:
                ctx = WebContext.over(
                    worker.services,
                    metrics=worker.metrics,
                    tokens=worker.tokens,
                    endoflife=worker.endoflife,
                    evaluations=worker.evaluations,
                    publish_recording=worker.publish_recording,
                    health=worker.health,
                    readiness=worker.readiness.report,
                    sources=worker.sources,
                    publish_s3_event=worker.publish_s3_event,
                )
                self.runner = web.AppRunner(build_web_app(ctx), access_log=None)
                await self.runner.setup()
                site: web.BaseSite
                if worker.web_socket is not None:
                    site = web.SockSite(self.runner, worker.web_socket)
                else:
                    site = web.TCPSite(
                        self.runner, worker.services.config.web_host, worker.web_port
                    )
                await site.start()
                log.info(
                    "web server on http://%s:%d", worker.services.config.web_host, worker.web_port
                )

            async def on_stop(self) -> None:
                if self.runner is not None:
                    await self.runner.cleanup()
                await worker._broker_tail.close()
                worker.readiness.close()

        class LeaseRelease(Service):
            async def on_stop(self) -> None:  # a clean stop hands the singletons on at once
                await worker.release_leases()

        app.service(WebServer)
        app.service(LeaseRelease)

    # -- behaviour ------------------------------------------------------------------------
    def _lag_seen(self, lag: int | None) -> None:
        self._recordings_lag = lag

    def _pause(self, delay: float) -> float:
        """The pause before the next retry: between half and all of ``delay`` (jitter, so
        that workers cut off together do not come back together)."""
        return delay * (0.5 + random.random() / 2)

    async def _until_done(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call`` in a thread until it succeeds; infrastructure failures are retried
        with capped, jittered back-off (never skipped), anything else is raised."""
        loop = asyncio.get_running_loop()
        delay = self.retry_first
        while True:
            try:
                return await loop.run_in_executor(None, call)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                pause = self._pause(delay)
                self._retrying(what, unavailable_backend(exc), exc, pause)
            await self._retry_pause(pause)
            delay = min(delay * 2, self.retry_cap)

    async def _retry_pause(self, pause: float) -> None:
        """Sleep ``pause`` seconds, or less when readiness sees a failing backend answer
        again (so recovery does not wait out the back-off)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.readiness.recovered(), pause)

    def _retrying(self, what: str, backend: str, exc: BaseException, delay: float) -> None:
        self.metrics.infrastructure_retries.labels(backend).inc()
        self.metrics.ingest_batch_failures.inc()
        self.readiness.write_failed(exc)
        log.error(
            "%s: %s unavailable (%s: %s); retrying in %.1fs",
            what,
            backend,
            type(exc).__name__,
            redact_text(str(exc)),
            delay,
        )

    async def _ingest_batch(self, events: Sequence[Any]) -> list[IngestOutcome]:
        """Process one batch of faust events: stored, or dead-lettered, never skipped."""
        payloads = [event.value for event in events]
        try:
            outcomes = await self._until_done(
                "ingest batch", lambda: self.pipeline.process_batch(payloads)
            )
        except Exception as exc:  # the pipeline raises nothing but infrastructure; still:
            log.error("ingest batch failed (%s); dead-lettering it", type(exc).__name__)
            outcomes = [
                IngestOutcome("dlq", None, str(RejectReason.INTERNAL_ERROR), type(exc).__name__,
                              payload=payload if isinstance(payload, bytes) else None)
                for payload in payloads
            ]  # fmt: skip
        dead = [
            (outcome, _source(event, self.recordings.get_topic_name()))
            for event, outcome in zip(events, outcomes, strict=True)
            if outcome.status == "dlq"
        ]
        if dead:
            await self._dead_letter(dead)
        self.readiness.progressed()
        await self._flush_audit()
        return outcomes

    async def _dead_letter(
        self,
        dead: list[tuple[IngestOutcome, DlqSource]],
        customers: list[tuple[str, str] | None] | None = None,
    ) -> None:
        """Record (sealed, in the catalog and, when large, the vault) and publish;
        ``customers``: see :meth:`DeadLetterQueue.record`."""
        try:
            messages = await self._until_done(
                "dead letters", lambda: self.dead_letters.record(dead, customers)
            )
        except Exception as exc:  # not infrastructure: the rejection is audited, audio kept
            log.error("could not record %d dead letters (%s)", len(dead), type(exc).__name__)
            return
        for message in messages:
            await self._publish_dead_letter(message)
        try:
            count = await asyncio.get_running_loop().run_in_executor(
                None, self.services.dead_letters.open_count
            )
            self.metrics.dlq_open.set(count)
        except CallvaultError:
            pass  # a gauge; the next entry refreshes it

    async def _publish_dead_letter(self, message: DlqMessage) -> None:
        """Produce one entry and wait for the broker's acknowledgement; a broker failure
        is retried with back-off (the entry is already in the catalog)."""
        from aiokafka.errors import KafkaError, MessageSizeTooLargeError

        delay = self.retry_first
        while True:
            try:
                sent = await self.dlq.send(
                    key=message.key, value=message.value, headers=message.headers
                )
                if inspect.isawaitable(sent):
                    await sent  # the broker's acknowledgement
                return
            except MessageSizeTooLargeError:
                # Cannot happen for an entry of at most INLINE_MAX (+ headers); if a broker
                # is configured smaller, the catalog still has the entry.
                log.error("dead letter %s too large for the broker", message.header("cv-dlq-id"))
                return
            except (TimeoutError, KafkaError, OSError) as exc:
                pause = self._pause(delay)
                self._retrying("dead letter", "broker", exc, pause)
            await self._retry_pause(pause)
            delay = min(delay * 2, self.retry_cap)

    def _ctr_outcomes(self, value: bytes) -> list[SourceOutcome]:
        return [self.sources.on_ctr_message(value)]

    async def _source_message(
        self, event: Any, handle: Callable[[], list[SourceOutcome]]
    ) -> list[SourceOutcome]:
        """One message of a source topic: mapped events produced to
        ``callvault.recordings``, refusals dead-lettered (the notification kept sealed:
        object keys and CTRs carry phone numbers; nothing it names was deleted). An
        infrastructure failure is retried with back-off (the message is not acked
        meanwhile, never skipped); any other failure dead-letters the message."""
        topic = str(getattr(getattr(event, "message", None), "topic", "")) or S3_EVENTS_TOPIC
        try:
            outcomes = await self._until_done("source message", handle)
        except Exception as exc:  # not infrastructure: pinned on this message
            log.error("source message failed unexpectedly (%s)", type(exc).__name__)
            outcomes = [
                SourceOutcome("source", "refused", str(RejectReason.INTERNAL_ERROR),
                              type(exc).__name__)
            ]  # fmt: skip
        refused: list[tuple[IngestOutcome, DlqSource]] = []
        customers: list[tuple[str, str] | None] = []
        for outcome in outcomes:
            if outcome.status == "mapped" and outcome.recording_id:
                await self.publish_recording(outcome.payload, outcome.recording_id)
            elif outcome.status == "refused":
                dead = IngestOutcome(
                    "dlq",
                    outcome.recording_id,
                    reason=outcome.reason,
                    detail=f"{outcome.source}: {outcome.detail}",
                    payload=event.value if isinstance(event.value, bytes) else None,
                    tenant=outcome.customer[0] if outcome.customer else None,
                )
                refused.append((dead, _source(event, topic)))
                customers.append(outcome.customer)  # sealed under that customer's key
        if refused:
            await self._dead_letter(refused, customers)
        return outcomes

    async def publish_s3_event(self, notification: bytes, key: str) -> None:
        await self.s3_events.send(key=key.encode(), value=notification)

    async def _flush_audit(self) -> None:
        """Wake the audit publisher (it runs on its own: nothing waits for the topic)."""
        self._audit_wakeup.set()

    async def run_audit_publisher(self, interval: float = 1.0) -> None:
        """The audit outbox (:mod:`streams.outbox`): a round at least every ``interval``
        seconds, and at once after new audit records; until cancelled."""
        try:
            while True:
                self._audit_wakeup.clear()
                sent = await self.audit_publisher.publish()
                if sent >= ROUND_MAX:
                    continue  # more waiting
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._audit_wakeup.wait(), interval)
        finally:
            await self.audit_publisher.stop()

    async def checkpoint_audit(self) -> Checkpoint | None:
        """Sign a checkpoint of the audit head when one is due (storage.checkpoints),
        stored in the vault and handed to the audit outbox (published right after the
        record it pins; one the broker lost stays in the vault). A log that no longer matches
        the last checkpoint is reported (error log), never signed."""
        loop = asyncio.get_running_loop()
        now = self.services.clock()
        try:
            written = await loop.run_in_executor(None, self._checkpoints.write_due, now)
        except CheckpointError as exc:
            if str(exc) != self._checkpoint_refusal:  # once per problem, not every tick
                log.error("audit checkpoint refused: %s", exc)
                self._checkpoint_refusal = str(exc)
            return None
        except CallvaultError as exc:
            log.warning("audit checkpoint not written (%s); retried", type(exc).__name__)
            return None
        if written is not None:
            self._checkpoint_refusal = ""
            body = {"checkpoint": written.to_json()}
            # through the outbox: right after the record it pins, in the topic's order
            self.audit_publisher.add_checkpoint(
                written.seq, json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
            )
            await self._flush_audit()
        return written

    async def publish_recording(self, event: bytes, recording_id: str) -> None:
        # Keyed by recording id: every (re)delivery of one recording lands on the same
        # partition, so two workers never process it at the same time.
        await self.recordings.send(key=recording_id.encode(), value=event)

    async def as_singleton(
        self, name: str, interval: float, body: Callable[[], Awaitable[Any]]
    ) -> bool:
        """Run ``body`` if this worker holds (or can take) the lease ``name``, renewed
        while it runs; False (and nothing run) when another worker holds it, the catalog
        cannot tell (the next tick asks again) or the job of ``name`` still runs in this
        worker (a tick never starts a second one beside it).

        When a renewal finds the lease taken by another worker, the body is stopped:
        its task is cancelled and :meth:`lease_lost` turns true for work running off
        the event loop, which checks it between batches (the retention sweep)."""
        lock = self._singleton_locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            log.debug("%s still runs in this worker; this tick skipped", name)
            return False
        async with lock:
            return await self._run_singleton(name, interval, body)

    def lease_lost(self, name: str) -> bool:
        """True while the job of lease ``name`` runs after this worker lost the lease."""
        lost = self._lease_lost.get(name)
        return lost is not None and lost.is_set()

    async def _run_singleton(
        self, name: str, interval: float, body: Callable[[], Awaitable[Any]]
    ) -> bool:
        ttl = timedelta(seconds=max(LEASE_MIN_SECONDS, LEASE_INTERVALS * interval))
        loop = asyncio.get_running_loop()
        acquire = functools.partial(self.leases.acquire, name, self.lease_holder, ttl)
        try:
            if not await loop.run_in_executor(None, acquire):
                return False
        except CallvaultError as exc:
            log.warning("lease %s not taken (%s); skipping this run", name, exc)
            return False
        self._held_leases.add(name)
        lost = self._lease_lost[name] = threading.Event()
        job = asyncio.ensure_future(body())

        async def renew() -> None:
            while True:
                await asyncio.sleep(ttl.total_seconds() / self.lease_renewals)
                try:
                    renewed = await loop.run_in_executor(None, acquire)
                except CallvaultError:
                    continue  # the catalog cannot tell: ours until it expires
                if not renewed:
                    log.error("lease %s lost while its job runs: stopping the job", name)
                    lost.set()
                    self._held_leases.discard(name)
                    job.cancel()
                    return

        renewing = asyncio.ensure_future(renew())
        try:
            await job
        except asyncio.CancelledError:
            if not lost.is_set():
                raise  # the worker stops
            return False
        finally:
            renewing.cancel()
        return not lost.is_set()

    async def release_leases(self) -> None:
        """Release the leases this worker holds (a clean stop)."""
        loop = asyncio.get_running_loop()
        for name in sorted(self._held_leases):
            with contextlib.suppress(CallvaultError):
                await loop.run_in_executor(None, self.leases.release, name, self.lease_holder)
        self._held_leases.clear()

    async def reconcile_landing(self) -> int:
        """One pass of the landing reconciler (what its timer calls; a lease may wrap it).

        First the janitor (:mod:`streams.janitor`) removes what stored, declined or
        dead-lettered recordings left behind (audio after the vault object verified,
        sidecars without audio); then landing audio whose event was lost (e.g. the
        broker lost its topics) is re-announced: stale files with a sidecar event and no
        catalog entry. A file whose event was dead-lettered is never re-announced; any
        other file at most :data:`MAX_ANNOUNCEMENTS` times, the reconcile age doubling
        between two (counted in the catalog, so restarts do not reset it). Returns how
        many were re-announced; infrastructure failures are logged (the next tick
        retries)."""
        try:
            return await self._reconcile_landing()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.error(
                "landing reconciler: %s unavailable (%s); the next pass retries",
                unavailable_backend(exc),
                type(exc).__name__,
            )
            return 0

    async def _reconcile_landing(self) -> int:
        services = self.services
        loop = asyncio.get_running_loop()
        older = float(services.config.reconcile_after_seconds)

        def clean() -> JanitorReport:
            stale = services.landing.iter_stale(older, orphan_sidecars=True)
            return self.janitor.sweep(stale)

        report = await loop.run_in_executor(None, clean)
        self.metrics.landing_cleaned.labels("audio").inc(report.removed_audio)
        self.metrics.landing_cleaned.labels("sidecar").inc(report.removed_sidecars)
        self.metrics.landing_orphan_sidecars.set(report.kept_sidecars)
        unusable = services.landing.unusable_entries
        if unusable and unusable != self._unusable_landing:  # said when it changes
            log.warning(
                "%d landing entries cannot be ingested as they are (a FIFO, socket or "
                "symlink, or a name with control characters or bytes that are not UTF-8): "
                "outside governance until an operator moves or renames them",
                unusable,
            )
        self._unusable_landing = unusable
        backlog = report.backlog + unusable
        sent = 0
        for item in report.announceable:
            try:
                event = await loop.run_in_executor(None, self._announceable, item.uri, older)
            except LandingError as exc:
                if is_unavailable(exc):
                    raise
                log.warning("landing sidecar unusable (%s); not re-announced", type(exc).__name__)
                backlog += 1
                continue
            backlog += 1  # until its recording is stored
            if event is None:
                continue
            rid = event["recording_id"]
            await self.publish_recording(json.dumps(event).encode(), rid)
            key = landing_key(services.keyring, item.uri)
            await loop.run_in_executor(None, services.claims.announced, key)
            self.metrics.reconciled.inc()
            sent += 1
        self.metrics.landing_backlog.set(backlog)
        if sent:
            log.warning("re-announced %d landing recordings with no catalog entry", sent)
        return sent

    def _announceable(self, uri: str, older: float) -> dict[str, Any] | None:
        """The sidecar event of ``uri`` if the file may be re-announced now (blocking)."""
        services = self.services
        key = landing_key(services.keyring, uri)
        claim = services.claims.get([key]).get(key)
        if claim is not None and claim.state is ClaimState.DEAD_LETTERED:
            return None  # an operator decides (callvault dlq)
        if not services.claims.may_announce(
            key, limit=MAX_ANNOUNCEMENTS, backoff=timedelta(seconds=older)
        ):
            return None
        event = services.landing.read_sidecar(uri)
        rid = event.get("recording_id") if isinstance(event, dict) else None
        if not isinstance(rid, str) or not rid:
            return None  # a sidecar without an id cannot be re-announced; the backlog shows it
        if rid in services.catalog.recording_ids_present([rid]):
            return None
        if services.dead_letters.list(recording_id=rid, limit=1):
            return None  # its event was dead-lettered (maybe before its audio was verified)
        return event

    async def run_sweep(self) -> None:
        """One retention sweep off the event loop (errors logged once per outage; the next
        tick retries)."""
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(self.endoflife.sweep_and_resume, progress=self._sweeping)
            )
        except CallvaultError as exc:
            self._failing("retention sweep", exc)
        else:
            self._passing("retention sweep")
        await self._flush_audit()

    def _sweeping(self, done: int) -> None:
        """Between two batches of the sweep: stop once the sweep's lease was lost."""
        del done
        if self.lease_lost(SWEEP_LEASE):
            raise LeaseHeld(f"the {SWEEP_LEASE} lease was lost: sweep stopped between batches")

    def _failing(self, what: str, exc: BaseException) -> None:
        """Log a periodic task's failure, once until it passes again (an outage of the
        catalog would otherwise write the same line every tick)."""
        if what in self._outages:
            log.debug("%s failed again: %s", what, exc)
            return
        self._outages.add(what)
        log.error("%s failed: %s (logged once until it works again)", what, redact_text(str(exc)))

    def _passing(self, what: str) -> None:
        if what in self._outages:
            self._outages.discard(what)
            log.warning("%s works again", what)

    async def tend_evaluations(self) -> None:
        """Purge scores and notes of recordings no longer stored; refresh the assignment
        gauges (errors logged; the next tick retries)."""

        def tend() -> None:
            self.evaluations.purge(actor=self.services.config.actor)
            self.evaluations.refresh_metrics()

        try:
            await asyncio.get_running_loop().run_in_executor(None, tend)
        except CallvaultError as exc:
            self._failing("evaluation housekeeping", exc)
        else:
            self._passing("evaluation housekeeping")
        await self._flush_audit()

    def health(self) -> dict[str, Any]:
        """Liveness (``/healthz``): answered on the event loop without any I/O, so it
        answers exactly when the loop does; what the worker depends on is readiness."""
        return {
            "status": "ok",
            "worker": self.services.config.worker_id,
            "uptime_seconds": round(time.monotonic() - self.started_at, 1),
        }

    def declare_topics(self) -> dict[str, int]:
        """Create the topics that do not exist yet with their partition counts (the input
        topics: CALLVAULT_PARTITIONS; audit and DLQ: 1) before faust subscribes, which
        would let the broker auto-create them with its own default; existing topics keep
        theirs (streams/topics.py). Returns the counts the broker reports."""
        wanted = {
            topic.get_topic_name(): topic.partitions or self.partitions
            for topic in (
                self.recordings, self.privacy_requests, self.audit_topic, self.dlq,
                self.s3_events, self.connect_ctr,
            )
        }  # fmt: skip
        bootstrap = ",".join(part.removeprefix("kafka://") for part in self.broker_url.split(","))
        return declare_topics(bootstrap, wanted)

    def run(self) -> int:
        """Re-apply the erasure journal, then run the worker until SIGINT/SIGTERM (blocks);
        return the exit status (0 after a clean stop, non-zero when the worker crashed).

        Raises:
            CallvaultError: the erasure journal could not be re-applied (nothing started).
        """
        # faust imports its Kafka driver lazily, on the event loop (about 370 ms that
        # block every other callback): import it before the loop starts
        import faust.transport.drivers.aiokafka  # noqa: F401
        from faust.worker import Worker as FaustWorker

        # Before anything is served: a catalog restored from an older backup must not
        # bring an erased customer back (storage.erasures). A failure stops the start.
        reapply_erasures(self.services, actor=self.services.config.actor)
        remove_legacy_exports(self.services.config.data_dir)
        clear_work_folder(work_folder(self.services.config.data_dir))  # plaintext a kill left
        self.declare_topics()
        level = self.services.config.log_level.lower()
        worker = FaustWorker(
            self.app,
            loglevel={"warning": "warn"}.get(level, level),
            quiet=True,
            redirect_stdouts=False,
        )
        # No terminal spinner: at warning level and above faust would hang it on the
        # root logger and set that to DEBUG for good, so every debug call of aiokafka,
        # faust and mode (several per produced batch) built a record only to drop it.
        worker.spinner = None
        try:
            worker.execute_from_commandline()
        except SystemExit as exit_:
            code = exit_.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        return 0  # pragma: no cover - execute_from_commandline always exits


def kafka_bootstrap(broker_url: str) -> str:
    """``kafka://a:9092;kafka://b:9092`` (or ``kafka://a:9092,b:9092``) as a bootstrap
    list for aiokafka: ``a:9092,b:9092``."""
    hosts = []
    for part in broker_url.replace(";", ",").split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        if part:
            hosts.append(part.rstrip("/"))
    return ",".join(hosts)


def _source(event: Any, topic: str) -> DlqSource:
    """Where a faust event came from (its message's topic, partition, offset and key)."""
    message = getattr(event, "message", None)
    if message is None:
        return DlqSource(topic)
    key = getattr(message, "key", None)
    return DlqSource(
        topic=str(getattr(message, "topic", topic)),
        partition=getattr(message, "partition", None),
        offset=getattr(message, "offset", None),
        key=key if isinstance(key, bytes) else None,
    )
