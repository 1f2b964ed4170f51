"""Vault and catalog compared: objects without a stored recording, recordings without
their object (``callvault vault check [--repair]``).

What a caller may rely on:

- :meth:`VaultCheck.run` lists the vault once (``Vault.iter_objects``: every key with
  data, every version on a versioned bucket) and the catalog once, and reports:

  * **orphans**: objects no stored recording names. ``no-row``: no catalog row at all
    (a crash between the vault put and the catalog commit, whose event was never
    redelivered; or an object written outside callvault); ``expired`` / ``erased``:
    the row ended but its object (or an old version) is still there. Objects a
    deletion in progress names (deletion intents, superseded objects awaiting
    cleanup) are ``pending``, not orphans: the sweep finishes them; sealed dead-letter
    originals the DLQ index names (``dead_letters.blob_key``) are ``dead_letters``;
    signed audit checkpoints and erasure journal entries (``audit/``) are
    ``audit_objects``, never orphans.
  * **missing**: stored recordings without their object (``no-object``), or whose
    object no longer has the version the catalog kept (``version-missing``).

- With ``repair=True`` orphans older than ``grace`` (by the time their newest data was
  written) are deleted, every version, and each batch of deletions is audited
  (``vault.orphans-deleted``: object keys, which are keyed hashes, and reasons; no
  personal data). Younger orphans may be an ingest still in flight and are left.
  Missing objects cannot be repaired here: they are reported (restore the object from
  a backup, or end the recording).
- Nothing else is changed; a check without ``repair`` only reads.

The catalog side is held in memory (one entry per recording: its object key, id, state
and version), about 200 bytes per recording.

Errors: :class:`~storage.errors.CatalogError`, :class:`~storage.errors.StorageError`
(the vault listing or a deletion failed as a whole).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storage.catalog.audit import AuditDraft
from storage.catalog.catalog import Catalog
from storage.checkpoints import AUDIT_PREFIX
from storage.types import RecordingState, StoredObject
from storage.vault.base import Vault

__all__ = ["Finding", "VaultCheck", "VaultCheckResult", "DEFAULT_GRACE"]

DEFAULT_GRACE = timedelta(hours=1)
_PAGE = 5000
_AUDIT_BATCH = 500


@dataclass(frozen=True)
class Finding:
    """One orphan object or one missing object."""

    object_key: str
    reason: str  # no-row | expired | erased | no-object | version-missing
    recording_id: str | None = None
    size: int = 0
    modified_at: datetime | None = None


@dataclass
class VaultCheckResult:
    """What :meth:`VaultCheck.run` found (and, with ``repair``, deleted)."""

    objects: int = 0  # keys with data in the vault
    recordings: int = 0  # stored recordings in the catalog
    orphans: list[Finding] = field(default_factory=list)
    missing: list[Finding] = field(default_factory=list)
    pending: int = 0  # objects a deletion in progress names
    dead_letters: int = 0  # sealed dead-letter blobs the DLQ index names (not recordings)
    audit_objects: int = 0  # signed audit checkpoints and erasure journal entries (audit/)
    repaired: list[str] = field(default_factory=list)  # orphan keys deleted
    too_young: int = 0  # orphans within the grace period (left alone)
    failed: list[str] = field(default_factory=list)  # orphans the vault did not delete

    @property
    def clean(self) -> bool:
        """Nothing is wrong (orphans that were repaired count as fixed)."""
        repaired = set(self.repaired)
        return not self.missing and all(f.object_key in repaired for f in self.orphans)

    def to_json(self) -> dict[str, object]:
        def listed(findings: list[Finding]) -> list[dict[str, object]]:
            return [
                {
                    "object_key": f.object_key,
                    "reason": f.reason,
                    "recording_id": f.recording_id,
                    "size": f.size,
                    "modified_at": f.modified_at.isoformat() if f.modified_at else None,
                }
                for f in findings[:1000]
            ]

        return {
            "objects": self.objects,
            "recordings": self.recordings,
            "orphans": len(self.orphans),
            "missing": len(self.missing),
            "pending": self.pending,
            "dead_letters": self.dead_letters,
            "audit_objects": self.audit_objects,
            "repaired": len(self.repaired),
            "too_young": self.too_young,
            "failed": len(self.failed),
            "orphan_objects": listed(self.orphans),
            "missing_objects": listed(self.missing),
            "clean": self.clean,
        }


@dataclass(frozen=True)
class _Entry:
    recording_id: str
    state: RecordingState
    object_version: str | None


class VaultCheck:
    """Compares one vault with one catalog (see the module docstring)."""

    def __init__(
        self,
        catalog: Catalog,
        vault: Vault,
        *,
        actor: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.catalog = catalog
        self.vault = vault
        self.actor = actor
        self.clock = clock or (lambda: datetime.now(UTC))

    def count_recordings(self) -> int:
        """Catalog rows that name an object (a total for a progress bar).

        Raises:
            CatalogError: the database failed.
        """
        row = self.catalog.database.fetch_one("SELECT COUNT(*) FROM recordings")
        return int(row[0]) if row else 0

    def run(
        self,
        *,
        repair: bool = False,
        grace: timedelta = DEFAULT_GRACE,
        prefix: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> VaultCheckResult:
        """Check (and with ``repair`` fix) the vault; ``progress(n)`` after every ``n``
        objects listed.

        Raises:
            CatalogError: the catalog failed.
            StorageError: the vault failed (a missing bucket...).
        """
        now = self.clock()
        entries = self._catalog_entries()
        pending_keys = self._pending_keys()
        dead_letter_keys = self._dead_letter_keys()
        result = VaultCheckResult(
            recordings=sum(1 for e in entries.values() if e.state is RecordingState.STORED)
        )
        seen: set[str] = set()
        listed = 0
        for stored in self.vault.iter_objects(prefix):
            result.objects += 1
            listed += 1
            if progress is not None and listed == 100:
                progress(listed)
                listed = 0
            seen.add(stored.key)
            if stored.key in dead_letter_keys:
                result.dead_letters += 1
                continue
            if stored.key.startswith(AUDIT_PREFIX):  # evidence, never an orphan
                result.audit_objects += 1
                continue
            self._judge(stored, entries.get(stored.key), pending_keys, result)
        if progress is not None and listed:
            progress(listed)
        for key, entry in entries.items():
            if (
                entry.state is RecordingState.STORED
                and key not in seen
                and key not in pending_keys  # a deletion in progress already removed it
                and key.startswith(prefix)
            ):
                result.missing.append(Finding(key, "no-object", entry.recording_id))
        if repair:
            self._repair(result, now - grace)
        return result

    def _judge(
        self,
        stored: StoredObject,
        entry: _Entry | None,
        pending_keys: set[str],
        result: VaultCheckResult,
    ) -> None:
        if stored.key in pending_keys:
            result.pending += 1
            return
        if entry is not None and entry.state is RecordingState.STORED:
            version = entry.object_version
            if version and stored.version_ids and version not in stored.version_ids:
                result.missing.append(
                    Finding(
                        stored.key,
                        "version-missing",
                        entry.recording_id,
                        stored.size,
                        stored.modified_at,
                    )
                )
            return
        result.orphans.append(
            Finding(
                stored.key,
                "no-row" if entry is None else entry.state.value,
                entry.recording_id if entry is not None else None,
                stored.size,
                stored.modified_at,
            )
        )

    def _repair(self, result: VaultCheckResult, cutoff: datetime) -> None:
        due = [f for f in result.orphans if f.modified_at is not None and f.modified_at <= cutoff]
        result.too_young = len(result.orphans) - len(due)
        for start in range(0, len(due), _AUDIT_BATCH):
            batch = due[start : start + _AUDIT_BATCH]
            failed = set(self.vault.delete_many([f.object_key for f in batch]))
            deleted = [f for f in batch if f.object_key not in failed]
            result.failed.extend(sorted(failed))
            result.repaired.extend(f.object_key for f in deleted)
            if not deleted:
                continue
            reasons: dict[str, int] = {}
            for finding in deleted:
                reasons[finding.reason] = reasons.get(finding.reason, 0) + 1
            self.catalog.audit.append(
                AuditDraft(
                    actor=self.actor,
                    action="vault.orphans-deleted",
                    outcome="ok",
                    reason="vault-orphan",
                    details={
                        "vault": self.vault.url,
                        "deleted": len(deleted),
                        "reasons": reasons,
                        "object_keys": [f.object_key for f in deleted],
                        "older_than": cutoff.isoformat(),
                    },
                )
            )

    def _catalog_entries(self) -> dict[str, _Entry]:
        """Every recording row's object key -> (id, state, version), read in pages."""
        entries: dict[str, _Entry] = {}
        after = ""
        while True:
            rows = self.catalog.database.fetch_all(
                "SELECT recording_id, object_key, state, object_version FROM recordings "
                "WHERE recording_id > ? ORDER BY recording_id LIMIT ?",
                (after, _PAGE),
            )
            for recording_id, key, state, version in rows:
                entry = _Entry(recording_id, RecordingState(state), version)
                known = entries.get(key)
                # a key named twice (never by callvault: keys are per recording id):
                # the stored row wins, so its object is not called an orphan
                if known is None or entry.state is RecordingState.STORED:
                    entries[key] = entry
            if len(rows) < _PAGE:
                return entries
            after = rows[-1][0]

    def _dead_letter_keys(self) -> set[str]:
        """Vault keys of sealed dead-letter originals (``dead_letters.blob_key``)."""
        rows = self.catalog.database.fetch_all(
            "SELECT blob_key FROM dead_letters WHERE blob_key IS NOT NULL"
        )
        return {row[0] for row in rows}

    def _pending_keys(self) -> set[str]:
        rows = self.catalog.database.fetch_all(
            "SELECT object_key FROM deletion_intents UNION SELECT object_key FROM object_cleanups"
        )
        return {row[0] for row in rows}
