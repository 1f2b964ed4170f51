"""Single sign-on through the worker's web app, against the real test provider
(tests/idp): the sign-in configuration the page reads, IdP access tokens accepted on
the API beside local ``cv1`` tokens, IdP users kept apart from local users in the audit
log, and forged, expired, wrong-audience, wrong-issuer and ``alg: none`` tokens refused
(401, audited). An unreachable IdP is 503 ``idp-unavailable``, not a bad token."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.oidc import OTHER_AUDIENCE, TestIdp
from tests.streams.qa_support import QaEnv, make_env

pytestmark = [pytest.mark.integration]

CALLS = {
    "rec-sso-1": {"agent": "agent-1", "queue": "billing", "tenant": "acme"},
    "rec-sso-2": {"agent": "agent-2", "queue": "support", "tenant": "acme"},
}


@pytest.fixture
def env(tmp_path: Path, oidc_provider: TestIdp) -> Iterator[QaEnv]:
    policy = oidc_provider.write_policy(tmp_path / "policy.yaml")
    made = make_env(tmp_path, CALLS, extra_env={"CALLVAULT_POLICY": str(policy)})
    made.clock.now = datetime.now(UTC)  # the IdP's tokens are issued in real time
    yield made
    made.close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(idp: TestIdp, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": idp.issuer, "aud": idp.audience, "sub": "alice", "iat": now, "exp": now + 300,
        "callvault_role": "cv-qa-reviewers", "tenant": "acme",
    }  # fmt: skip
    claims.update(overrides)
    return claims


def test_the_page_learns_how_to_sign_in(env: QaEnv, oidc_provider: TestIdp) -> None:
    reply = env.get("/v1/auth/config")
    assert reply.status == 200
    config = reply.json()
    assert config["local_tokens"] is True and config["callback_path"] == "/oidc/callback"
    sso = config["sso"]
    assert sso == {
        "issuer": oidc_provider.issuer,
        "authorization_endpoint": oidc_provider.authorization_endpoint,
        "token_endpoint": oidc_provider.token_endpoint,
        "end_session_endpoint": sso["end_session_endpoint"],
        "client_id": "callvault-qa",
        "audience": "urn:callvault:api",
        "scope": "openid profile callvault",
        "claims": {"user": "sub", "role": "callvault_role", "tenant": "tenant"},
        "user_prefix": "sso:",
    }
    # The page may talk to the IdP (code exchange) and nowhere else.
    page = env.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert f"connect-src 'self' {oidc_provider.issuer};" in csp
    assert "script-src 'self';" in csp and "default-src 'none'" in csp
    callback = env.get("/oidc/callback?code=x&state=y")
    assert callback.status == 200 and callback.body == page.body


def test_idp_tokens_and_local_tokens_side_by_side(env: QaEnv, oidc_provider: TestIdp) -> None:
    head = env.audit_head()
    sso = env.get("/v1/recordings", token=oidc_provider.token("alice"))
    assert sso.status == 200, sso.body
    assert {r["recording_id"] for r in sso.json()["recordings"]} == set(CALLS)
    local = env.get("/v1/recordings", token=env.token("alice", "qa-reviewer"))
    assert local.status == 200
    actors = [e.actor for e in env.audit_after(head) if e.action == "access.list"]
    assert actors == ["user:sso:alice", "user:alice"]  # never the same principal
    supervisor = env.get("/v1/recordings", token=oidc_provider.token("sam"))
    assert supervisor.status == 200
    # An IdP user plays audio through the same purpose-bound, audited grant.
    grant = env.request(
        "POST",
        "/v1/recordings/rec-sso-1/grants",
        token=oidc_provider.token("alice"),
        body={"purpose": "quality-improvement", "justification": "EVAL-77"},
    )
    assert grant.status == 201, grant.body
    assert env.get(grant.json()["url"]).body == env.plaintext("rec-sso-1")
    played = [e for e in env.audit_after(head) if e.action == "access.play"]
    assert [(e.actor, e.details["justification"]) for e in played] == [
        ("user:sso:alice", "EVAL-77")
    ]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("forged", "token-signature"),
        ("expired", "token-expired"),
        ("wrong-audience", "token-audience"),
        ("other-api", "token-audience"),
        ("wrong-issuer", "token-issuer"),
        ("alg-none", "token-algorithm"),
        ("hs256", "token-algorithm"),
        ("no-role", "token-claims"),
        ("two-roles", "token-role"),
    ],
)
def test_bad_idp_tokens_are_refused_and_audited(
    env: QaEnv, oidc_provider: TestIdp, kind: str, reason: str
) -> None:
    idp = oidc_provider
    if kind == "forged":
        header, payload, signature = idp.token("alice").split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["callvault_role"] = "cv-compliance"
        token = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    elif kind == "expired":
        token = idp.sign(_claims(idp, iat=int(time.time()) - 900, exp=int(time.time()) - 600))
    elif kind == "wrong-audience":
        token = idp.sign(_claims(idp, aud="urn:someone-else"))
    elif kind == "other-api":
        token = idp.token("alice", resource=OTHER_AUDIENCE)
    elif kind == "wrong-issuer":
        token = idp.sign(_claims(idp, iss="https://evil.example"))
    elif kind == "alg-none":
        header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": idp.kid}).encode())
        token = f"{header}.{_b64(json.dumps(_claims(idp)).encode())}."
    elif kind == "hs256":
        import hashlib
        import hmac

        header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": idp.kid}).encode())
        body = _b64(json.dumps(_claims(idp)).encode())
        mac = hmac.new(b"guessed", f"{header}.{body}".encode(), hashlib.sha256).digest()
        token = f"{header}.{body}.{_b64(mac)}"
    elif kind == "two-roles":
        token = idp.token("multi")
    else:
        token = idp.token("norole")
    head = env.audit_head()
    reply = env.get("/v1/recordings", token=token)
    assert reply.status == 401, reply.body
    assert (reply.json()["error"], reply.json()["reason"]) == ("unauthorized", reason)
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    denied = [e for e in env.audit_after(head)]
    assert [(e.action, e.reason, e.actor) for e in denied] == [("auth.denied", reason, "anonymous")]


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_idp_is_503_not_a_bad_token(tmp_path: Path, oidc_provider: TestIdp) -> None:
    issuer = f"http://127.0.0.1:{_dead_port()}"
    policy = oidc_provider.write_policy(
        tmp_path / "policy.yaml", issuer=issuer, jwks_timeout_seconds=1
    )
    env = make_env(tmp_path, {}, extra_env={"CALLVAULT_POLICY": str(policy)})
    env.clock.now = datetime.now(UTC)
    try:
        config = env.get("/v1/auth/config")
        assert (config.status, config.json()["reason"]) == (503, "idp-unavailable")
        assert config.headers["Retry-After"] == "5"
        token = oidc_provider.sign(_claims(oidc_provider, iss=issuer))
        reply = env.get("/v1/recordings", token=token)
        assert (reply.status, reply.json()["error"]) == (503, "idp-unavailable")
        # Local tokens do not depend on the IdP.
        assert env.get("/v1/recordings", token=env.token("alice", "qa-reviewer")).status == 200
        csp = env.get("/").headers["Content-Security-Policy"]
        assert f"connect-src 'self' {issuer};" in csp
    finally:
        env.close()


def test_who_am_i(env: QaEnv, oidc_provider: TestIdp) -> None:
    me = env.get("/v1/auth/me", token=oidc_provider.token("alice")).json()
    assert (me["user"], me["role"], me["tenant"], me["blocked"]) == (
        "sso:alice", "qa-reviewer", "acme", None,
    )  # fmt: skip
    assert me["capabilities"] == ["list-recordings", "evaluate"]
    assert me["purposes"] == ["quality-improvement"]
    sam = env.get("/v1/auth/me", token=oidc_provider.token("sam")).json()
    assert "manage-evaluations" in sam["capabilities"]
    # An entrusted vendor outside its contract may do nothing, and is told why.
    env.clock.now = datetime(2028, 1, 2, tzinfo=UTC)
    vendor = env.token("vera", "qa-vendor", org="acme-qa")
    blocked = env.get("/v1/auth/me", token=vendor).json()
    assert (blocked["capabilities"], blocked["blocked"]) == ([], "contract-not-live")
    # the tenant it acts in: the token's, else the policy's default (tokens naming none)
    assert blocked["tenant"] == "demo"
    legacy = env.token("otto", "operator", tenant=None)
    assert env.get("/v1/auth/me", token=legacy).json()["tenant"] == "acme"
    spanning = env.token("otto", "operator", tenant="*")
    assert env.get("/v1/auth/me", token=spanning).json()["tenant"] == "*"
    assert env.get("/v1/auth/me").status == 401
