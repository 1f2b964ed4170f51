"""The worker's source agents, unit-tested with faust's ``agent.test_context()`` (no
broker): mapped notifications are produced to callvault.recordings keyed by recording
id, refused ones go to callvault.dlq with their reason and position, their content
sealed. The same flow runs through the real broker in tests/e2e/test_sources_e2e.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from callvault.services import Services
from streams.app import Worker
from tests.fixtures.telephony import TelephonySamples
from tests.streams.sources.conftest import SourceWorld, aws_notification
from tests.streams.test_agents import workers  # noqa: F401 - closes faust's event loops


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


def test_the_s3_events_agent_produces_events_and_dead_letters_refusals(
    world: SourceWorld,
    telephony_samples: TelephonySamples,
    workers: Callable[[Services], Worker],  # noqa: F811
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    world.client.put_object(
        Bucket=world.bucket, Key="calls/agent.wav",
        Body=telephony_samples.get("asterisk-wav").path.read_bytes(),
        Metadata={"recording-id": "agent-1", "customer-ref": "+15555550100", "agent-id": "a-1",
                  "started-at": start.isoformat(), "duration-seconds": "8"},
    )  # fmt: skip
    worker = workers(world.services)
    recordings, dlq = Recorder(), Recorder()
    worker.recordings.send = recordings  # type: ignore[method-assign]
    worker.dlq.send = dlq  # type: ignore[method-assign]
    worker.audit_topic.send = Recorder()  # type: ignore[method-assign]
    refused = aws_notification(world.bucket, "elsewhere/+15555550100.wav")

    async def scenario() -> None:
        async with worker.app.agents["s3-events"].test_context() as agent:
            await agent.put(aws_notification(world.bucket, "calls/agent.wav"), key=b"k")
            await agent.put(refused, key=b"k")
            for _ in range(200):
                if recordings.sent and dlq.sent:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
    (produced,) = recordings.sent
    assert produced["key"] == b"agent-1"
    assert json.loads(produced["value"])["tenant"] == "acme"
    (dead,) = dlq.sent
    headers = {name: value.decode() for name, value in dead["headers"]}
    assert headers["cv-reason"] == "unknown-source" and headers["cv-detail"].startswith("s3: ")
    assert headers["cv-source-topic"] == "callvault.s3-events"
    seen = dead["value"] + json.dumps(headers).encode()
    assert b"5555550100" not in seen  # the notification is kept, sealed
    (letter,) = world.services.dead_letters.list()
    assert worker.dead_letters.original(letter) == refused
