"""Helpers for the QA access tests: real services (file vault, SQLite catalog, key
file) built by ``build_services``, recordings stored through ``IngestPipeline``, and
the worker's aiohttp app served in a background thread on a free port."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from callvault.demo import demo_event
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from streams.http import WebContext, build_web_app
from streams.http.auth import LocalTokens, local_tokens
from streams.http.oidc import verifier_for
from streams.ingest import IngestPipeline
from streams.metrics import Metrics

__all__ = ["Clock", "QaEnv", "Reply", "ServerThread", "make_env"]

# Inside acme-qa's contract window (2026-01-01 .. 2028-01-01) of the shipped policy.
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


class Clock:
    """A settable clock shared by the services, the tokens and the web context."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ServerThread:
    """An aiohttp app on 127.0.0.1:<free port>, run by its own loop in a thread."""

    def __init__(self, make_app: Callable[[], web.Application]) -> None:
        self._make_app = make_app
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="qa-web")
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # surface start failures to the caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        assert self._runner is not None
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class QaEnv:
    services: Services
    clock: Clock
    metrics: Metrics
    tokens: LocalTokens
    server: ServerThread
    wavs: dict[str, bytes] = field(default_factory=dict)

    # -- tokens -----------------------------------------------------------------------------
    def token(
        self,
        user: str,
        role: str,
        org: str | None = None,
        ttl: float = 3600,
        tenant: str | None = "demo",
    ) -> str:
        """A token of ``tenant`` (default: the tenant ``demo_event`` stores calls in)."""
        return self.tokens.issue(
            user=user, role=role, org=org, ttl=timedelta(seconds=ttl), now=self.clock(),
            tenant=tenant,
        )  # fmt: skip

    # -- HTTP -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        target = path + ("?" + urlencode(params) if params else "")
        try:
            conn.request(method, target, body=payload, headers=sent)
            response = conn.getresponse()
            try:
                data = response.read()
            except http.client.IncompleteRead as exc:
                data = exc.partial
                response.headers["X-Test-Incomplete"] = "1"
            return Reply(response.status, dict(response.headers.items()), data)
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def audio(self, rid: str, token: str, **params: str) -> Reply:
        headers = {}
        if "range" in params:
            headers["Range"] = params.pop("range")
        return self.get(f"/v1/recordings/{rid}/audio", token=token, params=params, headers=headers)

    # -- storage ----------------------------------------------------------------------------
    def audit_after(self, seq: int) -> list[Any]:
        return list(self.services.audit.iter_entries(after_seq=seq))

    def audit_head(self) -> int:
        head = self.services.audit.head()
        return 0 if head is None else head.seq

    def plaintext(self, rid: str) -> bytes:
        row = self.services.catalog.get_recording(rid)
        assert row is not None
        return self.services.keys.open_recording(self.services.vault.get(row.object_key))

    def object_path(self, rid: str) -> Path:
        row = self.services.catalog.get_recording(rid)
        assert row is not None
        return self.services.settings.data_dir / "vault" / row.object_key

    def close(self) -> None:
        self.server.stop()
        self.services.close()


def ingest(
    services: Services,
    metrics: Metrics,
    calls: dict[str, dict[str, Any]],
    clock: Clock,
) -> dict[str, bytes]:
    """Store ``{recording_id: {"seconds", "purposes", "agent", "queue", "ended", "codec",
    "customer", "call_id", "direction", "pci_pauses", "tenant", "audio" (WAV bytes)}}``."""
    pipeline = IngestPipeline(
        landing=services.landing,
        vault=services.vault,
        keys=services.keys,
        catalog=services.catalog,
        audit=services.audit,
        policy=services.policy,
        metrics=metrics,
        actor="worker:test",
        clock=clock,
    )
    wavs: dict[str, bytes] = {}
    events = []
    landing = services.settings.landing_dir
    landing.mkdir(parents=True, exist_ok=True)
    for index, (rid, spec) in enumerate(calls.items()):
        audio = spec.get("audio") or call_wav(
            spec.get("seconds", 20.0), codec=spec.get("codec", "mulaw"), seed=index
        )
        path = landing / f"{rid}.wav"
        path.write_bytes(audio)
        event = demo_event(
            rid,
            audio=audio,
            uri=f"file://{path}",
            seconds=spec.get("seconds", 20.0),
            agent=spec.get("agent", "agent-1"),
            queue=spec.get("queue", "support"),
            customer=spec.get("customer", f"cust-{index}"),
            ended_at=spec.get("ended", clock() - timedelta(hours=1, minutes=index)),
        )
        if "purposes" in spec:
            event["purposes"] = spec["purposes"]
        for name in ("call_id", "direction", "pci_pauses", "tenant"):
            if name in spec:
                event[name] = spec[name]
        events.append(json.dumps(event).encode())
        wavs[rid] = audio
    try:
        outcomes = pipeline.process_batch(events)
    finally:
        pipeline.close()
    bad = [o for o in outcomes if o.status != "stored"]
    assert not bad, bad
    return wavs


def make_env(
    tmp_path: Path,
    calls: dict[str, dict[str, Any]],
    *,
    vault: str | None = None,
    extra_env: dict[str, str] | None = None,
    **qa_options: Any,
) -> QaEnv:
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "data")}
    if vault is not None:
        env["CALLVAULT_VAULT"] = vault
    env.update(extra_env or {})
    clock = Clock()
    services = build_services(load_settings(env), clock=clock)
    metrics = Metrics()
    wavs = ingest(services, metrics, calls, clock)
    tokens = local_tokens(services.keyring, services.policy)

    async def publish(_event: bytes, _recording_id: str) -> None:
        raise AssertionError("no ingest over HTTP in these tests")

    verifier = verifier_for(services.policy, tokens)  # + the IdP's when the policy has sso:

    def make_app() -> web.Application:
        ctx = WebContext.over(
            services,
            metrics=metrics,
            tokens=verifier,
            publish_recording=publish,
            health=lambda: {"status": "ok"},
            **qa_options,
        )
        return build_web_app(ctx)

    server = ServerThread(make_app).start()
    return QaEnv(services, clock, metrics, tokens, server, wavs)


def metric(env: QaEnv, name: str, labels: dict[str, str] | None = None) -> float:
    value = env.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value
