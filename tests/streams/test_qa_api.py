"""QA access API against an in-process aiohttp server: real file vault, SQLite catalog,
key file; recordings stored through the ingest pipeline. Authentication, every role's
allow/deny, listing, metadata, the audit endpoint and legal disclosures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.catalog.audit import AuditDraft
from storage.types import RecordingState
from streams.http.auth import LocalTokens
from tests.streams.qa_support import QaEnv, make_env, metric

CALLS = {
    "rec-qa-1": {"agent": "agent-7", "queue": "billing"},
    "rec-cr-only": {"purposes": ["customer-response"], "agent": "agent-7", "queue": "support"},
    "rec-qa-2": {"agent": "agent-8", "queue": "support"},
    "rec-qa-3": {"agent": "agent-7", "queue": "support"},
}
QA = {"purpose": "quality-improvement", "justification": "EVAL-2026-001"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[QaEnv]:
    made = make_env(tmp_path, CALLS)
    yield made
    made.close()


def _restrict(env: QaEnv, rid: str) -> None:
    env.services.catalog.set_restricted(
        [rid], True, audit=AuditDraft("user:privacy", "privacy.restricted", "ok", "stop-using")
    )


# -- authentication ----------------------------------------------------------------------


def _forged(env: QaEnv) -> str:
    prefix, payload, key_id, sig = env.token("mallory", "qa-reviewer").split(".")
    claims = json.loads(_unb64(payload))
    claims["role"] = "compliance-officer"
    return ".".join([prefix, _b64(json.dumps(claims).encode()), key_id, sig])


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "token-missing"),
        ("forged", "token-signature"),
        ("expired", "token-expired"),
        ("malformed", "token-malformed"),
        ("audience", "token-audience"),
        ("grant-as-token", "token-malformed"),
    ],
)
def test_bad_tokens_get_401_and_are_audited(env: QaEnv, kind: str, reason: str) -> None:
    token: str | None
    if kind == "missing":
        token = None
    elif kind == "forged":
        token = _forged(env)
    elif kind == "expired":
        token = env.token("alice", "qa-reviewer", ttl=60)
        env.clock.now += timedelta(minutes=2)
    elif kind == "malformed":
        token = "not-a-token"
    elif kind == "audience":
        other = LocalTokens(env.services.keyring, frozenset(env.services.policy.roles), "other")
        token = other.issue(user="alice", role="qa-reviewer", org=None, ttl=timedelta(hours=1),
                            now=env.clock())  # fmt: skip
    else:
        grant = env.request(
            "POST", "/v1/recordings/rec-qa-1/grants", token=env.token("alice", "qa-reviewer"),
            body=QA,
        ).json()  # fmt: skip
        token = grant["url"].split("grant=")[1]
    seq = env.audit_head()
    for path in ("/v1/recordings", "/v1/recordings/rec-qa-1", "/v1/recordings/rec-qa-1/audio"):
        reply = env.get(path, token=token, params=QA if path.endswith("audio") else None)
        assert reply.status == 401, (path, reply.body)
        assert reply.json()["error"] == "unauthorized"
        assert reply.json()["reason"] == reason
        assert b"RIFF" not in reply.body
    denied = [e for e in env.audit_after(seq) if e.action == "auth.denied"]
    assert [e.reason for e in denied] == [reason] * 3
    assert all(e.actor == "anonymous" for e in denied)


# -- each role ---------------------------------------------------------------------------


def test_qa_reviewer_plays_with_a_justification_only(env: QaEnv) -> None:
    token = env.token("alice", "qa-reviewer")
    reply = env.audio("rec-qa-1", token, **QA)
    assert reply.status == 200
    assert reply.body == env.plaintext("rec-qa-1")
    assert reply.body[:4] == b"RIFF"
    denied = env.audio("rec-qa-1", token, purpose="quality-improvement")
    assert denied.status == 403
    assert denied.json()["reason"] == "justification-required"
    other = env.audio("rec-qa-1", token, purpose="customer-response")
    assert other.json()["reason"] == "role-not-allowed-purpose"
    none = env.audio("rec-qa-1", token)
    assert none.json()["reason"] == "no-purpose"
    actions = [(e.action, e.outcome, e.reason) for e in env.audit_after(4)]
    assert actions[-4:] == [
        ("access.play", "granted", "granted"),
        ("access.play", "denied", "justification-required"),
        ("access.play", "denied", "role-not-allowed-purpose"),
        ("access.play", "denied", "no-purpose"),
    ]


def test_supervisor_plays_for_customer_response(env: QaEnv) -> None:
    reply = env.audio("rec-cr-only", env.token("sam", "supervisor"), purpose="customer-response")
    assert reply.status == 200
    assert reply.body == env.plaintext("rec-cr-only")


def test_purpose_the_recording_was_not_tagged_with_is_denied(env: QaEnv) -> None:
    reply = env.audio("rec-cr-only", env.token("alice", "qa-reviewer"), **QA)
    assert reply.status == 403
    assert reply.json() == {
        "error": "forbidden",
        "reason": "purpose-not-tagged",
        "detail": "the recording was not collected for this purpose",
    }


@pytest.mark.parametrize(
    ("when", "org", "status", "reason"),
    [
        (datetime(2026, 11, 25, tzinfo=UTC), "acme-qa", 200, None),
        (datetime(2026, 1, 1, tzinfo=UTC), "acme-qa", 200, None),  # start is inclusive
        (datetime(2025, 12, 31, 23, 59, tzinfo=UTC), "acme-qa", 403, "contract-not-live"),
        (datetime(2028, 1, 1, tzinfo=UTC), "acme-qa", 403, "contract-not-live"),  # end exclusive
        (datetime(2026, 11, 25, tzinfo=UTC), "other-co", 403, "unknown-org"),
        (datetime(2026, 11, 25, tzinfo=UTC), None, 403, "no-org"),
    ],
)
def test_qa_vendor_only_within_its_contract_window(
    env: QaEnv, when: datetime, org: str | None, status: int, reason: str | None
) -> None:
    env.clock.now = when
    token = env.token("vera", "qa-vendor", org=org)
    reply = env.audio("rec-qa-1", token, **QA)
    assert reply.status == status
    listing = env.get("/v1/recordings", token=token)
    if reason is None:
        assert reply.body == env.plaintext("rec-qa-1")
        assert listing.status == 200
    else:
        assert reply.json()["reason"] == reason
        assert listing.status == 403
        assert listing.json()["reason"] == reason
        last = env.audit_after(0)[-2]
        assert (last.action, last.reason, last.details.get("org")) == ("access.play", reason, org)


@pytest.mark.parametrize("role", ["operator", "telephony"])
def test_operator_and_telephony_never_get_audio(env: QaEnv, role: str) -> None:
    token = env.token("ops", role)
    purposes = [*env.services.policy.purposes, "anything"]
    for purpose in purposes:
        reply = env.audio(
            "rec-qa-1", token, purpose=purpose, justification="x", legal_basis="consent",
            reference="CASE-1",
        )  # fmt: skip
        assert reply.status == 403, purpose
        assert b"RIFF" not in reply.body
    grant = env.request("POST", "/v1/recordings/rec-qa-1/grants", token=token, body=QA)
    assert grant.status == 403
    # An unknown id does not tell them whether it exists.
    assert env.audio("no-such-rec", token, **QA).json()["reason"] == "role-not-allowed-purpose"
    listing = env.get("/v1/recordings", token=token)
    assert listing.status == 403
    assert listing.json()["reason"] == "capability-not-granted"
    assert metric(env, "callvault_access_audio_bytes_served_total", {"mode": "play"}) == 0


def test_unknown_recording_is_404_for_a_role_that_could_use_it(env: QaEnv) -> None:
    reply = env.audio("no-such-rec", env.token("alice", "qa-reviewer"), **QA)
    assert reply.status == 404
    assert reply.json()["reason"] == "no-recording"
    assert env.audit_after(0)[-1].reason == "no-recording"


def test_restricted_recording_only_for_legal_disclosure(env: QaEnv) -> None:
    _restrict(env, "rec-qa-1")
    reviewer = env.token("alice", "qa-reviewer")
    assert env.audio("rec-qa-1", reviewer, **QA).json()["reason"] == "recording-restricted"
    listed = [
        r["recording_id"] for r in env.get("/v1/recordings", token=reviewer).json()["recordings"]
    ]
    assert "rec-qa-1" not in listed
    officer = env.token("carol", "compliance-officer")
    disclosed = env.audio(
        "rec-qa-1", officer, purpose="legal-disclosure", legal_basis="legal-requirement",
        reference="COURT-2026-44", mode="download",
    )  # fmt: skip
    assert disclosed.status == 200
    assert disclosed.body == env.plaintext("rec-qa-1")
    customer = env.audio("rec-qa-1", officer, purpose="customer-disclosure", reference="PR-1")
    assert customer.json()["reason"] == "recording-restricted"


@pytest.mark.parametrize("state", [RecordingState.EXPIRED, RecordingState.ERASED])
def test_expired_or_erased_recordings_are_gone(env: QaEnv, state: RecordingState) -> None:
    env.services.catalog.set_state(
        "rec-qa-1", state, audit=AuditDraft("system:retention", "retention.deleted", "ok")
    )
    reviewer = env.token("alice", "qa-reviewer")
    reply = env.audio("rec-qa-1", reviewer, **QA)
    assert reply.status == 410
    assert reply.json()["reason"] == "recording-not-stored"
    listed = [
        r["recording_id"] for r in env.get("/v1/recordings", token=reviewer).json()["recordings"]
    ]
    assert "rec-qa-1" not in listed
    assert env.get("/v1/recordings/rec-qa-1", token=reviewer).status == 410


def test_destroyed_subject_key_is_410_and_audited(env: QaEnv) -> None:
    row = env.services.catalog.get_recording("rec-qa-1")
    assert row is not None
    assert env.services.keys.destroy_subject(row.subject_ref)
    reply = env.audio("rec-qa-1", env.token("alice", "qa-reviewer"), **QA)
    assert reply.status == 410
    assert reply.json()["reason"] == "key-destroyed"
    assert b"RIFF" not in reply.body
    last = env.audit_after(0)[-1]
    assert (last.action, last.outcome, last.reason) == ("access.play", "failed", "key-destroyed")


@pytest.mark.parametrize(
    "justification",
    [
        "call back jane@example.com",
        "+14155550100",
        "call back +1 415 555 0100",
        "415-555-0100",
        "card 4111 1111 1111 1111",
        "customer (415) 555.0100 complained",
    ],
)
def test_personal_data_in_a_justification_is_refused(env: QaEnv, justification: str) -> None:
    before = env.audit_after(0)
    reply = env.audio(
        "rec-qa-1", env.token("alice", "qa-reviewer"), purpose="quality-improvement",
        justification=justification,
    )  # fmt: skip
    assert reply.status == 400
    assert reply.json()["reason"] == "justification-personal-data"
    assert "personal data" in reply.json()["detail"]
    assert justification not in reply.body.decode()
    written = env.audit_after(before[-1].seq if before else 0)
    assert all(justification not in json.dumps(e.details) for e in written)


@pytest.mark.parametrize(
    "justification", ["QA-123", "CASE-2026-0042", "re-check of 2026-11-25 10:30"]
)
def test_references_and_plain_text_pass_as_justifications(env: QaEnv, justification: str) -> None:
    reply = env.audio(
        "rec-qa-1", env.token("alice", "qa-reviewer"), purpose="quality-improvement",
        justification=justification,
    )  # fmt: skip
    assert reply.status == 200, reply.json()
    assert env.audit_after(0)[-1].details["justification"] == justification


# -- legal disclosure --------------------------------------------------------------------


def test_legal_disclosure_needs_basis_and_reference_and_is_ledgered(env: QaEnv) -> None:
    officer = env.token("carol", "compliance-officer")
    base = {"purpose": "legal-disclosure", "mode": "download"}
    assert env.audio("rec-qa-2", officer, **base, reference="CASE-9").json()["reason"] == (
        "legal-basis-required"
    )
    assert (
        env.audio("rec-qa-2", officer, **base, legal_basis="curiosity", reference="CASE-9").json()[
            "reason"
        ]
        == "legal-basis-unknown"
    )
    assert env.audio("rec-qa-2", officer, **base, legal_basis="consent").json()["reason"] == (
        "reference-required"
    )
    assert env.audio("rec-qa-2", env.token("alice", "qa-reviewer"), **base, legal_basis="consent",
                     reference="CASE-9").json()["reason"] == "role-not-allowed-purpose"  # fmt: skip
    reply = env.audio("rec-qa-2", officer, **base, legal_basis="consent", reference="CASE-9")
    assert reply.status == 200
    assert reply.headers["Content-Disposition"] == 'attachment; filename="rec-qa-2.wav"'
    ledger = env.get("/v1/disclosures", token=officer, params={"recording_id": "rec-qa-2"})
    entries = ledger.json()["disclosures"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["legal_basis"] == "consent"
    assert entry["reference"] == "CASE-9"
    assert entry["actor"] == "user:carol"
    assert entry["mode"] == "download"
    audit = [e for e in env.audit_after(0) if e.seq == entry["audit_seq"]][0]
    assert (audit.action, audit.outcome) == ("access.download", "granted")
    assert audit.details["disclosure_id"] == entry["disclosure_id"]
    assert audit.details["legal_basis"] == "consent"
    assert env.get("/v1/disclosures", token=env.token("alice", "qa-reviewer")).status == 403


# -- listing -----------------------------------------------------------------------------


def _ids(reply_json: dict) -> list[str]:  # type: ignore[type-arg]
    return [r["recording_id"] for r in reply_json["recordings"]]


def test_listing_shows_only_what_the_caller_could_be_granted(env: QaEnv) -> None:
    reviewer = env.get("/v1/recordings", token=env.token("alice", "qa-reviewer"))
    assert reviewer.status == 200
    assert set(_ids(reviewer.json())) == {"rec-qa-1", "rec-qa-2", "rec-qa-3"}
    supervisor = env.get("/v1/recordings", token=env.token("sam", "supervisor")).json()
    assert set(_ids(supervisor)) == set(CALLS)
    by_id = {r["recording_id"]: r for r in supervisor["recordings"]}
    assert by_id["rec-cr-only"]["usable_purposes"] == ["customer-response"]
    assert by_id["rec-qa-1"]["usable_purposes"] == ["customer-response", "quality-improvement"]
    row = env.services.catalog.get_recording("rec-qa-1")
    assert row is not None
    for secret in (row.subject_ref, row.object_key, row.subject_key_id, "cust-0"):
        assert secret.encode() not in reviewer.body
    assert "subject_ref" not in by_id["rec-qa-1"]


def test_listing_filters(env: QaEnv) -> None:
    token = env.token("sam", "supervisor")
    by_agent = env.get("/v1/recordings", token=token, params={"agent": "agent-7"}).json()
    assert set(_ids(by_agent)) == {"rec-qa-1", "rec-cr-only", "rec-qa-3"}
    assert set(_ids(env.get("/v1/recordings", token=token,
                            params={"agent": "agent-7", "queue": "support"}).json())) == {
        "rec-cr-only", "rec-qa-3"
    }  # fmt: skip
    started = env.services.catalog.get_recording("rec-qa-2")
    assert started is not None
    day = started.started_at.date().isoformat()
    assert (
        len(_ids(env.get("/v1/recordings", token=token, params={"from": day, "to": day}).json()))
        == 4
    )
    after = (started.started_at + timedelta(seconds=1)).isoformat()
    newer = _ids(env.get("/v1/recordings", token=token, params={"from": after}).json())
    assert "rec-qa-2" not in newer and len(newer) == 2  # rec-qa-1, rec-cr-only started later
    purpose = env.get("/v1/recordings", token=token, params={"purpose": "quality-improvement"})
    assert set(_ids(purpose.json())) == {"rec-qa-1", "rec-qa-2", "rec-qa-3"}


def test_listing_paginates_without_overlap(env: QaEnv) -> None:
    token = env.token("alice", "qa-reviewer")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "1"} | ({"after": cursor} if cursor else {})
        page = env.get("/v1/recordings", token=token, params=params).json()
        seen += _ids(page)
        cursor = page["next"]
        pages += 1
        if not cursor:
            break
    assert sorted(seen) == ["rec-qa-1", "rec-qa-2", "rec-qa-3"]
    assert len(seen) == len(set(seen))
    assert pages <= 4
    all_at_once = _ids(env.get("/v1/recordings", token=token).json())
    assert seen == all_at_once


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "abc"},
        {"limit": "201"},
        {"from": "yesterday"},
        {"from": "2026-11-25T10:00:00"},
        {"purpose": "marketing"},
        {"after": "!!not-a-cursor!!"},
    ],
)
def test_listing_rejects_bad_parameters(env: QaEnv, params: dict[str, str]) -> None:
    reply = env.get("/v1/recordings", token=env.token("alice", "qa-reviewer"), params=params)
    assert reply.status == 400
    assert reply.json()["error"] == "bad-request"
    assert reply.json()["detail"]


# -- metadata ----------------------------------------------------------------------------


def test_metadata(env: QaEnv) -> None:
    token = env.token("alice", "qa-reviewer")
    reply = env.get("/v1/recordings/rec-qa-1", token=token)
    assert reply.status == 200
    body = reply.json()
    assert body["recording_id"] == "rec-qa-1"
    assert body["usable_purposes"] == ["quality-improvement"]
    assert body["audio_format"] == "wav/mulaw"
    assert "subject_ref" not in body and "object_key" not in body
    assert env.get("/v1/recordings/rec-cr-only", token=token).json()["reason"] == (
        "purpose-not-tagged"
    )
    assert env.get("/v1/recordings/nope", token=token).status == 404
    assert env.get("/v1/recordings/bad%20id", token=token).status == 400
    actions = [(e.action, e.outcome) for e in env.audit_after(0)][-3:]
    assert actions == [
        ("access.metadata", "granted"),
        ("access.metadata", "denied"),
        ("access.metadata", "denied"),
    ]


# -- audit endpoint ----------------------------------------------------------------------


def test_audit_endpoint_pages_for_compliance_only(env: QaEnv) -> None:
    reviewer = env.token("alice", "qa-reviewer")
    env.audio("rec-qa-1", reviewer, **QA)
    denied = env.get("/v1/audit", token=reviewer)
    assert denied.status == 403
    assert denied.json()["reason"] == "capability-not-granted"
    officer = env.token("carol", "compliance-officer")
    first = env.get("/v1/audit", token=officer, params={"limit": "2"}).json()
    assert [e["seq"] for e in first["entries"]] == [1, 2]
    assert first["next_after_seq"] == 2
    second = env.get("/v1/audit", token=officer,
                     params={"limit": "2", "after_seq": "2"}).json()  # fmt: skip
    assert [e["seq"] for e in second["entries"]] == [3, 4]
    only = env.get("/v1/audit", token=officer, params={"recording_id": "rec-qa-1"}).json()
    assert {e["recording_id"] for e in only["entries"]} == {"rec-qa-1"}
    assert [e["action"] for e in only["entries"]] == ["ingest.stored", "access.play"]
    assert env.get("/v1/audit", token=officer, params={"limit": "-1"}).status == 400
    assert any(e.action == "audit.read" for e in env.audit_after(0))
    assert env.services.audit.verify().ok


def test_decisions_are_counted_with_bounded_labels(env: QaEnv) -> None:
    reviewer = env.token("alice", "qa-reviewer")
    env.audio("rec-qa-1", reviewer, **QA)
    env.audio("rec-qa-1", reviewer, purpose="made-up-purpose")
    labels = {"outcome": "granted", "reason": "granted", "role": "qa-reviewer",
              "purpose": "quality-improvement", "action": "play"}  # fmt: skip
    assert metric(env, "callvault_access_decisions_total", labels) == 1
    denied = dict(labels, outcome="denied", reason="unknown-purpose", purpose="other")
    assert metric(env, "callvault_access_decisions_total", denied) == 1
    served = metric(env, "callvault_access_audio_bytes_served_total", {"mode": "play"})
    assert served == len(env.plaintext("rec-qa-1"))
    exposition = env.get("/metrics").body.decode()
    assert "callvault_access_decisions_total" in exposition
    assert "made-up-purpose" not in exposition
