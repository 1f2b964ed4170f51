"""Every PostgreSQL connection of the catalog is bounded (issue 17): statement, lock
and idle-in-transaction timeouts and keepalives are set on the session (the URL's own
options kept); a lock held by an orphaned session fails the waiter (retried) instead of
stalling it; a session left idle inside a transaction is ended by the server, its
locks released; a cut connection (through the fault proxy) is unavailable at once and
the next call reconnects."""

from __future__ import annotations

import time

import psycopg
import pytest

from callvault.errors import CallvaultError, is_unavailable
from storage.catalog import open_catalog
from storage.catalog.audit import AuditDraft
from storage.catalog.sql import PostgresDatabase, SqlTimeouts, open_database
from storage.errors import CatalogUnavailable
from tests.fixtures.faults import FaultProxy

pytestmark = [pytest.mark.integration]

FAST = SqlTimeouts(statement=3, lock=1, idle_in_transaction=1, connect=2, keepalive=4)


@pytest.fixture
def schema_url(postgres_schema_url: str) -> str:
    return postgres_schema_url


def _show(database: PostgresDatabase, name: str) -> str:
    row = database.fetch_one(f"SHOW {name}")
    assert row is not None
    return str(row[0])


def test_every_connection_carries_the_timeouts_and_keeps_the_urls_options(
    schema_url: str,
) -> None:
    database = open_database(schema_url, timeouts=FAST)
    assert isinstance(database, PostgresDatabase)
    try:
        assert _show(database, "statement_timeout") == "3s"
        assert _show(database, "lock_timeout") == "1s"
        assert _show(database, "idle_in_transaction_session_timeout") == "1s"
        assert _show(database, "tcp_keepalives_idle") == "4"
        assert _show(database, "search_path").startswith("t_")  # the URL's own option
        defaults = open_database(schema_url)
        try:
            assert _show(defaults, "statement_timeout") == "1min"  # SqlTimeouts()
            assert _show(defaults, "lock_timeout") == "10s"
        finally:
            defaults.close()
        with pytest.raises(CatalogUnavailable, match="statement timeout"):
            database.fetch_one("SELECT pg_sleep(5)")
    finally:
        database.close()


def test_a_lock_held_by_an_orphaned_session_fails_the_waiter_quickly(schema_url: str) -> None:
    catalog = open_catalog(schema_url, migrate=True, timeouts=FAST)
    orphan = psycopg.connect(schema_url)  # another session: holds the chain head's row lock
    try:
        orphan.execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
        started = time.monotonic()
        with pytest.raises(CallvaultError, match="lock timeout") as failed:
            catalog.audit.append(AuditDraft(actor="t", action="test.locked", outcome="ok"))
        assert is_unavailable(failed.value)  # infrastructure: the worker retries it
        assert time.monotonic() - started < 3  # lock_timeout 1 s, not minutes
    finally:
        orphan.close()
    catalog.audit.append(AuditDraft(actor="t", action="test.after", outcome="ok"))  # retried
    assert [e.action for e in catalog.audit.iter_entries()] == ["test.after"]
    catalog.close()


def test_a_session_idle_in_a_transaction_is_ended_and_its_locks_released(
    schema_url: str,
) -> None:
    catalog = open_catalog(schema_url, migrate=True, timeouts=FAST)
    database = catalog.database
    with pytest.raises(CallvaultError) as failed, database.transaction() as tx:
        tx.fetch_one("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
        time.sleep(2.0)  # a worker thread stuck with the transaction open
        tx.fetch_one("SELECT 1")
    assert is_unavailable(failed.value)
    # the server ended that session: the lock is free, and the next call reconnects
    catalog.audit.append(AuditDraft(actor="t", action="test.free", outcome="ok"))
    assert database.fetch_one("SELECT 1") == (1,)
    catalog.close()


def test_a_cut_connection_is_unavailable_at_once_and_the_next_call_reconnects(
    schema_url: str,
) -> None:
    port = psycopg.conninfo.conninfo_to_dict(schema_url).get("port") or 5432
    with FaultProxy(int(port)) as proxy:
        proxied = schema_url.replace(f":{port}/", f":{proxy.port}/", 1)
        database = open_database(proxied, timeouts=FAST)
        try:
            assert database.fetch_one("SELECT 1") == (1,)
            proxy.cut()
            started = time.monotonic()
            for _ in range(3):
                with pytest.raises(CatalogUnavailable):
                    database.fetch_one("SELECT 1")
            assert time.monotonic() - started < 2
            proxy.heal()
            assert database.fetch_one("SELECT 1") == (1,)
            assert proxy.stats["cuts"] == 1
        finally:
            database.close()
