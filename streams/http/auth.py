"""Bearer tokens: the local issuer (embedded default) and the verifier seam.

A local token is ``cv1.<payload>.<signature>`` where ``payload`` is url-safe base64
of a JSON object ``{"sub", "role", "org", "tenant", "aud", "iat", "exp", "jti"}`` and the
signature is the keyring's HMAC signature (``<key-id>.<sig>``), so rotating the
keyring rotates token keys while tokens signed by older keys stay valid until they
expire. ``tenant`` is the tenant the token acts in (``"*"``: every tenant, only for a
role the policy lets span tenants); a token without it (issued before tenants) acts in
the policy's default tenant (:func:`policies.tenant_scope`).

Production may verify tokens of an external identity provider instead: anything
with ``verify(token: str, now: datetime) -> Principal`` (the :class:`TokenVerifier`
protocol) can be passed to the web app.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from callvault.errors import CallvaultError
from policies import Policy, Principal
from storage.crypto.keyring import Keyring
from streams.errors import AuthError

__all__ = [
    "AuthError",
    "TokenVerifier",
    "LocalTokens",
    "parse_ttl",
    "AUDIENCE",
    "TENANT",
    "local_tokens",
]

AUDIENCE = "callvault"
MAX_TOKEN_LENGTH = 4096
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
#: A tenant id (the event's ``tenant`` shape) or ``*`` (every tenant).
TENANT = re.compile(r"^(?:\*|[a-z0-9][a-z0-9-]{0,62})$")
_TTL = re.compile(r"^(\d+)([smhd])$")


class TokenVerifier(Protocol):
    def verify(self, token: str, now: datetime) -> Principal: ...


def parse_ttl(text: str) -> timedelta:
    """``"8h"`` -> 8 hours. Units: s, m, h, d. Raises ValueError with a clear message."""
    match = _TTL.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"TTL {text!r} must look like 30m, 8h or 2d")
    value, unit = int(match.group(1)), match.group(2)
    ttl = timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: value})
    if ttl > timedelta(days=30):
        raise ValueError("TTL longer than 30 days is not allowed")
    return ttl


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def local_tokens(keyring: Keyring, policy: Policy) -> LocalTokens:
    """The local issuer/verifier for ``policy``'s roles (and the roles spanning tenants)."""
    return LocalTokens(
        keyring,
        frozenset(policy.roles),
        spanning_roles=frozenset(r.id for r in policy.roles.values() if r.spans_tenants),
    )


@dataclass
class LocalTokens:
    """Issues and verifies tokens signed with the keyring. ``roles``: the known roles."""

    keyring: Keyring
    roles: frozenset[str]
    audience: str = AUDIENCE
    #: Roles that may hold a token for every tenant (``tenant="*"``).
    spanning_roles: frozenset[str] = frozenset()

    def issue(
        self,
        *,
        user: str,
        role: str,
        org: str | None,
        ttl: timedelta,
        now: datetime | None = None,
        tenant: str | None = None,
    ) -> str:
        """A signed token. Raises ValueError for an unknown role, a malformed user, org or
        tenant, or ``tenant="*"`` for a role that may not span tenants."""
        if role not in self.roles:
            raise ValueError(f"unknown role {role!r}; known roles: {', '.join(sorted(self.roles))}")
        if not _USER.match(user):
            raise ValueError(f"user {user!r} must match {_USER.pattern}")
        if org is not None and not _USER.match(org):
            raise ValueError(f"org {org!r} must match {_USER.pattern}")
        if tenant is not None and not TENANT.match(tenant):
            raise ValueError(f"tenant {tenant!r} must match {TENANT.pattern}")
        if tenant == "*" and role not in self.spanning_roles:
            spanning = ", ".join(sorted(self.spanning_roles)) or "none"
            raise ValueError(
                f"role {role!r} may not span tenants (the policy lets: {spanning}); "
                "name one tenant with --tenant"
            )
        issued = now or datetime.now(UTC)
        claims: dict[str, object] = {
            "sub": user,
            "role": role,
            "org": org,
            "aud": self.audience,
            "iat": int(issued.timestamp()),
            "exp": int((issued + ttl).timestamp()),
            "jti": secrets.token_hex(8),
        }
        if tenant is not None:
            claims["tenant"] = tenant
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"cv1.{payload}.{self.keyring.sign(payload.encode())}"

    def verify(self, token: str, now: datetime) -> Principal:
        """The principal the token names. Raises AuthError with a reason code."""
        if not token:
            raise AuthError("token-missing", "no bearer token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("token-malformed", "token too long")
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "cv1":
            raise AuthError("token-malformed", "expected cv1.<payload>.<key-id>.<signature>")
        _, payload, key_id, signature = parts
        try:
            valid = self.keyring.verify(payload.encode(), f"{key_id}.{signature}")
        except (ValueError, CallvaultError):
            valid = False
        if not valid:
            raise AuthError("token-signature", "signature does not verify")
        try:
            claims = json.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            raise AuthError("token-malformed", "payload is not base64 JSON") from None
        if not isinstance(claims, dict):
            raise AuthError("token-malformed", "payload is not an object")
        if claims.get("aud") != self.audience:
            raise AuthError("token-audience", "token is for another audience")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise AuthError("token-malformed", "exp/iat missing")
        if now.timestamp() >= exp:
            raise AuthError("token-expired", "token has expired")
        if now.timestamp() + 300 < iat:
            raise AuthError("token-malformed", "token issued in the future")
        role, user, org = claims.get("role"), claims.get("sub"), claims.get("org")
        if role not in self.roles:
            raise AuthError("token-role", "token names an unknown role")
        if not isinstance(user, str) or not _USER.match(user):
            raise AuthError("token-malformed", "bad subject")
        if org is not None and not isinstance(org, str):
            raise AuthError("token-malformed", "bad org")
        tenant = claims.get("tenant")
        if tenant is not None and (not isinstance(tenant, str) or not TENANT.match(tenant)):
            raise AuthError("token-malformed", "bad tenant")
        return Principal(user=user, role=role, org=org, tenant=tenant)
