"""The audit topic as a faithful copy of the audit log: an outbox with a stored cursor.

The catalog's audit log is the outbox. :class:`AuditPublisher` reads the records after
the cursor (:mod:`storage.catalog.outbox`) in seq order, produces each to
``callvault.audit`` (key: the seq) and waits for the broker's acknowledgement before
the next, and moves the cursor only past acknowledged records. What a caller may rely
on:

- **never skipped, in order**: a failed send stops the round; the next round starts
  again after the last acknowledged record (one record in flight at most, so an
  ambiguous failure is settled by reading the topic's last record back).
- **a topic that lost records is refilled**: before each round the topic's end offset
  is compared with the cursor's; a topic that holds fewer records than were
  acknowledged (a broker that lost its memory) is refilled from its last record that
  survived (from the first record when it is empty); a topic whose last record is
  beyond the cursor (published, the cursor not stored) moves the cursor to it.
- **one publisher**: the cursor is leased to one worker at a time (renewed each round);
  another worker's publisher waits until the lease lapses.
- failures are logged once per outage (and counted in
  ``callvault_audit_publish_failures_total``); nothing blocks the event loop (catalog
  reads in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

from callvault.errors import CallvaultError
from storage.catalog.audit import AuditLog, entry_json
from storage.catalog.outbox import OutboxCursor, OutboxCursors
from streams.metrics import Metrics

__all__ = ["AuditPublisher", "TopicTail", "KafkaTopicTail", "OUTBOX_NAME"]

log = logging.getLogger(__name__)

OUTBOX_NAME = "callvault.audit"
ROUND_MAX = 500
LEASE = timedelta(seconds=30)
TAIL_RETRY = 5.0


class TopicTail(Protocol):
    """The end of a one-partition topic, read back from the broker."""

    async def end_offset(self) -> int:
        """The offset the next record will get (0: empty)."""
        ...

    async def last_key(self) -> bytes | None:
        """The key of the last record (``None``: the topic is empty)."""
        ...

    async def close(self) -> None: ...


class KafkaTopicTail:
    """:class:`TopicTail` with an aiokafka consumer (no group: assign and seek)."""

    def __init__(self, bootstrap: str, topic: str, *, request_timeout: float = 10.0) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.request_timeout = request_timeout
        self._consumer: Any = None

    async def _started(self) -> Any:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                group_id=None,
                request_timeout_ms=int(self.request_timeout * 1000),
                metadata_max_age_ms=5000,
            )
            try:
                await asyncio.wait_for(consumer.start(), self.request_timeout)
                consumer.assign([TopicPartition(self.topic, 0)])
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer

    async def _guarded(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            consumer = await self._started()
            return await asyncio.wait_for(call(consumer), self.request_timeout)
        except BaseException:
            await self.close()  # a fresh consumer next time
            raise

    async def end_offset(self) -> int:
        from aiokafka import TopicPartition

        part = TopicPartition(self.topic, 0)

        async def ask(consumer: Any) -> int:
            return int((await consumer.end_offsets([part]))[part])

        return int(await self._guarded(ask))

    async def last_key(self) -> bytes | None:
        from aiokafka import TopicPartition

        part = TopicPartition(self.topic, 0)

        async def read(consumer: Any) -> bytes | None:
            end = int((await consumer.end_offsets([part]))[part])
            if end == 0:
                return None
            consumer.seek(part, end - 1)
            while True:
                batch = await consumer.getmany(part, timeout_ms=1000)
                records = batch.get(part, [])
                if records:
                    key = records[-1].key
                    return key if isinstance(key, bytes) else b""

        result = await self._guarded(read)
        return result if isinstance(result, bytes) else None

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:  # closing a consumer of a broker that is gone
                log.debug("closing the audit tail consumer: %s", type(exc).__name__)


Send = Callable[..., Awaitable[Any]]


class AuditPublisher:
    """See the module docstring. ``send`` is the topic's ``send`` (faust: returns a
    future of the broker's acknowledgement); ``tail`` reads the topic back (``None``:
    no read-back, the cursor alone decides, as in unit tests without a broker)."""

    def __init__(
        self,
        audit: AuditLog,
        cursors: OutboxCursors,
        send: Callable[[], Send],
        *,
        holder: str,
        metrics: Metrics,
        tail: TopicTail | None = None,
        name: str = OUTBOX_NAME,
    ) -> None:
        self.audit, self.cursors = audit, cursors
        self._send = send  # looked up at each round (tests replace the topic's send)
        self.holder, self.metrics, self.tail, self.name = holder, metrics, tail, name
        self._lock = asyncio.Lock()
        self._failing = False
        self._checked = False
        self._tail_retry_at = 0.0

    async def publish(self) -> int:
        """One round: publish what the catalog holds beyond the cursor; return how many
        records were acknowledged. Never raises for a broker or catalog failure (logged;
        the next round retries from the last acknowledged record)."""
        async with self._lock:
            try:
                sent = await self._round()
            except Exception as exc:
                self._failed(exc)
                return 0
            if self._failing:
                self._failing = False
                log.warning("audit publisher: publishing again (the topic caught up)")
            return sent

    def _failed(self, exc: BaseException) -> None:
        self.metrics.audit_publish_failures.inc()
        self._checked = False  # read the topic back before the next send
        if not self._failing:
            self._failing = True
            log.error(
                "audit publisher: %s (%s); retrying from the last acknowledged record",
                type(exc).__name__,
                str(exc)[:200],
            )

    async def _round(self) -> int:
        loop = asyncio.get_running_loop()
        cursor = await loop.run_in_executor(
            None, lambda: self.cursors.take(self.name, self.holder, lease=LEASE)
        )
        if cursor is None:
            return 0  # another worker publishes
        cursor = await self._checked_cursor(cursor)
        entries = await loop.run_in_executor(
            None,
            lambda: list(self.audit.iter_entries(after_seq=cursor.published_seq, limit=ROUND_MAX)),
        )
        sent = 0
        seq, offset = cursor.published_seq, cursor.topic_offset
        try:
            for entry in entries:
                value = json.dumps(entry_json(entry), separators=(",", ":"), sort_keys=True)
                future = await self._send()(
                    key=str(entry.seq).encode(), value=value.encode(), partition=0
                )
                metadata = await future if inspect.isawaitable(future) else None
                got = getattr(metadata, "offset", None)
                if isinstance(got, int):
                    if self.tail is not None and offset >= 0 and got != offset + 1:
                        log.error(
                            "audit publisher: record %d got offset %d, not %d: the topic "
                            "changed underneath (lost records?); reading it back",
                            entry.seq, got, offset + 1,
                        )  # fmt: skip
                        self._checked = False
                    offset = got
                seq = entry.seq
                sent += 1
        finally:
            if seq != cursor.published_seq:
                final_seq, final_offset = seq, offset
                await loop.run_in_executor(
                    None,
                    lambda: self.cursors.advance(self.name, self.holder, final_seq, final_offset),
                )
        self.metrics.audit_published.inc(sent)
        return sent

    async def _checked_cursor(self, cursor: OutboxCursor) -> OutboxCursor:
        """The cursor, corrected by what the topic holds (first round, after a failure,
        and every round where the topic's end is not where the cursor says). A topic
        that cannot be read back leaves the cursor as it is (checked again after
        :data:`TAIL_RETRY` seconds: a broker that is down fails the sends anyway)."""
        if self.tail is None or time.monotonic() < self._tail_retry_at:
            return cursor
        try:
            end = await self.tail.end_offset()
        except Exception as exc:
            self._tail_retry_at = time.monotonic() + TAIL_RETRY
            self._checked = False
            log.warning("audit publisher: cannot read the topic back (%s)", type(exc).__name__)
            return cursor
        if self._checked and end == cursor.topic_offset + 1:
            return cursor
        if end == cursor.topic_offset + 1 and cursor.published_seq == 0:
            self._checked = True
            return cursor  # nothing published, nothing there
        key = await self.tail.last_key() if end > 0 else None
        if key is None:
            seq, offset = 0, -1  # the topic is empty: refill it from the first record
        else:
            try:
                seq = int(key.decode("ascii"))
            except ValueError:
                seq = cursor.published_seq  # a record of someone else: trust the cursor
            offset = end - 1
        if (seq, offset) != (cursor.published_seq, cursor.topic_offset):
            if seq < cursor.published_seq:
                log.error(
                    "audit publisher: the topic holds records up to seq %d only, %d were "
                    "acknowledged: publishing them again",
                    seq, cursor.published_seq,
                )  # fmt: skip
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                None, lambda: self.cursors.advance(self.name, self.holder, seq, offset)
            )
            cursor = OutboxCursor(cursor.name, seq, offset)
        self._checked = True
        return cursor

    async def stop(self) -> None:
        if self.tail is not None:
            await self.tail.close()
        with contextlib.suppress(CallvaultError):  # else the lease lapses by itself
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.cursors.release(self.name, self.holder)
            )
