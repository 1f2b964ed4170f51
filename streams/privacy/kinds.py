"""The kinds of privacy request and the one registry kind -> handler.

Adding a kind: add its value to :class:`RequestKind` and its handler to
:data:`HANDLERS` here, and write the handler (``streams/privacy/<kind>.py``, a
:class:`~streams.privacy.context.RequestHandler`). The input validator and the
dispatcher both read these two, so a kind without a handler is caught at import
(:func:`handler_class`) and by ``tests/streams/test_privacy.py``.
"""

from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Any

__all__ = ["RequestKind", "HANDLERS", "VERIFICATION_METHODS", "handler_class"]


class RequestKind(StrEnum):
    """What the customer (or billing, for ``contract-terminated``) asks for."""

    DISCLOSE = "disclose"
    RESTRICT = "restrict"
    LIFT_RESTRICTION = "lift-restriction"
    ERASE = "erase"
    CORRECT = "correct"
    CONTRACT_TERMINATED = "contract-terminated"


#: kind -> ``"module:Class"`` of its handler.
HANDLERS: dict[RequestKind, str] = {
    RequestKind.DISCLOSE: "streams.privacy.disclose:DiscloseHandler",
    RequestKind.RESTRICT: "streams.privacy.restrict:RestrictHandler",
    RequestKind.LIFT_RESTRICTION: "streams.privacy.restrict:LiftRestrictionHandler",
    RequestKind.ERASE: "streams.privacy.erase:EraseHandler",
    RequestKind.CORRECT: "streams.privacy.correct:CorrectHandler",
    RequestKind.CONTRACT_TERMINATED: "streams.privacy.terminate:ContractTerminatedHandler",
}

#: How a compliance officer verified the customer's identity (closed list).
VERIFICATION_METHODS = ("id-document", "account-authentication", "callback", "in-person", "postal")


def handler_class(kind: RequestKind) -> Any:
    """The handler class registered for ``kind``.

    Raises:
        KeyError: no handler is registered (a programming error, caught by the tests).
    """
    module, _, name = HANDLERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)
