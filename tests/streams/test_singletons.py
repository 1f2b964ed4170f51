"""Singleton jobs across worker processes (review of issues 16/17): the audit checkpoints
are signed by one process at a time, from what the vault holds, never overwriting a
stored one; checkpoints waiting for the topic are bounded and dropped where another
process publishes; a singleton never runs twice beside itself in one worker and stops
when its lease is lost."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from callvault.services import Services
from storage.catalog.audit import AuditDraft
from storage.catalog.leases import CHECKPOINT_LEASE, SWEEP_LEASE
from storage.catalog.outbox import OutboxCursors
from storage.checkpoints import CHECKPOINT_PREFIX, AuditCheckpoints, CheckpointError, verify_audit
from streams.app import Worker
from streams.metrics import Metrics
from streams.outbox import LEASE, PENDING_CHECKPOINTS_MAX, AuditPublisher


@pytest.fixture
def services(file_services: Services) -> Services:
    """One catalog (SQLite) and one folder vault for every process of a test."""
    return file_services


@pytest.fixture
def workers(services: Services) -> Iterator[tuple[Worker, Worker]]:
    """Two worker processes over one catalog and vault (distinct lease holders)."""
    pair = (
        Worker(services, broker_url="kafka://127.0.0.1:1"),
        Worker(services, broker_url="kafka://127.0.0.1:1"),
    )
    pair[0].lease_holder, pair[1].lease_holder = "host-a:1", "host-b:2"
    yield pair
    for worker in pair:
        worker.pipeline.close()


def _append(services: Services, n: int) -> None:
    for i in range(n):
        services.audit.append(AuditDraft(actor="user:alice", action="access.play", outcome="ok",
                                         reason="allowed", recording_id=f"rec-{i}"))  # fmt: skip


def _stored(services: Services) -> dict[str, bytes]:
    keys = services.vault.iter_keys(CHECKPOINT_PREFIX)
    return {key: services.vault.get(key) for key in keys}


def test_two_signers_continue_each_other_and_never_overwrite(services: Services) -> None:
    a, b = (
        AuditCheckpoints(services.audit, services.vault, services.keyring, every_records=1)
        for _ in range(2)
    )
    _append(services, 3)
    first = a.write_due(services.clock())
    assert first is not None
    _append(services, 2)
    second = b.write_due(services.clock())  # the other process signs next
    assert second is not None and second.prev_digest == first.digest
    _append(services, 2)
    # process a must continue b's checkpoint, not its own last one (the stale cache
    # named ``first`` here and orphaned ``second``: a false tampering alarm)
    third = a.write_due(services.clock())
    assert third is not None and (third.prev_seq, third.prev_digest) == (5, second.digest)
    before = _stored(services)
    # a writer that signs a seq already stored (from a stale view) is refused
    with pytest.raises(CheckpointError, match="already exists"):
        a.write(services.audit.head(), first)  # type: ignore[arg-type]
    assert _stored(services) == before
    chain, signed = verify_audit(services.audit, a)
    assert chain.ok and signed.ok, signed.problems
    assert signed.checkpoints == 3


def test_concurrent_workers_sign_through_one_lease(
    services: Services, workers: tuple[Worker, Worker]
) -> None:
    for worker in workers:
        worker._checkpoints.every_records = 1  # due at every round

    async def rounds() -> list[tuple[bool, bool]]:
        outcomes = []
        for _ in range(6):
            _append(services, 2)
            outcomes.append(
                tuple(
                    await asyncio.gather(
                        *(
                            w.as_singleton(CHECKPOINT_LEASE, 5.0, w.checkpoint_audit)
                            for w in workers
                        )
                    )
                )
            )
        return outcomes  # type: ignore[return-value]

    outcomes = asyncio.run(rounds())
    # the lease holder runs the job every round; the other process never does
    assert all(ran.count(True) == 1 for ran in outcomes), outcomes
    checkpoints = services.audit_checkpoints()
    verified = checkpoints.verify()
    assert verified.ok, verified.problems
    assert verified.checkpoints == 6


def test_pending_checkpoints_are_bounded_and_dropped_without_the_cursor(
    services: Services,
) -> None:
    cursors = OutboxCursors(services.catalog.database)
    assert cursors.take("callvault.audit", "other-process", lease=LEASE) is not None

    async def never_sent() -> None:
        raise AssertionError("nothing is sent without the cursor")

    publisher = AuditPublisher(
        services.audit, cursors, lambda: never_sent, holder="this-process", metrics=Metrics()
    )
    for seq in range(1, 3 * PENDING_CHECKPOINTS_MAX):
        publisher.add_checkpoint(seq, b"{}")
    assert publisher.pending_checkpoints == PENDING_CHECKPOINTS_MAX
    _append(services, 1)
    assert asyncio.run(publisher.publish()) == 0
    assert publisher.pending_checkpoints == 0  # another process publishes: none kept here


def test_a_singleton_tick_never_runs_beside_the_running_job(
    workers: tuple[Worker, Worker],
) -> None:
    worker = workers[0]
    running = 0
    most = 0

    async def slow_sweep() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.3)
        running -= 1

    async def both() -> tuple[bool, ...]:
        start = asyncio.ensure_future(worker.as_singleton(SWEEP_LEASE, 0.05, slow_sweep))
        await asyncio.sleep(0.05)  # the start-up sweep runs; the timer ticks meanwhile
        tick = await worker.as_singleton(SWEEP_LEASE, 0.05, slow_sweep)
        return (await start, tick)

    assert asyncio.run(both()) == (True, False)
    assert most == 1


def test_a_singleton_stops_when_its_lease_is_lost(
    services: Services, workers: tuple[Worker, Worker]
) -> None:
    worker, other = workers
    worker.lease_renewals = 300.0  # renew every 0.1 s of the 30 s ttl
    stopped = threading.Event()
    batches = 0

    def sweep_in_thread() -> None:  # like the retention sweep: batches off the loop
        nonlocal batches
        while batches < 200:
            try:
                worker._sweeping(1)
            except Exception:
                stopped.set()
                raise
            batches += 1
            time.sleep(0.02)

    async def body() -> None:
        await asyncio.get_running_loop().run_in_executor(None, sweep_in_thread)

    async def run() -> bool:
        job = asyncio.ensure_future(worker.as_singleton(SWEEP_LEASE, 1.0, body))
        await asyncio.sleep(0.2)
        # the lease passes to another worker (this one's expired, e.g. a long pause)
        with services.catalog.database.transaction() as tx:
            tx.execute(
                "UPDATE leases SET holder = ? WHERE name = ?", (other.lease_holder, SWEEP_LEASE)
            )
        return await asyncio.wait_for(job, 5.0)

    assert asyncio.run(run()) is False
    assert worker.lease_lost(SWEEP_LEASE)
    assert stopped.wait(2.0) and batches < 200  # stopped between two batches
