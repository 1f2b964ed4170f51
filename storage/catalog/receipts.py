"""Signed deletion receipts: proof that a recording was ended, when, why and by whom.

What a caller may rely on:

- A receipt is ``{"payload": {...}, "signature": "<key-id>.<mac>"}`` where the
  signature is the keyring's (:meth:`storage.crypto.keyring.Keyring.sign`) over the canonical
  JSON of the payload (sorted keys, no spaces, UTF-8). :meth:`ReceiptSigner.verify`
  recomputes it; any edited field, or a receipt signed by an unknown or retired key,
  fails verification.
- The payload holds **no personal data**: the recording id (an opaque id, the same
  one the audit log carries), tenant, the object key (itself a keyed hash), the
  ciphertext digest, retention class and retain-until, the reason code, the rule and
  privacy-policy clauses applied, the privacy request id for an erasure, what was
  done (object versions deleted, data key gone, subject key destroyed, catalog
  state), when, and the actor (``worker:<id>``, ``user:<id>``). Never a customer
  reference, subject pseudonym, agent or call id.
- Receipts are stored in the catalog (``deletion_receipts``) in the same transaction
  as the state change they prove (:meth:`ReceiptStore.insert_many` with ``tx=``), so
  an expired or erased recording always has its receipt, and retrievable by receipt
  id or recording id.

Errors: :class:`ReceiptError` (malformed receipt), :class:`ReceiptNotFound`,
:class:`~storage.errors.CatalogError`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.catalog.audit import canonical_json
from storage.catalog.catalog import Catalog
from storage.catalog.sql import Transaction, from_db_time, to_db_time
from storage.crypto.keyring import Keyring
from storage.errors import ReceiptError, ReceiptNotFound

__all__ = [
    "RECEIPT_VERSION",
    "DeletionReceipt",
    "ReceiptError",
    "ReceiptNotFound",
    "ReceiptSigner",
    "ReceiptStore",
]

RECEIPT_VERSION = 1
_REQUIRED = (
    "receipt_id",
    "version",
    "recording_id",
    "tenant",
    "reason",
    "rule",
    "clauses",
    "deleted_at",
    "actor",
    "effects",
)


@dataclass(frozen=True)
class DeletionReceipt:
    """A signed receipt. ``payload`` is plain JSON data; treat it as read-only."""

    payload: Mapping[str, Any]
    signature: str

    @property
    def receipt_id(self) -> str:
        return str(self.payload["receipt_id"])

    @property
    def recording_id(self) -> str:
        return str(self.payload["recording_id"])

    def to_json(self) -> dict[str, Any]:
        """The receipt as one JSON object (what ``GET .../receipt`` and the CLI print)."""
        return {"payload": dict(self.payload), "signature": self.signature}

    @classmethod
    def from_json(cls, data: Any) -> DeletionReceipt:
        """Parse a receipt as :meth:`to_json` wrote it.

        Raises:
            ReceiptError: not an object with ``payload`` and ``signature``, or fields missing.
        """
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except RecursionError:
                raise ReceiptError("receipt is not JSON: nested too deep") from None
            except ValueError as exc:
                raise ReceiptError(f"receipt is not JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
            raise ReceiptError("a receipt is a JSON object with 'payload' and 'signature'")
        signature = data.get("signature")
        if not isinstance(signature, str) or not signature:
            raise ReceiptError("receipt has no signature")
        missing = [name for name in _REQUIRED if name not in data["payload"]]
        if missing:
            raise ReceiptError(f"receipt payload lacks {', '.join(missing)}")
        return cls(payload=data["payload"], signature=signature)


class ReceiptSigner:
    """Builds and verifies receipts with the keyring's signing key."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def issue(
        self,
        *,
        recording_id: str,
        tenant: str,
        reason: str,
        rule: str,
        clauses: Iterable[str],
        deleted_at: datetime,
        actor: str,
        effects: Mapping[str, Any],
        facts: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> DeletionReceipt:
        """A new signed receipt. ``facts`` adds non-personal facts (object key, digest,
        retention class, retain-until) to the payload.

        Raises:
            ReceiptError: an empty recording id, reason or actor.
            KeyringError: signing failed.
        """
        if not recording_id or not reason or not actor:
            raise ReceiptError("a receipt needs a recording id, a reason and an actor")
        payload: dict[str, Any] = {
            **dict(facts or {}),
            "receipt_id": f"rcpt_{secrets.token_hex(12)}",
            "version": RECEIPT_VERSION,
            "recording_id": recording_id,
            "tenant": tenant,
            "reason": reason,
            "rule": rule,
            "clauses": sorted(set(clauses)),
            "request_id": request_id,
            "deleted_at": to_db_time(deleted_at),
            "actor": actor,
            "effects": dict(effects),
        }
        text = canonical_json(payload)  # every value above is already plain JSON
        receipt = DeletionReceipt(payload, self._keyring.sign(text.encode()))
        object.__setattr__(receipt, "_text", text)  # stored as signed, not re-encoded
        return receipt

    def verify(self, receipt: DeletionReceipt) -> bool:
        """True when the signature matches the payload under a known signing key."""
        try:
            message = canonical_json(dict(receipt.payload)).encode()
        except Exception:  # noqa: BLE001 - anything unserializable simply does not verify
            return False
        return self._keyring.verify(message, receipt.signature)


class ReceiptStore:
    """Receipts in the catalog database."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def insert_many(self, receipts: Iterable[DeletionReceipt], *, tx: Transaction) -> None:
        """Store receipts inside the caller's transaction (the state change they prove).

        Raises:
            CatalogError: the database failed.
        """
        tx.executemany(
            "INSERT INTO deletion_receipts "
            "(receipt_id, recording_id, reason, issued_at, payload, signature) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    r.receipt_id,
                    r.recording_id,
                    str(r.payload["reason"]),
                    str(r.payload["deleted_at"]),
                    getattr(r, "_text", None) or canonical_json(dict(r.payload)),
                    r.signature,
                )
                for r in receipts
            ],
        )

    def get(self, receipt_id: str) -> DeletionReceipt:
        """The receipt ``receipt_id``.

        Raises:
            ReceiptNotFound: no such receipt.
            CatalogError: the database failed.
        """
        row = self._catalog.database.fetch_one(
            "SELECT payload, signature FROM deletion_receipts WHERE receipt_id = ?", (receipt_id,)
        )
        if row is None:
            raise ReceiptNotFound(f"no deletion receipt {receipt_id!r}")
        return DeletionReceipt(json.loads(row[0]), row[1])

    def for_recording(self, recording_id: str) -> list[DeletionReceipt]:
        """Every receipt of ``recording_id``, oldest first (expired, then erased).

        Raises:
            CatalogError: the database failed.
        """
        rows = self._catalog.database.fetch_all(
            "SELECT payload, signature FROM deletion_receipts WHERE recording_id = ? "
            "ORDER BY issued_at, receipt_id",
            (recording_id,),
        )
        return [DeletionReceipt(json.loads(payload), signature) for payload, signature in rows]

    def list_receipts(
        self, *, since: datetime | None = None, reason: str | None = None, limit: int = 100
    ) -> list[DeletionReceipt]:
        """Receipts issued at or after ``since`` (oldest first), up to ``limit``.

        Raises:
            CatalogError: the database failed.
        """
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("issued_at >= ?")
            params.append(to_db_time(since))
        if reason is not None:
            where.append("reason = ?")
            params.append(reason)
        sql = "SELECT payload, signature FROM deletion_receipts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY issued_at, receipt_id LIMIT ?"
        params.append(limit)
        return [
            DeletionReceipt(json.loads(payload), signature)
            for payload, signature in self._catalog.database.fetch_all(sql, params)
        ]


def issued_at(receipt: DeletionReceipt) -> datetime:
    """When the receipt's deletion happened (parsed ``deleted_at``)."""
    return from_db_time(str(receipt.payload["deleted_at"]))
