"""Evaluations bind access to the purpose: sampling plans, assignments as the audited
justification of a reviewer's access, scores and timeline notes sealed under the
customer's key (an erasure removes them with the recording), supervisors' summaries,
metrics. Real services (file vault, SQLite catalog, key file) and the real web app."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies import default_policy_path
from tests.streams.qa_support import NOW, QaEnv, make_env, metric

HOUR = timedelta(hours=1)


def _call(agent: str, queue: str, customer: str, hours_ago: int, **extra: Any) -> dict[str, Any]:
    return {"agent": agent, "queue": queue, "customer": customer,
            "ended": NOW - hours_ago * HOUR, **extra}  # fmt: skip


CALLS: dict[str, dict[str, Any]] = {
    # agent-1: three calls, one restricted below; agent-2: two; agent-3: one untagged.
    "rec-1a": _call("agent-1", "billing", "cust-1", 5),
    "rec-1b": _call("agent-1", "billing", "cust-2", 4),
    "rec-1c": _call("agent-1", "support", "cust-3", 3),
    "rec-2a": _call("agent-2", "support", "cust-4", 2),
    "rec-2b": _call("agent-2", "support", "cust-5", 1),
    "rec-3a": _call("agent-3", "support", "cust-6", 1, purposes=["customer-response"]),
}  # fmt: skip
PERIOD = "2026-W48"
ANSWERS = {
    "greeting": 4,
    "identity-check": 3,
    "need": 3,
    "accuracy": 4,
    "next-steps": 2,
    "courtesy": 4,
    "hold": None,
}
VERIFIED = {"verified_by": "officer-7", "method": "id-document"}


def _policy_file(tmp_path: Path, vendor_needs_assignment: bool = False) -> Path:
    data = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    if vendor_needs_assignment:
        data["roles"]["qa-vendor"]["requires_assignment"] = True
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path: Path) -> Iterator[QaEnv]:
    policy = _policy_file(tmp_path, vendor_needs_assignment=True)
    made = make_env(tmp_path, CALLS, extra_env={"CALLVAULT_POLICY": str(policy)})
    yield made
    made.close()


def _sup(env: QaEnv) -> str:
    return env.token("sam", "supervisor")


def _run(env: QaEnv, reviewers: list[str], **body: Any) -> dict[str, Any]:
    reply = env.request(
        "POST",
        "/v1/sampling-plans/weekly-per-agent/runs",
        token=_sup(env),
        body={"period": PERIOD, "reviewers": reviewers, **body},
    )
    assert reply.status == 201, reply.body
    result: dict[str, Any] = reply.json()
    return result


def _restrict(env: QaEnv, customer: str) -> None:
    reply = env.request(
        "POST",
        "/v1/privacy-requests",
        token=env.token("olivia", "compliance-officer"),
        body={"type": "restrict", "tenant": "demo", "customer_ref": customer,
              "identity_verification": VERIFIED},
    )  # fmt: skip
    assert reply.status in (200, 201), reply.body


def _erase(env: QaEnv, customer: str) -> dict[str, Any]:
    reply = env.request(
        "POST",
        "/v1/privacy-requests",
        token=env.token("olivia", "compliance-officer"),
        body={"type": "erase", "tenant": "demo", "customer_ref": customer,
              "identity_verification": VERIFIED},
    )  # fmt: skip
    assert reply.status in (200, 201), reply.body
    result: dict[str, Any] = reply.json()
    return result


def _grant(env: QaEnv, token: str, rid: str, **body: str) -> Any:
    return env.request(
        "POST",
        f"/v1/recordings/{rid}/grants",
        token=token,
        body={"purpose": "quality-improvement", **body},
    )


# -- sampling ----------------------------------------------------------------------------------


def test_a_plan_samples_n_per_agent_only_from_what_may_be_reviewed(env: QaEnv) -> None:
    _restrict(env, "cust-1")  # rec-1a: the customer asked to stop using it
    run = _run(env, ["rita", "agent-2"])
    assert run["period"] == PERIOD
    picked = {a["recording_id"] for a in run["assigned"]}
    # agent-1: 2 of its 2 usable calls; agent-2: both; agent-3's call is not tagged for QA.
    assert picked == {"rec-1b", "rec-1c", "rec-2a", "rec-2b"}
    assert run["excluded"] == {"recording-restricted": 1}
    # Nobody evaluates their own calls; the rest is balanced by open work.
    by_recording = {a["recording_id"]: a["reviewer"] for a in run["assigned"]}
    assert by_recording["rec-2a"] == by_recording["rec-2b"] == "rita"
    assert sorted(by_recording.values()) == ["agent-2", "agent-2", "rita", "rita"]
    for item in run["assigned"]:
        assert item["form_id"] == "call-quality" and item["status"] == "open"
        assert item["due_at"] == (NOW + timedelta(days=7)).isoformat()
    # Re-running assigns nothing twice (the choice is the same keyed ranking).
    again = _run(env, ["rita", "agent-2"])
    assert again["assigned"] == [] and again["already_assigned"] == 4
    audits = [e for e in env.audit_after(0) if e.action == "qa.assigned"]
    assert sorted(e.recording_id for e in audits) == sorted(picked)
    assert metric(env, "callvault_qa_assignments_created_total", {"plan": "weekly-per-agent"}) == 4


def test_an_erasure_held_back_by_a_legal_hold_is_not_sampled(env: QaEnv) -> None:
    officer = env.token("olivia", "compliance-officer")
    hold = env.request(
        "POST",
        "/v1/holds",
        token=officer,
        body={"scope": "customer", "tenant": "demo", "customer_ref": "cust-4",
              "reason": "litigation", "reference": "CASE-12"},
    )  # fmt: skip
    assert hold.status == 201, hold.body
    assert _erase(env, "cust-4")["status"] == "held"
    run = _run(env, ["rita"])
    assert "rec-2a" not in {a["recording_id"] for a in run["assigned"]}
    assert sum(run["excluded"].values()) == 1


def test_sampling_needs_reviewers_and_a_known_plan(env: QaEnv) -> None:
    reply = env.request(
        "POST", "/v1/sampling-plans/weekly-per-agent/runs", token=_sup(env), body={}
    )
    assert (reply.status, reply.json()["reason"]) == (400, "bad-field")
    assert "names no reviewers" in reply.json()["detail"]
    unknown = env.request("POST", "/v1/sampling-plans/nope/runs", token=_sup(env), body={})
    assert unknown.status == 400
    reviewer = env.request(
        "POST",
        "/v1/sampling-plans/weekly-per-agent/runs",
        token=env.token("rita", "qa-reviewer"),
        body={"reviewers": ["rita"]},
    )
    assert (reviewer.status, reviewer.json()["reason"]) == (403, "capability-not-granted")


# -- assignment-bound access -------------------------------------------------------------------


def _assign(env: QaEnv, rid: str, reviewer: str) -> dict[str, Any]:
    reply = env.request(
        "POST", "/v1/assignments", token=_sup(env), body={"recording_id": rid, "reviewer": reviewer}
    )
    assert reply.status == 201, reply.body
    result: dict[str, Any] = reply.json()
    return result


def test_the_assignment_id_is_the_audited_justification(env: QaEnv) -> None:
    assignment = _assign(env, "rec-1b", "rita")
    aid = assignment["assignment_id"]
    token = env.token("rita", "qa-reviewer")
    head = env.audit_head()
    reply = _grant(env, token, "rec-1b", assignment=aid)
    assert reply.status == 201, reply.body
    audio = env.get(reply.json()["url"])
    assert audio.status == 200 and audio.body == env.plaintext("rec-1b")
    granted = [e for e in env.audit_after(head) if e.action == "access.play"]
    assert [
        (e.outcome, e.details["justification"], e.details["assignment_id"]) for e in granted
    ] == [("granted", aid, aid)]
    # The id given as the justification works the same way.
    assert _grant(env, token, "rec-1b", justification=aid).status == 201
    # A different justification under an assignment is refused before any decision.
    assert _grant(env, token, "rec-1b", assignment=aid, justification="EVAL-1").status == 400


@pytest.mark.parametrize(
    ("who", "rid", "reason"),
    [
        ("vera-other", "rec-1b", "assignment-not-yours"),
        ("rita", "rec-1c", "assignment-other-recording"),
    ],
)
def test_someone_elses_or_another_recordings_assignment_is_refused(
    env: QaEnv, who: str, rid: str, reason: str
) -> None:
    aid = _assign(env, "rec-1b", "rita")["assignment_id"]
    head = env.audit_head()
    reply = _grant(env, env.token(who, "qa-reviewer"), rid, assignment=aid)
    assert (reply.status, reply.json()["reason"]) == (403, reason)
    denied = [e for e in env.audit_after(head) if e.outcome == "denied"]
    assert [(e.action, e.reason, e.details["assignment_id"]) for e in denied] == [
        ("access.play", reason, aid)
    ]


def test_an_unknown_or_closed_assignment_grants_nothing(env: QaEnv) -> None:
    token = env.token("rita", "qa-reviewer")
    unknown = _grant(env, token, "rec-1b", assignment="asg-000000000000")
    assert (unknown.status, unknown.json()["reason"]) == (403, "assignment-unknown")
    aid = _assign(env, "rec-1b", "rita")["assignment_id"]
    grant = _grant(env, token, "rec-1b", assignment=aid)
    assert grant.status == 201
    cancel = env.request("POST", f"/v1/assignments/{aid}/cancel", token=_sup(env), body={})
    assert cancel.status == 200 and cancel.json()["status"] == "cancelled"
    closed = _grant(env, token, "rec-1b", assignment=aid)
    assert (closed.status, closed.json()["reason"]) == (403, "assignment-closed")
    # The playback session under it ends too: the grant is re-checked on every request.
    after = env.get(grant.json()["url"], headers={"Range": "bytes=0-99"})
    assert (after.status, after.json()["reason"]) == (403, "assignment-closed")


def test_a_role_requiring_assignments_hears_only_what_it_is_assigned(env: QaEnv) -> None:
    vendor = env.token("vera", "qa-vendor", org="acme-qa")
    without = _grant(env, vendor, "rec-2a", justification="EVAL-9")
    assert (without.status, without.json()["reason"]) == (403, "assignment-required")
    assert env.get("/v1/recordings", token=vendor).json()["recordings"] == []
    aid = _assign(env, "rec-2a", "vera")["assignment_id"]
    assert _grant(env, vendor, "rec-2a", assignment=aid).status == 201
    listed = env.get("/v1/assignments", token=vendor).json()["assignments"]
    assert [(a["assignment_id"], a["recording"]["recording_id"]) for a in listed] == [
        (aid, "rec-2a")
    ]
    assert listed[0]["recording"]["usable_purposes"] == ["quality-improvement"]
    meta = env.get("/v1/recordings/rec-2a", token=vendor, params={"assignment": aid})
    assert meta.status == 200
    assert env.get("/v1/recordings/rec-2a", token=vendor).json()["reason"] == "assignment-required"
    # Outside the vendor's contract the assignment does not help.
    env.clock.now = NOW.replace(year=2028, month=1, day=2)
    late = _grant(env, env.token("vera", "qa-vendor", org="acme-qa"), "rec-2a", assignment=aid)
    assert (late.status, late.json()["reason"]) == (403, "contract-not-live")


def test_a_restriction_beats_the_assignment(env: QaEnv) -> None:
    aid = _assign(env, "rec-2b", "rita")["assignment_id"]
    _restrict(env, "cust-5")
    token = env.token("rita", "qa-reviewer")
    reply = _grant(env, token, "rec-2b", assignment=aid)
    assert (reply.status, reply.json()["reason"]) == (403, "recording-restricted")
    opened = env.get(f"/v1/assignments/{aid}", token=token)
    assert (opened.status, opened.json()["reason"]) == (403, "recording-restricted")


def test_an_assignment_is_refused_for_what_may_not_be_reviewed(env: QaEnv) -> None:
    reply = env.request(
        "POST",
        "/v1/assignments",
        token=_sup(env),
        body={"recording_id": "rec-3a", "reviewer": "rita"},
    )
    assert (reply.status, reply.json()["reason"]) == (409, "purpose-not-tagged")


# -- scores and notes --------------------------------------------------------------------------


def test_scores_and_notes_are_stored_sealed_per_assignment(env: QaEnv) -> None:
    aid = _assign(env, "rec-1c", "rita")["assignment_id"]
    token = env.token("rita", "qa-reviewer")
    opened = env.get(f"/v1/assignments/{aid}", token=token).json()
    assert opened["revision"] == 0 and opened["answers"] == {}
    assert opened["form"]["form_id"] == "call-quality"
    assert opened["recording"]["recording_id"] == "rec-1c"
    note = env.request(
        "POST",
        f"/v1/assignments/{aid}/notes",
        token=token,
        body={"at_ms": 12_500, "text": "Customer repeats the question twice", "channel": 0},
    )
    assert note.status == 201, note.body
    saved = env.request(
        "PUT",
        f"/v1/assignments/{aid}/evaluation",
        token=token,
        body={"answers": {"greeting": 4}, "comment": "Warm opening", "revision": 0},
    )
    assert saved.status == 200 and saved.json()["revision"] == 1
    stale = env.request(
        "PUT",
        f"/v1/assignments/{aid}/evaluation",
        token=token,
        body={"answers": {"greeting": 1}, "revision": 0},
    )
    assert (stale.status, stale.json()["reason"]) == (409, "stale")
    early = env.request(
        "PUT",
        f"/v1/assignments/{aid}/evaluation",
        token=token,
        body={"answers": {"greeting": 4}, "revision": 1, "complete": True},
    )
    assert (early.status, early.json()["reason"]) == (400, "bad-field")
    assert "answer every question" in early.json()["detail"]
    done = env.request(
        "PUT",
        f"/v1/assignments/{aid}/evaluation",
        token=token,
        body={"answers": ANSWERS, "comment": "Warm opening", "revision": 1, "complete": True},
    )
    assert done.status == 200, done.body
    result = done.json()
    assert result["assignment"]["status"] == "completed"
    # opening 87.5 (4,3 of 4), resolution (2*3+2*4+2)/5/4 = 80, manner 100 (hold n/a)
    assert result["score"]["sections"] == {"opening": 87.5, "resolution": 80.0, "manner": 100.0}
    assert result["score"]["total"] == 87.5 and result["score"]["passed"] is True
    assert [n["text"] for n in result["notes"]] == ["Customer repeats the question twice"]
    again = env.get(f"/v1/assignments/{aid}", token=token).json()
    assert again["answers"] == ANSWERS and again["comment"] == "Warm opening"
    # Nothing readable in the catalog file or the audit log.
    catalog_bytes = (env.services.settings.data_dir / "catalog.sqlite3").read_bytes()  # type: ignore[union-attr]
    for secret in (b"Customer repeats", b"Warm opening", b'"greeting"'):
        assert secret not in catalog_bytes
    actions = [e.action for e in env.audit_after(0) if e.details.get("assignment_id") == aid]
    assert actions == [
        "qa.assigned", "qa.viewed", "qa.note-added", "qa.scored", "qa.completed", "qa.viewed",
    ]  # fmt: skip
    for entry in env.audit_after(0):
        assert "Warm opening" not in str(entry.details)
    # Completed: no more writes, no more listening under it.
    late = env.request(
        "POST", f"/v1/assignments/{aid}/notes", token=token, body={"at_ms": 1, "text": "x"}
    )
    assert (late.status, late.json()["reason"]) == (403, "assignment-closed")
    assert _grant(env, token, "rec-1c", assignment=aid).json()["reason"] == "assignment-closed"
    reopened = env.request("POST", f"/v1/assignments/{aid}/reopen", token=_sup(env), body={})
    assert reopened.json()["status"] == "open"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"at_ms": -1, "text": "x"}, "position within the call"),
        ({"at_ms": 10**9, "text": "x"}, "position within the call"),
        ({"at_ms": 10, "text": "   "}, "1 to 2000 characters"),
        ({"at_ms": 10, "text": "x" * 2001}, "1 to 2000 characters"),
        ({"at_ms": 10, "text": "x", "channel": 3}, "channel must be 0..0"),
        ({"text": "x"}, "at_ms"),
    ],
)
def test_bad_notes_are_refused(env: QaEnv, body: dict[str, Any], detail: str) -> None:
    aid = _assign(env, "rec-1c", "rita")["assignment_id"]
    reply = env.request(
        "POST", f"/v1/assignments/{aid}/notes", token=env.token("rita", "qa-reviewer"), body=body
    )
    assert reply.status == 400 and detail in reply.json()["detail"]


def test_only_the_reviewer_writes_and_supervisors_read(env: QaEnv) -> None:
    aid = _assign(env, "rec-1c", "rita")["assignment_id"]
    other = env.token("otto", "qa-reviewer")
    for method, path, body in (
        ("GET", f"/v1/assignments/{aid}", None),
        ("PUT", f"/v1/assignments/{aid}/evaluation", {"answers": {}, "revision": 0}),
        ("POST", f"/v1/assignments/{aid}/notes", {"at_ms": 1, "text": "x"}),
    ):
        reply = env.request(method, path, token=other, body=body)
        assert (reply.status, reply.json()["reason"]) == (403, "assignment-not-yours"), path
    assert env.get("/v1/assignments", token=other).json()["assignments"] == []
    sneaky = env.get("/v1/assignments", token=other, params={"reviewer": "rita"})
    assert sneaky.status == 403
    assert env.get(f"/v1/assignments/{aid}", token=_sup(env)).status == 200
    write = env.request(
        "PUT",
        f"/v1/assignments/{aid}/evaluation",
        token=_sup(env),
        body={"answers": {}, "revision": 0},
    )
    assert write.status == 403
    operator = env.get("/v1/assignments", token=env.token("op", "operator"))
    assert (operator.status, operator.json()["reason"]) == (403, "capability-not-granted")


def test_an_erasure_removes_scores_and_notes_with_the_recording(env: QaEnv) -> None:
    aid = _assign(env, "rec-2a", "rita")["assignment_id"]
    token = env.token("rita", "qa-reviewer")
    env.request(
        "POST", f"/v1/assignments/{aid}/notes", token=token, body={"at_ms": 500, "text": "n1"}
    )
    env.request(
        "PUT",
        f"/v1/assignments/{aid}/evaluation",
        token=token,
        body={"answers": ANSWERS, "revision": 0, "complete": True},
    )
    assert len(env.get("/v1/evaluations/summary", token=_sup(env)).json()["groups"]) == 1
    sealed = env.services.evaluations.evaluation(aid)
    assert sealed is not None
    assert _erase(env, "cust-4")["status"] == "completed"
    # The key is gone: what was sealed under it no longer opens, and no summary counts it.
    from storage.errors import KeyDestroyed

    with pytest.raises(KeyDestroyed):
        env.services.keys.open_named(sealed.sealed, f"qa-eval/{aid}")
    assert env.get("/v1/evaluations/summary", token=_sup(env)).json()["groups"] == []
    supervisor_view = env.get(f"/v1/assignments/{aid}", token=_sup(env)).json()
    assert supervisor_view["shredded"] is True and supervisor_view["answers"] == {}
    # The worker's purge then deletes the ciphertext too and closes the assignment.
    assert env.services.evaluations.purge_ended(actor="worker:test") == 1
    assert env.services.evaluations.evaluation(aid) is None
    assert env.services.evaluations.notes(aid) == []
    purged = [e for e in env.audit_after(0) if e.action == "qa.purged"]
    assert [(e.recording_id, e.reason) for e in purged] == [("rec-2a", "recording-not-stored")]
    assert env.services.evaluations.purge_ended(actor="worker:test") == 0


def test_supervisors_see_scores_per_agent_and_queue(env: QaEnv) -> None:
    token = env.token("rita", "qa-reviewer")
    scores = {"rec-1b": 4, "rec-1c": 2, "rec-2a": 3}
    for rid, value in scores.items():
        aid = _assign(env, rid, "rita")["assignment_id"]
        answers = {q: value for q in ANSWERS}
        reply = env.request(
            "PUT",
            f"/v1/assignments/{aid}/evaluation",
            token=token,
            body={"answers": answers, "revision": 0, "complete": True},
        )
        assert reply.status == 200, reply.body
    _assign(env, "rec-2b", "rita")  # open: not in the summary
    by_agent = env.get("/v1/evaluations/summary", token=_sup(env), params={"by": "agent"}).json()
    assert [
        (g["agent"], g["evaluations"], g["mean"], g["min"], g["max"]) for g in by_agent["groups"]
    ] == [
        ("agent-1", 2, 75.0, 50.0, 100.0),
        ("agent-2", 1, 75.0, 75.0, 75.0),
    ]
    assert by_agent["groups"][0]["pass_rate"] == 0.5
    by_queue = env.get("/v1/evaluations/summary", token=_sup(env), params={"by": "queue"}).json()
    assert [(g["queue"], g["evaluations"], g["mean"]) for g in by_queue["groups"]] == [
        ("billing", 1, 100.0),
        ("support", 2, 62.5),
    ]
    denied = env.get("/v1/evaluations/summary", token=token)
    assert (denied.status, denied.json()["reason"]) == (403, "capability-not-granted")
    assert env.get("/v1/evaluations/summary", token=_sup(env), params={"by": "x"}).status == 400
    # Metrics: open, completed and overdue assignments.
    env.clock.now = NOW + timedelta(days=8)
    from streams.evaluations import EvaluationService

    EvaluationService(env.services, env.metrics).refresh_metrics()
    assert metric(env, "callvault_qa_assignments_open") == 1
    assert metric(env, "callvault_qa_assignments_overdue") == 1
    assert metric(env, "callvault_qa_assignments_completed") == 3
    assert metric(env, "callvault_qa_evaluations_completed_total", {"form": "call-quality"}) == 3
