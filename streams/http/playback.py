"""Playback grants: short-lived signed audio URLs for the browser's ``<audio>`` element.

An ``<audio>`` element cannot send ``Authorization`` headers, and putting the bearer
token into a URL would hand out the reviewer's whole identity. Instead the page
POSTs the request (purpose, justification, mode) with its bearer token to
``/v1/recordings/{id}/grants``; the server decides, writes the audit record (durable)
and answers with ``/v1/recordings/{id}/audio?grant=<grant>``. The grant is:

- signed with the keyring's current signing key (HMAC; ``keys rotate`` rotates it,
  grants signed by the previous key stay valid until they expire), over a
  domain-separated payload, so it can never pass as a bearer token or vice versa;
- bound to one user, role, organisation, recording, purpose and mode;
- short-lived (``expires_at``), and re-checked on every request against the
  recording's current state (restricted, erased, contract ended mid-session => denied).

Grant format: ``pg1.<urlsafe-b64 JSON payload>.<key-id>.<signature>``; the payload
holds ``{"aud", "sub", "role", "org", "rid", "pur", "mode", "exp", "gid"}`` (and
``"asg"`` for a grant made under an evaluation assignment, re-checked on every request
like the recording: a completed or cancelled assignment ends the session) where
``gid`` is the seq of the audit record of the grant. It carries no justification,
legal basis, reference or customer data.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from callvault.errors import CallvaultError
from policies import Principal
from storage.crypto.keyring import Keyring
from streams.http.auth import AuthError

__all__ = ["PlaybackGrant", "PlaybackGrants", "GRANT_AUDIENCE"]

GRANT_AUDIENCE = "callvault-playback"
_DOMAIN = b"callvault-playback-grant/1:"
_MAX_GRANT_LENGTH = 2048
_MODES = ("play", "download")


@dataclass(frozen=True)
class PlaybackGrant:
    """What a verified grant allows."""

    principal: Principal
    recording_id: str
    purpose: str
    mode: str
    expires_at: datetime
    grant_id: int
    assignment_id: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PlaybackGrants:
    """Issues and verifies playback grants with ``keyring``."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def issue(self, grant: PlaybackGrant) -> str:
        """The signed grant string. Raises ValueError for an unknown mode or naive expiry."""
        if grant.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {grant.mode!r}")
        if grant.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        claims = {
            "aud": GRANT_AUDIENCE,
            "sub": grant.principal.user,
            "role": grant.principal.role,
            "org": grant.principal.org,
            "rid": grant.recording_id,
            "pur": grant.purpose,
            "mode": grant.mode,
            "exp": int(grant.expires_at.timestamp()),
            "gid": grant.grant_id,
        }
        if grant.assignment_id is not None:
            claims["asg"] = grant.assignment_id
        if grant.principal.tenant is not None:
            claims["ten"] = grant.principal.tenant
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"pg1.{payload}.{self._keyring.sign(_DOMAIN + payload.encode())}"

    def verify(self, grant: str, recording_id: str, now: datetime) -> PlaybackGrant:
        """The grant's content, if it is authentic, unexpired and for ``recording_id``.

        Raises:
            AuthError: ``grant-malformed``, ``grant-signature``, ``grant-expired`` or
                ``grant-recording`` (issued for another recording).
        """
        if not grant or len(grant) > _MAX_GRANT_LENGTH:
            raise AuthError("grant-malformed", "grant missing or too long")
        parts = grant.split(".")
        if len(parts) != 4 or parts[0] != "pg1":
            raise AuthError("grant-malformed", "expected pg1.<payload>.<key-id>.<signature>")
        _, payload, key_id, signature = parts
        try:
            valid = self._keyring.verify(_DOMAIN + payload.encode(), f"{key_id}.{signature}")
        except (ValueError, CallvaultError):
            valid = False
        if not valid:
            raise AuthError("grant-signature", "grant signature does not verify")
        try:
            claims = json.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            raise AuthError("grant-malformed", "grant payload is not base64 JSON") from None
        if not isinstance(claims, dict) or claims.get("aud") != GRANT_AUDIENCE:
            raise AuthError("grant-malformed", "not a playback grant")
        exp, gid = claims.get("exp"), claims.get("gid")
        fields = ("sub", "role", "rid", "pur", "mode")
        if (
            not isinstance(exp, int)
            or not isinstance(gid, int)
            or not all(isinstance(claims.get(name), str) for name in fields)
            or claims["mode"] not in _MODES
            or not (claims.get("org") is None or isinstance(claims.get("org"), str))
            or not (claims.get("asg") is None or isinstance(claims.get("asg"), str))
            or not (claims.get("ten") is None or isinstance(claims.get("ten"), str))
        ):
            raise AuthError("grant-malformed", "grant fields missing or of the wrong type")
        if now.timestamp() >= exp:
            raise AuthError("grant-expired", "the playback grant has expired; request a new one")
        if claims["rid"] != recording_id:
            raise AuthError("grant-recording", "the grant is for another recording")
        return PlaybackGrant(
            principal=Principal(
                user=claims["sub"],
                role=claims["role"],
                org=claims.get("org"),
                tenant=claims.get("ten"),
            ),
            recording_id=claims["rid"],
            purpose=claims["pur"],
            mode=claims["mode"],
            expires_at=datetime.fromtimestamp(exp, UTC),
            grant_id=gid,
            assignment_id=claims.get("asg"),
        )
