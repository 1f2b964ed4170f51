"""The ingest agent, unit-tested with faust's ``agent.test_context()`` (no broker).

The same flow runs again through the real broker in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from streams.app import Worker
from tests.e2e.harness import landed_call


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(tmp_path / "data")}))
    yield built
    built.close()


class Recorder:
    """Stands in for ``Topic.send``: keeps what would have been produced."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def __call__(self, *, value: bytes, **_: Any) -> None:
        self.values.append(value)


def test_ingest_agent_stores_dead_letters_and_publishes_audit(services: Services) -> None:
    worker = Worker(services, broker_url="kafka://127.0.0.1:1")  # never contacted here
    dlq, audit = Recorder(), Recorder()
    worker.dlq.send = dlq  # type: ignore[method-assign]
    worker.audit_topic.send = audit  # type: ignore[method-assign]
    good = landed_call(services, "agent-1", call_wav(1.0, codec="mulaw", seed=1))

    async def scenario() -> None:
        async with worker.app.agents["ingest"].test_context() as agent:
            await agent.put(json.dumps(good).encode())
            await agent.put(b"{broken")
            for _ in range(100):
                if services.catalog.get_recording("agent-1") and dlq.values:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert services.catalog.get_recording("agent-1") is not None
    (dead,) = [json.loads(v) for v in dlq.values]
    assert dead["reason"] == "malformed" and dead["event"] == "{broken"
    published = [json.loads(v) for v in audit.values]
    assert {p["action"] for p in published} == {"ingest.stored", "ingest.rejected"}
    assert all(len(p["hash"]) == 64 for p in published)
