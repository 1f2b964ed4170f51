"""Declaring the worker's topics with their partition counts before it subscribes.

A consumer's first metadata request would otherwise let the broker auto-create a topic
with *its* default count (tansu: 4), whatever ``CALLVAULT_PARTITIONS`` says. The worker
therefore creates every topic it uses, with its configured count, before faust starts.

What a caller may rely on:

- :func:`declare_topics` creates the topics that do not exist yet and leaves existing
  ones as they are: Kafka can add partitions to a live topic but never remove them,
  and adding them moves keys to other partitions, so an operator does it on purpose
  (README: "Partitions"), never a worker at start-up. A topic with fewer partitions
  than configured is logged as a warning with the command that raises it.
- It never raises: a broker it cannot reach is logged and left to faust's own retries
  (the topics are then created by the broker's defaults).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping

__all__ = ["declare_topics"]

log = logging.getLogger(__name__)


def declare_topics(
    bootstrap: str, partitions: Mapping[str, int], *, replication: int = 1, timeout: float = 20.0
) -> dict[str, int]:
    """Create the missing topics of ``partitions`` (name -> count, ``replication``
    copies: the worker's ``topic_replication_factor``) on ``bootstrap``
    (``host:port[,host:port]``); return each topic's partition count as the broker has it
    now (empty when the broker could not be asked). Runs in a thread of its own, with
    its own event loop, so it can be called before faust owns the main one."""
    result: dict[str, int] = {}

    def run() -> None:
        try:
            result.update(
                asyncio.run(asyncio.wait_for(_declare(bootstrap, partitions, replication), timeout))
            )
        except Exception as exc:  # noqa: BLE001 - reported, faust retries on its own
            log.warning("could not declare topics (%s: %s)", type(exc).__name__, exc)

    thread = threading.Thread(target=run, name="declare-topics", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    for topic, want in partitions.items():
        have = result.get(topic)
        if have is not None and have < want:
            log.warning(
                "topic %s has %d partitions, CALLVAULT_PARTITIONS asks for %d: at most %d "
                "worker processes share it; raise it with `kafka-topics.sh --alter --topic %s "
                "--partitions %d` (it can never shrink)",
                topic, have, want, have, topic, want,
            )  # fmt: skip
    return result


async def _declare(
    bootstrap: str, partitions: Mapping[str, int], replication: int
) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        # list_topics asks for every topic: naming one would let the broker auto-create it
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=count, replication_factor=replication)
            for name, count in partitions.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(missing)
        return await _counts(admin, list(partitions))
    finally:
        await admin.close()


async def _counts(admin: object, topics: list[str]) -> dict[str, int]:
    """Partition counts of those of ``topics`` that exist."""
    described = await admin.describe_topics(topics)  # type: ignore[attr-defined]
    counts: dict[str, int] = {}
    for topic in described:
        if topic.get("error_code", 0) == 0 and topic.get("partitions"):
            counts[str(topic["topic"])] = len(topic["partitions"])
    return counts
