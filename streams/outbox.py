"""The audit topic as a faithful copy of the audit log: an outbox with a stored cursor.

The catalog's audit log is the outbox. :class:`AuditPublisher` reads the records after
the cursor (:mod:`storage.catalog.outbox`) in seq order, produces each to
``callvault.audit`` (key: the seq) and waits for the broker's acknowledgement before
the next, and moves the cursor only past acknowledged records. What a caller may rely
on:

- **never skipped, in order**: a failed send stops the round; the next round starts
  again after the last acknowledged record (one record in flight at most, so an
  ambiguous failure is settled by reading the topic's last record back). A record may
  appear twice in a row when the Kafka client retried a send the broker had written
  (tansu has no idempotent producer): consumers take the key (the seq) as the
  record's identity.
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
from storage.types import AuditEntry
from streams.metrics import Metrics

__all__ = ["AuditPublisher", "TopicTail", "KafkaTopicTail", "OUTBOX_NAME"]

log = logging.getLogger(__name__)

OUTBOX_NAME = "callvault.audit"
ROUND_MAX = 500
LEASE = timedelta(seconds=30)
#: Checkpoints kept in memory for the topic at most (the vault holds every one).
PENDING_CHECKPOINTS_MAX = 64
TAIL_RETRY = 5.0
_CHECKPOINT_KEY = b"checkpoint"


def _entry_value(entry: AuditEntry) -> bytes:
    return json.dumps(entry_json(entry), separators=(",", ":"), sort_keys=True).encode()


class TopicTail(Protocol):
    """The end of a one-partition topic, read back from the broker."""

    async def end_offset(self) -> int:
        """The offset the next record will get (0: empty)."""
        ...

    async def last_seq(self) -> int | None:
        """The audit seq of the last record (``None``: the topic is empty, or its last
        record names no seq)."""
        ...

    async def first(self) -> tuple[int, int | None]:
        """The earliest offset the topic still holds and the seq of its record."""
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

    async def last_seq(self) -> int | None:
        from aiokafka import TopicPartition

        part = TopicPartition(self.topic, 0)

        async def read(consumer: Any) -> int | None:
            end = int((await consumer.end_offsets([part]))[part])
            if end == 0:
                return None
            consumer.seek(part, end - 1)
            while True:
                batch = await consumer.getmany(part, timeout_ms=1000)
                records = batch.get(part, [])
                if records:
                    return _seq_of(records[-1].key, records[-1].value)

        result = await self._guarded(read)
        return result if isinstance(result, int) else None

    async def first(self) -> tuple[int, int | None]:
        from aiokafka import TopicPartition

        part = TopicPartition(self.topic, 0)

        async def read(consumer: Any) -> tuple[int, int | None]:
            start = int((await consumer.beginning_offsets([part]))[part])
            end = int((await consumer.end_offsets([part]))[part])
            if end <= start:
                return start, None
            consumer.seek(part, start)
            while True:
                batch = await consumer.getmany(part, timeout_ms=1000, max_records=1)
                records = batch.get(part, [])
                if records:
                    return start, _seq_of(records[0].key, records[0].value)

        found = await self._guarded(read)
        assert isinstance(found, tuple)
        return found

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:  # closing a consumer of a broker that is gone
                log.debug("closing the audit tail consumer: %s", type(exc).__name__)


Send = Callable[..., Awaitable[Any]]


def _seq_of(key: Any, value: Any) -> int | None:
    """The audit seq a record carries: its key, or the ``seq`` of its JSON value (records
    published before the keys were); for a signed checkpoint, the seq it pins (it follows
    that record)."""
    if isinstance(key, bytes) and key.isdigit():
        return int(key)
    try:
        body = json.loads(value)
        seq = body.get("seq")
        if seq is None and isinstance(body.get("checkpoint"), dict):
            seq = body["checkpoint"]["payload"]["seq"]
    except (TypeError, ValueError, AttributeError, KeyError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


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
        self._cursor: OutboxCursor | None = None
        self._renew_at = 0.0
        self._pending_checkpoints: list[tuple[int, bytes]] = []

    def add_checkpoint(self, seq: int, value: bytes) -> None:
        """Publish a signed checkpoint of the log (key ``checkpoint``) right after the
        record ``seq`` it pins (kept in memory until the broker acknowledged it: the
        vault holds every checkpoint anyway). Bounded: at most ``PENDING_CHECKPOINTS_MAX``
        wait (the oldest dropped first), and none while another process holds the
        cursor (they would never be published from here)."""
        self._pending_checkpoints.append((seq, value))
        self._pending_checkpoints.sort(key=lambda item: item[0])
        del self._pending_checkpoints[:-PENDING_CHECKPOINTS_MAX]

    @property
    def pending_checkpoints(self) -> int:
        """How many checkpoints wait to be published from this process."""
        return len(self._pending_checkpoints)

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
        self._cursor, self._renew_at = None, 0.0  # and the cursor from the catalog
        if not self._failing:
            self._failing = True
            log.error(
                "audit publisher: %s (%s); retrying from the last acknowledged record",
                type(exc).__name__,
                str(exc)[:200],
            )

    async def _held(self) -> OutboxCursor | None:
        """The cursor while this publisher holds it: the lease is taken or renewed in the
        catalog when a third of it has passed, not at every round (the holder alone
        moves the cursor, so its own copy is current)."""
        now = time.monotonic()
        if self._cursor is not None and now < self._renew_at:
            return self._cursor
        cursor = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.cursors.take(self.name, self.holder, lease=LEASE)
        )
        self._cursor = cursor
        self._renew_at = now + LEASE.total_seconds() / 3
        return cursor

    async def _advance(self, seq: int, offset: int) -> None:
        moved = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.cursors.advance(self.name, self.holder, seq, offset)
        )
        self._cursor = OutboxCursor(self.name, seq, offset) if moved else None
        if not moved:
            self._renew_at = 0.0  # the lease was lost meanwhile: take it again

    async def _round(self) -> int:
        loop = asyncio.get_running_loop()
        cursor = await self._held()
        if cursor is None:
            if self._pending_checkpoints:  # another worker publishes: not from here
                log.info(
                    "audit publisher: %d checkpoint(s) not published from this process "
                    "(another holds the cursor; they stay in the vault)",
                    len(self._pending_checkpoints),
                )
                self._pending_checkpoints.clear()
            return 0  # another worker publishes
        cursor = await self._checked_cursor(cursor)
        entries = await loop.run_in_executor(
            None,
            lambda: list(self.audit.iter_entries(after_seq=cursor.published_seq, limit=ROUND_MAX)),
        )
        sent = 0
        seq, offset = cursor.published_seq, cursor.topic_offset
        try:
            records = [
                (entry.seq, str(entry.seq).encode(), _entry_value(entry)) for entry in entries
            ]
            for record_seq, key, value in self._with_checkpoints(seq, records):
                got = await self._produce(key, value)
                if got is not None:
                    if self.tail is not None and offset >= 0 and got < offset + 1:
                        # the topic went back (a broker that lost its memory): stop here,
                        # the cursor at the last record that fitted; the next round reads
                        # the topic back and refills it
                        log.error(
                            "audit publisher: record %d got offset %d, not %d: the topic "
                            "lost records; reading it back",
                            record_seq, got, offset + 1,
                        )  # fmt: skip
                        self._checked = False
                        break
                    if offset >= 0 and got > offset + 1:
                        # a send the client retried was written twice (the broker
                        # acknowledged the retry): a repeat of the same record
                        log.warning(
                            "audit publisher: record %d got offset %d, not %d (a retried "
                            "send written twice)",
                            record_seq, got, offset + 1,
                        )  # fmt: skip
                    offset = got
                if key == _CHECKPOINT_KEY:
                    self._pending_checkpoints.remove((record_seq, value))
                    continue
                seq = record_seq
                sent += 1
        finally:
            if (seq, offset) != (cursor.published_seq, cursor.topic_offset):
                await self._advance(seq, offset)
        self.metrics.audit_published.inc(sent)
        return sent

    def _with_checkpoints(
        self, published: int, records: list[tuple[int, bytes, bytes]]
    ) -> list[tuple[int, bytes, bytes]]:
        """The round's records with the pending checkpoints, each right after the record
        it pins (those of records already published first)."""
        pending = list(self._pending_checkpoints)
        out: list[tuple[int, bytes, bytes]] = []
        while pending and pending[0][0] <= published:
            out.append((pending[0][0], _CHECKPOINT_KEY, pending.pop(0)[1]))
        for record in records:
            out.append(record)
            while pending and pending[0][0] <= record[0]:
                out.append((pending[0][0], _CHECKPOINT_KEY, pending.pop(0)[1]))
        return out

    async def _produce(self, key: bytes, value: bytes) -> int | None:
        """Send one record and wait for the broker's acknowledgement; its offset."""
        future = await self._send()(key=key, value=value, partition=0)
        metadata = await future if inspect.isawaitable(future) else None
        got = getattr(metadata, "offset", None)
        return got if isinstance(got, int) else None

    async def _checked_cursor(self, cursor: OutboxCursor) -> OutboxCursor:
        """The cursor, corrected by what the topic holds (first round, after a failure,
        and every round where the topic's end is not where the cursor says). A topic
        that cannot be read back leaves the cursor as it is (checked again after
        :data:`TAIL_RETRY` seconds: a broker that is down fails the sends anyway).

        The topic's last record (seq ``L`` at offset ``end - 1``) against the cursor's
        seq ``P``: ``L >= P`` moves the cursor to it (acknowledged, the cursor not
        written); ``L < P`` means the topic lost records: when it still starts with seq 1
        (or retention trimmed its head: offsets are never renumbered) it lost its tail
        only, and publishing resumes after ``L``; otherwise (a broker that lost its
        memory and then got the record in flight) and for an empty topic the whole log
        is published again, from seq 1."""
        if self.tail is None or time.monotonic() < self._tail_retry_at:
            return cursor
        try:
            end = await self.tail.end_offset()
            if self._checked and end == cursor.topic_offset + 1:
                return cursor
            last = await self.tail.last_seq() if end > 0 else None
        except Exception as exc:
            self._tail_retry_at = time.monotonic() + TAIL_RETRY
            self._checked = False
            log.warning("audit publisher: cannot read the topic back (%s)", type(exc).__name__)
            return cursor
        published, offset = cursor.published_seq, cursor.topic_offset
        if last is None:
            target = (0, end - 1)  # empty (or unreadable records): the whole log again
        elif last >= published:
            target = (last, end - 1)  # acknowledged, the cursor not written (or repeats)
        else:  # the topic lost records: only its tail, or everything (then a stray)?
            try:
                start, first_seq = await self.tail.first()
            except Exception as exc:
                self._tail_retry_at = time.monotonic() + TAIL_RETRY
                self._checked = False
                log.warning("audit publisher: cannot read the topic back (%s)", type(exc).__name__)
                return cursor
            intact = start > 0 or first_seq == 1  # retention trims, it never renumbers
            target = (last, end - 1) if intact else (0, end - 1)
        if target != (published, offset):
            if target[0] < published:
                log.error(
                    "audit publisher: the topic lost records (its last is seq %s at offset "
                    "%d; %d were acknowledged up to offset %d): publishing from seq %d",
                    last, end - 1, published, offset, target[0] + 1,
                )  # fmt: skip
            await self._advance(*target)
            cursor = OutboxCursor(cursor.name, *target)
        self._checked = True
        return cursor

    async def stop(self) -> None:
        self._cursor = None
        if self.tail is not None:
            await self.tail.close()
        with contextlib.suppress(CallvaultError):  # else the lease lapses by itself
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.cursors.release(self.name, self.holder)
            )
