"""Leases and the shared access rate window, on SQLite and PostgreSQL: several catalog
connections (as several worker processes have) racing for the same lease or the same
last slot of a principal's window."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from policies import Principal
from storage.catalog import Catalog, open_catalog
from storage.catalog.leases import LeaseStore
from storage.catalog.ratewindow import AccessRateWindow
from streams.http.rateguard import RateGuard
from tests.streams.lifecycle_support import Clock

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture
def catalogs(catalog_url: str) -> Iterator[Callable[[], Catalog]]:
    """Opens catalogs on one database, each with its own connections (a worker each)."""
    opened: list[Catalog] = []

    def open_one() -> Catalog:
        catalog = open_catalog(catalog_url, migrate=True)
        opened.append(catalog)
        return catalog

    yield open_one
    for catalog in opened:
        catalog.close()


def _race(count: int, attempt: Callable[[int], bool]) -> list[bool]:
    """Run ``attempt(i)`` for i in range(count) in threads released at once."""
    start = threading.Barrier(count)
    results: list[bool] = [False] * count

    def run(i: int) -> None:
        start.wait()
        results[i] = attempt(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_one_holder_at_a_time_renewal_expiry_and_release(
    catalogs: Callable[[], Catalog],
) -> None:
    clock = Clock(T0)
    a = LeaseStore(catalogs().database, clock)
    b = LeaseStore(catalogs().database, clock)
    assert a.acquire("retention-sweep", "w1:10", TTL)
    assert not b.acquire("retention-sweep", "w2:20", TTL)  # held, not expired
    assert b.acquire("landing-reconciler", "w2:20", TTL)  # names are independent
    first = a.get("retention-sweep")
    assert first is not None and first.holder == "w1:10"

    clock.now += TTL / 2
    assert a.acquire("retention-sweep", "w1:10", TTL)  # a renewal
    renewed = a.get("retention-sweep")
    assert renewed is not None
    assert renewed.acquired_at == first.acquired_at and renewed.expires_at == clock.now + TTL
    clock.now += TTL - timedelta(seconds=1)
    assert not b.acquire("retention-sweep", "w2:20", TTL)  # the renewal pushed expiry out
    assert a.held_by("retention-sweep", "w1:10")

    clock.now += timedelta(seconds=2)  # w1 died: its lease expired
    assert not a.held_by("retention-sweep", "w1:10")
    assert b.acquire("retention-sweep", "w2:20", TTL)  # a take-over
    taken = b.get("retention-sweep")
    assert taken is not None and taken.holder == "w2:20" and taken.acquired_at == clock.now
    assert not a.acquire("retention-sweep", "w1:10", TTL)  # the old holder lost it

    assert not a.release("retention-sweep", "w1:10")  # never another holder's lease
    assert b.release("retention-sweep", "w2:20")
    assert a.get("retention-sweep") is None
    assert a.acquire("retention-sweep", "w1:10", TTL)
    with pytest.raises(ValueError):
        a.acquire("retention-sweep", "w1:10", timedelta(0))


def test_workers_racing_for_a_lease_exactly_one_wins(catalogs: Callable[[], Catalog]) -> None:
    stores = [LeaseStore(catalogs().database) for _ in range(6)]
    for round_ in range(3):
        name = f"job-{round_}"
        results = _race(len(stores), lambda i, name=name: stores[i].acquire(name, f"w{i}:{i}", TTL))
        assert sum(results) == 1, results
        winner = results.index(True)
        lease = stores[0].get(name)
        assert lease is not None and lease.holder == f"w{winner}:{winner}"


def test_rate_window_in_the_catalog_is_shared_by_workers(
    catalogs: Callable[[], Catalog],
) -> None:
    alice = Principal("alice", "qa-reviewer")
    guards = [
        RateGuard(lambda role: 3, window_store=AccessRateWindow(catalogs().database))
        for _ in range(2)
    ]
    assert guards[0].admit(alice, "rec-1", T0).allowed
    assert guards[1].admit(alice, "rec-2", T0 + timedelta(seconds=1)).allowed
    seek = guards[0].admit(alice, "rec-2", T0 + timedelta(seconds=2))  # seeking: no count
    assert seek.allowed and seek.used == 2
    assert guards[1].admit(alice, "rec-3", T0 + timedelta(seconds=3)).used == 3
    denied = guards[0].admit(alice, "rec-4", T0 + timedelta(seconds=4))
    assert not denied.allowed and denied.reason == "rate-limited"
    assert (denied.used, denied.limit) == (3, 3)
    assert denied.retry_after == 3600 - 4 + 1  # rec-1 leaves the window first
    # Listening again minutes later refreshes rec-2 (within a minute it is not rewritten).
    assert guards[1].admit(alice, "rec-2", T0 + timedelta(minutes=2)).allowed
    # Another principal, even of the same name in another org, has its own window.
    assert guards[1].admit(Principal("alice", "qa-reviewer", "acme-qa"), "rec-4", T0).allowed
    # After the hour, rec-1 no longer counts; a denied request consumed nothing.
    later = T0 + timedelta(hours=1, seconds=1)
    assert guards[1].admit(alice, "rec-4", later).allowed
    assert guards[0].used(alice, later) == 3


def test_workers_racing_for_the_last_slot_let_exactly_one_through(
    catalogs: Callable[[], Catalog],
) -> None:
    bob = Principal("bob", "qa-reviewer")
    guards = [
        RateGuard(lambda role: 5, window_store=AccessRateWindow(catalogs().database))
        for _ in range(4)
    ]
    for i in range(4):
        assert guards[i].admit(bob, f"rec-{i}", T0).allowed
    results = _race(8, lambda i: guards[i % 4].admit(bob, f"new-{i}", T0).allowed)
    assert sum(results) == 1, results  # N workers never allow N x the limit
    assert guards[0].used(bob, T0 - timedelta(seconds=1)) == 5
