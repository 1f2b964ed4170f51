"""Single sign-on in headless Chromium against the real test provider (tests/idp):
a tiny page served by the test does authorization code + PKCE (S256) in the browser,
the provider's own login and consent pages are filled in, the page exchanges the code
with its PKCE verifier at the token endpoint (CORS), and the access token it gets is
accepted by OidcVerifier with the role and tenant mapped from its claims.

Each step leaves a screenshot in the test's tmp folder (``01-start.png`` ...)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest

from policies import Principal, load_policy
from streams.http.oidc import OidcVerifier
from tests.browser.support import text_of, wait
from tests.fixtures.oidc import REDIRECT_PATH, TestIdp

pytestmark = [pytest.mark.browser, pytest.mark.integration]

WINDOW = (1000, 900)


# The page: PKCE and state in sessionStorage, the code exchanged by fetch() (what the
# QA page will do). CONFIG is replaced by the server with the provider's coordinates.
START_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>callvault test sign-in</title></head>
<body>
<h1>callvault test sign-in</h1>
<button id="signin">Sign in with the identity provider</button>
<script>
const CONFIG = __CONFIG__;
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
document.getElementById('signin').addEventListener('click', async () => {
  const verifier = random(48);
  const challenge = b64url(await crypto.subtle.digest('SHA-256',
    new TextEncoder().encode(verifier)));
  const state = random(16);
  sessionStorage.setItem('pkce', JSON.stringify({ verifier, state }));
  const url = new URL(CONFIG.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code', client_id: CONFIG.client_id, redirect_uri: CONFIG.redirect_uri,
    scope: 'openid profile callvault', resource: CONFIG.resource,
    code_challenge: challenge, code_challenge_method: 'S256', state,
  });
  location.assign(url.href);
});
</script>
</body></html>
"""

CALLBACK_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>callvault test callback</title></head>
<body>
<h1 id="status">Exchanging the code...</h1>
<p id="error" role="alert"></p>
<dl>
  <dt>user</dt><dd id="user"></dd>
  <dt>role claim</dt><dd id="role"></dd>
  <dt>tenant</dt><dd id="tenant"></dd>
  <dt>audience</dt><dd id="aud"></dd>
  <dt>code replay</dt><dd id="replay"></dd>
</dl>
<pre id="access-token" hidden></pre>
<script>
const CONFIG = __CONFIG__;
const show = (id, text) => { document.getElementById(id).textContent = text; };
(async () => {
  const params = new URLSearchParams(location.search);
  if (params.get('error')) {
    show('status', 'Sign-in failed');
    show('error', `${params.get('error')}: ${params.get('error_description')}`);
    return;
  }
  const saved = JSON.parse(sessionStorage.getItem('pkce') || 'null');
  sessionStorage.removeItem('pkce');
  if (!saved || params.get('state') !== saved.state) {
    show('status', 'Sign-in failed'); show('error', 'state does not match'); return;
  }
  if (params.get('iss') !== CONFIG.issuer) {
    show('status', 'Sign-in failed'); show('error', 'response from another issuer'); return;
  }
  const form = {
    grant_type: 'authorization_code', code: params.get('code'),
    redirect_uri: CONFIG.redirect_uri, client_id: CONFIG.client_id,
    code_verifier: saved.verifier,
  };
  const exchange = () => fetch(CONFIG.token_endpoint, {
    method: 'POST', body: new URLSearchParams(form),
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  }).then((r) => r.json());
  const answer = await exchange();
  if (!answer.access_token) {
    show('status', 'Sign-in failed'); show('error', JSON.stringify(answer)); return;
  }
  const payload = JSON.parse(atob(answer.access_token.split('.')[1]
    .replace(/-/g, '+').replace(/_/g, '/')));
  show('user', payload[CONFIG.claims.user]);
  show('role', JSON.stringify(payload[CONFIG.claims.role]));
  show('tenant', payload[CONFIG.claims.tenant]);
  show('aud', payload.aud);
  show('access-token', answer.access_token);
  show('replay', (await exchange()).error || 'accepted twice');
  show('status', `Signed in as ${payload[CONFIG.claims.user]}`);
})().catch((err) => { show('status', 'Sign-in failed'); show('error', String(err)); });
</script>
</body></html>
"""


class PageServer:
    """Serves the start page at / and the redirect target at /oidc/callback."""

    def __init__(self, idp: TestIdp) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.redirect_uri = idp.redirect_uri(self.port)
        self.config = json.dumps(
            {
                "issuer": idp.issuer,
                "authorization_endpoint": idp.authorization_endpoint,
                "token_endpoint": idp.token_endpoint,
                "client_id": idp.client_id,
                "redirect_uri": self.redirect_uri,
                "resource": idp.audience,
                "claims": {"user": "sub", "role": idp.claims.role, "tenant": idp.claims.tenant},
            }
        )
        self.requests: list[str] = []
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                page = {"/": START_PAGE, REDIRECT_PATH: CALLBACK_PAGE}.get(path)
                if page is None:
                    self.send_error(404)
                    return
                body = page.replace("__CONFIG__", outer.config).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pages(oidc_provider: TestIdp) -> Iterator[PageServer]:
    server = PageServer(oidc_provider)
    yield server
    server.close()


def _shot(driver: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"screenshot {name} failed"
    assert path.stat().st_size > 1000
    return path


def test_pkce_sign_in_through_login_and_consent(
    driver: Any, pages: PageServer, oidc_provider: TestIdp, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    # 1. Our page, before sign-in.
    driver.get(pages.url + "/")
    assert driver.find_element(By.TAG_NAME, "h1").text == "callvault test sign-in"
    _shot(driver, tmp_path, "01-start")
    driver.find_element(By.ID, "signin").click()

    # 2. The provider's login page (devInteractions), on the provider's origin.
    wait(
        driver,
        lambda d: d.current_url.startswith(oidc_provider.issuer + "/interaction/"),
        "login page",
    )
    login = wait(driver, lambda d: d.find_elements(By.NAME, "login"), "login field")[0]
    assert driver.find_element(By.TAG_NAME, "h1").text == "Sign-in"
    login.send_keys("alice")
    driver.find_element(By.NAME, "password").send_keys("any-password")
    _shot(driver, tmp_path, "02-login")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # 3. The consent page names the API and its scope.
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Authorize", "consent page")
    consent = driver.find_element(By.TAG_NAME, "body").text
    assert f"{oidc_provider.audience}:" in consent and "callvault" in consent
    _shot(driver, tmp_path, "03-consent")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # 4. Back on our page: code exchanged with the PKCE verifier, token shown.
    wait(driver, lambda d: d.current_url.startswith(pages.redirect_uri), "redirect back")
    wait(driver, lambda d: text_of(d, "status") != "Exchanging the code...", "exchange")
    _shot(driver, tmp_path, "04-signed-in")
    assert text_of(driver, "error") == ""
    assert text_of(driver, "status") == "Signed in as alice"
    assert text_of(driver, "role") == '"cv-qa-reviewers"'
    assert text_of(driver, "tenant") == "acme"
    assert text_of(driver, "aud") == oidc_provider.audience
    assert text_of(driver, "replay") == "invalid_grant"  # a code is redeemed once
    token = driver.find_element(By.ID, "access-token").get_attribute("textContent")
    callback = next(p for p in pages.requests if p.startswith(REDIRECT_PATH))
    assert "code=" in callback and "state=" in callback
    assert "access_token" not in callback  # the token never travels in a URL

    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["client_id"], claims["scope"]) == (oidc_provider.client_id, "callvault")
    verifier = OidcVerifier.connect(oidc_provider.sso_config(), frozenset(load_policy().roles))
    principal = verifier.verify(token, datetime.now(UTC))
    assert principal == Principal(user="sso:alice", role="qa-reviewer", org=None, tenant="acme")
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "01-start.png",
        "02-login.png",
        "03-consent.png",
        "04-signed-in.png",
    ]


def test_authorization_without_pkce_is_refused(
    driver: Any, pages: PageServer, oidc_provider: TestIdp, tmp_path: Path
) -> None:
    from urllib.parse import urlencode

    query = urlencode(
        {
            "response_type": "code",
            "client_id": oidc_provider.client_id,
            "redirect_uri": pages.redirect_uri,
            "scope": "openid callvault",
            "state": "s-1",
        }
    )
    driver.get(f"{oidc_provider.authorization_endpoint}?{query}")
    wait(driver, lambda d: d.current_url.startswith(pages.redirect_uri), "error redirect")
    wait(driver, lambda d: text_of(d, "status") == "Sign-in failed", "error shown")
    _shot(driver, tmp_path, "01-no-pkce")
    assert text_of(driver, "error").startswith("invalid_request:")
    assert "requires PKCE" in text_of(driver, "error")
    assert text_of(driver, "user") == ""
