"""POST /v1/sources/s3-events (a MinIO webhook, an SNS/SQS bridge): authenticated,
tenant-bound, then handed to callvault.s3-events, where the worker maps it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from policies import Principal
from streams.errors import AuthError
from streams.http import WebContext, build_web_app
from tests.fixtures.telephony import TelephonySamples
from tests.streams.sources.conftest import SourceWorld, aws_notification


class Tokens:
    """Bearer tokens naming a principal (with the tenant an IdP would put in)."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self.principals = principals

    def verify(self, token: str, now: datetime) -> Principal:
        if token not in self.principals:
            raise AuthError("token-signature", "unknown token")
        return self.principals[token]


def _post(
    world: SourceWorld, requests: list[tuple[str | None, bytes]]
) -> tuple[list[Any], list[Any]]:
    produced: list[tuple[bytes, str]] = []

    async def publish_s3_event(notification: bytes, key: str) -> None:
        produced.append((notification, key))

    async def publish(event: bytes, recording_id: str) -> None:
        raise AssertionError("the route only hands notifications on")

    tokens = Tokens(
        {
            "pbx": Principal("minio-webhook", "telephony"),
            "acme": Principal("minio-acme", "telephony", tenant="acme"),
            "globex": Principal("minio-globex", "telephony", tenant="globex"),
            "qa": Principal("alice", "qa-reviewer"),
        }
    )

    async def scenario() -> list[Any]:
        ctx = WebContext.over(
            world.services, metrics=world.metrics, publish_recording=publish,
            health=lambda: {"status": "ok"}, tokens=tokens, sources=world.sources,
            publish_s3_event=publish_s3_event,
        )  # fmt: skip
        results = []
        async with TestClient(TestServer(build_web_app(ctx))) as client:
            for token, body in requests:
                headers = {"Content-Type": "application/json"}
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                resp = await client.post("/v1/sources/s3-events", data=body, headers=headers)
                results.append((resp.status, await resp.json()))
        return results

    return asyncio.run(scenario()), produced


def test_a_webhook_notification_is_handed_on_and_mapped(
    world: SourceWorld, telephony_samples: TelephonySamples
) -> None:
    key = "calls/webhook.wav"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    world.client.put_object(
        Bucket=world.bucket, Key=key, Body=telephony_samples.get("asterisk-wav").path.read_bytes(),
        Metadata={"call-id": "c-9", "customer-ref": "C-9", "agent-id": "a-9",
                  "started-at": start.isoformat(), "duration-seconds": "8"},
    )  # fmt: skip
    body = aws_notification(world.bucket, key)
    sns = json.dumps({"Type": "Notification", "Message": body.decode()}).encode()
    results, produced = _post(world, [("pbx", body), ("acme", sns)])
    assert results == [(202, {"accepted": 1}), (202, {"accepted": 1})]
    assert [k for _, k in produced] == [f"{world.bucket}/{key}"] * 2
    # What the worker's s3-events agent does with it:
    (mapped,) = world.sources.on_s3_message(produced[0][1].encode(), produced[0][0])
    assert mapped.status == "mapped" and mapped.event is not None
    assert mapped.event["queue"] == "support"  # the binding's default
    (dup,) = world.sources.on_s3_message(None, produced[1][0])
    assert (dup.status, dup.reason) == ("skipped", "duplicate")
    assert world.ingest(mapped.event)[0].status == "stored"


def test_refused_notifications(world: SourceWorld) -> None:
    good = aws_notification(world.bucket, "calls/x.wav")
    results, produced = _post(
        world,
        [
            (None, good),
            ("qa", good),
            ("globex", good),
            ("pbx", aws_notification("somebody-elses-bucket", "calls/x.wav")),
            ("pbx", b"[1, 2"),
        ],
    )
    assert [(status, body.get("reason")) for status, body in results] == [
        (401, "token-missing"),
        (403, "capability-not-granted"),
        (403, "tenant-mismatch"),
        (403, "unknown-source"),
        (400, "malformed"),
    ]
    assert not produced
    refused = [
        e.reason for e in world.services.audit.iter_entries() if e.action == "source.refused"
    ]
    assert refused == ["tenant-mismatch", "unknown-source", "malformed"]
