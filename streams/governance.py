"""Governance gauges and consumer lag, refreshed by a worker timer.

What a caller may rely on:

- :class:`GovernanceCollector` reads the catalog and the keyring and sets, on the
  worker's :class:`~streams.metrics.Metrics`:

  * ``callvault_recordings_stored{retention_class}``: stored recordings per class
    (every class of the policy is always present, 0 when empty);
  * ``callvault_recordings_overdue_deletion``: stored recordings past retain-until
    that no legal hold covers; normally 0 (the retention sweep deletes them);
  * ``callvault_master_key_age_seconds``: time since the current master key was
    created (or last rotated);
  * ``callvault_governance_refresh_timestamp_seconds``: when that last succeeded.

  These are catalog-wide figures: every worker reports the same values, so dashboards
  and alerts aggregate them with ``max()``, not ``sum()``.
- :func:`update_consumer_lag` sets ``callvault_consumer_lag{topic, partition}`` for the
  partitions assigned to *this* worker (end offset minus committed offset), and drops
  the series of partitions it no longer owns; ``sum()`` over workers is the group's
  lag. When the recordings topic has no lag on this worker, nothing is unprocessed,
  so ``callvault_ingest_oldest_event_age_seconds`` is reset to 0.
- Labels are retention class names, topic names and partition numbers: bounded sets,
  no identifiers.
- :func:`refresh_worker_gauges` is what the worker's timer calls; a failure of one
  source (catalog down, KMS unreachable) is logged and leaves the other gauges and
  the worker running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from callvault.errors import CallvaultError
from policies import expiry_cut
from storage.catalog import Catalog
from storage.catalog.stats import GovernanceCounts, HeldFilter, governance_counts
from storage.crypto.keyring import Keyring
from streams.metrics import Metrics

__all__ = [
    "GovernanceCollector",
    "GovernanceSnapshot",
    "refresh_worker_gauges",
    "update_consumer_lag",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GovernanceSnapshot:
    """What one refresh found (also set on the gauges)."""

    counts: GovernanceCounts | None
    master_key_age_seconds: float | None
    at: datetime


class GovernanceCollector:
    """Sets the governance gauges from the catalog and the keyring."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        keyring: Keyring,
        metrics: Metrics,
        retention_classes: Iterable[str],
        clock: Callable[[], datetime],
        held: HeldFilter | None = None,
    ) -> None:
        self.catalog = catalog
        self.keyring = keyring
        self.metrics = metrics
        self.clock = clock
        self.held = held
        self._classes: set[str] = set(retention_classes)
        for name in self._classes:
            metrics.recordings_stored.labels(name).set(0)

    def refresh(self) -> GovernanceSnapshot:
        """Query and set every governance gauge (blocking: call it in an executor).

        Never raises for a source that fails: that gauge keeps its last value, the
        failure is logged, and ``counts`` / ``master_key_age_seconds`` is ``None``.
        """
        now = self.clock()
        counts: GovernanceCounts | None
        try:
            counts = governance_counts(
                self.catalog.database, expiry_cut(now).cutoff, held=self.held
            )
        except CallvaultError as exc:
            log.error("governance gauges: catalog query failed: %s", exc)
            counts = None
        if counts is not None:
            self._classes.update(counts.stored_by_class)
            for name in self._classes:
                self.metrics.recordings_stored.labels(name).set(counts.stored_by_class.get(name, 0))
            self.metrics.recordings_overdue_deletion.set(counts.overdue)

        age: float | None
        try:
            age = max(0.0, (now - self.keyring.master_key_created_at()).total_seconds())
        except CallvaultError as exc:
            log.error("governance gauges: master key age unavailable: %s", exc)
            age = None
        if age is not None:
            self.metrics.master_key_age.set(age)
        if counts is not None and age is not None:
            self.metrics.governance_refreshed.set(now.timestamp())
        return GovernanceSnapshot(counts=counts, master_key_age_seconds=age, at=now)


def _committed_offsets(consumer: Any) -> Mapping[Any, int | None]:
    # faust keeps the committed offset per partition (read from the broker when the
    # partition is assigned, updated on every commit) in this attribute; it has no
    # public accessor. Without it, lag is measured from the earliest offset instead.
    committed = getattr(consumer, "_committed_offset", None)
    return committed if isinstance(committed, Mapping) else {}


async def update_consumer_lag(
    app: Any, metrics: Metrics, topics: Collection[str]
) -> dict[tuple[str, int], int]:
    """Set ``callvault_consumer_lag`` for this worker's partitions of ``topics``.

    ``app`` is the worker's faust app. Returns ``{(topic, partition): lag}``; empty
    while the consumer is not started or owns no partition.

    Raises:
        Exception: whatever the Kafka client raises while asking the broker for end
            offsets (the caller logs it).
    """
    consumer = app.consumer
    try:
        assigned = [tp for tp in consumer.assignment() if tp.topic in topics]
    except Exception:  # ConsumerNotStarted and friends: nothing assigned yet
        assigned = []
    lags: dict[tuple[str, int], int] = {}
    if assigned:
        ends = await consumer.highwaters(*assigned)
        committed = _committed_offsets(consumer)
        unknown = [tp for tp in assigned if committed.get(tp) is None]
        earliest = await consumer.earliest_offsets(*unknown) if unknown else {}
        for tp in assigned:
            end = ends.get(tp)
            if end is None:
                continue
            done = committed.get(tp)
            if done is None:
                done = earliest.get(tp) or 0
            lags[(tp.topic, tp.partition)] = max(0, int(end) - int(done))
    metrics.consumer_lag.clear()  # partitions moved to another worker disappear
    for (topic, partition), lag in lags.items():
        metrics.consumer_lag.labels(topic, str(partition)).set(lag)
    return lags


async def refresh_worker_gauges(
    collector: GovernanceCollector,
    app: Any,
    metrics: Metrics,
    *,
    recordings_topic: str,
    topics: Collection[str],
    on_lag: Callable[[int | None], None] | None = None,
) -> int | None:
    """The worker timer's body: consumer lag, then the governance gauges (in a thread:
    a catalog that does not answer never delays the lag). Returns this worker's lag on
    ``recordings_topic`` (``None`` when it is unknown: broker hiccup, nothing assigned)."""
    loop = asyncio.get_running_loop()
    owned_lag: int | None = None
    try:
        lags = await update_consumer_lag(app, metrics, topics)
    except Exception as exc:  # broker hiccup: try again at the next tick
        log.warning("consumer lag unavailable: %s", exc)
    else:
        owned = [lag for (topic, _), lag in lags.items() if topic == recordings_topic]
        if owned:
            owned_lag = sum(owned)
            if owned_lag == 0:
                metrics.oldest_event_age.set(0)
    if on_lag is not None:
        on_lag(owned_lag)
    await loop.run_in_executor(None, collector.refresh)
    return owned_lag
