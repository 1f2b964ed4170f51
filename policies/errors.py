"""Errors raised by ``policies``.

Decisions themselves never raise for a *denied* request: they return a
``Decision.DENY`` with a reason code. Errors are for things a caller got wrong::

    PolicyError
    ├── PolicyFileError     the policy file is unreadable or invalid (located problems)
    └── PolicyInputError    a decision function was called with bad input
                            (naive datetime, unknown consent value, unknown purpose
                            at ingest, empty purpose list, ...); also a ValueError
"""

from __future__ import annotations

from callvault.errors import CallvaultError

__all__ = ["PolicyError", "PolicyFileError", "PolicyInputError"]


class PolicyError(CallvaultError):
    """Base class of policy errors."""


class PolicyFileError(PolicyError):
    """The policy file is invalid. ``problems`` lists each located problem.

    Each problem reads ``file:line: yaml.path: message`` (see
    :class:`policies.loader.Problem`).
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        joined = "\n  ".join(problems)
        super().__init__(f"invalid policy file {path}:\n  {joined}")


class PolicyInputError(PolicyError, ValueError):
    """A decision function was given input it cannot decide on (a caller bug or a bad event)."""
