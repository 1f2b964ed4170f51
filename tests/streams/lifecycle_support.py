"""Helpers for the retention / holds / privacy request tests: real services built by
``build_services`` (file or S3 vault, SQLite or PostgreSQL catalog, key file) with a
settable clock, recordings sealed and stored the way ingest stores them, and the
worker's aiohttp app served in a thread on a free port."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from policies import decide_ingest
from storage.catalog.audit import AuditDraft
from storage.mirror import recording_tags
from storage.types import RecordingRow
from streams.endoflife import EndOfLife
from streams.http import WebContext, build_web_app
from streams.http.auth import LocalTokens
from streams.ingest import object_key_for
from streams.metrics import Metrics

__all__ = [
    "Clock",
    "NOW",
    "Reply",
    "WebServer",
    "make_services",
    "store_call",
    "lifecycle_of",
    "web_app",
    "request",
]

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
_AUDIO = call_wav(1.0, seed=3)


class Clock:
    """A settable clock shared by every collaborator."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_services(
    tmp_path: Path,
    catalog_url: str,
    vault: str,
    clock: Clock,
    *,
    s3_endpoint: str | None = None,
    s3_bucket: str | None = None,
    policy: Path | None = None,
) -> Services:
    env = {
        "CALLVAULT_DATA_DIR": str(tmp_path / "data"),
        "CALLVAULT_CATALOG": catalog_url,
        "CALLVAULT_WORKER_ID": "test",
    }
    if vault == "s3":
        assert s3_endpoint is not None and s3_bucket is not None
        env["CALLVAULT_VAULT"] = f"s3://{s3_bucket}"
        env["CALLVAULT_S3_ENDPOINT"] = s3_endpoint
    if policy is not None:
        env["CALLVAULT_POLICY"] = str(policy)
    services = build_services(load_settings(env), clock=clock)
    if vault == "s3":
        services.vault.ensure_bucket(versioning=True)  # type: ignore[attr-defined]
    return services


def store_call(
    services: Services,
    rid: str,
    *,
    customer: str = "C-1001",
    tenant: str = "acme",
    ended_at: datetime = NOW - timedelta(days=1),
    seconds: float = 60.0,
    call_id: str | None = None,
    agent: str = "agent-7",
    queue: str = "billing",
    purposes: tuple[str, ...] | None = None,
    audio: bytes = _AUDIO,
) -> RecordingRow:
    """Seal, store and catalog one recording exactly as ingest does (retain_until from
    the services' policy)."""
    started_at = ended_at - timedelta(seconds=seconds)
    decision = decide_ingest(
        "notified", purposes, services.policy, started_at=started_at, ended_at=ended_at
    )
    assert decision.store and decision.retain_until is not None and decision.retention_class
    subject_ref = services.keys.subject_ref(tenant, customer)
    sealed = services.keys.seal_recording(
        recording_id=rid, tenant=tenant, subject_ref=subject_ref, plaintext=audio
    )
    key = object_key_for(services.keys, tenant, rid)
    tags = recording_tags(
        purposes=decision.purposes,
        retention_class=decision.retention_class,
        retain_until=decision.retain_until,
        held=False,
    )
    written = services.vault.put(key, sealed.blob, tags=tags)
    row = RecordingRow(
        recording_id=rid,
        call_id=call_id or f"call-{rid}",
        tenant=tenant,
        subject_ref=subject_ref,
        agent_id=agent,
        queue=queue,
        direction="inbound",
        started_at=started_at,
        ended_at=ended_at,
        duration_ms=int(seconds * 1000),
        consent="notified",
        purposes=decision.purposes,
        retention_class=decision.retention_class,
        retain_until=decision.retain_until,
        object_key=key,
        subject_key_id=sealed.subject_key_id,
        ciphertext_sha256=hashlib.sha256(sealed.blob).hexdigest(),
        stored_size=len(sealed.blob),
        audio_bytes=len(audio),
        audio_format="wav/pcm_s16le",
        sample_rate=8000,
        channels=1,
        pci_redacted_ms=0,
        created_at=services.clock(),
        object_version=written.version_id,
    )
    draft = AuditDraft(actor="worker:test", action="ingest.stored", outcome="ok", recording_id=rid)
    assert services.catalog.store_recordings([(row, draft)]) == [True]
    return row


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebServer:
    """The worker's web app over ``lifecycle``, served by a thread's loop."""

    def __init__(self, services: Services, lifecycle: EndOfLife, metrics: Metrics) -> None:
        self.services = services
        self.tokens = LocalTokens(services.keyring, frozenset(services.policy.roles))
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lifecycle-web")
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        assert self._runner is not None
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _start(self) -> None:
        ctx = WebContext.over(
            self.services,
            metrics=self._metrics,
            tokens=self.tokens,
            endoflife=self._lifecycle,
            publish_recording=_no_publish,
            health=lambda: {"status": "ok"},
        )
        self._runner = web.AppRunner(build_web_app(ctx), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> WebServer:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def token(self, user: str, role: str, org: str | None = None) -> str:
        return self.tokens.issue(
            user=user, role=role, org=org, ttl=timedelta(hours=1), now=self.services.clock()
        )

    def request(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> Reply:
        return request(self.port, method, path, token=token, body=body)


async def _no_publish(event: bytes, recording_id: str) -> None:
    raise AssertionError("no ingest in these tests")


def request(
    port: int, method: str, path: str, *, token: str | None = None, body: Any = None
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, response.read())
    finally:
        conn.close()


def web_app(services: Services, lifecycle: EndOfLife, metrics: Metrics) -> Callable[[], WebServer]:
    return lambda: WebServer(services, lifecycle, metrics).start()


def verification(officer: str = "officer-7") -> dict[str, str]:
    return {"verified_by": officer, "method": "id-document"}


def lifecycle_of(services: Services, metrics: Metrics | None = None) -> EndOfLife:
    """The retention + privacy services of ``services``, as the worker builds them."""
    return EndOfLife.from_services(services, actor="worker:test", metrics=metrics)
