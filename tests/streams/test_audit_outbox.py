"""The audit topic is a faithful copy of the audit log (issue 17), against the real
broker: published in seq order from the catalog with a stored cursor; one publisher
holds the cursor at a time; a broker that lost its memory gets the whole log again, in
order; a cursor left behind the topic (a worker that died between the broker's
acknowledgement and its cursor write) moves to the topic's last record instead of
publishing twice; a send that fails is re-sent, never skipped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from callvault.broker import EmbeddedBroker
from callvault.services import Services, build_services
from callvault.settings import load_settings
from storage.catalog.audit import AuditDraft, entry_json
from storage.catalog.outbox import OutboxCursors
from streams.metrics import Metrics
from streams.outbox import OUTBOX_NAME, AuditPublisher, KafkaTopicTail

pytestmark = [pytest.mark.integration]

TOPIC = "callvault.audit"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(tmp_path / "data")}))
    yield built
    built.close()


class Producer:
    """``send`` as the worker's topic has it: returns the acknowledgement's future."""

    def __init__(self, bootstrap: str, fail_after: int | None = None) -> None:
        self.bootstrap, self.fail_after, self.sent = bootstrap, fail_after, 0
        self._producer: Any = None

    async def send(self, *, key: bytes, value: bytes, partition: int) -> Any:
        from aiokafka import AIOKafkaProducer

        if self.fail_after is not None and self.sent >= self.fail_after:
            raise ConnectionError("the broker went away")
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=3000
            )
            await self._producer.start()
        self.sent += 1
        return await self._producer.send(TOPIC, key=key, value=value, partition=partition)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


def _append(services: Services, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        services.audit.append(AuditDraft(actor="test", action=f"test.{i}", outcome="ok"))


def _publish(services: Services, bootstrap: str, holder: str, **producer_kw: Any) -> int:
    """Rounds until one publishes nothing; how many records were published."""

    async def run() -> int:
        producer = Producer(bootstrap, **producer_kw)
        publisher = AuditPublisher(
            services.audit,
            OutboxCursors(services.catalog.database),
            lambda: producer.send,
            holder=holder,
            metrics=Metrics(),
            tail=KafkaTopicTail(bootstrap, TOPIC),
        )
        try:
            total = 0
            while sent := await publisher.publish():
                total += sent
            return total
        finally:
            await publisher.tail.close()  # type: ignore[union-attr]
            await producer.close()

    return asyncio.run(run())


def _topic(bootstrap: str) -> list[dict[str, Any]]:
    """Every record of the topic, from its first offset to its end (assign, no group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def read() -> list[dict[str, Any]]:
        part = TopicPartition(TOPIC, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([part])
            end = (await consumer.end_offsets([part]))[part]
            await consumer.seek_to_beginning(part)
            found: list[dict[str, Any]] = []
            while await consumer.position(part) < end:
                batch = await consumer.getmany(part, timeout_ms=1000)
                found.extend(json.loads(record.value) for record in batch.get(part, []))
            return found
        finally:
            await consumer.stop()

    return asyncio.run(asyncio.wait_for(read(), 60))


def _catalog(services: Services) -> list[dict[str, Any]]:
    return [entry_json(entry) for entry in services.audit.iter_entries()]


def test_the_audit_topic_stays_a_copy_of_the_audit_log(
    services: Services, kafka_broker: EmbeddedBroker
) -> None:
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    _append(services, 30)
    assert _publish(services, bootstrap, "w1") == 30
    assert _topic(bootstrap) == _catalog(services)

    # another worker waits while w1's lease runs
    _append(services, 5, 30)
    assert _publish(services, bootstrap, "w2") == 0
    OutboxCursors(services.catalog.database).release(OUTBOX_NAME, "w1")  # w1 stopped
    assert _publish(services, bootstrap, "w2") == 5
    assert _topic(bootstrap) == _catalog(services)

    # a send fails midway: nothing is skipped, the rest follows in order
    _append(services, 10, 35)
    assert _publish(services, bootstrap, "w2", fail_after=4) == 0  # the round failed
    assert OutboxCursors(services.catalog.database).get(OUTBOX_NAME).published_seq == 39
    assert _publish(services, bootstrap, "w2") == 6
    assert _topic(bootstrap) == _catalog(services)

    # the cursor behind the topic (acknowledged, not written): no record twice
    cursors = OutboxCursors(services.catalog.database)
    assert cursors.take(OUTBOX_NAME, "w2", lease=timedelta(seconds=30)) is not None
    cursors.advance(OUTBOX_NAME, "w2", 40, 39)
    assert _publish(services, bootstrap, "w2") == 0
    assert cursors.get(OUTBOX_NAME).published_seq == 45

    # the broker loses its memory (tansu in memory, restarted): the log again, in order
    kafka_broker.stop()
    kafka_broker.start()
    _append(services, 3, 45)
    assert _publish(services, bootstrap, "w2") == 48
    topic = _topic(bootstrap)
    assert [record["seq"] for record in topic] == list(range(1, 49))
    assert topic == _catalog(services)
