"""Audit details that must name a customer, sealed under the customer's subject key.

The audit log is never erased, so it must not name a customer in clear, not even by
pseudonym (``subject_ref`` links every record of one customer, for good). A record
that has to say whom it is about (a privacy request received, a hold on a customer, a
contract termination) carries ``subject`` instead::

    "subject": {"key_id": "sk_...", "sealed": "<base64url of a sealed object>"}

sealed with :meth:`storage.crypto.KeyService.seal_named` under the customer's live
subject key (name ``audit:subject``). An officer with the keyring reads it back with
:func:`open_subject`; once the customer is erased (the key destroyed) nobody can, while
the hash chain, which covers the ciphertext, still verifies. When the customer has no
live key (never recorded, or erased already) nothing is sealed and the record names
the request or hold id only.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from storage.crypto.keys import KeyService

__all__ = ["SEALED_NAME", "open_subject", "sealed_subject"]

SEALED_NAME = "audit:subject"


def sealed_subject(keys: KeyService, subject_ref: str, **extra: str) -> dict[str, Any]:
    """``{"subject": {...}}`` for audit details (see the module docstring), or ``{}``
    when the customer has no live subject key. ``extra`` (e.g. ``tenant``) is sealed
    with the pseudonym.

    Raises:
        KeyringError / CatalogError: the key could not be used.
    """
    record = keys.live_subject_key(subject_ref)
    if record is None:
        return {}
    plaintext = json.dumps({"subject_ref": subject_ref, **extra}, sort_keys=True).encode()
    blob = keys.seal_named(record.key_id, SEALED_NAME, plaintext)
    return {
        "subject": {
            "key_id": record.key_id,
            "sealed": base64.urlsafe_b64encode(blob).decode("ascii"),
        }
    }


def open_subject(keys: KeyService, details: dict[str, Any]) -> dict[str, Any] | None:
    """What a record's ``subject`` names (``{"subject_ref": ...}``), or None without one.

    Raises:
        KeyDestroyed: the customer was erased: the detail is shredded.
        IntegrityError / KeyringError: tampered, or the key cannot be used.
    """
    sealed = details.get("subject")
    if not isinstance(sealed, dict) or "sealed" not in sealed:
        return None
    blob = base64.urlsafe_b64decode(str(sealed["sealed"]))
    opened: dict[str, Any] = json.loads(keys.open_named(blob, SEALED_NAME))
    return opened
