"""Evaluation forms and sampling plans: the policy sections, scoring, periods, which
recordings a plan may sample and which it picks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from policies import (
    Policy,
    PolicyFileError,
    PolicyInputError,
    RecordingFacts,
    SampleCandidate,
    SampleExclusion,
    balanced_reviewers,
    period_bounds,
    period_of,
    pick_sample,
    previous_period,
    sampling_exclusion,
    score_evaluation,
)

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
PERFECT = {
    "greeting": 4,
    "identity-check": 4,
    "need": 4,
    "accuracy": 4,
    "next-steps": 4,
    "courtesy": 4,
    "hold": 4,
}


def test_the_shipped_form_and_plan(policy: Policy) -> None:
    form = policy.evaluation_forms["call-quality"]
    assert (form.scale.low, form.scale.high, form.pass_mark) == (0, 4, 70.0)
    assert [s.id for s in form.sections] == ["opening", "resolution", "manner"]
    assert list(form.questions()) == list(PERFECT)
    assert form.questions()["identity-check"].critical
    plan = policy.sampling_plans["weekly-per-agent"]
    assert (plan.form, plan.count, plan.per, plan.period) == ("call-quality", 2, "agent", "week")
    assert policy.clauses_for_rule("sampling-plan:weekly-per-agent") == ("purpose.3-improvement",)
    assert policy.clauses_for_rule("access:assignment") == ("purpose.3-improvement",)


def test_scoring_weights_sections_and_questions(policy: Policy) -> None:
    form = policy.evaluation_forms["call-quality"]
    assert score_evaluation(form, PERFECT).total == 100.0
    answers = dict(PERFECT, need=2, accuracy=4, hold=None)  # hold: not applicable
    score = score_evaluation(form, answers)
    # resolution: (2*2/4 + 2*4/4 + 1*4/4) / 5 = 0.8; manner: courtesy only = 1.0
    assert score.sections == {"opening": 100.0, "resolution": 80.0, "manner": 100.0}
    assert score.total == pytest.approx(round(100 * (20 * 1 + 50 * 0.8 + 30 * 1) / 100, 1))
    assert score.complete and score.passed is True
    partial = score_evaluation(form, {"greeting": 1})
    assert partial.sections["resolution"] is None
    assert partial.total == 25.0 and not partial.complete
    assert "need" in partial.missing and partial.passed is False
    assert score_evaluation(form, {}).total is None


def test_a_failed_critical_question_fails_the_evaluation(policy: Policy) -> None:
    form = policy.evaluation_forms["call-quality"]
    score = score_evaluation(form, dict(PERFECT, **{"identity-check": 0}))
    assert (score.total, score.failed_critical, score.passed) == (0.0, ("identity-check",), False)


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"nonsense": 1}, "not on form"),
        ({"greeting": 5}, "not a whole number from 0 to 4"),
        ({"greeting": -1}, "not a whole number"),
        ({"greeting": 2.5}, "not a whole number"),
        ({"greeting": True}, "not a whole number"),
    ],
)
def test_bad_answers_are_refused(policy: Policy, answers: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyInputError, match=message):
        score_evaluation(policy.evaluation_forms["call-quality"], answers)


def test_periods() -> None:
    assert period_of("week", NOW) == "2026-W48"
    assert period_of("day", NOW) == "2026-11-25"
    assert period_of("month", NOW) == "2026-11"
    assert period_bounds("week", "2026-W48") == (
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert period_bounds("month", "2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert previous_period("week", NOW) == "2026-W47"
    assert previous_period("week", datetime(2027, 1, 4, tzinfo=UTC)) == "2026-W53"
    hostile = (
        ("week", "9999-W52"), ("day", "9999-12-31"), ("month", "9999-12"),  # end after 9999
        ("week", "0000-W01"), ("day", "0000-01-01"), ("week", "２０２６-W48"),
        ("day", "2026-11-2\x00"), ("week", "2026-W\ud800\ud800"), ("month", "2026--1"),
    )  # fmt: skip
    for kind, label in (("week", "2026-11"), ("day", "2026-W48"), ("month", "2026-13"), *hostile):
        with pytest.raises(PolicyInputError, match="is not a"):
            period_bounds(kind, label)
    with pytest.raises(PolicyInputError):
        period_of("week", datetime(2026, 1, 1))  # naive


@pytest.mark.clause("purpose.3-improvement")
def test_sampling_excludes_what_may_not_be_reviewed(
    policy: Policy, facts: Callable[..., RecordingFacts], policy_variant: Callable[..., Policy]
) -> None:
    plan = policy.sampling_plans["weekly-per-agent"]

    def why(recording: RecordingFacts, **kw: Any) -> SampleExclusion | None:
        return sampling_exclusion(plan, recording, policy, NOW, queue="support", **kw)

    assert why(facts()) is None
    assert why(facts(purposes=("customer-response",))) is SampleExclusion.PURPOSE_NOT_TAGGED
    assert why(facts(state="expired")) is SampleExclusion.NOT_STORED
    assert why(facts(state="erased")) is SampleExclusion.NOT_STORED
    assert why(facts(restricted=True)) is SampleExclusion.RESTRICTED
    assert why(facts(), erasure_pending=True) is SampleExclusion.ERASURE_HELD
    assert why(facts(held=True)) is None  # a hold alone blocks deletion, not use

    def vendor_plan(data: dict[str, Any]) -> None:
        data["sampling_plans"]["vendor-weekly"] = {
            "description": "One call per agent per week for the QA vendor.",
            "clause": "entrustment",
            "form": "call-quality",
            "count": 1,
            "reviewer_role": "qa-vendor",
            "org": "acme-qa",
            "queues": ["billing"],
        }

    varied = policy_variant(vendor_plan)
    vendor = varied.sampling_plans["vendor-weekly"]
    inside = facts(started_at=datetime(2026, 11, 20, tzinfo=UTC))
    before = facts(started_at=datetime(2025, 12, 31, 23, tzinfo=UTC))
    assert sampling_exclusion(vendor, inside, varied, NOW, queue="billing") is None
    assert sampling_exclusion(vendor, inside, varied, NOW, queue="support") is (
        SampleExclusion.QUEUE_NOT_IN_PLAN
    )
    assert sampling_exclusion(vendor, before, varied, NOW, queue="billing") is (
        SampleExclusion.OUTSIDE_CONTRACT
    )
    after_contract = datetime(2028, 1, 2, tzinfo=UTC)
    assert sampling_exclusion(vendor, inside, varied, after_contract, queue="billing") is (
        SampleExclusion.OUTSIDE_CONTRACT
    )


def test_pick_sample_takes_the_lowest_ranks_per_stratum(policy: Policy) -> None:
    plan = policy.sampling_plans["weekly-per-agent"]  # 2 per agent
    candidates = [
        SampleCandidate("r1", "agent-1", "c"),
        SampleCandidate("r2", "agent-1", "a"),
        SampleCandidate("r3", "agent-1", "b"),
        SampleCandidate("r4", "agent-2", "z"),
        SampleCandidate("r5", "agent-3", "m"),
        SampleCandidate("r6", "agent-3", "n"),
    ]
    picked = pick_sample(plan, candidates, already={"agent-3": 1})
    assert [c.recording_id for c in picked] == ["r2", "r3", "r4", "r5"]
    assert pick_sample(plan, candidates, already={"agent-1": 2, "agent-2": 5, "agent-3": 2}) == []


def test_balanced_reviewers_evens_out_open_work() -> None:
    assert balanced_reviewers(["bo", "al"], {"bo": 2}, 4) == ["al", "al", "al", "bo"]
    with pytest.raises(PolicyInputError, match="at least one reviewer"):
        balanced_reviewers([], {}, 1)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["evaluation_forms"]["call-quality"].update(scale={"min": 3, "max": 3}),
            "evaluation_forms.call-quality.scale: max must be above min",
        ),
        (
            lambda d: d["evaluation_forms"]["call-quality"]["scale"].update(labels=["a"]),
            "evaluation_forms.call-quality.scale.labels: needs 5 labels",
        ),
        (
            lambda d: d["evaluation_forms"]["call-quality"]["sections"][1]["questions"].append(
                {"id": "greeting", "text": "again"}
            ),
            "question id 'greeting' is used twice",
        ),
        (
            lambda d: d["evaluation_forms"]["call-quality"]["sections"][0].update(weight=0),
            "sections[0].weight: must be greater than zero",
        ),
        (
            lambda d: d["sampling_plans"]["weekly-per-agent"].update(form="nope"),
            "sampling_plans.weekly-per-agent.form: unknown evaluation form 'nope'",
        ),
        (
            lambda d: d["sampling_plans"]["weekly-per-agent"].update(purpose="legal-disclosure"),
            "'legal-disclosure' is not a purpose recordings are tagged with",
        ),
        (
            lambda d: d["sampling_plans"]["weekly-per-agent"].update(reviewer_role="operator"),
            "role 'operator' needs purpose 'quality-improvement' and capability 'evaluate'",
        ),
        (
            lambda d: d["sampling_plans"]["weekly-per-agent"].update(reviewer_role="qa-vendor"),
            "reviewers of entrusted role 'qa-vendor' need 'org'",
        ),
        (
            lambda d: d["sampling_plans"]["weekly-per-agent"].update(period="fortnight"),
            "period: must be one of day, week, month",
        ),
        (
            lambda d: d["sampling_plans"]["weekly-per-agent"].update(clause="nowhere"),
            "sampling_plans.weekly-per-agent.clause: unknown clause 'nowhere'",
        ),
        (
            lambda d: d.update(sso={"issuer": "https://idp", "audience": "a", "colour": "red"}),
            "sso.colour: unknown key 'colour'",
        ),
        (
            lambda d: d.update(
                sso={"issuer": "https://idp", "audience": "a", "roles": {"g": "pope"}}
            ),
            "sso.roles.g: unknown role 'pope'",
        ),
        (
            lambda d: d["roles"]["qa-vendor"]["capabilities"].append("manage-evaluations"),
            "entrusted role 'qa-vendor' must not have capability 'manage-evaluations'",
        ),
    ],
)
def test_qa_section_problems_are_located(
    policy_variant: Callable[..., Policy], mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    with pytest.raises(PolicyFileError) as caught:
        policy_variant(mutate)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_an_sso_section_is_kept_as_written(policy_variant: Callable[..., Policy]) -> None:
    sso = {
        "issuer": "https://login.example.com",
        "audience": "urn:callvault:api",
        "client_id": "callvault-qa",
        "roles": {"cv-qa": "qa-reviewer"},
    }
    policy = policy_variant(lambda d: d.update(sso=sso))
    assert policy.sso == sso
