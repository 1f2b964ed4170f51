"""The bucket's lifecycle rules (deploy/init/bucket.sh) can never end a recording before
the catalog would.

SeaweedFS stores lifecycle rules but never expires anything, so this is a proof by
exhaustion over the rules the deploy script writes, the tags callvault sets
(``storage.mirror.recording_tags``, the one function ingest and the vault mirror use)
and the schedules the policy gives (``policies.retain_until``): every retention class
at ingest, ingest delays, contract terminations before and after the call, a
reschedule to the other class at several points, a legal hold placed and released
(or never released) at several points, and a vault mirror that lags a day behind the
catalog. For each, the first moment a rule would act on the catalog's version of the
object (its current-version expiration, or its noncurrent expiration had an outside
write made it noncurrent at once) must come after the moment the catalog would
delete it, and never while a hold keeps it.

A control shows the check can fail: the rules of the previous bucket.sh (selecting by
retention class alone, noncurrent versions after 7 days) would have ended held
recordings and outside-overwritten ones early.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policies import Policy, load_policy, retain_until
from storage.mirror import recording_tags

BUCKET_SH = Path(__file__).resolve().parents[2] / "deploy" / "init" / "bucket.sh"
ENDED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STARTED = ENDED - timedelta(minutes=5)
PURPOSES = ("customer-response", "quality-improvement")
DAY = timedelta(days=1)
NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Rule:
    tags: dict[str, str]
    expire_days: int
    noncurrent_days: int

    def matches(self, tags: dict[str, str]) -> bool:
        return all(tags.get(name) == value for name, value in self.tags.items())


def bucket_rules(script: str) -> list[Rule]:
    found = re.findall(
        r'mc ilm rule add --tags "([^"]+)" --expire-days (\d+)\s+--noncurrent-expire-days (\d+)',
        script.replace("\\\n", " "),
    )
    return [
        Rule(dict(pair.split("=", 1) for pair in tags.split("&")), int(days), int(noncurrent))
        for tags, days, noncurrent in found
    ]


@dataclass(frozen=True)
class Scenario:
    """What happens to one recording, in days after the call ended."""

    first_class: str
    ingest_delay: timedelta
    terminated: timedelta | None  # contract termination, relative to the call's end
    reschedule: tuple[timedelta, str] | None  # (when, to which class)
    hold: tuple[timedelta, timedelta | None] | None  # (placed, released or never)
    mirror_lag: timedelta

    @property
    def written(self) -> datetime:
        return ENDED + self.ingest_delay

    def breakpoints(self) -> list[datetime]:
        """Every moment the catalog's view of the recording changes (plus the write)."""
        moments = [self.written]
        if self.terminated is not None:
            moments.append(max(self.written, ENDED + self.terminated))
        if self.reschedule is not None:
            moments.append(max(self.written, ENDED + self.reschedule[0]))
        if self.hold is not None:
            placed, released = self.hold
            moments.append(max(self.written, ENDED + placed))
            if released is not None:
                moments.append(max(self.written, ENDED + placed + released))
        return sorted(set(moments))

    def catalog_at(self, policy: Policy, moment: datetime) -> tuple[str, datetime, bool]:
        """(retention class, retain-until, held) as the catalog has them at ``moment``."""
        cls = self.first_class
        if self.reschedule is not None and moment >= ENDED + self.reschedule[0]:
            cls = self.reschedule[1]
        terminated = None
        if self.terminated is not None and moment >= ENDED + self.terminated:
            terminated = ENDED + self.terminated
        until = retain_until(
            STARTED,
            ENDED,
            policy.retention_classes[cls],
            policy,
            contract_terminated_at=terminated,
        )
        held = False
        if self.hold is not None:
            placed, released = self.hold
            held = moment >= ENDED + placed and (
                released is None or moment < ENDED + placed + released
            )
        return cls, until, held


def catalog_deletion(scenario: Scenario, policy: Policy) -> datetime:
    """The first moment the sweep deletes the recording (NEVER while held for good)."""
    points = scenario.breakpoints()
    for index, start in enumerate(points):
        end = points[index + 1] if index + 1 < len(points) else NEVER
        _, until, held = scenario.catalog_at(policy, start)
        if held:
            continue
        moment = max(start, until)
        if moment < end:
            return moment
    return NEVER


def lifecycle_deletion(scenario: Scenario, policy: Policy, rules: list[Rule]) -> datetime:
    """The first moment a rule ends the catalog's version of the object: S3 expires
    an object once it is old enough AND its tags (as the lagging mirror last wrote
    them) match, at the first evaluation when both hold."""

    def tags_at(moment: datetime) -> dict[str, str]:
        seen = max(scenario.written, moment - scenario.mirror_lag)
        cls, until, held = scenario.catalog_at(policy, seen)
        return recording_tags(purposes=PURPOSES, retention_class=cls, retain_until=until, held=held)

    changes = [point + scenario.mirror_lag for point in scenario.breakpoints()]
    first = NEVER
    for rule in rules:
        # current-version expiration, and noncurrent expiration of a version an outside
        # write made noncurrent right after it was written (the earliest that can be)
        for age in (rule.expire_days, rule.noncurrent_days):
            old_enough = scenario.written + timedelta(days=age)
            for moment in sorted({old_enough, *(c for c in changes if c > old_enough)}):
                if rule.matches(tags_at(moment)):
                    first = min(first, moment)
                    break
    return first


def scenarios(policy: Policy) -> Iterator[Scenario]:
    classes = sorted(policy.retention_classes)
    delays = (timedelta(0), timedelta(hours=2), 10 * DAY)
    terminations = (None, -10 * DAY, 5 * DAY, 400 * DAY)
    holds: list[tuple[timedelta, timedelta | None] | None] = [None]
    for placed in (0 * DAY, 30 * DAY, 89 * DAY, 119 * DAY, 200 * DAY, 1850 * DAY):
        for released in (None, 1 * DAY, 40 * DAY, 1000 * DAY):
            holds.append((placed, released))
    for first_class, delay, terminated, hold, lag in itertools.product(
        classes, delays, terminations, holds, (timedelta(0), DAY)
    ):
        reschedules: list[tuple[timedelta, str] | None] = [None]
        for when in (1 * DAY, 60 * DAY, 89 * DAY, 100 * DAY, 1000 * DAY):
            reschedules.extend((when, other) for other in classes if other != first_class)
        for reschedule in reschedules:
            yield Scenario(first_class, delay, terminated, reschedule, hold, lag)


def violations(rules: list[Rule], policy: Policy) -> list[tuple[Scenario, datetime, datetime]]:
    found = []
    for scenario in scenarios(policy):
        catalog = catalog_deletion(scenario, policy)
        lifecycle = lifecycle_deletion(scenario, policy, rules)
        if lifecycle < catalog or (catalog == NEVER and lifecycle != NEVER):
            found.append((scenario, catalog, lifecycle))
    return found


def check(rules: list[Rule], policy: Policy) -> Callable[[], None]:
    def run() -> None:
        bad = violations(rules, policy)
        assert not bad, f"{len(bad)} scenario(s), e.g. {bad[0]}"

    return run


def test_bucket_sh_rules_select_unheld_objects_of_each_class() -> None:
    policy = load_policy(None)
    rules = bucket_rules(BUCKET_SH.read_text())
    assert {rule.tags["retention-class"] for rule in rules} == set(policy.retention_classes)
    assert all(rule.tags.get("legal-hold") == "off" for rule in rules)


def test_no_rule_ends_a_recording_before_the_catalog_would() -> None:
    policy = load_policy(None)
    rules = bucket_rules(BUCKET_SH.read_text())
    assert sum(1 for _ in scenarios(policy)) > 5000
    check(rules, policy)()
    # and the rules do act as a safety net: a recording the sweep missed goes eventually
    plain = Scenario("standard-90d", timedelta(0), None, None, None, timedelta(0))
    assert lifecycle_deletion(plain, policy, rules) == ENDED + timedelta(days=120)


def test_the_previous_rules_would_have_ended_recordings_early() -> None:
    policy = load_policy(None)
    previous = [
        Rule({"retention-class": "standard-90d"}, 120, 7),
        Rule({"retention-class": "end-of-contract"}, 1900, 7),
    ]
    bad = violations(previous, policy)
    reasons = {
        "held": any(s.hold is not None and s.hold[1] is None for s, _, _ in bad),
        "noncurrent": any(s.hold is None for s, _, _ in bad),
    }
    assert reasons == {"held": True, "noncurrent": True}
