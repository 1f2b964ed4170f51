"""One canonical customer reference on every path (storage.customer): a customer
ingested through the event, the HTTP upload, the import and a telephony source is found
whole by an erasure and a hold; a reference that is not canonical is refused with
``customer-ref-not-canonical`` on each path, never silently altered."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from callvault.demo import demo_event
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from storage.customer import NOT_CANONICAL, customer_ref_problem
from storage.errors import CustomerRefNotCanonical
from storage.types import RecordingState
from streams.backfill import read_manifest, run_import
from streams.errors import SourceRefused
from streams.http import WebContext, build_web_app
from streams.http.auth import LocalTokens
from streams.metrics import Metrics
from streams.sources.announce import announce
from tests.streams.sources.conftest import ingest

CUSTOMER = "Müller-7"  # NFC: one code point for ü
NFD = unicodedata.normalize("NFD", CUSTOMER)
NOT_CANONICAL_FORMS = [f" {CUSTOMER}", f"{CUSTOMER} ", f"{CUSTOMER}\u00a0", NFD, "cust\u200b-1"]
AUDIO = call_wav(1.0, codec="mulaw", seed=5)
SHA = hashlib.sha256(AUDIO).hexdigest()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(tmp_path / "data")}))
    yield built
    built.close()


def _token(services: Services, role: str) -> str:
    tokens = LocalTokens(services.keyring, frozenset(services.policy.roles))
    return tokens.issue(
        user=f"{role}-1", role=role, org=None, ttl=timedelta(hours=1), tenant="demo"
    )


def _landed(services: Services, name: str) -> str:
    path = services.settings.landing_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(AUDIO)
    return f"file://{path}"


def _event(services: Services, rid: str, customer: str) -> dict[str, Any]:
    event = demo_event(rid, audio=AUDIO, uri=_landed(services, f"{rid}.wav"), seconds=1.0)
    event["customer_ref"] = customer
    return event


async def _http(
    services: Services, calls: list[tuple[str, str, str, Any]]
) -> tuple[list[tuple[int, Any]], list[bytes]]:
    published: list[bytes] = []

    async def publish(event: bytes, recording_id: str) -> None:
        published.append(event)

    ctx = WebContext.over(
        services,
        metrics=Metrics(),
        tokens=LocalTokens(services.keyring, frozenset(services.policy.roles)),
        publish_recording=publish,
        health=lambda: {"status": "ok"},
    )
    answers: list[tuple[int, Any]] = []
    async with TestClient(TestServer(build_web_app(ctx))) as client:
        for method, path, role, body in calls:
            headers = {"Authorization": f"Bearer {_token(services, role)}"}
            if isinstance(body, aiohttp.FormData):
                resp = await client.request(method, path, data=body, headers=headers)
            else:
                resp = await client.request(method, path, json=body, headers=headers)
            answers.append((resp.status, await resp.json()))
    return answers, published


def _upload(rid: str, customer: str) -> aiohttp.FormData:
    meta = demo_event(rid, audio=AUDIO, seconds=1.0)
    meta["customer_ref"] = customer
    meta["audio"] = {"format": "wav", "sha256": SHA}
    form = aiohttp.FormData()
    form.add_field("metadata", json.dumps(meta), content_type="application/json")
    form.add_field("audio", AUDIO, filename="call.wav", content_type="audio/wav")
    return form


def _manifest(tmp_path: Path, rows: list[tuple[str, str]]) -> tuple[Path, list[dict[str, Any]]]:
    archive = tmp_path / "archive"
    archive.mkdir(exist_ok=True)
    start = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    lines = []
    for rid, customer in rows:
        (archive / f"{rid}.wav").write_bytes(AUDIO)
        lines.append(
            {
                "file": f"{rid}.wav",
                "recording_id": rid,
                "call_id": f"call-{rid}",
                "tenant": "demo",
                "started_at": start.isoformat(),
                "ended_at": (start + timedelta(seconds=1)).isoformat(),
                "agent_id": "agent-1",
                "customer_ref": customer,
                "queue": "support",
                "direction": "inbound",
                "consent": "notified",
                "format": "wav",
            }
        )
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    return archive, read_manifest(manifest)


def _announce(services: Services, tmp_path: Path, name: str, customer: str) -> dict[str, Any]:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    wav = spool / f"{name}.wav"
    wav.write_bytes(AUDIO)
    started = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=0)
    outcome, _ = announce(
        services.landing,
        services.sources,
        file=wav,
        legs=[],
        fields={
            "call_id": name,
            "customer_ref": customer,
            "agent_id": "sip-201",
            "started_at": started.isoformat(),
            "ended_at": (started + timedelta(seconds=1)).isoformat(),
            "queue": "pbx",
        },
        tenant="demo",
        clock=services.clock,
    )
    assert outcome.event is not None
    return outcome.event


def test_the_rules_are_stated_once() -> None:
    assert customer_ref_problem(CUSTOMER) is None
    assert customer_ref_problem("C-1001") is None and customer_ref_problem("c-1001") is None
    for bad in NOT_CANONICAL_FORMS:
        assert customer_ref_problem(bad) is not None, repr(bad)
    assert "NFC" in (customer_ref_problem(NFD) or "")
    assert "white space" in (customer_ref_problem(f" {CUSTOMER}") or "")


@pytest.mark.clause("requests.removal")
def test_a_customer_ingested_through_every_path_is_erased_whole(
    services: Services, tmp_path: Path
) -> None:
    # 1. the event on callvault.recordings
    (stored,) = ingest(services, _event(services, "ev-1", CUSTOMER))
    assert stored.status == "stored", stored
    # 2. the HTTP upload
    answers, published = asyncio.run(
        _http(services, [("POST", "/v1/recordings", "telephony", _upload("up-1", CUSTOMER))])
    )
    assert answers[0][0] == 202, answers
    assert [o.status for o in ingest(services, *map(json.loads, published))] == ["stored"]
    # 3. the import of an archive
    archive, rows = _manifest(tmp_path, [("im-1", CUSTOMER)])
    summary = run_import(services, str(archive), rows)
    assert summary.by_status["stored"] == 1, summary
    # 4. a telephony source (the PBX end-of-recording hook)
    (mapped,) = ingest(services, _announce(services, tmp_path, "pbx-1", CUSTOMER))
    assert mapped.status == "stored", mapped
    # another customer, who must be left alone
    (other,) = ingest(services, _event(services, "ev-other", "Muller-7"))
    assert other.status == "stored"
    ours = {"ev-1", "up-1", "im-1", "pbx-1"}

    # 5. a hold and 6. the erasure, named with the same reference
    answers, _ = asyncio.run(
        _http(
            services,
            [
                (
                    "POST",
                    "/v1/holds",
                    "compliance-officer",
                    {"scope": "customer", "tenant": "demo", "customer_ref": CUSTOMER,
                     "reason": "litigation", "reference": "CASE-1"},
                ),
            ],
        )
    )  # fmt: skip
    status, hold = answers[0]
    assert status == 201 and set(hold["covers"]) == ours, hold
    services.holds.release(hold["hold_id"], released_by="counsel", reason="settled", actor="t")
    erase = {
        "type": "erase",
        "tenant": "demo",
        "customer_ref": CUSTOMER,
        "request_id": "PR-canon-1",
        "identity_verification": {"verified_by": "officer-7", "method": "id-document"},
    }
    answers, _ = asyncio.run(
        _http(services, [("POST", "/v1/privacy-requests", "compliance-officer", erase)])
    )
    status, result = answers[0]
    assert status == 201, result
    assert result["status"] == "completed"
    assert set(result["result"]["erased"]) == ours
    assert result["result"]["subject_key_destroyed"] is True
    for rid in ours:
        row = services.catalog.get_recording(rid)
        assert row is not None and row.state is RecordingState.ERASED
    kept = services.catalog.get_recording("ev-other")
    assert kept is not None and kept.state is RecordingState.STORED


@pytest.mark.parametrize("bad", NOT_CANONICAL_FORMS, ids=["lead", "trail", "nbsp", "nfd", "zw"])
def test_a_reference_that_is_not_canonical_is_refused_on_every_path(
    services: Services, tmp_path: Path, bad: str
) -> None:
    # the event (dead-lettered with the reason), the upload (400 with it)
    (event,) = ingest(services, _event(services, "ev-bad", bad))
    assert (event.status, event.reason) == ("dlq", NOT_CANONICAL), event
    erase = {
        "type": "erase",
        "tenant": "demo",
        "customer_ref": bad,
        "identity_verification": {"verified_by": "officer-7", "method": "id-document"},
    }
    hold = {"scope": "customer", "tenant": "demo", "customer_ref": bad, "reason": "litigation"}
    answers, published = asyncio.run(
        _http(
            services,
            [
                ("POST", "/v1/recordings", "telephony", _upload("up-bad", bad)),
                ("POST", "/v1/privacy-requests", "compliance-officer", erase),
                ("POST", "/v1/holds", "compliance-officer", hold),
            ],
        )
    )
    assert published == []
    for status, body in answers:
        assert status == 400 and body["reason"] == NOT_CANONICAL, body
        assert bad.strip() not in json.dumps(body, ensure_ascii=False)  # never echoed
    # the import (the row fails with the reason; the CSV cell is not stripped)
    archive, rows = _manifest(tmp_path, [("im-bad", bad)])
    outcomes: list[Any] = []
    run_import(services, str(archive), rows, on_outcome=outcomes.append)
    assert [(o.status, o.reason) for o in outcomes] == [("failed", NOT_CANONICAL)]
    # a telephony source
    with pytest.raises(SourceRefused) as refused:
        _announce(services, tmp_path, "pbx-bad", bad)
    assert refused.value.reason == NOT_CANONICAL
    # and the pseudonym itself: no path can pseudonymize an altered form
    with pytest.raises(CustomerRefNotCanonical):
        services.keys.subject_ref("demo", bad)
    assert services.catalog.get_recording("ev-bad") is None
