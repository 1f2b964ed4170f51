"""S3 reflects the catalog: object tags and Object Lock legal holds follow the catalog.

The catalog decides (retention class, retain-until, legal holds); the vault carries a
copy of those decisions so that what acts on the bucket without asking callvault (the
lifecycle rules of ``deploy/init/bucket.sh``, an operator with delete rights) cannot
end a recording before the catalog would:

- :func:`recording_tags` is the one tag set of a recording object: ``purposes``,
  ``retention-class``, ``retain-until``, ``legal-hold`` (``on``/``off``),
  ``data-class``, ``format``. Ingest writes it with the object; the lifecycle rules
  select ``retention-class=<class>`` AND ``legal-hold=off``, so a held recording
  matches no rule.
- :class:`VaultMirror` works off the catalog's queue (:mod:`storage.catalog.vaultsync`):
  for each queued recording still stored it rewrites the governance tags
  (:data:`GOVERNANCE_TAGS`; the object's other tags stay) of the version the catalog
  kept (``object_version``) from the catalog as it is *now*, and, where the
  bucket has Object Lock and a hold was placed or released, sets or clears the S3
  legal hold on every version of the object (S3 itself then refuses to delete it).
  Work is done in batches, ``workers`` vault calls at a time; an entry leaves the queue
  only once its vault calls succeeded, so an interrupted run is simply run again.

Errors: :class:`~storage.errors.CatalogError` (the catalog failed; what was mirrored
stays mirrored), :class:`~storage.errors.StorageError` only for a vault failure that
is not per object (per-object failures are counted and stay queued).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storage.catalog.catalog import Catalog
from storage.catalog.endoflife import EndOfLifeStore
from storage.catalog.holds import HoldStore
from storage.catalog.vaultsync import HOLD, TAGS, SyncItem, VaultSyncQueue
from storage.crypto.envelope import FORMAT_VERSION
from storage.errors import RecordingNotFound, StorageError
from storage.types import RecordingRow, RecordingState
from storage.vault.base import Vault

__all__ = [
    "DATA_CLASS",
    "GOVERNANCE_TAGS",
    "OBJECT_FORMAT",
    "MirrorResult",
    "VaultMirror",
    "recording_tags",
    "tag_time",
    "tags_of",
]

log = logging.getLogger(__name__)

DATA_CLASS = "call-audio"
OBJECT_FORMAT = f"cvlt{FORMAT_VERSION}"  # the envelope format ingest writes now
#: The tags the catalog decides, which the mirror rewrites (an object's others stay).
GOVERNANCE_TAGS = ("purposes", "retention-class", "retain-until", "legal-hold")


def tag_time(moment: datetime) -> str:
    """``moment`` as a tag value, UTC to the second, rounded up (never earlier)."""
    utc = moment.astimezone(UTC)
    if utc.microsecond:
        utc = utc.replace(microsecond=0) + timedelta(seconds=1)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def recording_tags(
    *,
    purposes: Iterable[str],
    retention_class: str,
    retain_until: datetime,
    held: bool,
) -> dict[str, str]:
    """The tags of a recording's vault object (see the module docstring)."""
    return {
        "purposes": "/".join(purposes),
        "retention-class": retention_class,
        "retain-until": tag_time(retain_until),
        "legal-hold": "on" if held else "off",
        "data-class": DATA_CLASS,
        "format": OBJECT_FORMAT,
    }


def tags_of(row: RecordingRow, *, held: bool) -> dict[str, str]:
    """The governance part of :func:`recording_tags` for a catalog row (what the mirror
    writes; the object's ``data-class``, ``format`` and any other tag stay as written)."""
    tags = recording_tags(
        purposes=row.purposes,
        retention_class=row.retention_class,
        retain_until=row.retain_until,
        held=held,
    )
    return {name: tags[name] for name in GOVERNANCE_TAGS}


@dataclass
class MirrorResult:
    """What one :meth:`VaultMirror.sync` did."""

    tagged: int = 0
    held: int = 0  # objects whose every version now has the S3 legal hold on
    released: int = 0  # objects whose legal hold was cleared
    skipped: int = 0  # queued recordings no longer stored (nothing to mirror)
    missing: list[str] = field(default_factory=list)  # stored, but no object (vault check)
    failed: list[str] = field(default_factory=list)  # stay queued for the next run


class VaultMirror:
    """Applies the vault mirror queue (see the module docstring)."""

    def __init__(
        self,
        catalog: Catalog,
        vault: Vault,
        *,
        holds: HoldStore | None = None,
        endoflife: EndOfLifeStore | None = None,
        workers: int = 8,
        batch_size: int = 500,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.catalog = catalog
        self.vault = vault
        self.holds = holds or HoldStore(catalog)
        self.endoflife = endoflife or EndOfLifeStore(catalog)
        self.queue = VaultSyncQueue(catalog.database, clock=clock)
        self.workers = max(1, workers)
        self.batch_size = batch_size

    def pending(self) -> int:
        """How many recordings wait to be mirrored.

        Raises:
            CatalogError: the database failed.
        """
        return self.queue.count()

    def sync(
        self,
        *,
        limit: int | None = None,
        needs: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> MirrorResult:
        """Mirror up to ``limit`` queued recordings (default: all; only those that need
        any of ``needs`` when given, e.g. :data:`HOLD` first); ``progress(n)`` after each
        batch of ``n``.

        Raises:
            CatalogError: the catalog failed.
            StorageError: the vault failed as a whole (the bucket is missing...).
        """
        result = MirrorResult()
        after = ""
        remaining = limit
        while remaining is None or remaining > 0:
            size = self.batch_size if remaining is None else min(self.batch_size, remaining)
            items = self.queue.pending(size, after=after, needs=needs)
            if not items:
                break
            after = items[-1].recording_id
            done = self._mirror(items, result)
            self.queue.done(done)
            if progress is not None:
                progress(len(items))
            if remaining is not None:
                remaining -= len(items)
        if result.failed:
            log.error("vault mirror: %d recording(s) not mirrored; retried", len(result.failed))
        return result

    def _mirror(self, items: list[SyncItem], result: MirrorResult) -> list[SyncItem]:
        rows = self.endoflife.rows_by_id(item.recording_id for item in items)
        live = {rid: row for rid, row in rows.items() if row.state is RecordingState.STORED}
        result.skipped += len(items) - sum(1 for item in items if item.recording_id in live)
        covering = self.holds.holds_for(live.values())
        failed: set[str] = set()
        missing: set[str] = set()

        def tag(item: SyncItem) -> None:
            row = live[item.recording_id]
            try:
                self.vault.update_tags(
                    row.object_key,
                    tags_of(row, held=row.recording_id in covering),
                    version_id=row.object_version,
                )
            except RecordingNotFound:
                missing.add(row.recording_id)
            except StorageError as exc:
                log.warning("vault mirror: tags of %s not written: %s", row.recording_id, exc)
                failed.add(row.recording_id)

        todo = [item for item in items if item.recording_id in live and item.needs & (TAGS | HOLD)]
        if todo:
            with ThreadPoolExecutor(
                min(self.workers, len(todo)), thread_name_prefix="vault-mirror"
            ) as pool:
                list(pool.map(tag, todo))
        result.tagged += len(todo) - len(failed) - len(missing)

        holding = [
            live[item.recording_id]
            for item in items
            if item.needs & HOLD and item.recording_id in live and item.recording_id not in missing
        ]
        if holding and self.vault.object_lock_enabled():
            for on in (True, False):
                group = [row for row in holding if (row.recording_id in covering) is on]
                if not group:
                    continue
                refused = set(
                    self.vault.set_legal_holds(
                        [row.object_key for row in group],
                        on=on,
                        versions=_versions(group),
                    )
                )
                for row in group:
                    if row.object_key in refused:
                        failed.add(row.recording_id)
                    elif on:
                        result.held += 1
                    else:
                        result.released += 1
        result.failed.extend(sorted(failed))
        result.missing.extend(sorted(missing))
        if missing:
            log.error(
                "vault mirror: %d stored recording(s) have no vault object "
                "(see `callvault vault check`)",
                len(missing),
            )
        return [item for item in items if item.recording_id not in failed]


def _versions(rows: Iterable[RecordingRow]) -> Mapping[str, str | None]:
    return {row.object_key: row.object_version for row in rows}
