"""Privacy request bodies: parsing and validation (the format: :mod:`streams.privacy`).

:func:`parse_privacy_request` turns a JSON body (text, bytes or a decoded object) into
a :class:`RequestInput` or raises :class:`PrivacyRequestRejected` with a stable
``reason`` code; nothing is stored for a rejected request. The fields every kind has
are checked here; the kind-specific ones by the kind's handler (``read_input``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from storage.customer import NOT_CANONICAL, customer_ref_problem
from streams.bounds import check_tree, load_json, parse_instant
from streams.errors import InputRejected, PrivacyRequestRejected
from streams.privacy.kinds import VERIFICATION_METHODS, RequestKind, handler_class

__all__ = [
    "REQUEST_TYPES",
    "PrivacyRequestRejected",
    "RequestInput",
    "customer_ref_of",
    "parse_privacy_request",
    "parse_time",
    "parse_identity",
]

#: Every request type, as the ``type`` field spells it.
REQUEST_TYPES = tuple(kind.value for kind in RequestKind)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
_MAX_IDS = 1000
_MAX_REQUEST_BYTES = 256 * 1024


@dataclass(frozen=True)
class RequestInput:
    """A validated request (still with the raw customer reference; never stored)."""

    request_id: str
    kind: RequestKind
    tenant: str
    customer_ref: str
    verified_by: str | None
    verification_method: str | None
    verified_at: datetime | None
    received_at: datetime
    #: Approve at once (the filer's decision) when the identity is verified already;
    #: ``"approve": false`` leaves a verified request for another officer to decide.
    approve: bool = True
    #: The kind-specific fields its handler validated (``read_input``), raw values.
    kind_input: dict[str, Any] = field(default_factory=dict)
    recording_ids: tuple[str, ...] | None = None


def parse_time(value: Any, name: str) -> datetime:
    """An aware ISO 8601 timestamp (``Z`` accepted).

    Raises:
        PrivacyRequestRejected: ``bad-field``.
    """
    if not isinstance(value, str):
        raise PrivacyRequestRejected("bad-field", f"{name} must be an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PrivacyRequestRejected("bad-field", f"{name} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise PrivacyRequestRejected("bad-field", f"{name} needs a time zone (e.g. +00:00)")
    try:
        return parse_instant(value)
    except ValueError as exc:  # year 1 with a positive offset cannot move to UTC
        raise PrivacyRequestRejected("bad-field", f"{name}: {exc}") from None


def parse_identity(identity: Any, *, now: datetime) -> tuple[str, str, datetime]:
    """``{verified_by, method[, verified_at]}`` -> (verified_by, method, verified_at).

    Raises:
        PrivacyRequestRejected: ``identity-not-verified``, ``missing-field``, ``bad-field``.
    """
    if not isinstance(identity, dict):
        raise PrivacyRequestRejected(
            "identity-not-verified", "send {verified_by, method[, verified_at]}"
        )
    verified_by = _text(identity, "verified_by", limit=128)
    if not _USER.match(verified_by):
        raise PrivacyRequestRejected("bad-field", "verified_by must be a user id")
    method = identity.get("method")
    if method not in VERIFICATION_METHODS:
        raise PrivacyRequestRejected(
            "identity-not-verified",
            f"method must be one of {', '.join(VERIFICATION_METHODS)}",
        )
    verified_at = (
        parse_time(identity["verified_at"], "verified_at") if "verified_at" in identity else now
    )
    if verified_at > now + timedelta(minutes=5):
        raise PrivacyRequestRejected("bad-field", "verified_at is in the future")
    return verified_by, str(method), verified_at


def _text(data: Mapping[str, Any], name: str, *, limit: int = 256) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PrivacyRequestRejected("missing-field", f"{name} is required (a non-empty string)")
    if len(value) > limit:
        raise PrivacyRequestRejected("bad-field", f"{name} is longer than {limit} characters")
    return value.strip()


def customer_ref_of(data: Mapping[str, Any], name: str) -> str:
    """The customer reference under ``name``, exactly as sent (never stripped or
    normalized: :mod:`storage.customer`).

    Raises:
        PrivacyRequestRejected: ``missing-field``, or ``customer-ref-not-canonical``.
    """
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PrivacyRequestRejected("missing-field", f"{name} is required (a non-empty string)")
    problem = customer_ref_problem(value)
    if problem is not None:
        raise PrivacyRequestRejected(NOT_CANONICAL, problem.replace("customer_ref", name, 1))
    return value


def parse_privacy_request(data: Any, *, now: datetime) -> RequestInput:
    """Validate one request body (see the module docstring).

    Raises:
        PrivacyRequestRejected: with reason ``malformed``, ``unknown-type``,
            ``missing-field``, ``bad-field``, ``customer-ref-not-canonical`` or
            ``identity-not-verified``.
    """
    try:
        if isinstance(data, bytes | bytearray | str):
            data = load_json(data, max_bytes=_MAX_REQUEST_BYTES)
        else:
            check_tree(data)
    except InputRejected as exc:
        raise PrivacyRequestRejected(
            "malformed", f"the request is not usable: {exc.detail}"
        ) from None
    if not isinstance(data, dict):
        raise PrivacyRequestRejected("malformed", "the request must be a JSON object")
    try:
        kind = RequestKind(str(data.get("type")))
    except ValueError:
        raise PrivacyRequestRejected(
            "unknown-type",
            f"type must be one of {', '.join(REQUEST_TYPES)}, got {data.get('type')!r}",
        ) from None
    handler = handler_class(kind)
    tenant = _text(data, "tenant", limit=64)
    customer_ref = customer_ref_of(data, "customer_ref")
    request_id = data.get("request_id") or f"pr_{secrets.token_hex(10)}"
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise PrivacyRequestRejected(
            "bad-field", "request_id must be 1-64 letters, digits or . _ : - (no spaces)"
        )
    received_at = parse_time(data["received_at"], "received_at") if "received_at" in data else now
    if received_at > now + timedelta(minutes=5):
        raise PrivacyRequestRejected("bad-field", "received_at is in the future")
    verified_by: str | None = None
    method: str | None = None
    verified_at: datetime | None = None
    identity = data.get("identity_verification")
    approve = data.get("approve", True)
    if not isinstance(approve, bool):
        raise PrivacyRequestRejected("bad-field", "approve must be true or false")
    if identity is not None:
        # Without it a customer's request is stored ``received``: nothing is done until
        # an officer verifies the identity (``verify``) and approves it.
        verified_by, method, verified_at = parse_identity(identity, now=now)
    kind_input = handler.read_input(data, customer_ref)
    recording_ids = None
    if "recording_ids" in data:
        ids = data["recording_ids"]
        if (
            not isinstance(ids, list)
            or not ids
            or len(ids) > _MAX_IDS
            or not all(isinstance(i, str) and i for i in ids)
        ):
            raise PrivacyRequestRejected(
                "bad-field", f"recording_ids must be a list of 1-{_MAX_IDS} recording ids"
            )
        recording_ids = tuple(dict.fromkeys(ids))
    return RequestInput(
        request_id=request_id,
        kind=kind,
        tenant=tenant,
        customer_ref=customer_ref,
        verified_by=verified_by,
        verification_method=method,
        verified_at=verified_at,
        received_at=received_at,
        approve=approve,
        kind_input=kind_input,
        recording_ids=recording_ids,
    )
