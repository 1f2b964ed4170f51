"""Bearer tokens from an OpenID Connect identity provider (single sign-on for staff).

:class:`OidcVerifier` implements the :class:`streams.http.auth.TokenVerifier` protocol for
JWT access tokens (RFC 9068) issued by the IdP: the signature is checked with PyJWT
against the IdP's JWKS, with the issuer, the audience and the algorithms pinned by
:class:`SsoConfig`; ``exp`` is required and checked against the ``now`` passed in,
with a small explicit leeway. Role and tenant come from the claims that the config
names (the policy file's ``sso:`` section, :meth:`SsoConfig.from_mapping`)::

    sso:
      issuer: https://login.example.com/realms/contact-center
      audience: urn:callvault:api
      client_id: callvault-qa            # the QA page's public client (PKCE)
      algorithms: [RS256]
      scope: openid profile callvault   # what the QA page asks for at sign-in
      claims: {user: sub, role: callvault_role, tenant: tenant}
      roles: {cv-qa-reviewers: qa-reviewer, cv-supervisors: supervisor}

An IdP user is ``user_prefix`` + the user claim (default ``sso:``: ``sso:alice``), in
the principal and so in every audit actor (``user:sso:alice``), rate-guard window and
evaluation assignment: a local ``cv1`` user can never hold a ``:`` in its name, so an
IdP ``alice`` and a local ``alice`` are never the same principal.

:func:`verifier_for` is what the worker authenticates with: local tokens, plus the
IdP's when the policy has an ``sso:`` section (the IdP may be down at start-up: its
discovery document and keys are fetched on first use, and requests meanwhile are
answered ``idp-unavailable``, 503).

:class:`CompositeVerifier` accepts local ``cv1.`` tokens (:class:`streams.http.auth.LocalTokens`,
the embedded default) and IdP JWTs side by side, dispatching on the token's shape.

Network and the event loop: ``OidcVerifier.connect()`` (discovery + first JWKS fetch)
and ``verify()`` on an unknown ``kid`` or a stale key set fetch over HTTP (bounded by
``jwks_timeout_seconds``; forced refreshes at most every ``jwks_min_refresh_seconds``).
In async code call ``await verifier.averify(token, now)``: it verifies inline when the
keys are cached (CPU only) and runs a fetch in the default executor otherwise. A plain
``verify()`` called on an event-loop thread never blocks on the network: when it would
need to fetch, it starts the refresh in a background thread and refuses the token with
``idp-unavailable`` (the caller may retry).

Reason codes (``AuthError.reason``), shared with the local tokens where they mean the
same: ``token-missing``, ``token-malformed`` (not a compact JWS, bad header, JWE,
too long), ``token-algorithm`` (``alg`` not pinned: ``none``, ``HS256``...),
``token-type`` (``typ`` header not an access-token type), ``token-signature``
(signature does not verify, unknown key), ``token-issuer``, ``token-audience``,
``token-expired``, ``token-not-yet-valid`` (``nbf``/``iat`` in the future),
``token-claims`` (a required claim missing or ill-typed: ``exp``, ``iat``, user, role,
tenant), ``token-role`` (no or several callvault roles), ``idp-unavailable`` (keys could
not be fetched).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt import PyJWK, PyJWKClient

from callvault.errors import ConfigError
from policies import ALL_TENANTS, Policy, Principal
from streams.errors import AuthError
from streams.http.auth import TokenVerifier

__all__ = [
    "ClaimNames",
    "SsoConfig",
    "JwksCache",
    "OidcVerifier",
    "CompositeVerifier",
    "discover_jwks_uri",
    "Discovery",
    "verifier_for",
    "sso_of",
    "MAX_JWT_LENGTH",
]

log = logging.getLogger(__name__)

MAX_JWT_LENGTH = 8192
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")  # as streams.http.auth for users
_PREFIX = re.compile(r"^([a-z][a-z0-9-]{0,15}:)?$")


@dataclass(frozen=True)
class ClaimNames:
    """Which claims carry the user, the role(s), the tenant and (optionally) the
    entrusted organisation. Top-level claim names, used as they are (no dotted paths:
    namespaced claims such as ``https://example.com/roles`` contain dots)."""

    user: str = "sub"
    role: str = "callvault_role"
    tenant: str = "tenant"
    org: str | None = None


@dataclass(frozen=True)
class SsoConfig:
    """How the IdP's access tokens are checked and mapped to a :class:`Principal`.

    ``roles`` maps IdP values of the role claim (group names, app roles) to callvault
    roles; empty means the claim holds callvault role names. ``client_id`` is the QA
    page's public client (used by the sign-in flow, not to check access tokens).
    ``jwks_uri`` None: discovered from the issuer by :meth:`OidcVerifier.connect`.

    Raises:
        ValueError: on construction, for an unpinned or symmetric algorithm, a non-https
            issuer (loopback http is allowed for tests), or out-of-range numbers.
    """

    issuer: str
    audience: str
    client_id: str | None = None
    scope: str = "openid"
    algorithms: tuple[str, ...] = ("RS256",)
    claims: ClaimNames = field(default_factory=ClaimNames)
    roles: Mapping[str, str] = field(default_factory=dict)
    jwks_uri: str | None = None
    token_types: tuple[str, ...] = ("at+jwt",)
    tenant_required: bool = True
    leeway_seconds: int = 30
    jwks_timeout_seconds: float = 5.0
    jwks_max_age_seconds: int = 3600
    jwks_min_refresh_seconds: int = 60
    user_prefix: str = "sso:"

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        object.__setattr__(self, "token_types", tuple(t.lower() for t in self.token_types))
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))
        if not self.algorithms:
            raise ValueError("sso.algorithms must name at least one algorithm")
        for alg in self.algorithms:
            if alg not in ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"sso.algorithms: {alg!r} is not allowed; use asymmetric ones "
                    f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})"
                )
        for name, url in (("issuer", self.issuer), ("jwks_uri", self.jwks_uri)):
            if url is not None and not _https_or_loopback(url):
                raise ValueError(f"sso.{name} must be an https URL (http only on loopback)")
        if not self.audience:
            raise ValueError("sso.audience is required")
        if not 0 <= self.leeway_seconds <= 300:
            raise ValueError("sso.leeway_seconds must be between 0 and 300")
        if self.jwks_timeout_seconds <= 0 or self.jwks_max_age_seconds <= 0:
            raise ValueError("sso JWKS timeout and max age must be positive")
        if self.jwks_min_refresh_seconds < 0:
            raise ValueError("sso.jwks_min_refresh_seconds must not be negative")
        if not isinstance(self.user_prefix, str) or not _PREFIX.match(self.user_prefix):
            raise ValueError("sso.user_prefix must be empty or like 'sso:' (lower-case, ':')")
        if not isinstance(self.scope, str) or "openid" not in self.scope.split():
            raise ValueError("sso.scope must be a space-separated list including 'openid'")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SsoConfig:
        """The config from a policy-file-like mapping (the ``sso:`` section).

        Raises:
            ValueError: for unknown keys, wrong types or the constructor's checks.
        """
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"sso: unknown keys {', '.join(sorted(unknown))}")
        values = dict(data)
        claims = values.pop("claims", None) or {}
        if (
            not isinstance(claims, Mapping)
            or set(claims) - set(ClaimNames.__dataclass_fields__)
            or not all(isinstance(v, str) and v for v in claims.values())
        ):
            raise ValueError("sso.claims must map user/role/tenant/org to claim names")
        for key in ("algorithms", "token_types"):
            if key in values:
                if not isinstance(values[key], list | tuple):
                    raise ValueError(f"sso.{key} must be a list")
                values[key] = tuple(values[key])
        roles = values.get("roles", {})
        if not isinstance(roles, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in roles.items()
        ):
            raise ValueError("sso.roles must map IdP role values to callvault roles")
        for key in ("issuer", "audience"):
            if not isinstance(values.get(key), str):
                raise ValueError(f"sso.{key} must be a string")
        for key in ("client_id", "scope", "jwks_uri", "user_prefix"):
            if values.get(key) is not None and not isinstance(values[key], str):
                raise ValueError(f"sso.{key} must be a string")
        return cls(claims=ClaimNames(**claims), **values)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _https_or_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "::1", "localhost"}


def discover(issuer: str, timeout: float) -> dict[str, Any]:
    """``issuer``'s discovery document (blocking HTTP GET), checked: it names this issuer
    (mix-up protection) and https/loopback ``jwks_uri``, ``authorization_endpoint`` and
    ``token_endpoint``.

    Raises:
        AuthError: ``idp-unavailable`` when the document cannot be fetched or fails a check.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            document = json.load(response)
    except (OSError, ValueError) as exc:
        raise AuthError("idp-unavailable", f"discovery failed: {exc}") from exc
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        raise AuthError("idp-unavailable", "discovery document names another issuer")
    for name in ("jwks_uri", "authorization_endpoint", "token_endpoint"):
        value = document.get(name)
        if not isinstance(value, str) or not _https_or_loopback(value):
            raise AuthError("idp-unavailable", f"discovery document has no usable {name}")
    return document


def discover_jwks_uri(issuer: str, timeout: float) -> str:
    """The ``jwks_uri`` of ``issuer``'s discovery document (see :func:`discover`)."""
    return str(discover(issuer, timeout)["jwks_uri"])


class Discovery:
    """The IdP's discovery document, fetched once (blocking), retried at most every
    ``min_refresh`` seconds after a failure. Thread-safe.

    ``document`` is None until a fetch succeeded; :meth:`fetch` gets it now."""

    def __init__(
        self,
        issuer: str,
        *,
        timeout: float = 5.0,
        min_refresh: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._timeout, self._min_refresh, self._clock = timeout, min_refresh, clock
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self.document: dict[str, Any] | None = None

    def fetch(self) -> dict[str, Any]:
        """The document, fetched if not held yet (blocking).

        Raises:
            AuthError: ``idp-unavailable`` (also while a recent failure is not retried yet).
        """
        with self._lock:
            if self.document is not None:
                return self.document
            now = self._clock()
            if self._failed_at is not None and now - self._failed_at < self._min_refresh:
                raise AuthError("idp-unavailable", "the identity provider is unavailable")
            try:
                self.document = discover(self.issuer, self._timeout)
            except AuthError:
                self._failed_at = now
                raise
            return self.document

    def jwks_uri(self) -> str:
        return str(self.fetch()["jwks_uri"])


class JwksCache:
    """The IdP's signing keys by ``kid``, fetched with PyJWT's :class:`PyJWKClient`.

    Keys older than ``max_age`` are refetched; an unknown ``kid`` forces a refetch at
    most every ``min_refresh`` seconds (a flood of made-up kids cannot turn into a flood
    of fetches). A failed fetch keeps the keys it had. Thread-safe. ``jwks`` instead of a
    URI: a fixed key set (a file), never fetched.
    """

    def __init__(
        self,
        jwks_uri: str | None = None,
        *,
        jwks: Mapping[str, Any] | None = None,
        discover: Callable[[], str] | None = None,
        timeout: float = 5.0,
        max_age: float = 3600,
        min_refresh: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sum(x is not None for x in (jwks_uri, jwks, discover)) != 1:
            raise ValueError("give one of a jwks_uri, a fixed jwks or a discover function")
        self._timeout = timeout
        self._discover = discover
        self._client = (
            PyJWKClient(jwks_uri, cache_jwk_set=False, timeout=timeout) if jwks_uri else None
        )
        self._max_age, self._min_refresh, self._clock = max_age, min_refresh, clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._background: threading.Thread | None = None
        if jwks is not None:
            self._keys = _signing_keys(jwks)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def needs_fetch(self, kid: str | None) -> bool:
        """Whether :meth:`key` for ``kid`` would go to the network now (no I/O)."""
        if self._client is None and self._discover is None:
            return False
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._max_age:
            return self._may_attempt(now)
        return self._lookup(kid) is None and self._may_attempt(now)

    def _may_attempt(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refresh

    def refresh(self) -> None:
        """Fetch the key set now (blocking).

        Raises:
            AuthError: ``idp-unavailable`` when it cannot be fetched or holds no signing key.
        """
        if self._client is None and self._discover is None:
            return
        with self._lock:
            self._attempted_at = self._clock()
            if self._client is None:
                assert self._discover is not None
                self._client = PyJWKClient(
                    self._discover(), cache_jwk_set=False, timeout=self._timeout
                )
            try:
                keys = _signing_keys(self._client.fetch_data())
            except (jwt.PyJWTError, ValueError) as exc:
                log.warning("JWKS fetch from %s failed: %s", self._client.uri, exc)
                raise AuthError(
                    "idp-unavailable", "the identity provider's keys are unavailable"
                ) from None
            self._keys, self._fetched_at = keys, self._clock()

    def refresh_in_background(self) -> None:
        """Start :meth:`refresh` in a daemon thread unless one is running (no blocking)."""
        with self._lock:
            if self._background is not None and self._background.is_alive():
                return
            self._background = threading.Thread(
                target=self._refresh_quietly, name="jwks-refresh", daemon=True
            )
            self._background.start()

    def _refresh_quietly(self) -> None:
        with contextlib.suppress(AuthError):  # logged in refresh(); the next request retries
            self.refresh()

    def key(self, kid: str | None) -> dict[str, Any]:
        """The public JWK for ``kid`` (None: the only key), fetching when needed (blocking).

        Raises:
            AuthError: ``token-signature`` for an unknown kid; ``idp-unavailable`` when no
                key set could ever be fetched.
        """
        if self.needs_fetch(kid):
            try:
                self.refresh()
            except AuthError:
                if not self._keys:
                    raise  # stale keys are better than none; none is an outage
        if not self._keys:
            raise AuthError("idp-unavailable", "the identity provider's keys are unavailable")
        found = self._lookup(kid)
        if found is None:
            raise AuthError("token-signature", "no key of the identity provider has this kid")
        return found

    def cached(self, kid: str | None) -> dict[str, Any] | None:
        """The key for ``kid`` held now, however old (no I/O)."""
        return self._lookup(kid)

    def _lookup(self, kid: str | None) -> dict[str, Any] | None:
        keys = self._keys
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)


def _signing_keys(jwks: Any) -> dict[str, dict[str, Any]]:
    """Public signing keys with a kid, by kid (encryption keys and private parts dropped)."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise ValueError("a JWKS is an object with a 'keys' list")
    found: dict[str, dict[str, Any]] = {}
    for entry in jwks["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if isinstance(kid, str) and entry.get("kty") in {"RSA", "EC", "OKP"}:
            public = {k: v for k, v in entry.items() if k not in {"d", "p", "q", "dp", "dq", "qi"}}
            found[kid] = public
    if not found:
        raise ValueError("the JWKS holds no signing key with a kid")
    return found


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class OidcVerifier:
    """Verifies the IdP's JWT access tokens and maps them to a :class:`Principal`.

    ``roles``: the policy's role names (what a mapped role must be). No network in the
    constructor; see :meth:`connect` and the module docstring for when it fetches.

    Raises:
        ValueError: on construction, when ``config.roles`` maps to an unknown role.
    """

    def __init__(
        self,
        config: SsoConfig,
        roles: Iterable[str],
        keys: JwksCache,
        discovery: Discovery | None = None,
    ) -> None:
        self.config = config
        self.roles = frozenset(roles)
        self.keys = keys
        self.discovery = discovery or Discovery(
            config.issuer,
            timeout=config.jwks_timeout_seconds,
            min_refresh=config.jwks_min_refresh_seconds,
        )
        unknown = set(config.roles.values()) - self.roles
        if unknown:
            raise ValueError(f"sso.roles maps to unknown roles: {', '.join(sorted(unknown))}")

    @classmethod
    def connect(
        cls, config: SsoConfig, roles: Iterable[str], *, lazy: bool = False
    ) -> OidcVerifier:
        """A verifier with the discovery document and keys fetched (the keys' URI is
        discovered unless ``config.jwks_uri`` names it).

        Blocking: call at start-up, or ``await loop.run_in_executor(None, ...)``.
        ``lazy``: an unavailable IdP is logged, not raised; the document and keys are
        fetched on first use (requests meanwhile get ``idp-unavailable``).

        Raises:
            AuthError: ``idp-unavailable`` when discovery or the first fetch fails (not lazy).
        """
        discovery = Discovery(
            config.issuer,
            timeout=config.jwks_timeout_seconds,
            min_refresh=config.jwks_min_refresh_seconds,
        )
        keys = JwksCache(
            config.jwks_uri,
            discover=None if config.jwks_uri else discovery.jwks_uri,
            timeout=config.jwks_timeout_seconds,
            max_age=config.jwks_max_age_seconds,
            min_refresh=config.jwks_min_refresh_seconds,
        )
        verifier = cls(config, roles, keys, discovery)
        try:
            discovery.fetch()
            keys.refresh()
        except AuthError as exc:
            if not lazy:
                raise
            log.warning("identity provider %s unavailable at start: %s", config.issuer, exc)
        return verifier

    def sign_in_config(self) -> dict[str, Any]:
        """What the QA page needs to sign staff in (authorization code + PKCE), from the
        discovery document (blocking fetch if not held yet).

        Raises:
            AuthError: ``idp-unavailable``.
        """
        document = self.discovery.fetch()
        config = self.config
        return {
            "issuer": config.issuer,
            "authorization_endpoint": document["authorization_endpoint"],
            "token_endpoint": document["token_endpoint"],
            "end_session_endpoint": document.get("end_session_endpoint"),
            "client_id": config.client_id,
            "audience": config.audience,
            "scope": config.scope,
            "claims": {"user": config.claims.user, "role": config.claims.role,
                       "tenant": config.claims.tenant},
            "user_prefix": config.user_prefix,
        }  # fmt: skip

    def origins(self) -> list[str]:
        """The IdP origins the page talks to (CSP ``connect-src``): the issuer's and,
        once discovered, the token endpoint's."""
        found = [_origin(self.config.issuer)]
        document = self.discovery.document
        if document is not None:
            found.append(_origin(str(document["token_endpoint"])))
        return list(dict.fromkeys(found))

    def verify(self, token: str, now: datetime) -> Principal:
        """The principal the token names. Raises AuthError with a reason code."""
        alg, kid = self._header(token)
        if _on_event_loop() and self.keys.needs_fetch(kid):
            # Never block the loop: refresh in the background, go on with what is held.
            self.keys.refresh_in_background()
            jwk = self.keys.cached(kid)
            if jwk is None:
                raise AuthError("idp-unavailable", "fetching the identity provider's keys; retry")
        else:
            jwk = self.keys.key(kid)
        return self._verify(token, alg, jwk, now)

    async def averify(self, token: str, now: datetime) -> Principal:
        """:meth:`verify` for async callers: a key fetch runs in the default executor."""
        _, kid = self._header(token)
        if self.keys.needs_fetch(kid):
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.keys.key, kid)
        return self.verify(token, now)

    def _header(self, token: str) -> tuple[str, str | None]:
        if not token:
            raise AuthError("token-missing", "no bearer token")
        if len(token) > MAX_JWT_LENGTH:
            raise AuthError("token-malformed", "token too long")
        if token.count(".") != 2:
            raise AuthError("token-malformed", "expected a signed JWT (header.payload.signature)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("token-malformed", "the JWT header is not base64 JSON") from None
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if not isinstance(alg, str) or alg not in self.config.algorithms:
            raise AuthError("token-algorithm", f"algorithm {alg!r} is not accepted")
        if self.config.token_types:
            kind = typ.lower().removeprefix("application/") if isinstance(typ, str) else None
            if kind not in self.config.token_types:
                raise AuthError("token-type", f"typ {typ!r} is not an access token type")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("token-malformed", "kid is not a string")
        return alg, kid

    def _verify(self, token: str, alg: str, jwk: dict[str, Any], now: datetime) -> Principal:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if jwk.get("alg", alg) != alg:
            raise AuthError("token-algorithm", "the key is for another algorithm")
        try:
            key = PyJWK(jwk, algorithm=alg)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.config.audience,
                issuer=self.config.issuer,
                # exp/nbf/iat are checked below against the caller's `now`.
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidAlgorithmError:
            raise AuthError("token-algorithm", "algorithm does not match the key") from None
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError, jwt.PyJWKError):
            raise AuthError("token-signature", "signature does not verify") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token-issuer", "token is from another issuer") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token-audience", "token is for another audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("token-claims", f"claim {exc.claim!r} is missing") from None
        except jwt.PyJWTError:
            raise AuthError("token-malformed", "the JWT does not decode") from None
        self._check_times(claims, now.timestamp())
        return self._principal(claims)

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        leeway = self.config.leeway_seconds
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthError("token-claims", f"claim {name!r} is not a number")
        if now >= claims["exp"] + leeway:
            raise AuthError("token-expired", "token has expired")
        if now + leeway < claims["iat"] or now + leeway < claims.get("nbf", 0):
            raise AuthError("token-not-yet-valid", "token is not valid yet")

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        names = self.config.claims
        user = _name_claim(claims, names.user, required=True)
        tenant = (
            ALL_TENANTS  # every tenant: only a role the policy lets span tenants gets anything
            if claims.get(names.tenant) == ALL_TENANTS
            else _name_claim(claims, names.tenant, required=self.config.tenant_required)
        )
        org = _name_claim(claims, names.org, required=False) if names.org else None
        if names.role not in claims:
            raise AuthError("token-claims", f"claim {names.role!r} is missing")
        values = claims[names.role]
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise AuthError("token-claims", f"claim {names.role!r} is not a string or list")
        mapping = self.config.roles
        roles = {mapping.get(v, "") if mapping else v for v in values} & self.roles
        if len(roles) != 1:
            detail = "names no callvault role" if not roles else "names several callvault roles"
            raise AuthError("token-role", f"claim {names.role!r} {detail}")
        assert user is not None
        return Principal(
            user=self.config.user_prefix + user, role=roles.pop(), org=org, tenant=tenant
        )


def _name_claim(claims: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise AuthError("token-claims", f"claim {name!r} is missing")
        return None
    if not isinstance(value, str) or not _NAME.match(value):
        raise AuthError("token-claims", f"claim {name!r} is not a plain identifier")
    return value


@dataclass(frozen=True)
class CompositeVerifier:
    """Local ``cv1.`` tokens and IdP JWTs side by side (either may be None: refused)."""

    local: TokenVerifier | None
    sso: OidcVerifier | None

    def _pick(self, token: str) -> TokenVerifier:
        if not token:
            raise AuthError("token-missing", "no bearer token")
        if token.startswith("cv1.") and self.local is not None:
            return self.local
        if token.count(".") == 2 and not token.startswith("cv1.") and self.sso is not None:
            return self.sso
        raise AuthError("token-malformed", "not a token this server accepts")

    def verify(self, token: str, now: datetime) -> Principal:
        return self._pick(token).verify(token, now)

    async def averify(self, token: str, now: datetime) -> Principal:
        verifier = self._pick(token)
        if isinstance(verifier, OidcVerifier):
            return await verifier.averify(token, now)
        return verifier.verify(token, now)


def verifier_for(
    policy: Policy, local: TokenVerifier | None, *, lazy: bool = True
) -> TokenVerifier:
    """What the worker authenticates with: ``local`` tokens alone, or beside the IdP's
    when the policy has an ``sso:`` section (see :meth:`OidcVerifier.connect`, blocking).

    Raises:
        ConfigError: the ``sso:`` section is invalid or maps to unknown roles.
    """
    if policy.sso is None:
        if local is None:
            raise ConfigError("no token verifier: the policy has no sso section")
        return local
    try:
        config = SsoConfig.from_mapping(policy.sso)
        sso = OidcVerifier.connect(config, policy.roles, lazy=lazy)
    except ValueError as exc:
        raise ConfigError(f"policy {policy.source}: sso: {exc}") from None
    return CompositeVerifier(local=local, sso=sso)


def sso_of(verifier: TokenVerifier) -> OidcVerifier | None:
    """The IdP verifier inside ``verifier`` (None: local tokens only)."""
    if isinstance(verifier, OidcVerifier):
        return verifier
    if isinstance(verifier, CompositeVerifier):
        return verifier.sso
    return None
