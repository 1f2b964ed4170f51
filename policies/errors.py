"""Errors raised by ``policies``."""

from __future__ import annotations

from callvault.errors import CallvaultError

__all__ = ["PolicyError", "PolicyFileError"]


class PolicyError(CallvaultError):
    """Base class of policy errors."""


class PolicyFileError(PolicyError):
    """The policy file is invalid. ``problems`` lists each located problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        joined = "\n  ".join(problems)
        super().__init__(f"invalid policy file {path}:\n  {joined}")
