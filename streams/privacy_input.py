"""Privacy request bodies: parsing and validation (the format: :mod:`streams.privacy`).

:func:`parse_privacy_request` turns a JSON body (text, bytes or a decoded object) into
a :class:`RequestInput` or raises :class:`PrivacyRequestRejected` with a stable
``reason`` code; nothing is stored for a rejected request.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from streams.errors import StreamError

__all__ = [
    "REQUEST_TYPES",
    "VERIFICATION_METHODS",
    "PrivacyRequestRejected",
    "RequestInput",
    "parse_privacy_request",
]


REQUEST_TYPES = (
    "disclose",
    "restrict",
    "lift-restriction",
    "erase",
    "correct",
    "contract-terminated",
)
#: How a compliance officer verified the customer's identity (closed list).
VERIFICATION_METHODS = ("id-document", "account-authentication", "callback", "in-person", "postal")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
_CORRECTABLE = ("customer_ref", "queue", "agent_id")
_MAX_IDS = 1000


class PrivacyRequestRejected(StreamError):
    """A privacy request is malformed; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class RequestInput:
    """A validated request (still with the raw customer reference; never stored)."""

    request_id: str
    kind: str
    tenant: str
    customer_ref: str
    verified_by: str | None
    verification_method: str | None
    verified_at: datetime | None
    received_at: datetime
    terminated_at: datetime | None = None
    corrections: dict[str, str] = field(default_factory=dict)
    recording_ids: tuple[str, ...] | None = None


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise PrivacyRequestRejected("bad-field", f"{name} must be an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PrivacyRequestRejected("bad-field", f"{name} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise PrivacyRequestRejected("bad-field", f"{name} needs a time zone (e.g. +00:00)")
    return parsed


def _text(data: Mapping[str, Any], name: str, *, limit: int = 256) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PrivacyRequestRejected("missing-field", f"{name} is required (a non-empty string)")
    if len(value) > limit:
        raise PrivacyRequestRejected("bad-field", f"{name} is longer than {limit} characters")
    return value.strip()


def parse_privacy_request(data: Any, *, now: datetime) -> RequestInput:
    """Validate one request body (see the module docstring).

    Raises:
        PrivacyRequestRejected: with reason ``malformed``, ``unknown-type``,
            ``missing-field``, ``bad-field`` or ``identity-not-verified``.
    """
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError:
            raise PrivacyRequestRejected("malformed", "the request is not JSON") from None
    if not isinstance(data, dict):
        raise PrivacyRequestRejected("malformed", "the request must be a JSON object")
    kind = data.get("type")
    if kind not in REQUEST_TYPES:
        raise PrivacyRequestRejected(
            "unknown-type", f"type must be one of {', '.join(REQUEST_TYPES)}, got {kind!r}"
        )
    tenant = _text(data, "tenant", limit=64)
    customer_ref = _text(data, "customer_ref")
    request_id = data.get("request_id") or f"pr_{secrets.token_hex(10)}"
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise PrivacyRequestRejected(
            "bad-field", "request_id must be 1-64 letters, digits or . _ : - (no spaces)"
        )
    received_at = _time(data["received_at"], "received_at") if "received_at" in data else now
    if received_at > now + timedelta(minutes=5):
        raise PrivacyRequestRejected("bad-field", "received_at is in the future")
    verified_by = method = None
    verified_at: datetime | None = None
    identity = data.get("identity_verification")
    if kind != "contract-terminated" or identity is not None:
        if not isinstance(identity, dict):
            raise PrivacyRequestRejected(
                "identity-not-verified",
                "identity_verification {verified_by, method} is required: the customer's "
                "identity must be verified before a request is handled",
            )
        verified_by = _text(identity, "verified_by", limit=128)
        if not _USER.match(verified_by):
            raise PrivacyRequestRejected("bad-field", "verified_by must be a user id")
        method = identity.get("method")
        if method not in VERIFICATION_METHODS:
            raise PrivacyRequestRejected(
                "identity-not-verified",
                f"identity_verification.method must be one of {', '.join(VERIFICATION_METHODS)}",
            )
        verified_at = (
            _time(identity["verified_at"], "identity_verification.verified_at")
            if "verified_at" in identity
            else now
        )
    terminated_at = None
    if kind == "contract-terminated":
        if "terminated_at" not in data:
            raise PrivacyRequestRejected("missing-field", "terminated_at is required")
        terminated_at = _time(data["terminated_at"], "terminated_at")
    corrections: dict[str, str] = {}
    if kind == "correct":
        raw = data.get("corrections")
        if not isinstance(raw, dict) or not raw:
            raise PrivacyRequestRejected(
                "missing-field", f"corrections must name at least one of {', '.join(_CORRECTABLE)}"
            )
        for key, value in raw.items():
            if key not in _CORRECTABLE:
                raise PrivacyRequestRejected("bad-field", f"cannot correct {key!r}")
            if not isinstance(value, str) or not value.strip() or len(value) > 256:
                raise PrivacyRequestRejected(
                    "bad-field", f"corrections.{key} must be a non-empty string"
                )
            corrections[key] = value.strip()
        if corrections.get("customer_ref") == customer_ref:
            raise PrivacyRequestRejected(
                "bad-field", "corrections.customer_ref equals customer_ref"
            )
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
        terminated_at=terminated_at,
        corrections=corrections,
        recording_ids=recording_ids,
    )
