"""What may stand as a justification in the audit log (pure; no I/O).

The audit log is never erased, so a justification must not hold personal data. A
justification is either

- a **reference** matching the policy's ``justifications.reference_pattern`` (a ticket,
  case or evaluation id: ``QA-123``, ``CASE-2026-0042``, ``asg-0123456789ab``), accepted
  as it is; or
- **free text**, refused when it holds an e-mail address or a run of digits that can be
  a phone or card number: 7 or more digits, whatever spaces, dots, dashes, slashes or
  parentheses separate them, with or without a leading ``+`` (``call back +1 415 555
  0100``, ``415-555-0100``, ``card 4111 1111 1111 1111``). Calendar dates and times
  (``2026-11-25``, ``10:30``) are not counted as digits.

:func:`justification_problem` answers which rule a text breaks; callers refuse with
:data:`PERSONAL_DATA` (``justification-personal-data``).
"""

from __future__ import annotations

import re

from policies.model import DEFAULT_REFERENCE_PATTERN, Policy

__all__ = ["DEFAULT_REFERENCE_PATTERN", "PERSONAL_DATA", "justification_problem"]

#: The reason code a justification holding personal data is refused with.
PERSONAL_DATA = "justification-personal-data"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]{2,}")
#: Dates and clock times: digits a reviewer may well write that name nobody.
_DATES = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"
    r"|\b\d{1,2}:\d{2}(?::\d{2})?\b"
)
#: A digit, then digits and separators, ending in a digit.
_DIGIT_RUN = re.compile(r"\+?\d[\d \t./()\-\u00a0]*\d")
#: Fewest digits that can be a phone number (local numbers have 7; cards 12-19).
_MIN_DIGITS = 7
_ASK = "give a ticket, case or evaluation id"


def justification_problem(text: str, policy: Policy) -> str | None:
    """``None`` if ``text`` may be audited as a justification, else why not (a sentence
    that never repeats the text)."""
    if re.fullmatch(policy.justification_reference_pattern, text):
        return None
    if _EMAIL.search(text):
        return f"the justification holds personal data (an e-mail address); {_ASK}"
    stripped = _DATES.sub(" ", text)
    for run in _DIGIT_RUN.finditer(stripped):
        if sum(char.isdigit() for char in run.group()) >= _MIN_DIGITS:
            return (
                "the justification holds personal data (a run of digits that can be a "
                f"phone or card number); {_ASK}"
            )
    return None
