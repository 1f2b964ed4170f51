"""The one canonical form of a customer reference, used by every path that names a
customer (event ingest, HTTP upload, import, telephony sources, privacy requests,
holds) before it is pseudonymized (:meth:`storage.crypto.KeyService.subject_ref`).

The rules, stated once:

- a string of 1-256 characters;
- in Unicode **NFC** (composed form: ``"é"`` as one code point, not ``e`` + U+0301);
- **no surrounding whitespace** (any Unicode white space: ``" cust-1"``, ``"cust-1\\n"``);
- no control or format characters (C0/C1 controls, zero-width and bidi marks);
- **case is significant** and kept as sent (``C-1001`` and ``c-1001`` are two
  customers): references come from the CRM or billing system, which owns their case.

A reference that breaks a rule is **refused** with the reason code
:data:`NOT_CANONICAL` (``customer-ref-not-canonical``) and a sentence naming the rule;
it is never silently altered, on any path, so the same customer always maps to the same
pseudonym and an erasure finds every recording.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_CUSTOMER_REF", "NOT_CANONICAL", "customer_ref_problem"]

#: The reason code every path refuses a non-canonical customer reference with.
NOT_CANONICAL = "customer-ref-not-canonical"
#: Longest customer reference accepted, in characters.
MAX_CUSTOMER_REF = 256


def customer_ref_problem(value: object) -> str | None:
    """``None`` if ``value`` is a canonical customer reference, else the rule it breaks
    (a sentence for the error a sender sees; never echoes the value)."""
    if not isinstance(value, str):
        return f"customer_ref must be a string, not {type(value).__name__}"
    if not value:
        return "customer_ref must not be empty"
    if len(value) > MAX_CUSTOMER_REF:
        return f"customer_ref is longer than {MAX_CUSTOMER_REF} characters"
    if value != value.strip():
        return "customer_ref has surrounding white space (send it without)"
    if not unicodedata.is_normalized("NFC", value):
        return "customer_ref is not in Unicode NFC (send its composed form)"
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return (
                f"customer_ref holds a control, format or unassigned character (U+{ord(char):04X})"
            )
    return None
