"""Find the call: ``GET /v1/recordings`` lists newest first, shows the columns a QA
reviewer searches by, applies every filter it accepts and refuses any other (400)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.streams.qa_support import NOW, QaEnv, make_env

HOUR = timedelta(hours=1)
CALLS: dict[str, dict[str, Any]] = {
    "rec-a": {"call_id": "CA-100", "agent": "agent-1", "queue": "billing", "seconds": 12.0,
              "direction": "inbound", "ended": NOW - 30 * HOUR},
    "rec-b": {"call_id": "CA-200", "agent": "agent-2", "queue": "support", "seconds": 45.0,
              "direction": "outbound", "ended": NOW - 20 * HOUR,
              "pci_pauses": [{"start_ms": 5000, "end_ms": 9500}]},
    "rec-c": {"call_id": "CA-200", "agent": "agent-1", "queue": "support", "seconds": 25.0,
              "direction": "inbound", "ended": NOW - 3 * HOUR},
    "rec-d": {"call_id": "CA-300", "agent": "agent-3", "queue": "billing", "seconds": 70.0,
              "direction": "internal", "ended": NOW - 2 * HOUR},
    "rec-e": {"call_id": "CA-400", "agent": "agent-2", "queue": "billing", "seconds": 8.0,
              "direction": "outbound", "ended": NOW - 1 * HOUR},
}  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QaEnv]:
    made = make_env(tmp_path_factory.mktemp("find"), CALLS)
    yield made
    made.close()


def _list(env: QaEnv, **params: str) -> list[str]:
    reply = env.get("/v1/recordings", token=env.token("sam", "supervisor"), params=params)
    assert reply.status == 200, reply.body
    return [r["recording_id"] for r in reply.json()["recordings"]]


def test_newest_first_with_the_review_columns(env: QaEnv) -> None:
    reply = env.get("/v1/recordings", token=env.token("sam", "supervisor"))
    recordings = reply.json()["recordings"]
    assert [r["recording_id"] for r in recordings] == ["rec-e", "rec-d", "rec-c", "rec-b", "rec-a"]
    b = next(r for r in recordings if r["recording_id"] == "rec-b")
    assert {
        k: b[k]
        for k in (
            "call_id", "agent_id", "queue", "direction", "duration_ms", "channels",
            "pci_silenced", "pci_redacted_ms",
        )
    } == {
        "call_id": "CA-200", "agent_id": "agent-2", "queue": "support", "direction": "outbound",
        "duration_ms": 45_000, "channels": 1, "pci_silenced": True, "pci_redacted_ms": 4500,
    }  # fmt: skip
    assert b["started_at"].startswith(str((NOW - 20 * HOUR - timedelta(seconds=45)).date()))
    assert next(r for r in recordings if r["recording_id"] == "rec-a")["pci_silenced"] is False
    assert _list(env, order="oldest") == ["rec-a", "rec-b", "rec-c", "rec-d", "rec-e"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"call_id": "CA-200"}, ["rec-c", "rec-b"]),
        ({"call_id": "CA-999"}, []),
        ({"recording_id": "rec-d"}, ["rec-d"]),
        ({"agent": "agent-2"}, ["rec-e", "rec-b"]),
        ({"queue": "billing"}, ["rec-e", "rec-d", "rec-a"]),
        ({"direction": "outbound"}, ["rec-e", "rec-b"]),
        ({"direction": "internal"}, ["rec-d"]),
        ({"min_duration": "25"}, ["rec-d", "rec-c", "rec-b"]),
        ({"max_duration": "12"}, ["rec-e", "rec-a"]),
        ({"min_duration": "13", "max_duration": "45"}, ["rec-c", "rec-b"]),
        ({"from": (NOW - 4 * HOUR).isoformat()}, ["rec-e", "rec-d", "rec-c"]),
        ({"to": (NOW - 4 * HOUR).isoformat()}, ["rec-b", "rec-a"]),
        (
            {"from": (NOW - 25 * HOUR).isoformat(), "to": (NOW - 2.5 * HOUR).isoformat()},
            ["rec-c", "rec-b"],
        ),
        ({"queue": "billing", "agent": "agent-2", "direction": "outbound"}, ["rec-e"]),
        ({"tenant": "demo", "call_id": "CA-100"}, ["rec-a"]),
        ({"tenant": "other"}, []),
    ],
)
def test_every_filter_is_applied(env: QaEnv, params: dict[str, str], expected: list[str]) -> None:
    assert _list(env, **params) == expected


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"callid": "CA-200"}, "unknown-parameter"),
        ({"agent_id": "agent-1"}, "unknown-parameter"),
        ({"duration": "30"}, "unknown-parameter"),
        ({"direction": "sideways"}, "bad-parameter"),
        ({"min_duration": "-1"}, "bad-parameter"),
        ({"min_duration": "40", "max_duration": "20"}, "bad-parameter"),
        ({"order": "random"}, "bad-parameter"),
        ({"from": "2026-11-25", "to": "2026-11-24"}, "bad-parameter"),
    ],
)
def test_an_unknown_or_bad_filter_is_400_never_ignored(
    env: QaEnv, params: dict[str, str], reason: str
) -> None:
    reply = env.get("/v1/recordings", token=env.token("sam", "supervisor"), params=params)
    assert reply.status == 400
    assert (reply.json()["error"], reply.json()["reason"]) == ("bad-request", reason)


def test_a_repeated_filter_is_400(env: QaEnv) -> None:
    reply = env.get(
        "/v1/recordings?agent=agent-1&agent=agent-2", token=env.token("sam", "supervisor")
    )
    assert (reply.status, reply.json()["reason"]) == (400, "unknown-parameter")


def test_keyset_pages_newest_first_with_a_filter(env: QaEnv) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "1", "queue": "billing"} | ({"after": cursor} if cursor else {})
        page = env.get("/v1/recordings", token=env.token("sam", "supervisor"), params=params)
        seen += [r["recording_id"] for r in page.json()["recordings"]]
        cursor = page.json()["next"]
        if not cursor:
            break
    assert seen == ["rec-e", "rec-d", "rec-a"]


def test_the_audit_record_names_the_filters_used(env: QaEnv) -> None:
    head = env.audit_head()
    _list(env, call_id="CA-200", direction="inbound")
    record = [e for e in env.audit_after(head) if e.action == "access.list"][-1]
    assert record.details["filters"] == ["call_id", "direction"]
    assert record.details["count"] == 1
    assert "CA-200" not in str(record.details)  # the values are not audited
