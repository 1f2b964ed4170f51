"""Errors raised by ``streams``."""

from __future__ import annotations

from callvault.errors import CallvaultError

__all__ = ["StreamError", "EventRejected"]


class StreamError(CallvaultError):
    """Base class of stream-processing errors."""


class EventRejected(StreamError):
    """An event cannot be processed; it goes to ``callvault.dlq`` with ``reason``.

    ``reason`` is a stable, machine-readable code (e.g. ``schema``, ``landing-missing``,
    ``sha256-mismatch``); ``detail`` is for humans and never carries personal data.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")
