"""Customers' privacy requests against real backends: erase (crypto-shredding, all
versions, tombstones, receipts), holds winning over erasure, disclose with a signed
export manifest,
restrict / lift, correct (re-keying), validation, the overdue metric, and the HTTP API
served in-process."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from callvault.services import Services
from storage.errors import KeyDestroyed, RecordingNotFound
from storage.types import RecordingState
from streams.metrics import Metrics
from streams.privacy import PrivacyRequestRejected, parse_privacy_request
from tests.streams.lifecycle_support import (
    NOW,
    Clock,
    WebServer,
    lifecycle_of,
    make_services,
    store_call,
    verification,
)
from tests.streams.test_retention import object_versions

ERASE = {
    "type": "erase",
    "tenant": "acme",
    "customer_ref": "C-1001",
    "identity_verification": verification(),
}


@pytest.mark.clause("requests.removal", "storage-period.statistics")
def test_erase_shreds_every_copy_and_leaves_tombstones(services: Services, clock: Clock) -> None:
    metrics = Metrics()
    lifecycle = lifecycle_of(services, metrics)
    rows = [store_call(services, f"r-erase-{i}") for i in range(2)]
    expired = store_call(services, "r-erase-old", ended_at=NOW - timedelta(days=200))
    other = store_call(services, "r-other", customer="C-OTHER")
    saved = services.vault.get(rows[0].object_key)  # a backup taken before the erasure
    services.vault.put(rows[1].object_key, services.vault.get(rows[1].object_key), tags={"v": "2"})
    lifecycle.sweep_and_resume()  # r-erase-old expires first
    assert services.catalog.get_recording("r-erase-old").state is RecordingState.EXPIRED  # type: ignore[union-attr]
    stats = services.catalog.daily_stats()

    done = lifecycle.privacy.submit(ERASE, requested_by="officer-7")
    assert done.status.value == "completed"
    assert sorted(done.result["erased"]) == ["r-erase-0", "r-erase-1", "r-erase-old"]
    assert done.result["subject_key_destroyed"] is True
    with pytest.raises(KeyDestroyed):
        services.keys.open_recording(saved)  # the saved copy is unreadable with what remains
    for row in [*rows, expired]:
        assert object_versions(services, row.object_key) == 0
        tomb = services.catalog.get_recording(row.recording_id)
        assert tomb is not None and tomb.state is RecordingState.ERASED
        assert (tomb.subject_ref, tomb.call_id, tomb.agent_id) == ("", "", "")
        receipts = lifecycle.receipts.for_recording(row.recording_id)
        (erasure,) = [r for r in receipts if r.payload["reason"] == "erasure-requested"]
        assert erasure.payload["request_id"] == done.request_id
        assert all(lifecycle.signer.verify(r) for r in receipts)
    assert services.catalog.list_recordings(subject_ref=rows[0].subject_ref, states=None) == []
    assert services.keys.open_recording(services.vault.get(other.object_key))  # others untouched
    assert services.catalog.daily_stats() == stats  # anonymous statistics are kept
    assert services.audit.verify().ok
    assert metrics.deletions.labels("erasure")._value.get() == 3
    # nothing in the audit log or the request names the customer in clear
    for entry in services.audit.iter_entries():
        assert "C-1001" not in json.dumps(entry.details)
    assert "C-1001" not in json.dumps(lifecycle.privacy.get(done.request_id).to_json())
    # the same request again: nothing more happens
    again = lifecycle.privacy.submit(
        {**ERASE, "request_id": done.request_id}, requested_by="officer-7"
    )
    assert again.status.value == "completed"


@pytest.mark.clause("storage-period.law")
def test_a_hold_beats_erasure_until_it_is_released(file_services: Services, clock: Clock) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    held = store_call(services, "r-held")
    free = store_call(services, "r-free")
    hold = lifecycle.holds.place(
        tenant="acme",
        scope="recording",
        target="r-held",
        reason="litigation",
        reference="CASE-4",
        placed_by="counsel-1",
        actor="user:counsel-1",
    )
    out = lifecycle.privacy.submit(ERASE, requested_by="officer-7")
    assert out.status.value == "held"
    assert out.result["erased"] == ["r-free"]
    (kept,) = out.result["held"]
    assert kept["recording_id"] == "r-held" and kept["hold"]["hold_id"] == hold.hold_id
    assert kept["hold"]["reason"] == "litigation" and kept["hold"]["placed_by"] == "counsel-1"
    assert out.result["subject_key_destroyed"] is False  # the held recording still needs it
    row = services.catalog.get_recording("r-held")
    assert (
        row is not None and row.state is RecordingState.STORED and row.restricted
    )  # no use but legal
    assert services.keys.open_recording(services.vault.get(held.object_key))
    assert not services.vault.exists(free.object_key)
    lifecycle.holds.release(
        hold.hold_id, released_by="counsel-1", reason="settled", actor="user:counsel-1"
    )
    lifecycle.sweep_and_resume()  # resumes the erasure
    final = lifecycle.privacy.get(out.request_id)
    assert final.status.value == "completed" and final.result["subject_key_destroyed"] is True
    assert services.catalog.get_recording("r-held").state is RecordingState.ERASED  # type: ignore[union-attr]
    assert not services.vault.exists(held.object_key)


@pytest.mark.clause("requests.confirmation")
def test_disclose_lists_and_exports_the_customers_audio(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    rows = [
        store_call(services, f"r-disc-{i}", ended_at=NOW - timedelta(days=i + 1)) for i in range(2)
    ]
    store_call(services, "r-not-mine", customer="C-OTHER")
    out = lifecycle.privacy.submit({**ERASE, "type": "disclose"}, requested_by="officer-7")
    assert out.status.value == "completed"
    listed = {r["recording_id"]: r for r in out.result["recordings"]}
    assert set(listed) == {"r-disc-0", "r-disc-1"}
    assert listed["r-disc-0"]["purposes"] == list(rows[0].purposes)
    assert listed["r-disc-0"]["retain_until"] == rows[0].retain_until.isoformat()
    # a signed manifest, no files: nothing under the data dir is plaintext audio
    assert "export_dir" not in out.result
    export = services.exports().get(out.request_id)
    assert export.verified and len(export.manifest["exported"]) == 2
    assert export.expires_at == NOW + timedelta(days=services.policy.export_expiry_days)
    assert out.result["export"]["url"] == f"/v1/privacy-requests/{out.request_id}/export"
    assert not (services.config.data_dir / "exports").exists()
    for path in services.config.data_dir.rglob("*"):
        if path.is_file():
            assert not path.read_bytes().startswith(b"RIFF"), path
    granted = [e for e in services.audit.iter_entries(action_prefix="access.granted")]
    assert {e.recording_id for e in granted} == {"r-disc-0", "r-disc-1"}
    assert all(e.details["purpose"] == "customer-disclosure" for e in granted)


@pytest.mark.clause("requests.cessation")
def test_restrict_and_lift_restriction(catalog_url: str, tmp_path: Path, clock: Clock) -> None:
    services = make_services(tmp_path, catalog_url, "file", clock)
    try:
        lifecycle = lifecycle_of(services)
        store_call(services, "r-restrict")
        out = lifecycle.privacy.submit({**ERASE, "type": "restrict"}, requested_by="officer-7")
        assert out.result == {"changed": ["r-restrict"], "restricted": True}
        assert services.catalog.get_recording("r-restrict").restricted  # type: ignore[union-attr]
        lifted = lifecycle.privacy.submit(
            {**ERASE, "type": "lift-restriction"}, requested_by="officer-7"
        )
        assert lifted.result["changed"] == ["r-restrict"]
        assert not services.catalog.get_recording("r-restrict").restricted  # type: ignore[union-attr]
        assert services.audit.verify().ok
    finally:
        services.close()


@pytest.mark.clause("requests.revision")
def test_correcting_the_customer_rekeys_the_recording(
    file_services: Services, clock: Clock
) -> None:
    services = file_services
    lifecycle = lifecycle_of(services)
    wrong = store_call(services, "r-wrong", customer="C-WRONG")
    audio = services.keys.open_recording(services.vault.get(wrong.object_key))
    out = lifecycle.privacy.submit(
        {
            "type": "correct",
            "tenant": "acme",
            "customer_ref": "C-WRONG",
            "identity_verification": verification(),
            "corrections": {"customer_ref": "C-RIGHT", "queue": "sales"},
        },
        requested_by="officer-7",
    )
    assert out.result["corrected"] == ["r-wrong"]
    row = services.catalog.get_recording("r-wrong")
    assert row is not None and row.subject_ref == services.keys.subject_ref("acme", "C-RIGHT")
    assert row.queue == "sales" and row.object_key != wrong.object_key
    assert not services.vault.exists(wrong.object_key)
    assert services.keys.open_recording(services.vault.get(row.object_key)) == audio
    (entry,) = services.audit.iter_entries(action_prefix="privacy.corrected")
    assert set(entry.details["before_digests"]) == {"subject_ref", "queue"}
    assert "billing" not in json.dumps(entry.details) and "sales" not in json.dumps(entry.details)
    # erasing the wrong customer no longer touches it; erasing the right one does
    lifecycle.privacy.submit({**ERASE, "customer_ref": "C-WRONG"}, requested_by="officer-7")
    assert services.catalog.get_recording("r-wrong").state is RecordingState.STORED  # type: ignore[union-attr]
    lifecycle.privacy.submit({**ERASE, "customer_ref": "C-RIGHT"}, requested_by="officer-7")
    assert services.catalog.get_recording("r-wrong").state is RecordingState.ERASED  # type: ignore[union-attr]


class Crash(BaseException):
    """The worker process is killed (nothing catches it, nothing is cleaned up)."""


def crash(*args: object, **kwargs: object) -> None:
    raise Crash


def test_an_erasure_interrupted_by_a_crash_is_finished_on_resume(
    services: Services, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = lifecycle_of(services)
    rows = [store_call(services, f"r-killed-{i}") for i in range(2)]
    with monkeypatch.context() as patch:  # killed after the key, before the objects went
        patch.setattr(services.vault, "delete_many", crash)
        with pytest.raises(Crash):
            lifecycle.privacy.submit({**ERASE, "request_id": "PR-KILLED"}, requested_by="officer-7")
    assert lifecycle.privacy.get("PR-KILLED").status.value == "executing"
    assert services.catalog.get_subject_key(rows[0].subject_ref) is None  # shredded
    store = lifecycle.retention.endoflife
    assert {i.recording_id for i in store.pending_intents(request_id="PR-KILLED")} == {
        "r-killed-0",
        "r-killed-1",
    }

    lifecycle.sweep_and_resume()
    done = lifecycle.privacy.get("PR-KILLED")
    assert done.status.value == "completed"
    assert done.result["erased"] == ["r-killed-0", "r-killed-1"]
    assert done.result["subject_key_destroyed"] is True
    assert store.pending_intents() == []
    for row in rows:
        assert object_versions(services, row.object_key) == 0
        tomb = services.catalog.get_recording(row.recording_id)
        assert tomb is not None and tomb.state is RecordingState.ERASED
        assert (tomb.subject_ref, tomb.call_id, tomb.agent_id) == ("", "", "")
        (receipt,) = lifecycle.receipts.for_recording(row.recording_id)  # issued once
        assert receipt.payload["request_id"] == "PR-KILLED"
        assert receipt.payload["effects"]["subject_key_destroyed"] is True
        assert lifecycle.signer.verify(receipt)
    lifecycle.sweep_and_resume()  # nothing more happens
    assert all(len(lifecycle.receipts.for_recording(r.recording_id)) == 1 for r in rows)
    assert services.audit.verify().ok


def test_a_correction_interrupted_before_the_old_object_is_deleted_is_cleaned_up(
    services: Services, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = lifecycle_of(services)
    wrong = store_call(services, "r-misfiled", customer="C-WRONG")
    audio = services.keys.open_recording(services.vault.get(wrong.object_key))
    body = {
        "type": "correct",
        "tenant": "acme",
        "customer_ref": "C-WRONG",
        "request_id": "PR-FIX",
        "identity_verification": verification(),
        "corrections": {"customer_ref": "C-RIGHT"},
    }
    with monkeypatch.context() as patch:  # killed after the commit, before the old delete
        patch.setattr(services.vault, "delete", crash)
        with pytest.raises(Crash):
            lifecycle.privacy.submit(body, requested_by="officer-7")
    row = services.catalog.get_recording("r-misfiled")
    assert row is not None and row.object_key != wrong.object_key
    assert services.vault.exists(wrong.object_key)  # under the wrong customer's key
    assert lifecycle.privacy.get("PR-FIX").status.value == "executing"

    lifecycle.sweep_and_resume()
    assert object_versions(services, wrong.object_key) == 0
    assert lifecycle.retention.endoflife.pending_cleanups() == []
    assert services.keys.open_recording(services.vault.get(row.object_key)) == audio
    assert lifecycle.privacy.get("PR-FIX").status.value == "completed"
    assert services.audit.verify().ok


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({**ERASE, "identity_verification": "yes"}, "identity-not-verified"),
        ({**ERASE, "approve": "yes"}, "bad-field"),
        (
            {
                **ERASE,
                "identity_verification": {"verified_by": "officer-7", "method": "gut-feeling"},
            },
            "identity-not-verified",
        ),
        ({**ERASE, "identity_verification": {"method": "id-document"}}, "missing-field"),
        ({**ERASE, "type": "forget-me"}, "unknown-type"),
        ({**ERASE, "customer_ref": ""}, "missing-field"),
        ({**ERASE, "request_id": "has spaces"}, "bad-field"),
        ({**ERASE, "received_at": "2026-11-25T10:00:00"}, "bad-field"),
        ({**ERASE, "type": "contract-terminated"}, "missing-field"),
        ({**ERASE, "type": "correct"}, "missing-field"),
        ({**ERASE, "type": "correct", "corrections": {"started_at": "x"}}, "bad-field"),
        ([1, 2], "malformed"),
    ],
)
@pytest.mark.clause("requests.identity")
def test_malformed_requests_are_rejected_with_a_reason(body: object, reason: str) -> None:
    with pytest.raises(PrivacyRequestRejected) as caught:
        parse_privacy_request(body, now=NOW)
    assert caught.value.reason == reason


@pytest.mark.clause("requests.identity")
def test_an_overdue_request_raises_the_metric(file_services: Services, clock: Clock) -> None:
    services = file_services
    metrics = Metrics()
    lifecycle = lifecycle_of(services, metrics)
    request = lifecycle.privacy.submit({**ERASE, "type": "restrict"}, requested_by="officer-7")
    # the SLA per kind, from the policy (privacy_requests.sla_days): restrict 3, erase 14
    assert request.due_at == request.received_at + timedelta(days=3)
    # a failed request stays open; make one by breaking the vault for an erasure
    store_call(services, "r-fail")
    lifecycle.privacy.vault = _BrokenVault(services.vault)  # type: ignore[assignment]
    with pytest.raises(RecordingNotFound):
        lifecycle.privacy.submit({**ERASE, "request_id": "PR-fail"}, requested_by="officer-7")
    assert lifecycle.privacy.get("PR-fail").status.value == "failed"
    assert metrics.privacy_requests_open._value.get() == 1
    assert metrics.privacy_requests_overdue._value.get() == 0
    clock.now = NOW + timedelta(days=14)
    lifecycle.privacy.refresh_gauges()
    assert metrics.privacy_requests_overdue._value.get() == 1
    assert lifecycle.privacy.get("PR-fail").to_json(clock.now)["overdue"] is True
    lifecycle.privacy.vault = services.vault
    lifecycle.sweep_and_resume()  # failed requests are retried by the sweep
    assert lifecycle.privacy.get("PR-fail").status.value == "completed"
    assert metrics.privacy_requests_overdue._value.get() == 0


class _BrokenVault:
    def __init__(self, inner: object) -> None:
        self.inner = inner

    def delete_many(self, keys: object, **options: object) -> list[str]:
        raise RecordingNotFound("vault unavailable (test)")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


# -- HTTP ------------------------------------------------------------------------------------------


@pytest.mark.clause("requests.identity")
def test_http_privacy_requests_and_holds_are_compliance_only(server: WebServer) -> None:
    services = server.services
    store_call(services, "r-http")
    officer = server.token("officer-7", "compliance-officer")
    for role in ("supervisor", "qa-reviewer", "operator", "telephony"):
        token = server.token("someone", role)
        assert server.request("POST", "/v1/privacy-requests", token=token, body=ERASE).status == 403
        assert server.request("POST", "/v1/holds", token=token, body={}).status == 403
    assert server.request("GET", "/v1/privacy-requests/x").status == 401

    hold = server.request(
        "POST",
        "/v1/holds",
        token=officer,
        body={
            "scope": "customer",
            "tenant": "acme",
            "customer_ref": "C-1001",
            "reason": "litigation",
            "reference": "CASE-12",
        },
    )
    assert hold.status == 201, hold.body
    assert hold.json()["covers"] == ["r-http"] and "C-1001" not in hold.body.decode()
    bad_hold = server.request(
        "POST", "/v1/holds", token=officer, body={"scope": "planet", "tenant": "acme"}
    )
    assert bad_hold.status == 400 and bad_hold.json()["reason"] == "invalid-hold"
    personal = server.request(
        "POST",
        "/v1/holds",
        token=officer,
        body={
            "scope": "recording",
            "recording_id": "r-http",
            "reason": "complaint by jane@example.com",
            "reference": "X-1",
        },
    )
    assert personal.status == 400 and personal.json()["reason"] == "personal-data"
    phone = server.request(
        "POST",
        "/v1/holds",
        token=officer,
        body={"scope": "recording", "recording_id": "r-http",
              "reason": "customer on 415-555-0100 sued", "reference": "X-1"},
    )  # fmt: skip
    assert phone.status == 400 and phone.json()["reason"] == "personal-data"

    filed = server.request(
        "POST", "/v1/privacy-requests", token=officer, body={**ERASE, "request_id": "PR-77"}
    )
    assert filed.status == 201, filed.body
    body = filed.json()
    assert body["status"] == "held" and body["result"]["held"][0]["hold"]["reason"] == "litigation"
    assert body["identity_verification"]["verified_by"] == "officer-7"
    assert (
        server.request(
            "POST", "/v1/privacy-requests", token=officer, body={**ERASE, "request_id": "PR-77"}
        ).status
        == 200
    )
    got = server.request("GET", "/v1/privacy-requests/PR-77", token=officer)
    assert got.status == 200 and got.json()["progress"] == {"erased": 0, "held": 1}
    assert server.request("GET", "/v1/privacy-requests/PR-missing", token=officer).status == 404
    rejected = server.request(
        "POST", "/v1/privacy-requests", token=officer, body={**ERASE, "identity_verification": 7}
    )
    assert rejected.status == 400 and rejected.json()["reason"] == "identity-not-verified"

    hold_id = hold.json()["hold_id"]
    listed = server.request("GET", "/v1/holds", token=officer).json()["holds"]
    assert [h["hold_id"] for h in listed] == [hold_id]
    released = server.request(
        "DELETE", f"/v1/holds/{hold_id}", token=officer, body={"reason": "settled"}
    )
    assert released.status == 200 and released.json()["active"] is False
    assert (
        server.request("DELETE", "/v1/holds/hold_nope", token=officer, body={"reason": "x"}).status
        == 404
    )
    assert (
        server.request("GET", "/v1/receipts?recording_id=r-http", token=officer).json()["receipts"]
        == []
    )


@pytest.mark.clause("requests.removal")
def test_after_erase_no_role_or_purpose_obtains_the_audio_over_http(server: WebServer) -> None:
    services = server.services
    row = store_call(services, "r-gone")
    saved = services.vault.get(row.object_key)
    asks = [
        ("supervisor", {"purpose": "customer-response"}),
        ("supervisor", {"purpose": "quality-improvement", "justification": "QA-1 coaching"}),
        ("qa-reviewer", {"purpose": "quality-improvement", "justification": "QA-1 coaching"}),
        (
            "compliance-officer",
            {
                "purpose": "legal-disclosure",
                "legal_basis": "legal-requirement",
                "reference": "CASE-1",
            },
        ),
        ("compliance-officer", {"purpose": "customer-disclosure", "reference": "PR-1"}),
        ("operator", {"purpose": "customer-response"}),
        ("telephony", {"purpose": "customer-response"}),
    ]
    assert server.request("GET", "/v1/recordings/r-gone/audio").status == 401
    # before: the supervisor gets the audio (so the route really serves it)
    before = server.request(
        "GET",
        "/v1/recordings/r-gone/audio?purpose=customer-response",
        token=server.token("sup-1", "supervisor"),
    )
    assert before.status == 200 and before.body[:4] == b"RIFF"
    officer = server.token("officer-7", "compliance-officer")
    filed = server.request("POST", "/v1/privacy-requests", token=officer, body=ERASE)
    assert filed.json()["status"] == "completed"
    receipts = server.request("GET", "/v1/receipts?recording_id=r-gone", token=officer).json()[
        "receipts"
    ]
    assert receipts and all(r["verified"] for r in receipts)
    with pytest.raises(KeyDestroyed):
        services.keys.open_recording(saved)
    with pytest.raises(RecordingNotFound):
        services.vault.get(row.object_key)
    for role, params in asks:
        for mode in ("play", "download"):
            reply = server.request(
                "GET",
                f"/v1/recordings/r-gone/audio?{urlencode({**params, 'mode': mode})}",
                token=server.token("someone", role),
            )
            assert reply.status in (403, 404, 410), (role, params, reply.status, reply.body[:200])
            assert b"RIFF" not in reply.body
    assert services.audit.verify().ok


@pytest.mark.clause("requests.cessation")
def test_a_restricted_customer_s_later_recordings_are_restricted_at_ingest(
    file_services: Services, clock: Clock
) -> None:
    from callvault.synth import call_wav
    from streams.ingest import IngestPipeline
    from tests.e2e.harness import landed_call

    services = file_services
    lifecycle = lifecycle_of(services)
    restrict = {**ERASE, "type": "restrict", "tenant": "demo", "customer_ref": "C-LATER"}
    lifecycle.privacy.submit(restrict, requested_by="officer-7")
    pipeline = IngestPipeline(
        landing=services.landing,
        vault=services.vault,
        keys=services.keys,
        catalog=services.catalog,
        audit=services.audit,
        policy=services.policy,
        metrics=Metrics(),
        actor="worker:test",
        clock=services.clock,
    )
    audio = call_wav(1.0, codec="mulaw", seed=11)
    later = landed_call(services, "r-later", audio, customer="C-LATER", ended_at=clock())
    other = landed_call(services, "r-other", audio + b"\x00", customer="C-OTHER", ended_at=clock())
    outcomes = pipeline.process_batch([json.dumps(later).encode(), json.dumps(other).encode()])
    assert [o.status for o in outcomes] == ["stored", "stored"]
    assert services.catalog.get_recording("r-later").restricted  # type: ignore[union-attr]
    assert not services.catalog.get_recording("r-other").restricted  # type: ignore[union-attr]
    lifecycle.privacy.submit({**restrict, "type": "lift-restriction"}, requested_by="officer-7")
    assert not services.catalog.get_recording("r-later").restricted  # type: ignore[union-attr]
    again = landed_call(
        services, "r-after-lift", audio + b"\x01", customer="C-LATER", ended_at=clock()
    )
    pipeline.process_batch([json.dumps(again).encode()])
    assert not services.catalog.get_recording("r-after-lift").restricted  # type: ignore[union-attr]
