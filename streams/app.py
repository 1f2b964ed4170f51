"""The faust-streaming application: topics, the ingest agent, the audit publisher,
the landing reconciler and the HTTP server, all in one worker process.

Agents stay thin: the ingest agent buffers events (``take_events``, acked only after
the batch body finished), hands them to :class:`~streams.ingest.IngestPipeline` in a
thread, publishes DLQ entries, and only then lets faust ack (commit) the offsets.
An infrastructure failure is retried with back-off inside the body, so offsets of
an unprocessed batch are never committed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from aiohttp import web
from mode import Service

from callvault.errors import CallvaultError
from storage.catalog.audit import entry_json
from storage.types import AuditEntry
from streams._faust import task, timer
from streams.endoflife import EndOfLife
from streams.evaluations import EvaluationService
from streams.governance import GovernanceCollector, refresh_worker_gauges
from streams.http import WebContext, build_web_app
from streams.http.auth import LocalTokens, TokenVerifier
from streams.http.oidc import verifier_for
from streams.ingest import IngestOutcome, IngestPipeline, redacted_event
from streams.metrics import Metrics
from streams.services import Services
from streams.sources import CONNECT_CTR_TOPIC, S3_EVENTS_TOPIC, SourceOutcome, Sources

__all__ = ["Worker", "TOPICS"]

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
PARTITIONS = 4


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
    ) -> None:
        self.services = services
        self.metrics = metrics or Metrics()
        self.broker_url = broker_url
        self.started_at = time.monotonic()
        self._audit_buffer: collections.deque[AuditEntry] = collections.deque()
        settings = services.config
        self.tokens = tokens or verifier_for(
            services.policy, LocalTokens(services.keyring, frozenset(services.policy.roles))
        )
        self.web_port = settings.web_port if web_port is None else web_port
        self.reconcile_interval = reconcile_interval or max(
            5.0, settings.reconcile_after_seconds / 4
        )
        self._reannounced: dict[str, float] = {}
        self.sweep_interval = sweep_interval or 60.0
        services.audit_listeners.append(self._audit_buffer.append)  # publish committed entries

        self.app = faust.App(
            "callvault",
            broker=broker_url,
            store="memory://",
            autodiscover=False,
            web_enabled=False,
            topic_partitions=PARTITIONS,
            topic_replication_factor=1,
            broker_session_timeout=6,
            broker_rebalance_timeout=6,
            broker_heartbeat_interval=1,
            broker_commit_interval=0.5,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            stream_wait_empty=False,
        )
        self.recordings = self.app.topic(
            TOPICS["recordings"], value_serializer="raw", partitions=PARTITIONS
        )
        self.privacy_requests = self.app.topic(
            TOPICS["privacy"], value_serializer="raw", partitions=PARTITIONS
        )
        self.audit_topic = self.app.topic(TOPICS["audit"], value_serializer="raw", partitions=1)
        self.dlq = self.app.topic(TOPICS["dlq"], value_serializer="raw", partitions=1)
        self.s3_events = self.app.topic(
            TOPICS["s3-events"], key_serializer="raw", value_serializer="raw", partitions=PARTITIONS
        )
        self.connect_ctr = self.app.topic(
            TOPICS["connect-ctr"], value_serializer="raw", partitions=PARTITIONS
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

        @timer(app, 1.0, name="audit-publisher")
        async def publish_audit() -> None:
            await self._flush_audit()

        @app.agent(self.privacy_requests, name="privacy-requests")
        async def privacy_requests(stream: faust.StreamT[bytes]) -> None:
            async for payload in stream:
                await asyncio.get_running_loop().run_in_executor(
                    None, self.endoflife.handle_message, payload
                )
                await self._flush_audit()

        @timer(app, self.sweep_interval, name="retention-sweep")
        async def retention_sweep() -> None:
            await self.run_sweep()

        @task(app)
        async def retention_on_start() -> None:
            await self.run_sweep()  # a changed policy reschedules at once

        @timer(app, self.reconcile_interval, name="landing-reconciler")
        async def reconcile() -> None:
            await self.reconcile_landing()

        @timer(app, max(1, self.services.config.metrics_interval_seconds), name="governance-gauges")
        async def governance_gauges() -> None:
            await refresh_worker_gauges(
                self.governance, app, self.metrics,
                recordings_topic=TOPICS["recordings"], topics=set(TOPICS.values()),
            )  # fmt: skip

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
                    sources=worker.sources,
                    publish_s3_event=worker.publish_s3_event,
                )
                self.runner = web.AppRunner(build_web_app(ctx), access_log=None)
                await self.runner.setup()
                site = web.TCPSite(self.runner, worker.services.config.web_host, worker.web_port)
                await site.start()
                log.info(
                    "web server on http://%s:%d", worker.services.config.web_host, worker.web_port
                )

            async def on_stop(self) -> None:
                if self.runner is not None:
                    await self.runner.cleanup()

        app.service(WebServer)

    # -- behaviour ------------------------------------------------------------------------
    async def _ingest_batch(self, events: Sequence[Any]) -> list[IngestOutcome]:
        """Process one batch of faust events; retried until it succeeds (never skipped)."""
        loop = asyncio.get_running_loop()
        payloads = [event.value for event in events]
        delay = 0.5
        while True:
            try:
                outcomes = await loop.run_in_executor(None, self.pipeline.process_batch, payloads)
                break
            except Exception as exc:  # any failure: retry, never skip the batch
                # Infrastructure failure (or a bug): retry the same batch; its offsets are
                # not acked, so nothing past it is committed either.
                log.error(
                    "ingest batch failed (%s: %s); retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self.metrics.ingest_batch_failures.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        for event, outcome in zip(events, outcomes, strict=True):
            if outcome.status == "dlq":
                await self.dlq.send(
                    key=(outcome.recording_id or "").encode() or None,
                    value=self._dlq_message(outcome, getattr(event, "message", None)),
                )
        await self._flush_audit()
        return outcomes

    def _ctr_outcomes(self, value: bytes) -> list[SourceOutcome]:
        return [self.sources.on_ctr_message(value)]

    async def _source_message(
        self, event: Any, handle: Callable[[], list[SourceOutcome]]
    ) -> list[SourceOutcome]:
        """One message of a source topic: mapped events produced to
        ``callvault.recordings``, refusals to ``callvault.dlq``. A storage failure is
        retried with back-off (the message is not acked meanwhile, never skipped)."""
        loop = asyncio.get_running_loop()
        delay = 0.5
        while True:
            try:
                outcomes = await loop.run_in_executor(None, handle)
                break
            except CallvaultError as exc:
                log.error("source message failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        for outcome in outcomes:
            if outcome.status == "mapped" and outcome.recording_id:
                await self.publish_recording(outcome.payload, outcome.recording_id)
            elif outcome.status == "refused":
                await self.dlq.send(
                    key=(outcome.recording_id or "").encode() or None,
                    value=self._source_dlq_message(outcome, getattr(event, "message", None)),
                )
        return outcomes

    def _source_dlq_message(self, outcome: SourceOutcome, message: Any = None) -> bytes:
        """A refused source notification: reason, detail and where it sits (replay it
        from there once fixed). Not the notification itself: object keys and CTRs carry
        phone numbers. Nothing it names was deleted."""
        body: dict[str, Any] = {
            "reason": outcome.reason,
            "detail": outcome.detail,
            "adapter": outcome.source,
            "recording_id": outcome.recording_id,
            "at": datetime.now(UTC).isoformat(),
            "worker": self.services.config.worker_id,
            "source": _position(message),
            "event": None,
        }
        return json.dumps(body).encode()

    async def publish_s3_event(self, notification: bytes, key: str) -> None:
        await self.s3_events.send(key=key.encode(), value=notification)

    def _dlq_message(self, outcome: IngestOutcome, message: Any = None) -> bytes:
        """A DLQ entry: reason, detail, where the original sits (topic, partition,
        offset: replay it from there once fixed) and the event with its personal data
        (customer reference, landing URI) redacted. The landing audio is kept."""
        body: dict[str, Any] = {
            "reason": outcome.reason,
            "detail": outcome.detail,
            "recording_id": outcome.recording_id,
            "at": datetime.now(UTC).isoformat(),
            "worker": self.services.config.worker_id,
            "source": _position(message),
            "event": redacted_event(outcome.payload),
        }
        return json.dumps(body).encode()

    async def _flush_audit(self) -> None:
        while self._audit_buffer:
            entry = self._audit_buffer.popleft()
            await self.audit_topic.send(
                value=json.dumps(entry_json(entry), separators=(",", ":"), sort_keys=True).encode()
            )

    async def publish_recording(self, event: bytes, recording_id: str) -> None:
        # Keyed by recording id: every (re)delivery of one recording lands on the same
        # partition, so two workers never process it at the same time.
        await self.recordings.send(key=recording_id.encode(), value=event)

    async def reconcile_landing(self) -> int:
        """Re-announce landing audio whose event was lost (e.g. the in-memory broker
        restarted): stale files with a sidecar event and no catalog entry."""
        services = self.services
        loop = asyncio.get_running_loop()
        older = float(services.config.reconcile_after_seconds)
        stale = await loop.run_in_executor(None, lambda: list(services.landing.iter_stale(older)))
        self.metrics.landing_backlog.set(len(stale))
        sent = 0
        now = time.monotonic()
        for item in stale:
            if not item.has_sidecar:
                continue
            last = self._reannounced.get(item.uri)
            if last is not None and now - last < older:
                continue  # already re-announced recently; give the worker time
            event = await loop.run_in_executor(None, services.landing.read_sidecar, item.uri)
            if not isinstance(event, dict):
                continue
            rid = event.get("recording_id")
            if not isinstance(rid, str):
                continue  # a sidecar without an id cannot be re-announced; the backlog shows it
            present = await loop.run_in_executor(
                None, services.catalog.recording_ids_present, [rid]
            )
            if rid in present:
                continue
            await self.publish_recording(json.dumps(event).encode(), rid)
            self._reannounced[item.uri] = now
            self.metrics.reconciled.inc()
            sent += 1
        if sent:
            log.warning("re-announced %d landing recordings with no catalog entry", sent)
        return sent

    async def run_sweep(self) -> None:
        """One retention sweep off the event loop (errors logged; the next tick retries)."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.endoflife.sweep_and_resume)
        except CallvaultError as exc:
            log.error("retention sweep failed: %s", exc)
        await self._flush_audit()

    async def tend_evaluations(self) -> None:
        """Purge scores and notes of recordings no longer stored; refresh the assignment
        gauges (errors logged; the next tick retries)."""

        def tend() -> None:
            self.evaluations.purge(actor=self.services.config.actor)
            self.evaluations.refresh_metrics()

        try:
            await asyncio.get_running_loop().run_in_executor(None, tend)
        except CallvaultError as exc:
            log.error("evaluation housekeeping failed: %s", exc)
        await self._flush_audit()

    def health(self) -> dict[str, Any]:
        status: dict[str, Any] = {"status": "ok", "worker": self.services.config.worker_id}
        try:
            self.services.catalog.database.fetch_one("SELECT 1")  # a real round trip
            status["catalog"] = "ok"
        except CallvaultError as exc:
            status.update(status="degraded", catalog=str(exc))
        status["uptime_seconds"] = round(time.monotonic() - self.started_at, 1)
        return status

    def run(self) -> None:
        """Run the worker until SIGINT/SIGTERM (blocks)."""
        from faust.worker import Worker as FaustWorker

        level = self.services.config.log_level.lower()
        worker = FaustWorker(
            self.app,
            loglevel={"warning": "warn"}.get(level, level),
            quiet=True,
            redirect_stdouts=False,
        )
        with contextlib.suppress(SystemExit):
            worker.execute_from_commandline()


def _position(message: Any) -> dict[str, Any] | None:
    """Where a consumed message sits (replay it from there), for a DLQ entry."""
    if message is None:
        return None
    return {"topic": message.topic, "partition": message.partition, "offset": message.offset}
