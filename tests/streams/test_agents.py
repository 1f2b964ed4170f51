"""The ingest agent, unit-tested with faust's ``agent.test_context()`` (no broker).

The same flow runs again through the real broker in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from storage.errors import CatalogUnavailable
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
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, *, value: bytes, **kw: Any) -> None:
        self.values.append(value)
        self.messages.append({"value": value, **kw})

    def headers(self, index: int = 0) -> dict[str, str]:
        return {k: v.decode() for k, v in self.messages[index].get("headers") or []}


@pytest.fixture
def workers() -> Iterator[Callable[[Services], Worker]]:
    """Makes workers whose broker is never contacted; closes the event loops faust made
    for them and never closes itself in a test context (the loop its agents were bound
    to when made, and the consumer thread's loop; ``asyncio.run`` runs the test on its
    own loop)."""
    made: list[Worker] = []

    def make(services: Services) -> Worker:
        worker = Worker(services, broker_url="kafka://127.0.0.1:1")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        loops = [agent.loop for agent in worker.app.agents.values()]
        consumer = worker.app._consumer  # made by the first stream iteration, if any
        if consumer is not None:
            loops.append(consumer._thread.thread_loop)
        for loop in loops:
            if not loop.is_running() and not loop.is_closed():
                loop.close()


def test_ingest_agent_stores_dead_letters_and_publishes_audit(
    services: Services, workers: Callable[[Services], Worker]
) -> None:
    worker = workers(services)  # its broker is never contacted here
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
        await worker.audit_publisher.publish()  # the audit outbox's round (its own task)

    asyncio.run(scenario())
    assert services.catalog.get_recording("agent-1") is not None
    (value,) = dlq.values
    headers = dlq.headers()
    assert (
        headers["cv-reason"] == "malformed" and headers["cv-source-topic"] == "callvault.recordings"
    )
    assert headers["cv-attempts"] == "1" and headers["cv-original"] == "inline"
    assert b"broken" not in value  # the original, sealed
    (letter,) = services.dead_letters.list()
    assert letter.entry_id == headers["cv-dlq-id"]
    assert worker.dead_letters.original(letter) == b"{broken"
    assert worker.dead_letters.show(letter)["event"] is None  # not JSON: offset only
    published = [json.loads(v) for v in audit.values]
    assert {p["action"] for p in published} == {"ingest.stored", "ingest.rejected"}
    assert all(len(p["hash"]) == 64 for p in published)


def test_dead_letters_carry_no_personal_data_but_their_source_offset(
    services: Services, workers: Callable[[Services], Worker]
) -> None:
    worker = workers(services)
    dlq = Recorder()
    worker.dlq.send = dlq  # type: ignore[method-assign]
    worker.audit_topic.send = Recorder()  # type: ignore[method-assign]
    audio = call_wav(1.0, codec="mulaw", seed=2)
    missing = landed_call(services, "agent-2", audio, write=False, customer="Jane Roe +1 555 0100")
    missing["audio"]["uri"] = f"file://{services.settings.landing_dir}/+15550100-in.wav"

    async def scenario() -> None:
        async with worker.app.agents["ingest"].test_context() as agent:
            await agent.put(json.dumps(missing).encode())
            for _ in range(100):
                if dlq.values:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
    (message,) = dlq.messages
    everything = message["value"] + b"".join(k.encode() + v for k, v in message["headers"])
    sha = missing["audio"]["sha256"].encode()
    assert b"Jane" not in everything and b"555" not in everything and sha not in everything
    headers = dlq.headers()
    assert headers["cv-reason"] == "landing-missing"
    assert headers["cv-source-topic"] == "callvault.recordings"
    assert int(headers["cv-source-offset"]) >= 0
    assert headers["cv-recording-ref"].startswith("r") and "agent-2" not in headers.values()
    (letter,) = services.dead_letters.list()
    view = worker.dead_letters.show(letter)
    assert view["event"]["customer_ref"] == "[redacted]"
    assert view["event"]["audio"]["uri"] == "[redacted]"
    assert view["event"]["audio"]["sha256"] == "[redacted]"
    assert json.loads(worker.dead_letters.original(letter)) == missing  # kept whole, sealed


def test_a_failing_batch_is_retried_not_skipped(
    services: Services, workers: Callable[[Services], Worker]
) -> None:
    worker = workers(services)
    worker.dlq.send = Recorder()  # type: ignore[method-assign]
    worker.audit_topic.send = Recorder()  # type: ignore[method-assign]
    real = worker.pipeline.process_batch
    calls = {"n": 0}

    def flaky(payloads: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise CatalogUnavailable("catalog connection reset")  # infrastructure
        return real(payloads)

    worker.pipeline.process_batch = flaky  # type: ignore[method-assign]
    good = landed_call(services, "agent-3", call_wav(1.0, codec="mulaw", seed=3))

    async def scenario() -> None:
        async with worker.app.agents["ingest"].test_context() as agent:
            await agent.put(json.dumps(good).encode())
            for _ in range(100):
                if services.catalog.get_recording("agent-3"):
                    break
                await asyncio.sleep(0.1)

    asyncio.run(scenario())
    assert calls["n"] == 2
    assert services.catalog.get_recording("agent-3") is not None
    assert worker.metrics.ingest_batch_failures._value.get() == 1
    retries = worker.metrics.registry.get_sample_value(
        "callvault_ingest_infrastructure_retries_total", {"backend": "catalog"}
    )
    assert retries == 1
