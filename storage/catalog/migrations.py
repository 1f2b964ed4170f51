"""Versioned schema migrations of the catalog, shared by SQLite and PostgreSQL.

What a caller may rely on:

- :data:`MIGRATIONS` is ordered by version; a migration is never edited once
  released, a change of schema is a new migration appended at the end.
- :func:`apply_migrations` applies, in order, every migration not yet recorded in the
  ``schema_migrations`` table, each in its own transaction together with its record,
  so it is idempotent (running it twice changes nothing) and safe when several workers
  start at once (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped
  advisory lock). A database that is ahead of this code raises :class:`CatalogError`.
- The same statements serve both databases: portable SQL, with ``{bytes}`` standing
  for ``BLOB`` / ``BYTEA`` (see :meth:`storage.catalog.sql.Dialect.ddl`). Timestamps are
  ISO-8601 UTC text and booleans 0/1 integers (see :mod:`storage.catalog.sql`).

Tables: ``recordings`` (one row per stored recording; ``purposes`` as a JSON array of
strings), ``subject_keys`` (at most one live key per ``subject_ref``, enforced by a
partial unique index), ``audit_log`` + ``audit_head`` (the hash chain and its anchor:
the last seq and hash), ``daily_stats`` (anonymous per day/tenant/queue counters).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from storage.catalog.sql import Database, Transaction, to_db_time
from storage.errors import CatalogError

__all__ = ["MIGRATIONS", "Migration", "apply_migrations", "applied_versions"]

# Arbitrary constant ("cvmigr" in ASCII) naming the advisory lock that serializes migrators.
_PG_MIGRATION_LOCK = 0x63766D69_6772

GENESIS_HASH = "0" * 64


def _repad(table: str, column: str) -> str:
    """Zero-pad a year below 1000 that strftime("%Y") wrote unpadded (text order)."""
    return (
        f"UPDATE {table} SET {column} = CASE length({column}) WHEN 26 THEN '0' || {column} "
        f"WHEN 25 THEN '00' || {column} WHEN 24 THEN '000' || {column} ELSE {column} END "
        f"WHERE length({column}) BETWEEN 24 AND 26"
    )


@dataclass(frozen=True)
class Migration:
    """One schema step: its version, a short name and the statements it runs."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial catalog: recordings, subject keys, audit log, daily stats",
        (
            """
            CREATE TABLE recordings (
                recording_id TEXT PRIMARY KEY,
                call_id TEXT NOT NULL,
                tenant TEXT NOT NULL,
                subject_ref TEXT NOT NULL,
                agent_id TEXT NOT NULL,
                queue TEXT NOT NULL,
                direction TEXT NOT NULL,
                started_at TEXT NOT NULL,
                ended_at TEXT NOT NULL,
                duration_ms BIGINT NOT NULL,
                consent TEXT NOT NULL,
                purposes TEXT NOT NULL,
                retention_class TEXT NOT NULL,
                retain_until TEXT NOT NULL,
                object_key TEXT NOT NULL,
                subject_key_id TEXT NOT NULL,
                ciphertext_sha256 TEXT NOT NULL,
                stored_size BIGINT NOT NULL,
                audio_bytes BIGINT NOT NULL,
                audio_format TEXT NOT NULL,
                sample_rate INTEGER NOT NULL,
                channels INTEGER NOT NULL,
                pci_redacted_ms BIGINT NOT NULL,
                created_at TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('stored', 'expired', 'erased')),
                restricted INTEGER NOT NULL DEFAULT 0 CHECK (restricted IN (0, 1)),
                updated_at TEXT
            )
            """,
            "CREATE INDEX recordings_tenant_started"
            " ON recordings (tenant, started_at, recording_id)",
            "CREATE INDEX recordings_started ON recordings (started_at, recording_id)",
            "CREATE INDEX recordings_agent ON recordings (agent_id, started_at)",
            "CREATE INDEX recordings_queue ON recordings (queue, started_at)",
            "CREATE INDEX recordings_subject ON recordings (subject_ref)",
            "CREATE INDEX recordings_state ON recordings (state, started_at)",
            "CREATE INDEX recordings_due ON recordings (state, retain_until)",
            "CREATE INDEX recordings_retain_until ON recordings (retain_until)",
            """
            CREATE TABLE subject_keys (
                key_id TEXT PRIMARY KEY,
                subject_ref TEXT NOT NULL,
                tenant TEXT NOT NULL,
                wrapped_key {bytes},
                master_key_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                destroyed_at TEXT,
                CHECK ((destroyed_at IS NULL) = (wrapped_key IS NOT NULL))
            )
            """,
            # One live key per data subject: the rule crypto-shredding depends on.
            """
            CREATE UNIQUE INDEX subject_keys_one_live ON subject_keys (subject_ref)
            WHERE destroyed_at IS NULL
            """,
            "CREATE INDEX subject_keys_subject ON subject_keys (subject_ref)",
            """
            CREATE TABLE audit_log (
                seq BIGINT PRIMARY KEY CHECK (seq > 0),
                at TEXT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                outcome TEXT NOT NULL,
                reason TEXT NOT NULL,
                recording_id TEXT,
                details TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )
            """,
            "CREATE INDEX audit_log_recording ON audit_log (recording_id, seq)",
            """
            CREATE TABLE audit_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq BIGINT NOT NULL,
                hash TEXT NOT NULL
            )
            """,
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')",
            """
            CREATE TABLE daily_stats (
                day TEXT NOT NULL,
                tenant TEXT NOT NULL,
                queue TEXT NOT NULL,
                recordings BIGINT NOT NULL,
                duration_ms BIGINT NOT NULL,
                PRIMARY KEY (day, tenant, queue)
            )
            """,
        ),
    ),
    Migration(
        2,
        "disclosure ledger: every release of a recording for a disclosure purpose",
        (
            """
            CREATE TABLE disclosures (
                disclosure_id TEXT PRIMARY KEY,
                recording_id TEXT NOT NULL,
                tenant TEXT NOT NULL,
                disclosed_at TEXT NOT NULL,
                actor TEXT NOT NULL,
                role TEXT NOT NULL,
                org TEXT,
                purpose TEXT NOT NULL,
                legal_basis TEXT,
                reference TEXT NOT NULL,
                mode TEXT NOT NULL CHECK (mode IN ('play', 'download')),
                audit_seq BIGINT NOT NULL
            )
            """,
            "CREATE INDEX disclosures_recording ON disclosures (recording_id, disclosed_at)",
            "CREATE INDEX disclosures_at ON disclosures (disclosed_at, disclosure_id)",
        ),
    ),
    Migration(
        3,
        "retention and privacy: legal holds, contract terminations, deletion intents, "
        "deletion receipts, privacy requests, retention settings",
        (
            """
            CREATE TABLE legal_holds (
                hold_id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                scope TEXT NOT NULL CHECK (scope IN ('recording', 'subject', 'call')),
                target TEXT NOT NULL,
                reason TEXT NOT NULL,
                reference TEXT NOT NULL,
                placed_by TEXT NOT NULL,
                placed_at TEXT NOT NULL,
                released_at TEXT,
                released_by TEXT,
                release_reason TEXT
            )
            """,
            "CREATE INDEX legal_holds_active ON legal_holds (released_at, scope, target)",
            """
            CREATE TABLE contract_terminations (
                subject_ref TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                terminated_at TEXT NOT NULL,
                recorded_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE deletion_intents (
                recording_id TEXT PRIMARY KEY,
                object_key TEXT NOT NULL,
                reason TEXT NOT NULL,
                rule TEXT NOT NULL,
                request_id TEXT,
                actor TEXT NOT NULL,
                marked_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE deletion_receipts (
                receipt_id TEXT PRIMARY KEY,
                recording_id TEXT NOT NULL,
                reason TEXT NOT NULL,
                issued_at TEXT NOT NULL,
                payload TEXT NOT NULL,
                signature TEXT NOT NULL
            )
            """,
            "CREATE INDEX deletion_receipts_recording ON deletion_receipts (recording_id)",
            """
            CREATE TABLE privacy_requests (
                request_id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                tenant TEXT NOT NULL,
                subject_ref TEXT NOT NULL,
                status TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                verified_by TEXT,
                verification_method TEXT,
                verified_at TEXT,
                received_at TEXT NOT NULL,
                due_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                completed_at TEXT,
                params TEXT NOT NULL,
                progress TEXT NOT NULL,
                result TEXT NOT NULL
            )
            """,
            "CREATE INDEX privacy_requests_status ON privacy_requests (status, due_at)",
            """
            CREATE TABLE retention_settings (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        4,
        "customer-level restriction of use (storage/restrictions.py)",
        (
            """
            CREATE TABLE subject_restrictions (
                subject_ref TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                request_id TEXT NOT NULL,
                restricted_at TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        5,
        "superseded vault objects awaiting deletion (storage/lifecycle.py: corrections)",
        (
            """
            CREATE TABLE object_cleanups (
                object_key TEXT PRIMARY KEY,
                recording_id TEXT NOT NULL,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                created_at TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        6,
        "quality evaluations: assignments, sealed scores and timeline notes "
        "(storage/catalog/evaluations.py); recordings by call id and by agent",
        (
            """
            CREATE TABLE qa_assignments (
                assignment_id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                recording_id TEXT NOT NULL,
                form_id TEXT NOT NULL,
                purpose TEXT NOT NULL,
                plan_id TEXT,
                period TEXT,
                stratum TEXT,
                reviewer TEXT NOT NULL,
                assigned_by TEXT NOT NULL,
                assigned_at TEXT NOT NULL,
                due_at TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('open', 'completed', 'cancelled')),
                completed_at TEXT,
                updated_at TEXT NOT NULL
            )
            """,
            "CREATE UNIQUE INDEX qa_assignments_sample ON qa_assignments "
            "(plan_id, period, recording_id)",
            "CREATE INDEX qa_assignments_reviewer ON qa_assignments (reviewer, status, due_at)",
            "CREATE INDEX qa_assignments_status ON qa_assignments (status, due_at)",
            "CREATE INDEX qa_assignments_recording ON qa_assignments (recording_id)",
            """
            CREATE TABLE qa_evaluations (
                assignment_id TEXT PRIMARY KEY REFERENCES qa_assignments (assignment_id),
                subject_key_id TEXT NOT NULL,
                revision INTEGER NOT NULL,
                sealed {bytes} NOT NULL,
                updated_by TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE qa_notes (
                note_id TEXT PRIMARY KEY,
                assignment_id TEXT NOT NULL REFERENCES qa_assignments (assignment_id),
                subject_key_id TEXT NOT NULL,
                sealed {bytes} NOT NULL,
                author TEXT NOT NULL,
                created_at TEXT NOT NULL
            )
            """,
            "CREATE INDEX qa_notes_assignment ON qa_notes (assignment_id, created_at)",
            # Find the call: by call id, and by agent, among stored recordings, newest
            # first (without statistics SQLite would walk the state index instead).
            "CREATE INDEX recordings_call ON recordings (call_id, state, started_at)",
            "CREATE INDEX recordings_agent_state ON recordings (agent_id, state, started_at)",
        ),
    ),
    Migration(
        7,
        "landing claims, re-announcement counts, dead letters (storage/catalog/claims.py, "
        "deadletters.py); zero-padded years in sender-controlled timestamps",
        (
            """
            CREATE TABLE landing_claims (
                landing_key TEXT PRIMARY KEY,
                recording_id TEXT NOT NULL,
                tenant TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('claimed', 'dead-lettered', 'released')),
                reason TEXT NOT NULL,
                claimed_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
            "CREATE INDEX landing_claims_recording ON landing_claims (recording_id)",
            """
            CREATE TABLE landing_announcements (
                landing_key TEXT PRIMARY KEY,
                announcements INTEGER NOT NULL,
                last_announced_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE dead_letters (
                entry_id TEXT PRIMARY KEY,
                reason TEXT NOT NULL,
                detail TEXT NOT NULL,
                source_topic TEXT NOT NULL,
                source_partition INTEGER,
                source_offset BIGINT,
                original_key {bytes},
                sealed_value {bytes},
                blob_key TEXT,
                value_size INTEGER NOT NULL,
                recording_id TEXT,
                tenant TEXT,
                first_seen TEXT NOT NULL,
                last_seen TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('open', 'replayed')),
                replayed_at TEXT,
                replayed_by TEXT
            )
            """,
            "CREATE INDEX dead_letters_reason ON dead_letters (state, reason, last_seen)",
            "CREATE INDEX dead_letters_recording ON dead_letters (recording_id)",
            *(
                _repad(table, column)
                for table, column in (
                    ("recordings", "started_at"),
                    ("recordings", "ended_at"),
                    ("recordings", "retain_until"),
                    ("privacy_requests", "received_at"),
                    ("privacy_requests", "due_at"),
                    ("privacy_requests", "verified_at"),
                    ("contract_terminations", "terminated_at"),
                )
            ),
        ),
    ),
    Migration(
        8,
        "vault version ids of recordings; the vault mirror queue (storage/catalog/vaultsync.py)",
        (
            # NULL: written before this migration, or to a vault that keeps no versions
            "ALTER TABLE recordings ADD COLUMN object_version TEXT",
            "CREATE INDEX recordings_object_key ON recordings (object_key)",
            """
            CREATE TABLE vault_sync (
                recording_id TEXT PRIMARY KEY,
                needs INTEGER NOT NULL,
                token TEXT NOT NULL,
                queued_at TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        9,
        "channel roles and silenced PCI pauses of recordings (issue 11)",
        (
            # JSON arrays; NULL for recordings stored before (roles unknown, pauses
            # only as pci_redacted_ms)
            "ALTER TABLE recordings ADD COLUMN channel_roles TEXT",
            "ALTER TABLE recordings ADD COLUMN pci_pauses TEXT",
        ),
    ),
    Migration(
        10,
        "outbox cursors: how far the audit log was published to callvault.audit "
        "(storage/catalog/outbox.py)",
        (
            # published_seq: the last audit seq the topic holds; topic_offset: the offset
            # of that record (-1: none), so that a topic that lost records is noticed;
            # holder / lease_until: the one worker publishing (others wait for it to lapse)
            """
            CREATE TABLE outbox_cursors (
                name TEXT PRIMARY KEY,
                published_seq INTEGER NOT NULL,
                topic_offset INTEGER NOT NULL,
                holder TEXT NOT NULL,
                lease_until TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        11,
        "disclosure exports: signed manifests, no files (storage/catalog/exports.py)",
        (
            """
            CREATE TABLE privacy_exports (
                export_id TEXT PRIMARY KEY,
                request_id TEXT NOT NULL UNIQUE,
                tenant TEXT NOT NULL,
                subject_ref TEXT NOT NULL,
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                manifest TEXT NOT NULL,
                signature TEXT NOT NULL,
                downloads INTEGER NOT NULL DEFAULT 0
            )
            """,
        ),
    ),
    Migration(
        12,
        "tenants on audit records; the privacy request workflow (verify, approve or refuse, "
        "execute)",
        (
            # Which tenant's auditors see a record: its recording's tenant, else the tenant
            # its details name; NULL (system records, and records naming no tenant) belongs
            # to the policy's default tenant. A read filter, not part of the hash chain
            # here; migration 14 makes it part of the hash of every record written after.
            "ALTER TABLE audit_log ADD COLUMN tenant TEXT",
            """
            UPDATE audit_log SET tenant = (
                SELECT r.tenant FROM recordings r WHERE r.recording_id = audit_log.recording_id
            ) WHERE recording_id IS NOT NULL
            """,
            "CREATE INDEX audit_log_tenant ON audit_log (tenant, seq)",
            "ALTER TABLE privacy_requests ADD COLUMN decided_by TEXT",
            "ALTER TABLE privacy_requests ADD COLUMN decided_at TEXT",
            "ALTER TABLE privacy_requests ADD COLUMN refusal_reason TEXT",
            "ALTER TABLE privacy_requests ADD COLUMN refusal_note TEXT",
            "ALTER TABLE privacy_requests ADD COLUMN executing_at TEXT",
            # Requests filed before the workflow were approved by whoever filed them.
            "UPDATE privacy_requests SET decided_by = requested_by, decided_at = received_at"
            " WHERE status <> 'received'",
            "UPDATE privacy_requests SET status = 'executing' WHERE status = 'in-progress'",
            # A held-then-finished request kept the held time as completed_at.
            "UPDATE privacy_requests SET completed_at = NULL WHERE status = 'held'",
        ),
    ),
    Migration(
        13,
        "leases of singleton jobs; the access rate window shared by workers",
        (
            # storage/catalog/leases.py: who runs the sweep, the reconciler, key rotation
            """
            CREATE TABLE leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                acquired_at TEXT NOT NULL,
                expires_at TEXT NOT NULL
            )
            """,
            # storage/catalog/ratewindow.py: distinct recordings per principal per window
            """
            CREATE TABLE access_rate_window (
                principal TEXT NOT NULL,
                recording_id TEXT NOT NULL,
                last_at TEXT NOT NULL,
                PRIMARY KEY (principal, recording_id)
            )
            """,
            "CREATE INDEX access_rate_window_last ON access_rate_window (principal, last_at)",
        ),
    ),
    Migration(
        14,
        "audit records hash their tenant (hash form 2); destroyed subject keys forget "
        "their pseudonym; dead letters sealed under their customer's subject key",
        (
            # Existing records keep the form they were hashed in (1: tenant not covered);
            # the audit log writes form 2 (tenant covered) from now on.
            "ALTER TABLE audit_log ADD COLUMN hash_form INTEGER NOT NULL DEFAULT 1",
            # Nothing reads a destroyed key by its subject: erasure replay, audio and
            # exports find keys by key_id, and a customer ingested again gets a new key.
            "UPDATE subject_keys SET subject_ref = '' WHERE destroyed_at IS NOT NULL",
            # The subject key a dead letter's original is sealed under (NULL: the master
            # keyring, as every entry recorded before).
            "ALTER TABLE dead_letters ADD COLUMN subject_key_id TEXT",
        ),
    ),
    Migration(
        15,
        "ingest finds a customer's completed erasures; an erasure finds the customer's "
        "dead letters",
        (
            "CREATE INDEX privacy_requests_subject ON privacy_requests (subject_ref, kind)",
            "CREATE INDEX dead_letters_subject_key ON dead_letters (subject_key_id)",
        ),
    ),
)

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


def _lock(tx: Transaction) -> None:
    if tx.dialect.name == "postgresql":
        tx.fetch_all(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    # SQLite: BEGIN IMMEDIATE already holds the database's write lock.


def applied_versions(database: Database) -> list[int]:
    """The versions recorded in ``schema_migrations`` (empty for a fresh database).

    Raises:
        CatalogError: the database cannot be read.
    """
    with database.transaction() as tx:
        _lock(tx)
        tx.execute(_CREATE_MIGRATIONS_TABLE)
        return [int(row[0]) for row in tx.fetch_all("SELECT version FROM schema_migrations")]


def apply_migrations(
    database: Database, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[int]:
    """Apply every migration not yet applied; return the versions applied now.

    Raises:
        CatalogError: a migration failed (its transaction is rolled back), the list is
            not strictly ordered, or the database holds a version this code does not know.
    """
    versions = [migration.version for migration in migrations]
    if versions != sorted(set(versions)):
        raise CatalogError(f"migrations must have strictly increasing versions: {versions}")
    known = set(versions)
    unknown = sorted(set(applied_versions(database)) - known)
    if unknown:
        raise CatalogError(
            f"catalog schema has version(s) {unknown} that this callvault does not know "
            f"(latest known: {max(known, default=0)}); upgrade callvault"
        )
    applied_now: list[int] = []
    for migration in migrations:
        with database.transaction() as tx:
            _lock(tx)
            done = tx.fetch_one(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            )
            if done is not None:
                continue
            for statement in migration.statements:
                tx.execute(tx.dialect.ddl(statement))
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, to_db_time(datetime.now(UTC))),
            )
        applied_now.append(migration.version)
    return applied_now
