"""Which storage failures are infrastructure (worth retrying, never dead-lettered): each
backend's real failure, translated at its boundary into a ``*Unavailable`` error; a
wrong request stays a plain error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callvault.broker import free_port
from callvault.errors import is_unavailable, unavailable_backend
from storage.catalog.sql import open_database
from storage.errors import (
    AuditError,
    CatalogError,
    CatalogUnavailable,
    StorageError,
    VaultUnavailable,
)
from storage.vault import open_vault


def test_a_closed_or_unreachable_catalog_is_unavailable(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path}/c.sqlite3")
    with pytest.raises(CatalogError) as wrong:
        database.fetch_all("SELEC 1")  # a wrong statement: not infrastructure
    assert not is_unavailable(wrong.value)
    database.close()
    with pytest.raises(CatalogUnavailable):
        database.fetch_all("SELECT 1")
    with pytest.raises(CatalogUnavailable):
        open_database(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")


def test_a_busy_sqlite_database_is_unavailable(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "locked.sqlite3"
    database = open_database(f"sqlite:///{path}")
    database.fetch_all("CREATE TABLE t (x INTEGER)")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        connection = sqlite3.connect(path, timeout=0.1)
        try:
            try:
                connection.execute("INSERT INTO t VALUES (1)")
            except sqlite3.OperationalError as exc:
                from storage.catalog.sql import _sqlite_error

                assert isinstance(_sqlite_error("busy", exc), CatalogUnavailable)
            else:  # pragma: no cover - the lock is held
                raise AssertionError("expected the database to be locked")
        finally:
            connection.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        database.close()


def test_infrastructure_stays_recognizable_when_wrapped() -> None:
    try:
        try:
            raise CatalogUnavailable("database is locked")
        except CatalogUnavailable as exc:
            raise AuditError("audit append failed") from exc
    except AuditError as wrapped:
        assert is_unavailable(wrapped) and unavailable_backend(wrapped) == "catalog"
    assert not is_unavailable(StorageError("bad key"))


def test_a_vault_whose_disk_refuses_writes_is_unavailable(tmp_path: Path) -> None:
    """A real refusal: the file size limit (as a full quota would) makes the write fail."""
    script = f"""
import resource, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from storage.vault.local import LocalVault
from storage.errors import VaultUnavailable
vault = LocalVault({str(tmp_path / "vault")!r})
resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))
try:
    vault.put("rec/a/b.cvlt", b"x" * 4096, tags={{"format": "cvlt2"}})
except VaultUnavailable as exc:
    print("unavailable:", exc)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "unavailable:" in result.stdout and "File too large" in result.stdout


def test_a_missing_bucket_or_unreachable_s3_is_unavailable(
    seaweed_env: None, seaweed_endpoint: str
) -> None:
    missing = open_vault("s3://no-such-bucket-callvault", s3_endpoint=seaweed_endpoint)
    with pytest.raises(VaultUnavailable, match="does not exist"):
        missing.put("rec/a.cvlt", b"x", tags={})
    nowhere = open_vault("s3://bucket", s3_endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(VaultUnavailable):
        nowhere.put("rec/a.cvlt", b"x", tags={})


def test_a_wrong_request_to_s3_is_not_infrastructure() -> None:
    from botocore.exceptions import ClientError

    from storage._aws import failure_of

    def error(code: str, status: int) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": code, "Message": "m"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "PutObject",
        )

    assert failure_of(error("SlowDown", 503)).transient  # type: ignore[union-attr]
    assert failure_of(error("InternalError", 500)).transient  # type: ignore[union-attr]
    assert failure_of(error("AccessDenied", 403)).transient  # type: ignore[union-attr]
    assert not failure_of(error("InvalidArgument", 400)).transient  # type: ignore[union-attr]
    assert not failure_of(error("EntityTooLarge", 400)).transient  # type: ignore[union-attr]
