"""The two pages (``GET /`` the QA page, ``GET /privacy`` the privacy office) share one
top (``static/frame.html``: head, header bar, sign-in heading) and one helper script
(``static/common.js``), loaded before each page's own script; neither page script
carries its own copy of the helpers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from tests.streams.qa_support import QaEnv, make_env

HELPERS = ("api", "showError", "describe", "token", "el", "cell")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[QaEnv]:
    made = make_env(tmp_path, {})
    yield made
    made.close()


def _scripts(html: str) -> list[str]:
    return re.findall(r'<script src="([^"]+)" defer></script>', html)


def test_both_pages_load_the_shared_head_and_helpers_first(env: QaEnv) -> None:
    qa, office = env.request("GET", "/"), env.request("GET", "/privacy")
    assert (qa.status, office.status) == (200, 200)
    qa_html, office_html = qa.body.decode(), office.body.decode()
    assert _scripts(qa_html) == ["/static/common.js", "/static/qa.js"]
    assert _scripts(office_html) == ["/static/common.js", "/static/privacy.js"]
    for html, title in ((qa_html, "QA review"), (office_html, "Privacy office")):
        assert f"<title>callvault · {title}</title>" in html
        assert f'<h1>callvault <span class="sub">{title}</span></h1>' in html
        assert html.count('id="signin-title"') == 1 and html.count('id="token"') == 1
    assert 'href="/static/privacy.css"' in office_html and "privacy.css" not in qa_html
    # one head, then the page's body; no inline script anywhere (script-src 'self')
    for html in (qa_html, office_html):
        assert html.startswith("<!doctype html>") and html.count("<head>") == 1
        assert html.index("</head>") < html.index("<body>")
        assert "<script>" not in html
    common = env.request("GET", "/static/common.js")
    assert common.status == 200
    assert common.headers["Content-Type"].startswith("application/javascript")
    assert common.headers["Content-Security-Policy"] == qa.headers["Content-Security-Policy"]


def test_the_page_scripts_define_no_helper_of_their_own() -> None:
    static = resources.files("streams.http").joinpath("static")
    common = static.joinpath("common.js").read_text()
    for helper in HELPERS:
        assert re.search(rf"\bfunction {helper}\(", common), helper
    for page in ("qa.js", "privacy.js"):
        text = static.joinpath(page).read_text()
        defined = [h for h in HELPERS if re.search(rf"\bfunction {h}\(", text)]
        assert defined == [], (page, defined)
        assert "window.callvault" in text
