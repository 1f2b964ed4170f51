"""The privacy office's workflow (received -> verified -> approved | refused -> executing
-> completed), its true timestamps and SLA, a disclosure during a hold saying why, and
tenants that cannot see each other's requests, holds, recordings or audit trail (HTTP
served in-process over real SQLite and a folder vault)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from callvault.services import Services
from storage.errors import AuditError
from storage.types import RecordingState
from streams.privacy import PrivacyRequestRejected
from tests.streams.lifecycle_support import (
    NOW,
    Clock,
    WebServer,
    lifecycle_of,
    store_call,
    verification,
)

ERASE = {"type": "erase", "tenant": "acme", "customer_ref": "C-1001"}


@pytest.mark.clause("requests.identity")
def test_a_request_waits_for_verification_and_approval_with_true_timestamps(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    store_call(services, "r-wf")
    filed = lifecycle.privacy.submit({**ERASE, "request_id": "PR-WF"}, requested_by="clerk-1")
    assert filed.status.value == "received" and filed.verified_at is None
    assert filed.due_at == NOW + timedelta(days=14)  # the policy's SLA for erase
    lifecycle.sweep_and_resume()  # nothing is carried out before approval
    assert services.catalog.get_recording("r-wf").state is RecordingState.STORED  # type: ignore[union-attr]
    with pytest.raises(PrivacyRequestRejected) as early:
        lifecycle.privacy.approve("PR-WF", by="officer-7")
    assert early.value.reason == "wrong-status"

    clock.now = NOW + timedelta(hours=2)
    verified = lifecycle.privacy.verify(
        "PR-WF", {"verified_by": "officer-2", "method": "callback"}, by="officer-2"
    )
    assert (verified.status.value, verified.verified_at) == ("verified", clock.now)
    with pytest.raises(PrivacyRequestRejected) as twice:
        lifecycle.privacy.verify("PR-WF", {"verified_by": "x", "method": "callback"}, by="x")
    assert twice.value.reason == "wrong-status"

    clock.now = NOW + timedelta(days=1)
    done = lifecycle.privacy.approve("PR-WF", by="officer-7")
    assert done.status.value == "completed" and done.result["erased"] == ["r-wf"]
    assert (done.decided_by, done.decided_at, done.completed_at) == (
        "officer-7",
        clock.now,
        clock.now,
    )
    assert [(s["step"], s["at"], s["by"]) for s in done.to_json()["timeline"]] == [
        ("received", NOW.isoformat(), "clerk-1"),
        ("verified", (NOW + timedelta(hours=2)).isoformat(), "officer-2"),
        ("approved", clock.now.isoformat(), "officer-7"),
        ("executing", clock.now.isoformat(), None),
        ("completed", clock.now.isoformat(), None),
    ]
    actions = [e.action for e in services.audit.iter_entries() if e.action.startswith("privacy.")]
    assert actions == [
        "privacy.received",
        "privacy.verified",
        "privacy.approved",
        "privacy.erased",
        "privacy.completed",
    ]
    assert services.audit.verify().ok


@pytest.mark.clause("requests.identity")
def test_a_refusal_needs_a_closed_reason_and_a_note(file_services: Services, clock: Clock) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    store_call(services, "r-keep")
    lifecycle.privacy.submit({**ERASE, "request_id": "PR-NO"}, requested_by="clerk-1")
    for reason, note, code in (
        ("because", "a note", "bad-field"),  # not one of the closed reasons
        ("manifestly-unfounded", "  ", "bad-field"),  # no note
    ):
        with pytest.raises(PrivacyRequestRejected) as bad:
            lifecycle.privacy.refuse("PR-NO", by="officer-7", reason=reason, note=note)
        assert bad.value.reason == code
    with pytest.raises(AuditError):  # personal data in the note
        lifecycle.privacy.refuse(
            "PR-NO", by="officer-7", reason="identity-unverified", note="call jane@example.com"
        )
    clock.now = NOW + timedelta(hours=3)
    refused = lifecycle.privacy.refuse(
        "PR-NO",
        by="officer-7",
        reason="identity-unverified",
        note="caller failed the security questions twice",
    )
    body = refused.to_json(clock.now)
    assert body["status"] == "refused" and body["overdue"] is False
    assert body["decision"] == {
        "outcome": "refused",
        "by": "officer-7",
        "at": clock.now.isoformat(),
        "reason": "identity-unverified",
        "note": "caller failed the security questions twice",
    }
    assert refused.completed_at == clock.now
    with pytest.raises(PrivacyRequestRejected) as late:
        lifecycle.privacy.approve("PR-NO", by="officer-7")
    assert late.value.reason == "wrong-status"
    lifecycle.sweep_and_resume()
    assert services.catalog.get_recording("r-keep").state is RecordingState.STORED  # type: ignore[union-attr]
    (audited,) = [e for e in services.audit.iter_entries() if e.action == "privacy.refused"]
    assert audited.details["refusal_reason"] == "identity-unverified"
    assert "security" not in str(audited.details)  # the note stays with the request


@pytest.mark.clause("requests.removal")
def test_a_held_then_finished_erasure_completes_when_it_finishes(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    store_call(services, "r-h1")
    hold = lifecycle.holds.place(
        tenant="acme", scope="recording", target="r-h1", reason="litigation",
        reference="CASE-4", placed_by="counsel-1", actor="user:counsel-1",
    )  # fmt: skip
    out = lifecycle.privacy.submit(
        {**ERASE, "identity_verification": verification()}, requested_by="officer-7"
    )
    assert out.status.value == "held" and out.completed_at is None
    clock.now = NOW + timedelta(days=2)
    lifecycle.holds.release(hold.hold_id, released_by="counsel-1", reason="settled",
                            actor="user:counsel-1")  # fmt: skip
    lifecycle.sweep_and_resume()
    final = lifecycle.privacy.get(out.request_id)
    assert final.status.value == "completed"
    assert final.completed_at == NOW + timedelta(days=2)  # not the time it was held
    assert final.executing_at == NOW


@pytest.mark.clause("requests.confirmation")
def test_a_disclosure_during_a_hold_says_why_it_exported_fewer(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    for index in range(3):
        store_call(services, f"r-d{index}")
    lifecycle.holds.place(
        tenant="acme", scope="subject", target=services.keys.subject_ref("acme", "C-1001"),
        reason="litigation", reference="CASE-9", placed_by="counsel-1", actor="user:counsel-1",
    )  # fmt: skip
    held = lifecycle.privacy.submit(
        {**ERASE, "identity_verification": verification()}, requested_by="officer-7"
    )
    assert held.status.value == "held"  # every recording kept, and restricted
    disclosed = lifecycle.privacy.submit(
        {**ERASE, "type": "disclose", "identity_verification": verification()},
        requested_by="officer-7",
    )
    assert disclosed.status.value == "completed"
    assert disclosed.result["summary"] == (
        "exported 0 of 3 stored recordings (3 withheld: legal-hold 3)"
    )
    assert {w["reason"] for w in disclosed.result["withheld"]} == {"legal-hold"}
    assert all("legal hold" in w["note"] for w in disclosed.result["withheld"])


# -- tenants over HTTP --------------------------------------------------------------------------


@pytest.mark.clause("management.safety")
def test_tenants_cannot_see_each_others_requests_holds_recordings_or_audit(
    server: WebServer,
) -> None:
    services = server.services
    store_call(services, "r-acme", tenant="acme")
    store_call(services, "r-globex", tenant="globex", customer="C-2002")
    acme = server.tokens.issue(user="amy", role="compliance-officer", org=None,
                               ttl=timedelta(hours=1), now=NOW, tenant="acme")  # fmt: skip
    globex = server.tokens.issue(user="gil", role="compliance-officer", org=None,
                                 ttl=timedelta(hours=1), now=NOW, tenant="globex")  # fmt: skip
    filed = server.request(
        "POST", "/v1/privacy-requests", token=acme,
        body={**ERASE, "type": "restrict", "request_id": "PR-A",
              "identity_verification": verification()},
    )  # fmt: skip
    assert filed.status == 201 and filed.json()["status"] == "completed", filed.body
    # globex files without naming a tenant: its own; naming acme's is refused
    mine = server.request(
        "POST", "/v1/privacy-requests", token=globex,
        body={"type": "disclose", "customer_ref": "C-2002", "request_id": "PR-G"},
    )  # fmt: skip
    assert mine.status == 201 and mine.json()["tenant"] == "globex"
    foreign = server.request(
        "POST", "/v1/privacy-requests", token=globex, body={**ERASE, "request_id": "PR-X"}
    )
    assert (foreign.status, foreign.json()["reason"]) == (403, "tenant-mismatch")
    assert server.request("GET", "/v1/privacy-requests/PR-A", token=globex).status == 404
    for step in ("verify", "approve", "refuse"):
        assert (
            server.request("POST", f"/v1/privacy-requests/PR-A/{step}", token=globex, body={})
        ).status == 404
    listed = server.request("GET", "/v1/privacy-requests", token=globex).json()["requests"]
    assert [r["request_id"] for r in listed] == ["PR-G"]

    hold = server.request(
        "POST", "/v1/holds", token=acme,
        body={"scope": "recording", "recording_id": "r-acme", "reason": "audit",
              "reference": "CASE-1"},
    )  # fmt: skip
    assert hold.status == 201 and hold.json()["tenant"] == "acme"
    hold_id = hold.json()["hold_id"]
    assert server.request("GET", "/v1/holds", token=globex).json()["holds"] == []
    assert server.request("GET", f"/v1/holds/{hold_id}", token=globex).status == 404
    assert server.request("DELETE", f"/v1/holds/{hold_id}", token=globex, body={}).status == 404
    steal = server.request(
        "POST", "/v1/holds", token=globex,
        body={"scope": "recording", "recording_id": "r-acme", "reason": "x", "reference": "y"},
    )  # fmt: skip
    assert steal.status == 404  # another tenant's recording: as if it did not exist
    assert server.request("GET", f"/v1/holds/{hold_id}", token=acme).status == 200
    released = server.request("DELETE", f"/v1/holds/{hold_id}", token=acme, body={"reason": "ok"})
    assert released.status == 200

    # recordings: another tenant's is answered exactly like a missing one
    missing = server.request("GET", "/v1/recordings/r-nothing", token=globex)
    other = server.request("GET", "/v1/recordings/r-acme", token=globex)
    assert (
        (other.status, other.json())
        == (missing.status, missing.json())
        == (
            404,
            {"error": "not-found", "detail": "no such recording", "reason": "no-recording"},
        )
    )
    assert server.request("GET", "/v1/recordings/r-globex", token=globex).status == 200
    rows = server.request("GET", "/v1/recordings", token=globex).json()["recordings"]
    assert [r["recording_id"] for r in rows] == ["r-globex"]
    rows = server.request("GET", "/v1/recordings?tenant=acme", token=globex).json()["recordings"]
    assert rows == []

    # a QA reviewer of globex lists, reads and hears globex's recordings only
    quinn = server.tokens.issue(user="quinn", role="qa-reviewer", org=None,
                                ttl=timedelta(hours=1), now=NOW, tenant="globex")  # fmt: skip
    rows = server.request("GET", "/v1/recordings", token=quinn).json()["recordings"]
    assert [r["recording_id"] for r in rows] == ["r-globex"]
    audio = "/audio?purpose=quality-improvement&justification=EVAL-1"
    assert server.request("GET", "/v1/recordings/r-globex" + audio, token=quinn).status == 200
    assert server.request("GET", "/v1/recordings/r-acme" + audio, token=quinn).status == 404

    # quality evaluations: a supervisor samples and reads scores in its tenant only
    boss = server.tokens.issue(user="sam", role="supervisor", org=None,
                               ttl=timedelta(hours=1), now=NOW, tenant="globex")  # fmt: skip
    for method, path, body in (
        ("GET", "/v1/evaluations/summary?tenant=acme", None),
        ("POST", "/v1/sampling-plans/weekly-per-agent/runs", {"tenant": "acme"}),
    ):
        reply = server.request(method, path, token=boss, body=body)
        assert (reply.status, reply.json()["reason"]) == (403, "tenant-mismatch"), path
    assert server.request("GET", "/v1/evaluations/summary", token=boss).status == 200

    # the audit trail: each tenant's records only
    def audit_of(token: str) -> list[dict[str, object]]:
        reply = server.request("GET", "/v1/audit?limit=1000", token=token)
        assert reply.status == 200
        entries: list[dict[str, object]] = reply.json()["entries"]
        return entries

    seen_by_globex = audit_of(globex)
    assert seen_by_globex and not any(e["recording_id"] == "r-acme" for e in seen_by_globex)
    assert not any(e["details"].get("request_id") == "PR-A" for e in seen_by_globex)  # type: ignore[attr-defined]
    assert not any(str(e["action"]).startswith("hold.") for e in seen_by_globex)
    # the denied look at r-acme is in acme's trail (its recording), with the true reason
    seen_by_acme = audit_of(acme)
    (probe,) = [e for e in seen_by_acme if e["action"] == "access.metadata"
                and e["recording_id"] == "r-acme"]  # fmt: skip
    assert probe["reason"] == "tenant-mismatch" and probe["actor"] == "user:gil"
    assert any(e["details"].get("request_id") == "PR-A" for e in seen_by_acme)  # type: ignore[attr-defined]
    assert {"hold.placed", "hold.released"} <= {e["action"] for e in seen_by_acme}
    assert not any(e["recording_id"] == "r-globex" for e in seen_by_acme)
    assert services.audit.verify().ok


@pytest.mark.parametrize(
    "payload",
    [b"[" * 60_000, b'{"type": "erase", "requested_by": ' + b"[" * 60_000, b"\xff\xfe", b""],
)
def test_a_poison_message_on_the_privacy_topic_is_rejected_not_raised(
    file_services: Services, payload: bytes
) -> None:
    """The topic's agent runs every message through handle_message: one that raised
    (JSON nested past the parser's recursion did) would stop the agent, and with it every
    later customer's request. It is rejected and audited instead."""
    lifecycle = lifecycle_of(file_services)
    assert lifecycle.handle_message(payload) == "rejected:malformed"
    (entry,) = [e for e in file_services.audit.iter_entries() if e.action == "privacy.rejected"]
    assert entry.reason == "malformed" and entry.details == {"source": "topic"}
