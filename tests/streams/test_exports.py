"""``GET /v1/privacy-requests/{id}/export``: the ZIP streamed from the vault, decrypted
on the fly (audio exactly as stored, metadata, the signed manifest), compliance officer
only, each download audited before its first byte; 404 without an export, 410 after
the expiry and after an erasure, 502 for an edited manifest; nothing plaintext on disk."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import timedelta

import pytest

from callvault.services import Services
from streams.metrics import Metrics
from tests.streams.lifecycle_support import (
    Clock,
    WebServer,
    lifecycle_of,
    store_call,
    verification,
)

DISCLOSE = {
    "type": "disclose",
    "tenant": "acme",
    "customer_ref": "C-1001",
    "request_id": "PR-EXP-1",
    "identity_verification": verification(),
}
URL = "/v1/privacy-requests/PR-EXP-1/export"


@pytest.fixture
def server(file_services: Services) -> Iterator[WebServer]:
    metrics = Metrics()
    started = WebServer(file_services, lifecycle_of(file_services, metrics), metrics).start()
    yield started
    started.stop()


def _disclose(server: WebServer, officer: str) -> dict[str, object]:
    reply = server.request("POST", "/v1/privacy-requests", token=officer, body=DISCLOSE)
    assert reply.status == 201, reply.json()
    body: dict[str, object] = reply.json()
    return body


@pytest.mark.clause("requests.confirmation")
def test_the_export_streams_a_zip_of_what_is_stored(server: WebServer) -> None:
    services = server.services
    rows = [store_call(services, f"r-exp-{i}", seconds=30.0 + i) for i in range(2)]
    store_call(services, "r-other", customer="C-OTHER")
    officer = server.token("officer-7", "compliance-officer")
    assert server.request("GET", URL, token=officer).json()["reason"] == "no-export"
    filed = _disclose(server, officer)
    assert filed["result"]["export"]["recordings"] == 2  # type: ignore[index]
    before = services.audit.head()
    assert before is not None

    reply = server.request("GET", URL, token=officer)
    assert reply.status == 200, reply.body[:200]
    archive = zipfile.ZipFile(io.BytesIO(reply.body))
    names = archive.namelist()
    assert names[0] == "manifest.json"
    signed = json.loads(archive.read("manifest.json"))
    assert services.keyring.verify(
        json.dumps(signed["manifest"], sort_keys=True, separators=(",", ":"),
                   ensure_ascii=False).encode(),
        signed["signature"],
    )  # fmt: skip
    assert {e["recording_id"] for e in signed["manifest"]["exported"]} == {"r-exp-0", "r-exp-1"}
    for index, row in enumerate(sorted(rows, key=lambda r: r.started_at), start=1):
        audio = archive.read(f"audio/{index:03d}-{row.recording_id}.wav")
        assert audio == services.keys.open_recording(services.vault.get(row.object_key))
        meta = json.loads(archive.read(f"metadata/{index:03d}-{row.recording_id}.json"))
        assert meta["recording_id"] == row.recording_id and "customer_ref" not in meta
    assert not any("r-other" in name for name in names)
    # audited before the bytes, counted per download
    downloads = list(services.audit.iter_entries(before.seq, action_prefix="privacy.export"))
    assert [(e.action, e.details["download"], e.details["recordings"]) for e in downloads] == [
        ("privacy.export-downloaded", 1, 2)
    ]
    assert server.request("GET", URL, token=officer).status == 200
    assert services.exports().get("PR-EXP-1").downloads == 2
    # nothing plaintext under the data dir
    for path in services.config.data_dir.rglob("*"):
        if path.is_file():
            assert not path.read_bytes().startswith(b"RIFF"), path


@pytest.mark.parametrize("role", ["supervisor", "qa-reviewer", "operator", "telephony"])
def test_only_a_compliance_officer_downloads(server: WebServer, role: str) -> None:
    store_call(server.services, "r-exp-role")
    _disclose(server, server.token("officer-7", "compliance-officer"))
    reply = server.request("GET", URL, token=server.token("someone", role))
    assert reply.status == 403 and b"PK" not in reply.body[:2]
    assert server.request("GET", URL).status == 401


def test_another_tenant_s_officer_finds_no_export(server: WebServer) -> None:
    store_call(server.services, "r-exp-tenant")
    _disclose(server, server.token("officer-7", "compliance-officer"))
    other = server.tokens.issue(
        user="officer-9", role="compliance-officer", org=None, ttl=timedelta(hours=1),
        now=server.services.clock(), tenant="globex",
    )  # fmt: skip
    reply = server.request("GET", URL, token=other)
    assert (reply.status, reply.json()["reason"]) == (404, "no-export")


@pytest.mark.clause("requests.confirmation")
def test_expired_erased_and_edited_exports_are_refused(server: WebServer, clock: Clock) -> None:
    services = server.services
    store_call(services, "r-exp-gone")
    officer = server.token("officer-7", "compliance-officer")
    _disclose(server, officer)
    # an edited manifest (a recording added by SQL) no longer verifies
    db = services.catalog.database
    (manifest,) = db.fetch_one("SELECT manifest FROM privacy_exports WHERE request_id = ?",
                               ("PR-EXP-1",))  # fmt: skip
    edited = manifest.replace('"exported":[', '"exported":[{"recording_id":"r-x"},', 1)
    with db.transaction() as tx:
        tx.execute("UPDATE privacy_exports SET manifest = ? WHERE request_id = ?",
                   (edited, "PR-EXP-1"))  # fmt: skip
    tampered = server.request("GET", URL, token=officer)
    assert (tampered.status, tampered.json()["reason"]) == (502, "export-tampered")
    with db.transaction() as tx:
        tx.execute("UPDATE privacy_exports SET manifest = ? WHERE request_id = ?",
                   (manifest, "PR-EXP-1"))  # fmt: skip
    assert server.request("GET", URL, token=officer).status == 200
    # past the policy's expiry (7 days)
    clock.now += timedelta(days=services.policy.export_expiry_days, seconds=1)
    later = server.token("officer-7", "compliance-officer")  # a token valid then
    expired = server.request("GET", URL, token=later)
    assert (expired.status, expired.json()["reason"]) == (410, "export-expired")
    clock.now -= timedelta(days=services.policy.export_expiry_days, seconds=1)
    # after the customer's erasure
    erase = {**DISCLOSE, "type": "erase", "request_id": "PR-EXP-ERASE"}
    assert server.request("POST", "/v1/privacy-requests", token=officer, body=erase).status == 201
    gone = server.request("GET", URL, token=officer)
    assert (gone.status, gone.json()["reason"]) == (410, "export-erased")
