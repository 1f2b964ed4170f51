"""POST /v1/recordings: telephony pushes audio; it lands, gets a sidecar, an event goes out."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from callvault.demo import demo_event
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from streams.http import WebContext, build_web_app
from streams.http.auth import LocalTokens
from streams.ingest import IngestPipeline
from streams.metrics import Metrics


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(tmp_path / "data")}))
    yield built
    built.close()


def _token(services: Services, role: str, ttl: timedelta = timedelta(hours=1), **kw: Any) -> str:
    tokens = LocalTokens(services.keyring, frozenset(services.policy.roles))
    return tokens.issue(
        user="pbx-1", role=role, org=kw.get("org"), ttl=ttl, now=kw.get("now"),
        tenant=kw.get("tenant", "demo"),
    )  # fmt: skip


def _form(metadata: Any, audio: bytes | None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(
        "metadata",
        metadata if isinstance(metadata, str) else json.dumps(metadata),
        content_type="application/json",
    )
    if audio is not None:
        form.add_field("audio", audio, filename="call.wav", content_type="audio/wav")
    return form


async def _call(
    services: Services, requests: list[tuple[str, dict[str, str], aiohttp.FormData | None]]
):  # type: ignore[no-untyped-def]
    published: list[bytes] = []

    async def publish(event: bytes, recording_id: str) -> None:
        published.append(event)

    ctx = WebContext.over(
        services,
        metrics=Metrics(),
        tokens=LocalTokens(services.keyring, frozenset(services.policy.roles)),
        publish_recording=publish,
        health=lambda: {"status": "ok"},
    )
    results = []
    async with TestClient(TestServer(build_web_app(ctx))) as client:
        for path, headers, form in requests:
            resp = await client.post(path, data=form, headers=headers)
            results.append((resp.status, await resp.json()))
    return results, published


def _metadata(rid: str, audio: bytes, **kw: Any) -> dict[str, Any]:
    meta = demo_event(rid, audio=audio, **kw)
    meta["audio"] = {"format": "wav", "sha256": hashlib.sha256(audio).hexdigest()}
    return meta


def test_pushed_audio_lands_and_its_event_is_ingested(services: Services) -> None:
    audio = call_wav(2.0, codec="mulaw", seed=1)
    headers = {"Authorization": f"Bearer {_token(services, 'telephony')}"}
    results, published = asyncio.run(
        _call(services, [("/v1/recordings", headers, _form(_metadata("h-1", audio), audio))])
    )
    assert results == [
        (
            202,
            {
                "recording_id": "h-1",
                "status": "accepted",
                "sha256": hashlib.sha256(audio).hexdigest(),
            },
        )
    ]
    (event_bytes,) = published
    event = json.loads(event_bytes)
    uri = event["audio"]["uri"]
    assert uri.startswith(f"file://{services.settings.landing_dir}")
    assert services.landing.read_sidecar(uri) == event  # the reconciler can re-announce it
    pipeline = IngestPipeline(
        landing=services.landing,
        vault=services.vault,
        keys=services.keys,
        catalog=services.catalog,
        audit=services.audit,
        policy=services.policy,
        metrics=Metrics(),
        actor="worker:test",
    )
    (outcome,) = pipeline.process_batch(published)
    assert outcome.status == "stored"
    assert services.landing.read_sidecar(uri) is None  # removed with the landing copy


@pytest.mark.parametrize(
    ("role", "status", "reason"),
    [("qa-reviewer", 403, None), ("operator", 403, None), ("compliance-officer", 403, None)],
)
def test_only_telephony_may_push(
    services: Services, role: str, status: int, reason: str | None
) -> None:
    audio = call_wav(1.0, codec="mulaw", seed=2)
    headers = {"Authorization": f"Bearer {_token(services, role)}"}
    results, published = asyncio.run(
        _call(services, [("/v1/recordings", headers, _form(_metadata("h-2", audio), audio))])
    )
    assert results[0][0] == status and results[0][1]["error"] == "forbidden"
    assert published == []
    denied = [e for e in services.audit.iter_entries() if e.outcome == "denied"]
    assert len(denied) == 1 and denied[0].details["role"] == role


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "token-missing"),
        ("Bearer cv1.e30.sk-1.AAAA", "token-signature"),
        ("Bearer garbage", "token-malformed"),
        ("Basic dXNlcjpwYXNz", "token-missing"),
    ],
)
def test_bad_tokens_get_401_and_are_audited(
    services: Services, header: str | None, reason: str
) -> None:
    audio = call_wav(1.0, codec="mulaw", seed=3)
    headers = {"Authorization": header} if header else {}
    results, published = asyncio.run(
        _call(services, [("/v1/recordings", headers, _form(_metadata("h-3", audio), audio))])
    )
    assert results[0] == (
        401,
        {"error": "unauthorized", "reason": reason, "detail": results[0][1]["detail"]},
    )
    assert published == []
    entries = list(services.audit.iter_entries())
    assert [(e.action, e.reason) for e in entries] == [("auth.denied", reason)]


def test_expired_token_is_refused(services: Services) -> None:
    from datetime import UTC, datetime

    old = datetime.now(UTC) - timedelta(hours=3)
    token = _token(services, "telephony", ttl=timedelta(hours=1), now=old)
    audio = call_wav(1.0, codec="mulaw", seed=4)
    results, _ = asyncio.run(
        _call(
            services,
            [
                (
                    "/v1/recordings",
                    {"Authorization": f"Bearer {token}"},
                    _form(_metadata("h-4", audio), audio),
                )
            ],
        )
    )
    assert results[0][0] == 401 and results[0][1]["reason"] == "token-expired"


@pytest.mark.parametrize(
    ("metadata", "audio", "status", "error"),
    [
        ("{not json", b"RIFF", 400, "bad-request"),
        ({"recording_id": "x"}, b"RIFF", 400, "invalid-event"),
        (None, None, 415, "unsupported-media-type"),
        ("SHA", b"some audio", 400, "bad-request"),
        ({"started_at": "yesterday"}, "GOOD", 400, "invalid-event"),
    ],
)
def test_bad_requests_get_a_clear_error_and_nothing_lands(
    services: Services, metadata: Any, audio: bytes | None, status: int, error: str
) -> None:
    good_audio = call_wav(1.0, codec="mulaw", seed=5)
    if metadata == "SHA":
        metadata = _metadata("h-5", good_audio)  # its sha256 will not match `audio`
    elif isinstance(metadata, dict) and "started_at" in metadata:
        metadata = {**_metadata("h-6", good_audio), **metadata}
    if audio == "GOOD":
        audio = good_audio
    headers = {"Authorization": f"Bearer {_token(services, 'telephony')}"}
    form = _form(metadata, audio) if metadata is not None else aiohttp.FormData({"x": "1"})
    results, published = asyncio.run(_call(services, [("/v1/recordings", headers, form)]))
    assert results[0][0] == status and results[0][1]["error"] == error
    assert published == []
    assert list(services.settings.landing_dir.iterdir()) == []


def test_ids_with_colons_are_accepted_and_never_name_the_landing_file(services: Services) -> None:
    audio = call_wav(1.0, codec="mulaw", seed=6)
    headers = {"Authorization": f"Bearer {_token(services, 'telephony')}"}
    meta = _metadata("pbx:1700000000.42", audio)
    results, published = asyncio.run(
        _call(services, [("/v1/recordings", headers, _form(meta, audio))])
    )
    assert results[0][0] == 202
    uri = json.loads(published[0])["audio"]["uri"]
    assert "pbx" not in uri and "1700000000" not in uri


def test_a_refused_token_is_503_when_the_audit_log_cannot_be_written(services: Services) -> None:
    from storage.errors import AuditError

    def broken(*_: Any, **__: Any) -> Any:
        raise AuditError("audit database is read-only")

    services.audit.append = broken  # type: ignore[method-assign]
    audio = call_wav(1.0, codec="mulaw", seed=7)
    results, published = asyncio.run(
        _call(services, [("/v1/recordings", {}, _form(_metadata("h-7", audio), audio))])
    )
    assert results[0][0] == 503 and results[0][1]["error"] == "audit-unavailable"
    assert published == []


@pytest.mark.clause("collection.call-recording", "management.safety")
def test_a_telephony_token_ingests_only_for_its_tenant(services: Services) -> None:
    audio = call_wav(1.0, codec="mulaw", seed=8)
    meta = _metadata("t-1", audio)  # tenant demo
    for tenant in ("acme", None):  # another tenant, and a token naming none (the default)
        headers = {"Authorization": f"Bearer {_token(services, 'telephony', tenant=tenant)}"}
        results, published = asyncio.run(
            _call(services, [("/v1/recordings", headers, _form(meta, audio))])
        )
        assert results[0] == (
            403,
            {"error": "forbidden", "detail": "your token is for another tenant than the one named",
             "reason": "tenant-mismatch"},
        )  # fmt: skip
        assert published == []
    assert not any(services.settings.landing_dir.glob("*"))  # nothing was landed
    denied = [e for e in services.audit.iter_entries() if e.action == "ingest.denied"]
    assert [(e.reason, e.details.get("tenant")) for e in denied] == [
        ("tenant-mismatch", "acme"),
        ("tenant-mismatch", None),
    ]
