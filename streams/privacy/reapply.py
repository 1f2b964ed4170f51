"""Re-applying the erasure journal (:mod:`storage.erasures`) to the catalog: what a
catalog restored from a backup older than an erasure brought back is erased again.

Run at worker start (before the first sweep) and by ``callvault keys reconcile``. For
every signed journal entry: each subject key it names that is live again is destroyed
(crypto-shredding, again: only that key id, never a newer key of the customer); each
recording sealed under such a key or kept under an object key it names that is
``stored`` or ``expired`` again loses every object version and becomes a tombstone, with
an audit record ``privacy.erasure-reapplied`` and a signed receipt (reason
``erasure-reapplied``). A legal hold does not stop it: the erasure was decided and
carried out before the restore, and its key is gone. Idempotent: a second run finds
nothing to do.

The catalog keeps when the journal was last re-applied (``retention_settings``
``erasure_journal_applied_at``); a run reads the entries journaled since then (minus an
hour), listing only those months (the journal is foldered by month), so a start costs
what was erased since the last one, not the whole journal. A restored backup carries
its older cursor, so everything journaled after the backup is applied again.
``callvault keys reconcile --full`` reads the whole journal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from storage.catalog.audit import AuditDraft
from storage.catalog.sql import from_db_time, to_db_time
from storage.erasures import JournalListing
from storage.errors import StorageError
from streams.privacy.deadletters import erase_dead_letters
from streams.privacy.erase import erasure_items
from streams.services import Services

__all__ = ["CURSOR_MARGIN", "CURSOR_SETTING", "ReapplyReport", "reapply_erasures"]

#: The catalog setting holding when the journal was last re-applied.
CURSOR_SETTING = "erasure_journal_applied_at"
#: How far before the cursor entries are read again (clock skew between workers).
CURSOR_MARGIN = timedelta(hours=1)

log = logging.getLogger(__name__)


@dataclass
class ReapplyReport:
    """What :func:`reapply_erasures` found and did."""

    entries: int = 0
    keys_destroyed: list[str] = field(default_factory=list)
    recordings_erased: list[str] = field(default_factory=list)
    unsigned_entries: list[str] = field(default_factory=list)
    dead_letters_removed: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.keys_destroyed or self.recordings_erased or self.dead_letters_removed)


def reapply_erasures(services: Services, *, actor: str, full: bool = False) -> ReapplyReport:
    """Re-apply the journaled erasures (see the module docstring): those journaled since
    the catalog's cursor (minus :data:`CURSOR_MARGIN`, for workers' clock skew), or
    every one with ``full``.

    Raises:
        StorageError: the vault, catalog or keyring failed (run it again).
    """
    report = ReapplyReport()
    listing = JournalListing()
    endoflife = services.endoflife
    clauses = services.policy.clauses_for_rule("retention:erasure")
    started = services.clock()
    cursor = endoflife.get_setting(CURSOR_SETTING) if not full else None
    since = from_db_time(cursor) - CURSOR_MARGIN if cursor else None
    for entry in services.erasure_journal().entries(listing, since=since, now=started):
        report.entries += 1
        # before the keys go: the originals name the landing audio they kept
        report.dead_letters_removed += erase_dead_letters(
            services,
            entry.subject_key_ids,
            actor=actor,
            request_id=entry.request_id,
            reason="catalog-restored",
        ).removed
        destroyed = [
            key_id for key_id in entry.subject_key_ids if services.keys.destroy_key(key_id)
        ]
        report.keys_destroyed.extend(destroyed)
        rows = endoflife.rows_erased_elsewhere(entry.subject_key_ids, entry.object_keys)
        if destroyed or rows:
            services.audit.append(
                AuditDraft(
                    actor=actor,
                    action="privacy.erasure-reapplied",
                    outcome="ok",
                    reason="catalog-restored",
                    details={
                        "request_id": entry.request_id,
                        "subject_keys_destroyed": len(destroyed),
                        "recordings": len(rows),
                    },
                )
            )
        if not rows:
            continue
        failed = set(
            services.vault.delete_many(
                [row.object_key for row in rows],
                versions={row.object_key: row.object_version for row in rows},
            )
        )
        if failed:
            raise StorageError(
                f"the vault could not delete {len(failed)} re-erased object(s); run again"
            )
        items = erasure_items(
            services.signer,
            rows,
            request_id=entry.request_id,
            actor=actor,
            reason="erasure-reapplied",
            clauses=clauses,
            deleted_at=services.clock(),
            effects={
                "object_versions_deleted": True,
                "subject_key_destroyed": True,
                "catalog_state": "erased",
                "cause": "the catalog was restored from a backup older than the erasure",
            },
        )
        report.recordings_erased.extend(endoflife.finish_erasure(items))
    report.unsigned_entries = listing.unsigned
    if not listing.unsigned:
        # Kept in the catalog on purpose: a restored backup carries an older cursor, so
        # what was journaled after it is applied again.
        endoflife.set_setting(CURSOR_SETTING, to_db_time(started))
    if listing.unsigned:
        log.error(
            "%d erasure journal entr(ies) do not verify and were not applied",
            len(listing.unsigned),
        )
    if report.changed:
        log.warning(
            "erasure journal re-applied: %d subject key(s) destroyed, %d recording(s) erased "
            "again (the catalog was restored from an older backup)",
            len(report.keys_destroyed),
            len(report.recordings_erased),
        )
    return report
