"""HTTP inputs that answered 500 on main: each now answers 4xx with a reason (or is
ignored, as RFC 9110 allows for a malformed Range), and nothing is stored for it."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callvault.synth import call_wav
from tests.e2e.harness import multipart_upload
from tests.streams.qa_support import QaEnv, Reply, make_env

DEEP = "[" * 60_000


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QaEnv]:
    opened = make_env(tmp_path_factory.mktemp("bounds"), {"b-1": {"seconds": 2.0}})
    yield opened
    opened.close()


def raw_request(env: QaEnv, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", env.server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, dict(response.headers.items()), response.read())
    finally:
        conn.close()


def _upload(env: QaEnv, metadata: bytes) -> Reply:
    body, content_type = multipart_upload(metadata, call_wav(1.0, codec="mulaw", seed=9))
    token = env.token("pbx-1", "telephony")
    return raw_request(
        env,
        "POST",
        "/v1/recordings",
        body,
        {"Content-Type": content_type, "Authorization": f"Bearer {token}"},
    )


def _meta(**changes: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "recording_id": "up-1",
        "call_id": "c-1",
        "tenant": "acme",
        "started_at": "2026-11-25T09:00:00Z",
        "ended_at": "2026-11-25T09:00:01Z",
        "agent_id": "a-1",
        "customer_ref": "cust-9",
        "queue": "billing",
        "direction": "inbound",
        "consent": {"recording": "notified"},
        "audio": {"format": "wav"},
    }
    meta.update(changes)
    return meta


@pytest.mark.parametrize(
    ("path", "params", "role"),
    [
        ("/v1/recordings", {"to": "9999-12-31"}, "qa-reviewer"),
        ("/v1/recordings", {"from": "0001-01-01T00:00:00+01:00"}, "qa-reviewer"),
        ("/v1/recordings", {"to": "9999-12-31T23:30:00-01:00"}, "qa-reviewer"),
        ("/v1/recordings", {"limit": "²"}, "qa-reviewer"),
        ("/v1/recordings", {"limit": "٣"}, "qa-reviewer"),
        ("/v1/recordings?queue=%00", {}, "qa-reviewer"),
        ("/v1/audit", {"after_seq": "²"}, "compliance-officer"),
        ("/v1/audit", {"limit": "¹⁰"}, "compliance-officer"),
        ("/v1/disclosures", {"limit": "²"}, "compliance-officer"),
    ],
)
def test_query_parameters_out_of_range_answer_400(
    env: QaEnv, path: str, params: dict[str, str], role: str
) -> None:
    reply = env.get(path, token=env.token("u-1", role), params=params or None)
    assert reply.status == 400, reply.body
    assert reply.json()["error"] == "bad-request" and reply.json()["reason"] == "bad-parameter"


def test_a_range_header_with_a_non_ascii_byte_is_ignored_and_audited(env: QaEnv) -> None:
    token = env.token("alice", "qa-reviewer")
    before = env.audit_head()
    path = "/v1/recordings/b-1/audio?purpose=quality-improvement&justification=EVAL-1"
    reply = raw_request(
        env, "GET", path, b"", {"Authorization": f"Bearer {token}", "Range": "bytes=\xb2-"}
    )
    assert reply.status == 200  # the whole representation, as for any malformed Range
    assert reply.body == env.plaintext("b-1")
    (entry,) = env.audit_after(before)
    assert entry.action == "access.play" and entry.outcome == "granted"
    assert "range" not in entry.details


@pytest.mark.parametrize(
    ("path", "body", "role"),
    [
        ("/v1/recordings/b-1/grants", DEEP, "qa-reviewer"),
        ("/v1/holds", DEEP, "compliance-officer"),
        ("/v1/privacy-requests", DEEP, "compliance-officer"),
        (
            "/v1/privacy-requests",
            json.dumps(
                {
                    "type": "erase",
                    "tenant": "demo",
                    "customer_ref": "\ud800",
                    "identity_verification": {"verified_by": "o-1", "method": "id-document"},
                }
            ),
            "compliance-officer",
        ),
        (
            "/v1/privacy-requests",
            json.dumps(
                {
                    "type": "contract-terminated",
                    "tenant": "demo",
                    "customer_ref": "C-1",
                    "received_at": "0001-01-01T00:00:00+01:00",
                }
            ),
            "compliance-officer",
        ),
        (
            "/v1/holds",
            json.dumps(
                {
                    "scope": "customer",
                    "tenant": "acme",
                    "customer_ref": "\ud800",
                    "reason": "litigation",
                    "reference": "CASE-1",
                }
            ),
            "compliance-officer",
        ),
        (
            "/v1/holds",
            json.dumps(
                {
                    "scope": "call",
                    "tenant": "acme",
                    "call_id": "c-1",
                    "reason": "bad\x00reason",
                    "reference": "CASE-1",
                }
            ),
            "compliance-officer",
        ),
    ],
)
def test_json_bodies_out_of_bounds_answer_400(env: QaEnv, path: str, body: str, role: str) -> None:
    before = env.audit_head()
    token = env.token("o-1", role)
    reply = raw_request(
        env,
        "POST",
        path,
        body.encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert reply.status == 400, reply.body
    assert reply.json()["reason"] in ("malformed", "bad-field")
    assert [e.action for e in env.audit_after(before)] in ([], ["privacy.rejected"])


@pytest.mark.parametrize(
    "metadata",
    [
        DEEP.encode(),
        json.dumps(_meta(started_at="0001-01-01T00:00:00+01:00")).encode(),
        json.dumps(
            _meta(started_at="0999-01-01T00:00:00Z", ended_at="0999-01-01T00:01:00Z")
        ).encode(),
        json.dumps(_meta(customer_ref="\ud800")).encode(),
    ],
)
def test_bad_upload_metadata_answers_400_and_lands_nothing(env: QaEnv, metadata: bytes) -> None:
    reply = _upload(env, metadata)
    assert reply.status == 400, reply.body
    assert reply.json()["reason"] in ("malformed", "invalid-field")
    landing: Path = env.services.settings.landing_dir
    assert sorted(landing.iterdir()) == []
