"""OidcVerifier against a real OpenID Connect provider (tests/idp, npm oidc-provider):
good tokens map to principals through the configured claims; forged, expired,
wrong-audience, wrong-issuer, ``alg: none``, HS256-with-the-public-key and
claim-less tokens are refused with a stable reason."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from policies import Principal, load_policy
from storage import LocalKeyring
from streams.errors import AuthError
from streams.http.auth import LocalTokens
from streams.http.oidc import CompositeVerifier, JwksCache, OidcVerifier, SsoConfig
from tests.fixtures.oidc import OTHER_AUDIENCE, TestIdp

pytestmark = [pytest.mark.integration]

ROLES = frozenset(load_policy().roles)


@pytest.fixture(scope="module")
def verifier(oidc_provider: TestIdp) -> OidcVerifier:
    return OidcVerifier.connect(oidc_provider.sso_config(), ROLES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _FromNow:
    """A time claim relative to when the token is signed, not to when the test was collected
    (a parametrize value computed at collection is minutes old by the time a long suite runs it)."""

    seconds: int


def _claims(idp: TestIdp, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    overrides = {k: now + v.seconds if isinstance(v, _FromNow) else v for k, v in overrides.items()}
    claims = {
        "iss": idp.issuer,
        "aud": idp.audience,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "callvault_role": "cv-qa-reviewers",
        "tenant": "acme",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _refused(verifier: Any, token: str, now: datetime | None = None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token, now or _now())
    return caught.value


# -- good tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "role", "tenant"),
    [
        ("alice", "qa-reviewer", "acme"),
        ("sam", "supervisor", "globex"),
        ("olivia", "compliance-officer", "acme"),
    ],
)
def test_provider_token_maps_to_principal(
    verifier: OidcVerifier, oidc_token: Any, account: str, role: str, tenant: str
) -> None:
    token = oidc_token(account)
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("RS256", "at+jwt")  # a real RFC 9068 token
    assert _claims_of(token)["callvault_role"] != role  # the IdP speaks in its group names
    principal = verifier.verify(token, _now())
    assert principal == Principal(user=f"sso:{account}", role=role, org=None, tenant=tenant)


def test_claim_names_and_role_values_come_from_the_config(oidc_provider: TestIdp) -> None:
    # No role map: the claim must hold callvault role names; here under another claim name.
    from streams.http.oidc import ClaimNames

    config = oidc_provider.sso_config(
        roles={}, claims=ClaimNames(user="preferred_username", role="groups", tenant="org_unit")
    )
    verifier = OidcVerifier.connect(config, ROLES)
    token = oidc_provider.sign(
        _claims(
            oidc_provider,
            preferred_username="a.smith",
            groups=["staff", "supervisor"],
            org_unit="globex",
        )
    )
    assert verifier.verify(token, _now()) == Principal("sso:a.smith", "supervisor", None, "globex")
    # "*" names every tenant (policies.tenant_scope grants it only to spanning roles)
    spanning = oidc_provider.sign(
        _claims(oidc_provider, preferred_username="a.smith", groups=["supervisor"], org_unit="*")
    )
    assert verifier.verify(spanning, _now()).tenant == "*"
    # The provider's own token has neither claim under those names.
    error = _refused(verifier, oidc_provider.token("alice"))
    assert error.reason == "token-claims"


def test_leeway_is_small_and_explicit(verifier: OidcVerifier, oidc_token: Any) -> None:
    token = oidc_token("alice")
    exp = _claims_of(token)["exp"]
    leeway = verifier.config.leeway_seconds
    assert leeway == 30
    just_inside = datetime.fromtimestamp(exp + leeway - 1, UTC)
    assert verifier.verify(token, just_inside).user == "sso:alice"
    assert _refused(verifier, token, datetime.fromtimestamp(exp + leeway, UTC)).reason == (
        "token-expired"
    )


# -- refused tokens ---------------------------------------------------------------------


def test_forged_signature_with_the_same_kid(verifier: OidcVerifier, oidc_provider: TestIdp) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        _claims(oidc_provider),
        other,
        algorithm="RS256",
        headers={"kid": oidc_provider.kid, "typ": "at+jwt"},
    )
    assert _refused(verifier, forged).reason == "token-signature"
    # A real token with one claim changed keeps its signature, which no longer matches.
    header, payload, signature = oidc_provider.token("alice").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["callvault_role"] = "cv-compliance"
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert _refused(verifier, tampered).reason == "token-signature"


def test_expired_tokens(verifier: OidcVerifier, oidc_provider: TestIdp) -> None:
    real = oidc_provider.token("sam")
    later = datetime.fromtimestamp(_claims_of(real)["exp"], UTC) + timedelta(minutes=5)
    assert _refused(verifier, real, later).reason == "token-expired"
    long_ago = int(time.time()) - 3600
    stale = oidc_provider.sign(_claims(oidc_provider, iat=long_ago, exp=long_ago + 600))
    assert _refused(verifier, stale).reason == "token-expired"


def test_exp_is_required(verifier: OidcVerifier, oidc_provider: TestIdp) -> None:
    endless = oidc_provider.sign(_claims(oidc_provider, exp=None))
    error = _refused(verifier, endless)
    assert (error.reason, error.detail) == ("token-claims", "claim 'exp' is missing")


def test_wrong_audience(verifier: OidcVerifier, oidc_provider: TestIdp) -> None:
    for_other_api = oidc_provider.token("alice", resource=OTHER_AUDIENCE)
    assert _claims_of(for_other_api)["aud"] == OTHER_AUDIENCE
    assert _refused(verifier, for_other_api).reason == "token-audience"
    no_aud = oidc_provider.sign(_claims(oidc_provider, aud=None))
    assert _refused(verifier, no_aud).reason == "token-claims"


def test_wrong_issuer(verifier: OidcVerifier, oidc_provider: TestIdp, oidc_token: Any) -> None:
    elsewhere = oidc_provider.sign(_claims(oidc_provider, iss="https://evil.example"))
    assert _refused(verifier, elsewhere).reason == "token-issuer"
    # The same real token, checked by a verifier pinned to another issuer.
    pinned_elsewhere = OidcVerifier(
        oidc_provider.sso_config(issuer="https://login.example.com"), ROLES, verifier.keys
    )
    assert _refused(pinned_elsewhere, oidc_token("alice")).reason == "token-issuer"


def test_alg_none_is_refused(verifier: OidcVerifier, oidc_provider: TestIdp) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": oidc_provider.kid}).encode())
    payload = _b64(json.dumps(_claims(oidc_provider)).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}.c2ln"):
        assert _refused(verifier, token).reason == "token-algorithm"


def test_hs256_signed_with_the_public_key_is_refused(
    verifier: OidcVerifier, oidc_provider: TestIdp
) -> None:
    # The classic key-confusion attack: HMAC keyed with the IdP's published public key.
    public_pem = oidc_provider.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": oidc_provider.kid}).encode())
    payload = _b64(json.dumps(_claims(oidc_provider)).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert _refused(verifier, f"{header}.{payload}.{_b64(mac)}").reason == "token-algorithm"
    # Nor can HS256 (or none) be pinned in the config.
    for alg in ("HS256", "none"):
        with pytest.raises(ValueError, match="not allowed"):
            oidc_provider.sso_config(algorithms=(alg,))


def test_missing_or_unmapped_role(verifier: OidcVerifier, oidc_provider: TestIdp) -> None:
    error = _refused(verifier, oidc_provider.token("norole"))
    assert (error.reason, error.detail) == ("token-claims", "claim 'callvault_role' is missing")
    error = _refused(verifier, oidc_provider.token("multi"))
    assert (error.reason, error.detail) == (
        "token-role",
        "claim 'callvault_role' names several callvault roles",
    )
    unmapped = oidc_provider.sign(_claims(oidc_provider, callvault_role="cv-admins"))
    assert _refused(verifier, unmapped).reason == "token-role"
    # A callvault role name is not a mapped IdP value either.
    direct = oidc_provider.sign(_claims(oidc_provider, callvault_role="compliance-officer"))
    assert _refused(verifier, direct).reason == "token-role"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"tenant": None}, "token-claims"),
        ({"tenant": ["acme"]}, "token-claims"),
        ({"sub": "alice smith"}, "token-claims"),
        ({"exp": "tomorrow"}, "token-claims"),
        ({"iat": _FromNow(600)}, "token-not-yet-valid"),
        ({"nbf": _FromNow(600)}, "token-not-yet-valid"),
    ],
)
def test_bad_claims(
    verifier: OidcVerifier, oidc_provider: TestIdp, overrides: dict[str, Any], reason: str
) -> None:
    assert _refused(verifier, oidc_provider.sign(_claims(oidc_provider, **overrides))).reason == (
        reason
    )


def test_header_checks(verifier: OidcVerifier, oidc_provider: TestIdp) -> None:
    # An ID token (typ JWT) is not an access token, even with the right audience.
    assert _refused(verifier, oidc_provider.sign(_claims(oidc_provider), typ="JWT")).reason == (
        "token-type"
    )
    unknown_kid = oidc_provider.sign(_claims(oidc_provider), kid="rotated-away")
    assert _refused(verifier, unknown_kid).reason == "token-signature"
    for garbage in ("", "a.b", "x" * 9000, "!!!.e30.sig", "a.b.c.d.e"):
        assert _refused(verifier, garbage).reason in {"token-missing", "token-malformed"}


# -- keys: discovery, refresh on unknown kid, the event loop ----------------------------


def test_discovery_pins_the_issuer(oidc_provider: TestIdp) -> None:
    assert OidcVerifier.connect(oidc_provider.sso_config(), ROLES).keys.kids == {oidc_provider.kid}
    # Same server, another spelling of its address: the document names another issuer.
    mixed_up = oidc_provider.issuer.replace("127.0.0.1", "localhost")
    with pytest.raises(AuthError) as caught:
        OidcVerifier.connect(oidc_provider.sso_config(issuer=mixed_up), ROLES)
    assert caught.value.reason == "idp-unavailable"


class _JwksServer:
    """A tiny JWKS endpoint whose key set the test changes (key rotation)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.jwks: dict[str, Any] = {"keys": []}
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    from jwt.algorithms import RSAAlgorithm

    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


@pytest.fixture
def jwks_server() -> Any:
    server = _JwksServer()
    yield server
    server.close()


def _rotating_setup(jwks_server: _JwksServer) -> tuple[OidcVerifier, Any, list[float]]:
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    jwks_server.jwks = {"keys": [_jwk(old, "k-old")]}
    clock = [1000.0]
    config = SsoConfig(issuer="https://idp.example", audience="urn:callvault:api", roles={})
    keys = JwksCache(
        jwks_server.url, timeout=2, max_age=3600, min_refresh=60, clock=lambda: clock[0]
    )
    keys.refresh()
    verifier = OidcVerifier(config, ROLES, keys)

    def token_by(key: rsa.RSAPrivateKey, kid: str) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://idp.example",
            "aud": "urn:callvault:api",
            "sub": "u1",
            "iat": now,
            "exp": now + 60,
            "callvault_role": "qa-reviewer",
            "tenant": "acme",
        }
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})

    jwks_server.jwks = {"keys": [_jwk(old, "k-old"), _jwk(new, "k-new")]}  # the IdP rotates
    return verifier, lambda kid: token_by(old if kid == "k-old" else new, kid), clock


def test_unknown_kid_refreshes_the_keys_at_a_bounded_rate(jwks_server: _JwksServer) -> None:
    verifier, token, clock = _rotating_setup(jwks_server)
    assert jwks_server.hits == 1
    assert verifier.verify(token("k-old"), _now()).user == "sso:u1"  # cached: no fetch
    assert jwks_server.hits == 1
    clock[0] += 61
    assert verifier.verify(token("k-new"), _now()).user == "sso:u1"  # unknown kid: one refetch
    assert jwks_server.hits == 2
    for n in range(5):  # made-up kids within min_refresh: no more fetches
        assert _refused(verifier, token(f"made-up-{n}")).reason == "token-signature"
    assert jwks_server.hits == 2
    clock[0] += 3600  # stale set: refetched on the next use
    verifier.verify(token("k-old"), _now())
    assert jwks_server.hits == 3


def test_unreachable_jwks_is_idp_unavailable() -> None:
    keys = JwksCache("http://127.0.0.1:9/jwks", timeout=1)
    with pytest.raises(AuthError) as caught:
        keys.refresh()
    assert caught.value.reason == "idp-unavailable"
    verifier = OidcVerifier(SsoConfig(issuer="https://idp.example", audience="a"), ROLES, keys)
    token = jwt.encode(
        {"sub": "u"},
        rsa.generate_private_key(65537, 2048),
        algorithm="RS256",
        headers={"kid": "k", "typ": "at+jwt"},
    )
    assert _refused(verifier, token).reason == "idp-unavailable"


def test_the_event_loop_never_waits_for_the_network(jwks_server: _JwksServer) -> None:
    verifier, token, clock = _rotating_setup(jwks_server)
    clock[0] += 61

    async def on_the_loop() -> tuple[str, Principal]:
        # Plain verify() on the loop thread: refuses rather than block, refreshes behind.
        error = _refused(verifier, token("k-new"))
        for _ in range(100):
            if "k-new" in verifier.keys.kids:
                break
            await asyncio.sleep(0.02)
        return error.reason, verifier.verify(token("k-new"), _now())

    reason, principal = asyncio.run(on_the_loop())
    assert (reason, principal.user) == ("idp-unavailable", "sso:u1")
    # averify() fetches in the executor and answers in the same call.
    verifier, token, clock = _rotating_setup(jwks_server)
    clock[0] += 61
    assert asyncio.run(verifier.averify(token("k-new"), _now())).role == "qa-reviewer"


# -- local and IdP tokens side by side; the config's shape ------------------------------


def test_composite_accepts_local_and_idp_tokens(
    tmp_path: Path, verifier: OidcVerifier, oidc_token: Any
) -> None:
    local = LocalTokens(LocalKeyring(tmp_path / "keys.json"), ROLES)
    composite = CompositeVerifier(local=local, sso=verifier)
    cv1 = local.issue(user="bob", role="operator", org=None, ttl=timedelta(hours=1))
    assert composite.verify(cv1, _now()) == Principal("bob", "operator")
    assert composite.verify(oidc_token("olivia"), _now()).role == "compliance-officer"
    assert asyncio.run(composite.averify(oidc_token("sam"), _now())).tenant == "globex"
    assert _refused(composite, "cv1.forged.k.sig").reason == "token-signature"
    assert _refused(composite, "opaque-token").reason == "token-malformed"
    only_local = CompositeVerifier(local=local, sso=None)
    assert _refused(only_local, oidc_token("alice")).reason == "token-malformed"


def test_config_from_a_policy_section(oidc_provider: TestIdp) -> None:
    import yaml

    section = yaml.safe_load(
        f"""
        issuer: {oidc_provider.issuer}
        audience: urn:callvault:api
        client_id: callvault-qa
        algorithms: [RS256]
        claims: {{user: sub, role: callvault_role, tenant: tenant}}
        roles: {{cv-qa-reviewers: qa-reviewer, cv-supervisors: supervisor}}
        leeway_seconds: 10
        """
    )
    config = SsoConfig.from_mapping(section)
    assert config == oidc_provider.sso_config(
        roles={"cv-qa-reviewers": "qa-reviewer", "cv-supervisors": "supervisor"},
        leeway_seconds=10,
    )
    verifier = OidcVerifier.connect(config, ROLES)
    assert verifier.verify(oidc_provider.token("alice"), _now()).role == "qa-reviewer"
    bad = [
        ({**section, "secret": "x"}, "unknown keys"),
        ({**section, "issuer": "http://idp.example"}, "https"),
        ({**section, "leeway_seconds": 3600}, "leeway"),
        ({**section, "claims": {"email": "email"}}, "claims"),
    ]
    for data, message in bad:
        with pytest.raises(ValueError, match=message):
            SsoConfig.from_mapping(data)
    with pytest.raises(ValueError, match="unknown roles"):
        OidcVerifier(
            SsoConfig.from_mapping({**section, "roles": {"g": "root"}}), ROLES, verifier.keys
        )
