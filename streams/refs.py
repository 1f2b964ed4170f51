"""Keyed references: what logs, headers and metrics say instead of ids and URIs.

Recording ids are often built from phone numbers or call times, and landing URIs from
both, so neither appears in a log line, a DLQ header, a metric or an object header.
Instead:

- :func:`recording_digest` -- an HMAC of the recording id under the keyring's
  pseudonym secret (64 hex digits; stable for the life of the keyring, not reversible
  without the key file): what a sealed object's header (format v2) carries;
- :func:`recording_ref` -- ``r`` + its first 11 hex digits, short enough to read: what
  log lines and DLQ headers carry. ``callvault ref RECORDING_ID`` prints it, so an
  operator holding an id can grep the logs for it.
- :func:`landing_key` -- the full HMAC of a canonical landing URI (the landing claims'
  key in the catalog).

Both are keyed with a domain that is not a tenant name (tenants are ``[a-z0-9-]``), so
they never collide with a customer pseudonym.
"""

from __future__ import annotations

import re

from storage.crypto.keyring import Keyring, recording_digest

__all__ = ["recording_digest", "recording_ref", "landing_key", "ref_or_dash", "redact_text"]

_LANDING_DOMAIN = "callvault:landing"


def recording_ref(keyring: Keyring, recording_id: str) -> str:
    """The short keyed reference of ``recording_id`` (``r`` + 11 hex digits).

    Raises:
        KeyringError: an empty or unencodable recording id.
    """
    return "r" + recording_digest(keyring, recording_id)[:11]


def ref_or_dash(keyring: Keyring, recording_id: str | None) -> str:
    """:func:`recording_ref`, or ``-`` when there is no (usable) id."""
    if not recording_id:
        return "-"
    try:
        return recording_ref(keyring, recording_id)
    except Exception:  # a log line must never fail
        return "-"


def landing_key(keyring: Keyring, canonical_uri: str) -> str:
    """The keyed name of a landing file (its canonical URI, from ``Landing.resolve``)."""
    return keyring.pseudonymize(_LANDING_DOMAIN, canonical_uri)


# A URI, or an absolute path of at least two segments (a landing file, a folder).
_LOCATION = re.compile(r"""(?:file|s3|https?)://[^\s'"]*|(?<![\w.:/])/[^\s'"/]+/[^\s'"]*""")


def redact_text(text: str, limit: int = 300) -> str:
    """An error message fit for a log line: URIs and paths (which may embed phone
    numbers) replaced by ``[location]``, at most ``limit`` characters."""
    return _LOCATION.sub("[location]", text)[:limit]
