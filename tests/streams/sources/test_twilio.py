"""Twilio's RecordingStatusCallback: requests signed by the twilio package's own
RequestValidator, media served by a local server shaped like Twilio's media endpoint
(HTTP basic auth with the account credentials, ``.wav``, ``RequestedChannels=2``)."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from streams.http import WebContext, build_web_app
from streams.metrics import Metrics
from streams.sources import Sources, parse_sources
from tests.fixtures.telephony import TelephonySamples
from tests.streams.sources.conftest import (
    TWILIO_SID,
    TWILIO_TOKEN,
    SourceWorld,
)

RECORDING_SID = "RE" + "5d1c0e8f3b2a49c6a7e8d9f0b1c2d3e4"
CALL_SID = "CA" + "9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@dataclass
class MediaServer:
    """Serves recordings at /2010-04-01/Accounts/{sid}/Recordings/{RE...}.wav."""

    dual: bytes
    mono: bytes
    fail_first: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def recording(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "auth": request.headers.get("Authorization"),
            }
        )
        expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if request.match_info["account"] != TWILIO_SID:
            return web.json_response({"code": 20404}, status=404)
        if len(self.requests) <= self.fail_first:
            return web.json_response({"code": 20404, "message": "not yet"}, status=404)
        body = self.dual if request.query.get("RequestedChannels") == "2" else self.mono
        return web.Response(body=body, content_type="audio/x-wav")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/2010-04-01/Accounts/{account}/Recordings/{sid}.wav", self.recording)
        return app


def _params(media_base: str, **overrides: str) -> dict[str, str]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    params = {
        "AccountSid": TWILIO_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": CALL_SID,
        "ErrorCode": "0",
        "RecordingChannels": "2",
        "RecordingDuration": "8",
        "RecordingSid": RECORDING_SID,
        "RecordingSource": "DialVerb",
        "RecordingStartTime": format_datetime(start),
        "RecordingStatus": "completed",
        "RecordingTrack": "both",
        "RecordingUrl": f"{media_base}/2010-04-01/Accounts/{TWILIO_SID}/Recordings/{RECORDING_SID}",
    }
    params.update(overrides)
    return params


QUERY = {"customer_ref": "C-1001", "agent_id": "a-7", "queue": "billing"}


@dataclass
class Callbacks:
    world: SourceWorld
    media: MediaServer
    published: list[bytes]
    results: list[tuple[int, dict[str, Any]]]


def _run(
    world_factory: Callable[..., SourceWorld],
    media: MediaServer,
    calls: Callable[[str, str], list[tuple[dict[str, str], dict[str, str], str | None]]],
    *,
    max_bytes: int | None = None,
) -> Callbacks:
    """Serve the media, build a world bound to it, POST each (params, query, token)."""

    async def scenario() -> Callbacks:
        async with TestServer(media.app()) as media_server:
            media_base = f"http://127.0.0.1:{media_server.port}"
            world = world_factory(media_host=f"127.0.0.1:{media_server.port}")
            sources = Sources(
                bindings=world.services.sources, landing=world.services.landing,
                catalog=world.services.catalog, metrics=world.metrics,
                clock=world.services.clock, max_bytes=max_bytes or (1 << 26),
            )  # fmt: skip
            sources.twilio.backoff = 0.05
            published: list[bytes] = []

            async def publish(event: bytes, recording_id: str) -> None:
                published.append(event)

            ctx = WebContext.over(
                world.services, metrics=world.metrics, publish_recording=publish,
                health=lambda: {"status": "ok"}, sources=sources,
            )  # fmt: skip
            results = []
            async with TestClient(TestServer(build_web_app(ctx))) as client:
                base = str(client.make_url("/v1/sources/twilio"))
                for params, query, token in calls(media_base, base):
                    url = f"{base}?{urlencode(query)}"
                    headers = {}
                    if token is not None:
                        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(
                            url, params
                        )
                    resp = await client.post(
                        f"/v1/sources/twilio?{urlencode(query)}", data=params, headers=headers
                    )
                    results.append((resp.status, await resp.json()))
            return Callbacks(world, media, published, results)

    return asyncio.run(scenario())


def _samples(telephony_samples: TelephonySamples) -> tuple[bytes, bytes]:
    return (
        telephony_samples.get("twilio-dual-wav").path.read_bytes(),
        telephony_samples.get("asterisk-wav").path.read_bytes(),
    )


def test_the_dual_channel_layout_maps_parent_and_child_to_roles() -> None:
    from streams.sources.config import SourceBindings
    from streams.sources.twilio import callback_fields

    binding = parse_sources(
        {"twilio": [{"account_sid": TWILIO_SID, "auth_token": "t", "tenant": "acme"}]}
    ).twilio[0]
    assert isinstance(SourceBindings(twilio=(binding,)), SourceBindings)
    params = _params("https://api.twilio.com")
    inbound = callback_fields(params, QUERY, binding)
    assert inbound["channels"] == 2 and inbound["channel_roles"] == ["customer", "agent"]
    outbound = callback_fields(params, {**QUERY, "direction": "outbound"}, binding)
    assert outbound["channel_roles"] == ["agent", "customer"]  # the agent's call is the parent
    chosen = callback_fields(params, {**QUERY, "channel_roles": "agent,customer"}, binding)
    assert chosen["channel_roles"] == "agent,customer"
    mono = callback_fields({**params, "RecordingChannels": "1"}, QUERY, binding)
    assert "channels" not in mono and "channel_roles" not in mono
    assert inbound["recording_id"] == RECORDING_SID and inbound["call_id"] == CALL_SID


def test_a_signed_callback_fetches_with_retries_lands_and_announces(
    world_factory: Callable[..., SourceWorld], telephony_samples: TelephonySamples
) -> None:
    dual, mono = _samples(telephony_samples)
    media = MediaServer(dual, mono, fail_first=2)  # not ready twice: retried
    params = lambda m: _params(m, RecordingChannels="1")  # noqa: E731
    done = _run(world_factory, media, lambda m, _b: [(params(m), QUERY, TWILIO_TOKEN)])

    assert done.results == [(202, {"recording_id": RECORDING_SID, "status": "accepted"})]
    assert len(media.requests) == 3 and media.requests[-1]["query"] == {}
    (raw,) = done.published
    event = json.loads(raw)
    assert event["recording_id"] == RECORDING_SID and event["call_id"] == CALL_SID
    assert event["tenant"] == "acme" and event["customer_ref"] == "C-1001"
    assert event["queue"] == "billing" and event["agent_id"] == "a-7"
    assert event["audio"]["sha256"] == hashlib.sha256(mono).hexdigest()
    assert "channel_roles" not in event["audio"]
    landed = Path(event["audio"]["uri"].removeprefix("file://"))
    assert landed.name == f"{RECORDING_SID}.wav" and landed.read_bytes() == mono
    assert json.loads(Path(f"{landed}.event.json").read_text()) == event
    started = datetime.fromisoformat(event["started_at"])
    ended = datetime.fromisoformat(event["ended_at"])
    assert ended - started == timedelta(seconds=8)
    assert done.world.metrics.source_mapped.labels("twilio")._value.get() == 1

    (stored,) = done.world.ingest(event)  # the real core path
    assert stored.status == "stored", stored
    row = done.world.services.catalog.get_recording(RECORDING_SID)
    assert row is not None and row.tenant == "acme" and row.channels == 1


def test_a_dual_channel_twilio_recording_is_stored_as_two_channels(
    world_factory: Callable[..., SourceWorld], telephony_samples: TelephonySamples
) -> None:
    dual, mono = _samples(telephony_samples)
    media = MediaServer(dual, mono)
    done = _run(world_factory, media, lambda m, _b: [(_params(m), QUERY, TWILIO_TOKEN)])
    assert done.results == [(202, {"recording_id": RECORDING_SID, "status": "accepted"})]
    assert media.requests[-1]["query"] == {"RequestedChannels": "2"}
    event = json.loads(done.published[0])
    assert event["audio"]["channel_roles"] == ["customer", "agent"]
    assert event["audio"]["sha256"] == hashlib.sha256(dual).hexdigest()
    (stored,) = done.world.ingest(event)
    assert stored.status == "stored", stored
    row = done.world.services.catalog.get_recording(RECORDING_SID)
    assert row is not None and row.channels == 2


def test_missing_or_wrong_signatures_are_403_and_audited(
    world_factory: Callable[..., SourceWorld], telephony_samples: TelephonySamples
) -> None:
    dual, mono = _samples(telephony_samples)
    media = MediaServer(dual, mono)
    other = "AC" + "f" * 32

    def calls(m: str, _b: str) -> list[tuple[dict[str, str], dict[str, str], str | None]]:
        return [
            (_params(m), QUERY, None),  # no signature
            (_params(m), QUERY, "somebody-elses-token"),  # wrong key
            (_params(m, AccountSid=other), QUERY, TWILIO_TOKEN),  # no binding
            (_params(m, RecordingUrl="https://evil.example/steal"), QUERY, TWILIO_TOKEN),
        ]

    done = _run(world_factory, media, calls)
    statuses = [(status, body["reason"]) for status, body in done.results]
    assert statuses == [
        (403, "signature-missing"),
        (403, "signature-invalid"),
        (403, "unknown-source"),
        (403, "media-host-not-allowed"),
    ]
    assert not media.requests and not done.published  # nothing fetched, nothing produced
    assert not list(done.world.landing_dir.glob("RE*"))
    audited = [
        (e.action, e.reason)
        for e in done.world.services.audit.iter_entries()
        if e.action == "source.refused"
    ]
    assert audited == [
        ("source.refused", "signature-missing"),
        ("source.refused", "signature-invalid"),
        ("source.refused", "unknown-source"),
        ("source.refused", "media-host-not-allowed"),
    ]
    refused = done.world.metrics.source_refused
    assert refused.labels("twilio", "signature-invalid")._value.get() == 1


def test_a_tampered_parameter_breaks_the_signature(
    world_factory: Callable[..., SourceWorld], telephony_samples: TelephonySamples
) -> None:
    dual, mono = _samples(telephony_samples)

    async def tampered() -> tuple[int, dict[str, Any]]:
        async with TestServer(MediaServer(dual, mono).app()) as media_server:
            base_media = f"http://127.0.0.1:{media_server.port}"
            world = world_factory(media_host=f"127.0.0.1:{media_server.port}")

            async def publish(event: bytes, recording_id: str) -> None:
                raise AssertionError("nothing may be produced")

            ctx = WebContext.over(
                world.services, metrics=Metrics(), publish_recording=publish,
                health=lambda: {"status": "ok"},
            )  # fmt: skip
            async with TestClient(TestServer(build_web_app(ctx))) as client:
                url = str(client.make_url("/v1/sources/twilio")) + "?" + urlencode(QUERY)
                params = _params(base_media)
                signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
                forged = {**QUERY, "customer_ref": "C-9999"}  # the URL is signed too
                resp = await client.post(
                    f"/v1/sources/twilio?{urlencode(forged)}",
                    data=params,
                    headers={"X-Twilio-Signature": signature},
                )
                return resp.status, await resp.json()

    status, body = asyncio.run(tampered())
    assert (status, body["reason"]) == (403, "signature-invalid")


def test_media_over_the_limit_and_unfinished_recordings(
    world_factory: Callable[..., SourceWorld], telephony_samples: TelephonySamples
) -> None:
    dual, mono = _samples(telephony_samples)

    def calls(m: str, _b: str) -> list[tuple[dict[str, str], dict[str, str], str | None]]:
        mono_params = functools.partial(_params, m, RecordingChannels="1")
        return [
            (mono_params(), QUERY, TWILIO_TOKEN),
            (mono_params(RecordingStatus="in-progress"), QUERY, TWILIO_TOKEN),
            (mono_params(RecordingStartTime="yesterday"), QUERY, TWILIO_TOKEN),
            (mono_params(), {"agent_id": "a-7"}, TWILIO_TOKEN),  # no customer_ref anywhere
        ]

    done = _run(world_factory, MediaServer(dual, mono), calls, max_bytes=len(mono) - 1)
    assert [(s, b.get("reason")) for s, b in done.results] == [
        (413, "media-too-large"),
        (200, "in-progress"),
        (400, "invalid-metadata"),
        (400, "missing-metadata"),
    ]
    assert not done.published
