"""The erasure journal: every completed erasure, signed, in the vault (outside the
catalog), so that restoring a catalog backup taken before an erasure cannot bring the
customer back.

Subject keys live wrapped in the catalog; a catalog restored from a backup older than
an erasure has the destroyed key again, and the recordings' rows in state ``stored``.
Each erasure therefore also writes a journal entry (``audit/erasures/``, under the S3
legal hold where the bucket has Object Lock) naming what it destroyed: the subject key
ids and the object keys of the recordings it erased (keyed hashes, no customer
reference, pseudonym or recording id), the request id and the receipt ids, signed with
the keyring like the receipts. :func:`streams.privacy.reapply.reapply_erasures`
re-applies every entry at worker start and in ``callvault keys reconcile``: a key that
is live again is destroyed again, a recording that is stored again is deleted and made
a tombstone again.

What a caller may rely on:

- :meth:`ErasureJournal.record` is idempotent (same content, same key) and durable when
  it returns.
- :meth:`ErasureJournal.entries` yields only entries whose signature verifies; the
  others are counted in ``unsigned`` (never acted upon: a forged entry must not be able
  to erase anything).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage.catalog.audit import canonical_json
from storage.catalog.sql import from_db_time, to_db_time
from storage.checkpoints import AUDIT_PREFIX
from storage.crypto.keyring import Keyring
from storage.errors import RecordingNotFound, StorageError
from storage.vault.base import Vault

__all__ = ["ERASURE_KIND", "ERASURE_PREFIX", "ErasureEntry", "ErasureJournal"]

ERASURE_KIND = "callvault.erasure.v1"
#: Vault prefix of the journal (``audit/erasures/<YYYY-MM>/<time>-<digest>.json``).
ERASURE_PREFIX = AUDIT_PREFIX + "erasures/"
_TAGS = {"data-class": "erasure-journal"}


@dataclass(frozen=True)
class ErasureEntry:
    """One erasure as the journal keeps it."""

    request_id: str
    tenant: str
    erased_at: datetime
    subject_key_ids: tuple[str, ...] = ()
    object_keys: tuple[str, ...] = ()
    receipt_ids: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        return {
            "kind": ERASURE_KIND,
            "request_id": self.request_id,
            "tenant": self.tenant,
            "erased_at": to_db_time(self.erased_at),
            "subject_key_ids": sorted(self.subject_key_ids),
            "object_keys": sorted(self.object_keys),
            "receipt_ids": sorted(self.receipt_ids),
        }

    @staticmethod
    def from_payload(payload: Any) -> ErasureEntry:
        """Raises: ValueError, KeyError, TypeError (not an entry)."""
        if payload["kind"] != ERASURE_KIND:
            raise ValueError(f"kind {payload['kind']!r}")
        return ErasureEntry(
            request_id=str(payload["request_id"]),
            tenant=str(payload["tenant"]),
            erased_at=from_db_time(str(payload["erased_at"])),
            subject_key_ids=tuple(str(k) for k in payload["subject_key_ids"]),
            object_keys=tuple(str(k) for k in payload["object_keys"]),
            receipt_ids=tuple(str(r) for r in payload["receipt_ids"]),
        )


@dataclass
class JournalListing:
    """What :meth:`ErasureJournal.entries` found besides the entries it yields."""

    unsigned: list[str] = field(default_factory=list)  # vault keys of refused entries


@dataclass
class ErasureJournal:
    """The signed erasure journal in ``vault`` (see the module docstring)."""

    vault: Vault
    keyring: Keyring

    def record(self, entry: ErasureEntry) -> str:
        """Sign and store ``entry``; return its vault key.

        Raises:
            StorageError: the vault refused it (the erasure is not journaled: retry).
        """
        body = canonical_json(entry.payload())
        digest = hashlib.sha256(body.encode()).hexdigest()[:24]
        at = entry.erased_at.astimezone(UTC)
        key = f"{ERASURE_PREFIX}{at:%Y-%m}/{at:%Y%m%dT%H%M%S%fZ}-{digest}.json"
        data = canonical_json(
            {"payload": entry.payload(), "signature": self.keyring.sign(body.encode())}
        ).encode()
        written = self.vault.put(key, data, tags=_TAGS)
        if self.vault.object_lock_enabled():
            refused = self.vault.set_legal_holds([key], on=True, versions={key: written.version_id})
            if refused:
                raise StorageError(f"the vault refused the legal hold of {key}")
        return key

    def entries(
        self,
        listing: JournalListing | None = None,
        *,
        since: datetime | None = None,
        now: datetime | None = None,
    ) -> Iterator[ErasureEntry]:
        """Every entry whose signature verifies, oldest first; with ``since``, only the
        months from ``since``'s to ``now``'s are listed, and entries erased before
        ``since`` skipped.

        Raises:
            StorageError: the vault cannot be listed or read.
        """
        if since is None:
            keys = sorted(self.vault.iter_keys(ERASURE_PREFIX))
        else:
            keys = []
            for month in _months(since, now or datetime.now(UTC)):
                keys.extend(sorted(self.vault.iter_keys(f"{ERASURE_PREFIX}{month}/")))
            stamp = f"{since.astimezone(UTC):%Y%m%dT%H%M%S%fZ}"
            keys = [key for key in keys if key.rsplit("/", 1)[-1] >= stamp]
        for key in keys:
            try:
                body = json.loads(self.vault.get(key))
                payload = body["payload"]
                signed = self.keyring.verify(canonical_json(payload).encode(), body["signature"])
                entry = ErasureEntry.from_payload(payload) if signed else None
            except RecordingNotFound:
                continue
            except (ValueError, KeyError, TypeError):
                entry = None
            if entry is None:
                if listing is not None:
                    listing.unsigned.append(key)
                continue
            yield entry


def _months(start: datetime, end: datetime) -> list[str]:
    """``YYYY-MM`` of every month from ``start``'s to ``end``'s, inclusive."""
    year, month = start.astimezone(UTC).year, start.astimezone(UTC).month
    last = (end.astimezone(UTC).year, end.astimezone(UTC).month)
    months = []
    while (year, month) <= last:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months
