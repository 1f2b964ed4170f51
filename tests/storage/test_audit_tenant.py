"""The tenant of an audit record is part of its hash (hash form 2, migration 14), on
SQLite and a real PostgreSQL (``catalog_url``): moving a record to another tenant is
named by ``callvault audit verify``; chains written before (form 1) still verify, and
so do the signed checkpoints over a chain that holds both forms."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callvault.cli import cli
from callvault.services import Services, build_services
from callvault.settings import load_settings
from storage.catalog import Catalog, open_catalog
from storage.catalog.audit import HASH_FORM, AuditDraft
from storage.catalog.migrations import MIGRATIONS, apply_migrations
from tests.storage.test_catalog import _append_as_before_12


@pytest.fixture
def env(tmp_path: Path, catalog_url: str) -> dict[str, str]:
    return {"CALLVAULT_DATA_DIR": str(tmp_path / "data"), "CALLVAULT_CATALOG": catalog_url}


@pytest.fixture
def services(env: dict[str, str]) -> Iterator[Services]:
    built = build_services(load_settings(env))
    yield built
    built.close()


def _verify_cli(env: dict[str, str]) -> Any:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CALLVAULT_")}
    clean.update(env)
    return CliRunner().invoke(cli, ["audit", "verify"], env=clean, catch_exceptions=False)


def _grant(tenant: str, n: int) -> AuditDraft:
    return AuditDraft(
        actor="user:qa-7",
        action="access.granted",
        outcome="granted",
        reason="purpose_quality",
        details={"tenant": tenant, "n": n},
    )


def _raw(catalog: Catalog, sql: str, params: tuple[Any, ...] = ()) -> None:
    with catalog.database.transaction() as tx:
        tx.execute(sql, params)


def _append_form_1(catalog: Catalog, tenant: str | None) -> None:
    """A record as the code before migration 14 wrote it: tenant beside the hash."""
    _append_as_before_12(catalog, None, "ingest.stored")
    _raw(catalog, "UPDATE audit_log SET tenant = ? WHERE seq = (SELECT MAX(seq) FROM audit_log)",
         (tenant,))  # fmt: skip


@pytest.mark.clause("management.safety")
def test_moving_a_record_to_another_tenant_is_named_by_audit_verify(
    services: Services, env: dict[str, str]
) -> None:
    entries = services.audit.append_many([_grant("acme", i) for i in range(5)])
    assert {(e.tenant, e.hash_form) for e in entries} == {("acme", HASH_FORM)}
    assert [e.seq for e in services.audit.iter_entries(tenant="acme")] == [1, 2, 3, 4, 5]
    checkpoints = services.audit_checkpoints()
    assert checkpoints.write_due(services.clock()) is not None
    ok = _verify_cli(env)
    assert ok.exit_code == 0, ok.output
    assert "audit chain intact: 5 records verified" in ok.output

    # acme's auditor no longer sees seq 3; the chain says so
    _raw(services.catalog, "UPDATE audit_log SET tenant = 'globex' WHERE seq = 3")
    assert [e.seq for e in services.audit.iter_entries(tenant="acme")] == [1, 2, 4, 5]
    broken = _verify_cli(env)
    assert broken.exit_code == 1
    assert "audit chain BROKEN at record 3: seq 3: contents do not match its hash" in broken.output

    # hiding it from every tenant (NULL: the default tenant's) is caught the same way
    _raw(services.catalog, "UPDATE audit_log SET tenant = NULL WHERE seq = 3")
    assert services.audit.verify().first_broken_seq == 3
    # and so is passing the record off as written before the change (form 1)
    _raw(services.catalog, "UPDATE audit_log SET hash_form = 1 WHERE seq = 3")
    assert services.audit.verify().first_broken_seq == 3
    _raw(services.catalog, "UPDATE audit_log SET hash_form = 7, tenant = 'acme' WHERE seq = 3")
    result = services.audit.verify()
    assert (result.first_broken_seq, "unknown audit hash form 7" in result.problem) == (3, True)

    _raw(services.catalog, "UPDATE audit_log SET hash_form = 2 WHERE seq = 3")
    assert _verify_cli(env).exit_code == 0  # put back: intact again


def test_a_recording_s_tenant_is_hashed_as_resolved_at_append(services: Services) -> None:
    catalog = services.catalog
    at = "2026-11-20T10:00:00.000000Z"
    columns = {
        "recording_id": "r-1", "call_id": "c", "tenant": "globex", "subject_ref": "s",
        "agent_id": "a", "queue": "q", "direction": "inbound", "started_at": at,
        "ended_at": at, "duration_ms": 1, "consent": "notified", "purposes": "[]",
        "retention_class": "standard-90d", "retain_until": at, "object_key": "k",
        "subject_key_id": "sk", "ciphertext_sha256": "x", "stored_size": 1,
        "audio_bytes": 1, "audio_format": "wav", "sample_rate": 8000, "channels": 1,
        "pci_redacted_ms": 0, "created_at": at, "state": "stored",
    }  # fmt: skip
    marks = ", ".join("?" for _ in columns)
    _raw(catalog, f"INSERT INTO recordings ({', '.join(columns)}) VALUES ({marks})",
         tuple(columns.values()))  # fmt: skip
    # the recording's tenant wins over one the details name, as before migration 14
    entry = services.audit.append(replace(_grant("acme", 1), recording_id="r-1"))
    assert entry.tenant == "globex"
    assert [e.seq for e in services.audit.iter_entries(tenant="globex")] == [entry.seq]
    assert services.audit.verify().ok
    _raw(catalog, "UPDATE audit_log SET tenant = 'acme' WHERE seq = ?", (entry.seq,))
    assert services.audit.verify().first_broken_seq == entry.seq


def test_a_chain_written_before_migration_14_still_verifies_with_its_checkpoints(
    catalog_url: str, tmp_path: Path
) -> None:
    with open_catalog(catalog_url) as old:
        apply_migrations(old.database, tuple(m for m in MIGRATIONS if m.version < 14))
        for n in range(3):
            _append_form_1(old, "acme" if n % 2 else None)
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "data"), "CALLVAULT_CATALOG": catalog_url}
    services = build_services(load_settings(env))  # migrates to 14: the old rows are form 1
    try:
        old_entries = list(services.audit.iter_entries())
        assert [(e.hash_form, e.tenant) for e in old_entries] == [
            (1, None), (1, "acme"), (1, None),
        ]  # fmt: skip
        checkpoints = services.audit_checkpoints()
        first = checkpoints.write_due(services.clock())
        assert first is not None and first.seq == 3
        new = services.audit.append_many([_grant("acme", 9), _grant("globex", 10)])
        assert [(e.hash_form, e.prev_hash) for e in new] == [
            (HASH_FORM, old_entries[-1].hash), (HASH_FORM, new[0].hash),
        ]  # fmt: skip
        checkpoints.write(services.audit.head(), first)  # type: ignore[arg-type]
        cli_result = _verify_cli(env)
        assert cli_result.exit_code == 0, cli_result.output
        assert "audit chain intact: 5 records verified" in cli_result.output
        assert "checkpoints intact: 2" in cli_result.output
        # a form-1 record's tenant stays outside its hash (README: storage/README.md) ...
        _raw(services.catalog, "UPDATE audit_log SET tenant = 'globex' WHERE seq = 2")
        assert services.audit.verify().ok
        # ... a form-2 record's does not
        _raw(services.catalog, "UPDATE audit_log SET tenant = 'acme' WHERE seq = 5")
        broken = _verify_cli(env)
        assert broken.exit_code == 1 and "BROKEN at record 5" in broken.output
    finally:
        services.close()


def test_migration_14_removes_the_pseudonym_of_keys_destroyed_before_it(
    catalog_url: str,
) -> None:
    with open_catalog(catalog_url) as old:
        apply_migrations(old.database, tuple(m for m in MIGRATIONS if m.version < 14))
        at = "2026-11-20T10:00:00.000000Z"
        for key_id, subject_ref, wrapped, destroyed in (
            ("k-gone", "subj-erased", None, at),
            ("k-live", "subj-kept", b"wrapped", None),
        ):
            _raw(
                old,
                "INSERT INTO subject_keys (key_id, subject_ref, tenant, wrapped_key,"
                " master_key_id, created_at, destroyed_at) VALUES (?, ?, 'acme', ?, 'm', ?, ?)",
                (key_id, subject_ref, wrapped, at, destroyed),
            )
    with open_catalog(catalog_url) as new:
        assert 14 in new.migrate()
        rows = new.database.fetch_all(
            "SELECT key_id, subject_ref FROM subject_keys ORDER BY key_id"
        )
        assert [tuple(r) for r in rows] == [("k-gone", ""), ("k-live", "subj-kept")]
        live = new.get_subject_key("subj-kept")
        assert live is not None and live.key_id == "k-live"
