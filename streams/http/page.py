"""The QA page: ``GET /`` and ``GET /static/{name}`` (no token; the page's script
sends the reviewer's bearer token to the API), ``GET /oidc/callback`` (the same page:
where the identity provider sends the browser back with the authorization code) and
``GET /v1/auth/config`` (how to sign in: local tokens, and the IdP's endpoints, public
client id, audience and scope when the policy has an ``sso:`` section) and
``GET /v1/auth/me`` (who the bearer token names: user, role, org, tenant, the
capabilities and purposes the policy gives that role now, and ``blocked``: the reason
when it may do nothing, e.g. ``contract-not-live``).

``GET /privacy`` is the privacy office's page (``static/privacy.html`` +
``privacy.js`` + ``privacy.css``, signed in with a compliance officer's token).

Both pages are served as one shared top (``static/frame.html``: the head with meta,
``qa.css``, the shared helpers ``common.js`` and the page's own script; the header bar,
the error and status lines, the sign-in card's heading) followed by the rest of the
page (``static/qa.html``, ``static/privacy.html``).

Served with a strict CSP: scripts, styles, media and images from ``'self'`` only;
``connect-src`` adds the IdP's origins (the page exchanges its code at the token
endpoint with ``fetch``). The sign-in itself is a top-level navigation to the IdP's
authorization endpoint (authorization code + PKCE S256, state in ``sessionStorage``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from policies import Capability, decide_capability, tenant_scope
from streams.errors import AuthError, NotFound
from streams.http.context import WebContext, ctx_of, run
from streams.http.decisions import authenticate

__all__ = ["ROUTES", "CALLBACK_PATH", "page_headers"]

CALLBACK_PATH = "/oidc/callback"
_STATIC = {
    "common.js": "application/javascript",
    "qa.js": "application/javascript",
    "qa.css": "text/css",
    "privacy.js": "application/javascript",
    "privacy.css": "text/css",
}
_BASE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def page_headers(ctx: WebContext) -> dict[str, str]:
    """The page's security headers; ``connect-src`` names the IdP's origins when SSO is on."""
    sso = ctx.sso
    connect = " ".join(["'self'", *(sso.origins() if sso is not None else [])])
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"connect-src {connect}; media-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    return {"Content-Security-Policy": csp, **_BASE_HEADERS}


def _read(name: str) -> bytes:
    return resources.files("streams.http").joinpath(f"static/{name}").read_bytes()


@dataclass(frozen=True)
class _Page:
    """A page: the rest of it after the shared top (a static file), its title, extra
    style sheets and own script."""

    body: str
    title: str
    script: str
    styles: tuple[str, ...] = ()


_QA_PAGE = _Page(body="qa.html", title="QA review", script="qa.js")
_PRIVACY_PAGE = _Page(
    body="privacy.html", title="Privacy office", script="privacy.js", styles=("privacy.css",)
)


@cache
def _html(page: _Page) -> bytes:
    styles = "".join(f'  <link rel="stylesheet" href="/static/{name}">\n' for name in page.styles)
    head = (
        _read("frame.html")
        .decode("utf-8")
        .format(title=page.title, styles=styles, script=page.script)
    )
    return head.encode("utf-8") + _read(page.body)


def _page_response(request: web.Request, page: _Page) -> web.Response:
    return web.Response(
        body=_html(page),
        content_type="text/html",
        charset="utf-8",
        headers=page_headers(ctx_of(request)),
    )


async def index(request: web.Request) -> web.Response:
    return _page_response(request, _QA_PAGE)


async def privacy_office(request: web.Request) -> web.Response:
    """The privacy office page (``GET /privacy``): requests by status and SLA, the
    workflow's steps, exports, legal holds; the same CSP as the QA page."""
    return _page_response(request, _PRIVACY_PAGE)


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise NotFound("no such file", reason=None)
    return web.Response(
        body=_read(name),
        content_type=_STATIC[name],
        charset="utf-8",
        headers=page_headers(ctx_of(request)),
    )


async def auth_config(request: web.Request) -> web.Response:
    """How staff sign in. 503 ``idp-unavailable`` while the IdP's discovery document
    cannot be fetched (the page then offers local tokens only)."""
    ctx = ctx_of(request)
    body: dict[str, Any] = {"local_tokens": True, "sso": None, "callback_path": CALLBACK_PATH}
    sso = ctx.sso
    if sso is not None:
        try:
            body["sso"] = await run(sso.sign_in_config)
        except AuthError as exc:
            raise AuthError("idp-unavailable", exc.detail) from None
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def whoami(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    principal = await authenticate(request)
    policy, now = ctx.services.policy, ctx.now()
    decisions = {c.value: decide_capability(principal, c.value, policy, now) for c in Capability}
    granted = [name for name, decision in decisions.items() if decision.allowed]
    blocked = None
    if not granted:
        blocked = str(decisions[Capability.LIST_RECORDINGS.value].reason)
    role = policy.roles.get(principal.role)
    return web.json_response(
        {
            "user": principal.user,
            "role": principal.role,
            "org": principal.org,
            # the tenant it acts in: the token's, else the policy's default; * for all
            "tenant": tenant_scope(principal, policy) or "*",
            "capabilities": granted,
            "purposes": list(role.purposes) if role and granted else [],
            "blocked": blocked,
        },
        headers={"Cache-Control": "no-store"},
    )


ROUTES = [
    web.get("/", index),
    web.get(CALLBACK_PATH, index),
    web.get("/privacy", privacy_office),
    web.get("/static/{name}", static),
    web.get("/v1/auth/config", auth_config),
    web.get("/v1/auth/me", whoami),
]
