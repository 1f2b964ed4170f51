"""Customers' privacy requests: disclose, restrict, lift-restriction, erase, correct,
contract-terminated (the request format and guarantees: :mod:`streams.privacy.service`).

One handler per kind, found through one registry (:mod:`streams.privacy.kinds`);
:class:`PrivacyService` files a request and dispatches it. Shared by the
``callvault.privacy-requests`` agent, the HTTP API and the CLI.
"""

from __future__ import annotations

from streams.errors import PrivacyRequestRejected
from streams.privacy.input import REQUEST_TYPES, RequestInput, parse_privacy_request
from streams.privacy.kinds import HANDLERS, VERIFICATION_METHODS, RequestKind
from streams.privacy.service import PrivacyService

__all__ = [
    "HANDLERS",
    "REQUEST_TYPES",
    "VERIFICATION_METHODS",
    "PrivacyRequestRejected",
    "PrivacyService",
    "RequestInput",
    "RequestKind",
    "parse_privacy_request",
]
