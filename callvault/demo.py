"""``callvault demo``: push synthetic calls through a running system and report.

Calls go in the two ways telephony uses: most through ``POST /v1/recordings``
(the worker lands the audio and produces the event), and one event straight onto
``callvault.recordings`` naming landing audio whose sha256 is wrong, to show the
dead-letter path. The special cases: consent declined, a PCI pause (card number
spoken while the agent paused recording), and the bad checksum. Outcomes are read
back from the catalog and the audit log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from callvault.errors import CallvaultError
from callvault.settings import Settings

__all__ = ["run_demo", "demo_event"]


@dataclass
class DemoCall:
    label: str
    event: dict[str, Any]
    audio: bytes
    via: str  # "http" | "kafka"


def demo_event(
    recording_id: str,
    *,
    audio: bytes,
    uri: str = "",
    consent: str = "notified",
    pci_pauses: list[dict[str, int]] | None = None,
    seconds: float = 20.0,
    queue: str = "support",
    agent: str = "agent-1",
    customer: str = "cust-0001",
    sha256: str | None = None,
    ended_at: datetime | None = None,
) -> dict[str, Any]:
    """A well-formed RecordingCompleted event for synthetic audio."""
    end = ended_at or datetime.now(UTC).replace(microsecond=0)
    event: dict[str, Any] = {
        "schema": "callvault.recording.v1",
        "recording_id": recording_id,
        "call_id": f"call-{recording_id}",
        "tenant": "demo",
        "started_at": (end - timedelta(seconds=seconds)).isoformat(),
        "ended_at": end.isoformat(),
        "agent_id": agent,
        "customer_ref": customer,
        "queue": queue,
        "direction": "inbound",
        "consent": {"recording": consent},
        "audio": {
            "uri": uri,
            "format": "wav",
            "sha256": sha256 or hashlib.sha256(audio).hexdigest(),
        },
    }
    if pci_pauses:
        event["pci_pauses"] = pci_pauses
    return event


def _calls(count: int, landing: Path) -> list[DemoCall]:
    from callvault.synth import call_wav

    run = uuid.uuid4().hex[:6]
    calls: list[DemoCall] = []
    for i in range(count):
        audio = call_wav(20.0, codec="mulaw", seed=i)
        rid = f"demo-{run}-{i + 1:02d}"
        calls.append(
            DemoCall(
                "ordinary call",
                demo_event(rid, audio=audio, customer=f"cust-{i % 3:04d}"),
                audio,
                "http",
            )
        )
    audio = call_wav(20.0, codec="mulaw", seed=101)
    calls.append(
        DemoCall(
            "consent declined",
            demo_event(f"demo-{run}-declined", audio=audio, consent="declined"),
            audio,
            "http",
        )
    )
    audio = call_wav(20.0, codec="mulaw", seed=102)
    calls.append(
        DemoCall(
            "PCI pause 5.0-9.5 s",
            demo_event(
                f"demo-{run}-pci", audio=audio, pci_pauses=[{"start_ms": 5000, "end_ms": 9500}]
            ),
            audio,
            "http",
        )
    )
    audio = call_wav(20.0, codec="mulaw", seed=103)
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / f"demo-{run}-badsum.wav"
    path.write_bytes(audio)
    calls.append(
        DemoCall(
            "wrong sha256 (Kafka)",
            demo_event(f"demo-{run}-badsum", audio=audio, uri=f"file://{path}", sha256="0" * 64),
            audio,
            "kafka",
        )
    )
    return calls


async def _post(url: str, token: str, call: DemoCall) -> str:
    import aiohttp

    meta = {k: v for k, v in call.event.items() if k != "audio"}
    meta["audio"] = {"format": "wav", "sha256": call.event["audio"]["sha256"]}
    form = aiohttp.FormData()
    form.add_field("metadata", json.dumps(meta), content_type="application/json")
    form.add_field("audio", call.audio, filename="call.wav", content_type="audio/wav")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/recordings", data=form, headers={"Authorization": f"Bearer {token}"}
        ) as resp,
    ):
        body = await resp.text()
        if resp.status != 202:
            return f"HTTP {resp.status}: {body}"
        return "accepted"


async def _produce(bootstrap: str, events: list[dict[str, Any]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait("callvault.recordings", json.dumps(event).encode())
    finally:
        await producer.stop()


def _outcome(services: Any, rid: str) -> str | None:
    row = services.catalog.get_recording(rid)
    if row is not None:
        extra = f", {row.pci_redacted_ms / 1000:.1f}s silenced" if row.pci_redacted_ms else ""
        return (
            f"stored ({row.audio_format}, {row.stored_size // 1024} KiB encrypted, "
            f"keep until {row.retain_until:%Y-%m-%d}{extra})"
        )
    for entry in services.audit.iter_entries(recording_id=rid):
        if entry.action == "ingest.declined":
            return "declined: landing audio destroyed, nothing stored"
        if entry.action == "ingest.rejected":
            return f"dead-lettered ({entry.reason}); landing audio kept for an operator"
    return None


def run_demo(settings: Settings, *, url: str, calls: int, timeout: float) -> bool:
    """Run the demo against the system at ``url``; True when every call got its expected fate."""
    from callvault.services import build_services
    from streams.http.auth import local_tokens

    services = build_services(settings)
    try:
        tokens = local_tokens(services.keyring, services.policy)
        token = tokens.issue(
            user="demo-pbx", role="telephony", org=None, ttl=timedelta(minutes=10), tenant="demo"
        )
        demo_calls = _calls(calls, settings.landing_dir)
        click.echo(f"pushing {len(demo_calls)} synthetic calls to {url} ...")
        for call in demo_calls:
            if call.via == "http":
                try:
                    status = asyncio.run(_post(url, token, call))
                except OSError as exc:
                    raise CallvaultError(
                        f"cannot reach {url} ({exc}); is `callvault up` running?"
                    ) from exc
                click.echo(
                    f"  {call.event['recording_id']:<24} {call.label:<22} "
                    f"POST /v1/recordings: {status}"
                )
        broker = (
            settings.broker or f"kafka://127.0.0.1:{settings.embedded_broker_port}"
        ).removeprefix("kafka://")
        kafka_events = [c.event for c in demo_calls if c.via == "kafka"]
        asyncio.run(_produce(broker, kafka_events))
        for event in kafka_events:
            click.echo(
                f"  {event['recording_id']:<24} {'wrong sha256 (Kafka)':<22} "
                "produced to callvault.recordings"
            )

        click.echo("waiting for the worker ...")
        pending = {c.event["recording_id"]: c for c in demo_calls}
        results: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for rid in list(pending):
                outcome = _outcome(services, rid)
                if outcome:
                    results[rid] = outcome
                    pending.pop(rid)
            time.sleep(0.5)
        click.echo("\nwhat became of each call:")
        for call in demo_calls:
            rid = call.event["recording_id"]
            click.echo(
                f"  {rid:<24} {call.label:<22} {results.get(rid, 'NO OUTCOME within the timeout')}"
            )
        expected = {"declined": "declined", "pci": "stored", "badsum": "dead-lettered"}
        ok = not pending
        for rid, outcome in results.items():
            for suffix, start in expected.items():
                if rid.endswith(suffix) and not outcome.startswith(start):
                    ok = False
        click.echo(
            "\nAudit trail: `callvault audit verify`; metrics: "
            f"http://127.0.0.1:{settings.web_port}/metrics"
        )
        return ok
    finally:
        services.close()
