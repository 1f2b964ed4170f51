"""Telephony learns the outcome: uploads are probed before the 202, the status route
says accepted / stored / declined / dead-lettered, and the reconciler never re-announces
a dead-lettered file and re-announces any other a bounded number of times."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from callvault.demo import demo_event
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from policies import Principal
from streams.app import MAX_ANNOUNCEMENTS, Worker
from streams.http import WebContext, build_web_app
from streams.http.auth import LocalTokens
from streams.metrics import Metrics
from tests.streams.test_agents import Recorder


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(tmp_path: Path, clock: Clock) -> Iterator[Services]:
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "data"), "CALLVAULT_RECONCILE_AFTER_SECONDS": "60"}
    built = build_services(load_settings(env), clock=clock)
    built.settings.landing_dir.mkdir(parents=True, exist_ok=True)
    yield built
    built.close()


class TenantTokens:
    """A verifier for an identity provider that puts users in tenants."""

    def __init__(self, local: LocalTokens, tenant: str) -> None:
        self.local, self.tenant = local, tenant

    def verify(self, token: str, now: datetime) -> Principal:
        principal = self.local.verify(token, now)
        return Principal(principal.user, principal.role, principal.org, self.tenant)


def _token(services: Services, role: str = "telephony") -> str:
    tokens = LocalTokens(services.keyring, frozenset(services.policy.roles))
    return tokens.issue(user="pbx-1", role=role, org=None, ttl=timedelta(hours=1))


def _form(rid: str, audio: bytes, fmt: str = "wav", **kw: Any) -> aiohttp.FormData:
    meta = demo_event(rid, audio=audio, **kw)
    meta["tenant"] = "acme"
    meta["audio"] = {"format": fmt}
    form = aiohttp.FormData()
    form.add_field("metadata", json.dumps(meta), content_type="application/json")
    form.add_field("audio", audio, filename=f"call.{fmt}", content_type="application/octet-stream")
    return form


async def _client_calls(
    services: Services, calls: list[tuple[str, str, Any]], *, tenant: str | None = None
) -> tuple[list[tuple[int, Any]], list[bytes]]:
    published: list[bytes] = []

    async def publish(event: bytes, recording_id: str) -> None:
        published.append(event)

    local = LocalTokens(services.keyring, frozenset(services.policy.roles))
    ctx = WebContext.over(
        services,
        metrics=Metrics(),
        tokens=local if tenant is None else TenantTokens(local, tenant),
        publish_recording=publish,
        health=lambda: {"status": "ok"},
    )
    headers = {"Authorization": f"Bearer {_token(services)}"}
    out = []
    async with TestClient(TestServer(build_web_app(ctx))) as client:
        for method, path, body in calls:
            call_headers = dict(headers)
            if isinstance(body, str):  # another role's token
                call_headers["Authorization"] = f"Bearer {_token(services, body)}"
                body = None
            resp = await client.request(method, path, data=body, headers=call_headers)
            out.append((resp.status, await resp.json()))
    return out, published


def call(services: Services, *calls: tuple[str, str, Any], tenant: str | None = None) -> Any:
    return asyncio.run(_client_calls(services, list(calls), tenant=tenant))


def _mp3(tmp_path: Path) -> bytes:
    wav = tmp_path / "c.wav"
    wav.write_bytes(call_wav(2.0, codec="pcm16", seed=2))
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), str(tmp_path / "c.mp3")], check=True
    )
    return (tmp_path / "c.mp3").read_bytes()


@pytest.mark.parametrize(
    ("kind", "fmt", "reason"),
    [
        ("mp3", "wav", "audio-mislabelled"),  # found on main: 202, then dead-lettered forever
        ("wav", "ulaw", "audio-mislabelled"),
        ("garbage", "wav", "audio-undecodable"),
        ("truncated-wav", "wav", "audio-undecodable"),
        ("id3-garbage", "mp3", "audio-undecodable"),
    ],
)
def test_undecodable_or_mislabelled_uploads_answer_422_and_land_nothing(
    services: Services, tmp_path: Path, kind: str, fmt: str, reason: str
) -> None:
    wav = call_wav(2.0, codec="mulaw", seed=1)
    audio = {
        "mp3": lambda: _mp3(tmp_path),
        "wav": lambda: wav,
        "garbage": lambda: os.urandom(4000),
        "truncated-wav": lambda: wav[:60],
        "id3-garbage": lambda: b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(4000),
    }[kind]()
    (reply,), published = call(services, ("POST", "/v1/recordings", _form("u-1", audio, fmt)))
    assert reply[0] == 422, reply
    assert reply[1]["error"] == "unprocessable" and reply[1]["reason"] == reason
    assert published == [] and list(services.settings.landing_dir.iterdir()) == []
    assert [e.action for e in services.audit.iter_entries()] == []


def _ingest(services: Services, published: list[bytes]) -> list[Any]:
    worker = Worker(services, broker_url="kafka://127.0.0.1:1")
    try:
        return worker.pipeline.process_batch(published)
    finally:
        worker.pipeline.close()


def test_status_follows_an_upload_from_accepted_to_stored(services: Services) -> None:
    audio = call_wav(2.0, codec="mulaw", seed=3)
    replies, published = call(
        services,
        ("POST", "/v1/recordings", _form("s-1", audio)),
        ("GET", "/v1/recordings/s-1/status", None),
    )
    assert replies[0][0] == 202
    assert replies[1] == (
        200,
        {"recording_id": "s-1", "tenant": "acme", "status": "accepted", "reason": None,
         "at": replies[1][1]["at"]},
    )  # fmt: skip
    (outcome,) = _ingest(services, published)
    assert outcome.status == "stored"
    (reply,), _ = call(services, ("GET", "/v1/recordings/s-1/status", None))
    assert (reply[0], reply[1]["status"], reply[1]["reason"]) == (200, "stored", None)


def test_status_reports_declined_and_dead_lettered_with_the_reason_only(
    services: Services,
) -> None:
    audio = call_wav(2.0, codec="mulaw", seed=4)
    longer = call_wav(20.0, codec="mulaw", seed=4)  # than the 1 s call it claims to be
    _, published = call(
        services,
        ("POST", "/v1/recordings", _form("d-1", audio, consent="declined")),
        ("POST", "/v1/recordings", _form("x-1", longer, seconds=1.0)),
    )
    outcomes = _ingest(services, published)
    assert [o.status for o in outcomes] == ["declined", "dlq"]
    replies, _ = call(
        services,
        ("GET", "/v1/recordings/d-1/status", None),
        ("GET", "/v1/recordings/x-1/status", None),
    )
    assert [(r[1]["status"], r[1]["reason"]) for r in replies] == [
        ("declined", "consent-declined"),
        ("dead-lettered", outcomes[1].reason),
    ]
    body = json.dumps([r[1] for r in replies])
    assert "cust-0001" not in body and "file://" not in body
    assert hashlib.sha256(audio).hexdigest() not in body


def test_status_is_only_for_telephony_of_the_recordings_tenant(services: Services) -> None:
    audio = call_wav(1.0, codec="mulaw", seed=5)
    call(services, ("POST", "/v1/recordings", _form("t-1", audio)))
    (other,), _ = call(services, ("GET", "/v1/recordings/t-1/status", None), tenant="globex")
    (same,), _ = call(services, ("GET", "/v1/recordings/t-1/status", None), tenant="acme")
    (unknown,), _ = call(services, ("GET", "/v1/recordings/nope/status", None))
    (qa,), _ = call(services, ("GET", "/v1/recordings/t-1/status", "qa-reviewer"))
    assert (other[0], other[1]["reason"]) == (404, "no-recording")
    assert same[0] == 200 and unknown[0] == 404 and qa[0] == 403


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))
    sidecar = path.with_name(path.name + ".event.json")
    if sidecar.exists():
        os.utime(sidecar, (past, past))


def _reconcile(services: Services) -> tuple[int, Recorder]:
    worker = Worker(services, broker_url="kafka://127.0.0.1:1")  # a restart: a new worker
    sent = Recorder()
    worker.recordings.send = sent  # type: ignore[method-assign]
    try:
        count = asyncio.run(worker.reconcile_landing())
    finally:
        worker.pipeline.close()
    return count, sent


def test_the_reconciler_never_reannounces_a_dead_lettered_file(services: Services) -> None:
    """Found on main: an MP3 labelled wav was re-announced every 12 minutes forever (one
    more ingest.rejected each time). Uploads are probed now; an event dead-lettered for
    any other reason keeps its file and is not re-announced."""
    audio = call_wav(20.0, codec="mulaw", seed=6)  # longer than the 1 s call it claims
    _, published = call(services, ("POST", "/v1/recordings", _form("r-1", audio, seconds=1.0)))
    (outcome,) = _ingest(services, published)
    assert outcome.status == "dlq"
    (path,) = [p for p in services.settings.landing_dir.iterdir() if p.suffix == ".wav"]
    _age(path, 3600)
    for _ in range(3):
        assert _reconcile(services)[0] == 0
    rejected = [e for e in services.audit.iter_entries() if e.action == "ingest.rejected"]
    assert len(rejected) == 1 and path.exists()


def test_the_reconciler_reannounces_a_file_a_bounded_number_of_times_with_back_off(
    services: Services, clock: Clock
) -> None:
    audio = call_wav(1.0, codec="mulaw", seed=7)
    call(services, ("POST", "/v1/recordings", _form("lost-1", audio)))
    (path,) = [p for p in services.settings.landing_dir.iterdir() if p.suffix == ".wav"]
    _age(path, 3600)  # its event was lost (the broker restarted): never ingested
    timeline = []
    # reconcile age 60 s: the 2nd announcement waits 60 s, the 3rd 120 s, then no more;
    # every call is a new worker (a restart does not reset the count)
    for step in (0, 30, 31, 90, 121, 5000):
        clock.now += timedelta(seconds=step)
        count, recorder = _reconcile(services)
        if count:
            assert json.loads(recorder.values[0])["recording_id"] == "lost-1"
        timeline.append(count)
    assert timeline == [1, 0, 1, 0, 1, 0]
    assert sum(timeline) == MAX_ANNOUNCEMENTS
