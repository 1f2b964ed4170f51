"""The privacy-request list is ordered and cut in SQL (open first, the overdue leading,
then by due time) and paged with a cursor: past a page the answer says ``next``, so
new requests never vanish past the oldest N (HTTP and ``callvault privacy list``; the
store over SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callvault.cli import cli
from callvault.services import Services
from storage.catalog import PrivacyRequest
from storage.errors import PrivacyRequestError
from tests.streams.lifecycle_support import (
    NOW,
    Clock,
    WebServer,
    lifecycle_of,
    make_services,
    verification,
)


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


#: Cursors no page handed out: JSON nested past the parser's recursion (a RecursionError
#: escaped: HTTP 500), a due time that cannot move to UTC, one far too long.
HOSTILE_CURSORS = (
    _b64("[" * 3000),
    _b64(json.dumps([0, "9999-12-31T23:59:59-14:00", "PR-1"])),
    _b64(json.dumps([0, "0001-01-01T00:00:00+14:00", "PR-1"])),
    "A" * 5000,
)


def _file(services: Services, clock: Clock) -> list[str]:
    """Seven requests over 70 days: four left open (the first ones overdue by the
    end), three carried out at once (closed)."""
    privacy = lifecycle_of(services).privacy
    for i in range(7):
        body: dict[str, Any] = {"type": "erase", "tenant": "acme",
                                "customer_ref": f"C-{i}", "request_id": f"PR-{i}"}  # fmt: skip
        if i % 2:
            body["identity_verification"] = verification()
        privacy.submit(body, requested_by="officer-7")
        clock.now += timedelta(days=10)
    return [f"PR-{i}" for i in range(7)]


def _expected(services: Services) -> list[str]:
    everything = services.requests.list_requests(limit=100)
    ordered = sorted(everything, key=lambda r: (not r.open, r.due_at, r.request_id))
    return [r.request_id for r in ordered]


def test_the_store_pages_in_sql_open_first(tmp_path: Path, catalog_url: str) -> None:
    clock = Clock(NOW)
    services = make_services(tmp_path, catalog_url, "local", clock)
    try:
        _file(services, clock)
        seen: list[PrivacyRequest] = []
        after = None
        pages = 0
        while True:
            page, after = services.requests.page_requests(limit=2, after=after)
            seen.extend(page)
            pages += 1
            if after is None:
                break
        assert pages == 4 and len(seen) == 7
        assert [r.request_id for r in seen] == _expected(services)
        assert [r.open for r in seen] == [True] * 4 + [False] * 3
        assert seen[0].overdue(clock()) and not seen[3].overdue(clock())
        for cursor in ("not-a-cursor", *HOSTILE_CURSORS):
            with pytest.raises(PrivacyRequestError, match="cursor"):
                services.requests.page_requests(limit=2, after=cursor)
    finally:
        services.close()


def test_the_api_and_the_cli_say_what_follows(
    server: WebServer, clock: Clock, tmp_path: Path
) -> None:
    services = server.services
    _file(services, clock)
    officer = server.tokens.issue(user="amy", role="compliance-officer", org=None,
                                  ttl=timedelta(days=365), now=clock())  # fmt: skip
    ids: list[str] = []
    path = "/v1/privacy-requests?limit=3"
    while True:
        reply = server.request("GET", path, token=officer)
        assert reply.status == 200, reply.body
        body = reply.json()
        assert len(body["requests"]) <= 3
        ids.extend(r["request_id"] for r in body["requests"])
        if body["next"] is None:
            break
        path = f"/v1/privacy-requests?limit=3&after={body['next']}"
    assert ids == _expected(services)
    first = server.request("GET", "/v1/privacy-requests?limit=7", token=officer).json()
    assert first["next"] is None and first["requests"][0]["overdue"] is True
    for cursor in ("zz", *HOSTILE_CURSORS):
        bad = server.request("GET", f"/v1/privacy-requests?after={cursor}", token=officer)
        assert (bad.status, bad.json()["reason"]) == (400, "bad-cursor"), cursor[:20]

    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "data"),
           "CALLVAULT_CATALOG": f"sqlite:///{tmp_path}/catalog.sqlite3"}  # fmt: skip
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CALLVAULT_")}
    clean.update(env)
    runner = CliRunner()
    listed = runner.invoke(cli, ["privacy", "list", "--limit", "5", "--json"], env=clean)
    assert listed.exit_code == 0, listed.output
    page = json.loads(listed.output)
    assert [r["request_id"] for r in page["requests"]] == _expected(services)[:5]
    rest = runner.invoke(cli, ["privacy", "list", "--after", page["next"]], env=clean)
    assert rest.exit_code == 0, rest.output
    assert "more:" not in rest.output
    assert all(i in rest.output for i in _expected(services)[5:])
    table = runner.invoke(cli, ["privacy", "list", "--limit", "2"], env=clean)
    assert "more: --after " in table.output
