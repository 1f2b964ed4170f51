"""Bounds on what a sender controls (streams.bounds) and the event validation built on
them: each input found to crash or stall the worker is rejected with a reason code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.catalog.sql import from_db_time, to_db_time
from storage.crypto.keyring import pseudonym
from storage.errors import KeyringError
from streams.bounds import TimeWindow, load_json, parse_instant, text_problem
from streams.errors import EventRejected, InputRejected, PrivacyRequestRejected
from streams.events import RejectReason, parse_recording_event
from streams.privacy.input import parse_privacy_request
from tests.streams.test_events import NOW, good


def _reason(payload: bytes | dict[str, Any], **kw: Any) -> str:
    with pytest.raises(EventRejected) as caught:
        parse_recording_event(payload, now=NOW, **kw)
    return caught.value.reason


def test_sixty_kilobytes_of_brackets_is_malformed_not_a_recursion_error() -> None:
    # Found on main: RecursionError escaped _load and the agent retried the batch forever.
    assert _reason(b"[" * 60_000) == RejectReason.MALFORMED
    assert _reason(b'{"a":' * 20_000 + b"1" + b"}" * 20_000) == RejectReason.MALFORMED


def test_nesting_deeper_than_the_bound_is_malformed_even_when_the_parser_copes() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    assert _reason(json.dumps(good(purposes=deep)).encode()) == RejectReason.MALFORMED


def test_year_one_with_a_positive_offset_is_an_invalid_field_not_an_overflow() -> None:
    # Found on main: OverflowError in astimezone(UTC) stalled ingest.
    payload = json.dumps(good(started_at="0001-01-01T00:00:00+01:00")).encode()
    assert _reason(payload) == RejectReason.INVALID_FIELD


@pytest.mark.parametrize(
    ("started", "ended"),
    [
        ("0999-03-01T10:00:00Z", "0999-03-01T10:01:00Z"),  # year 999 broke listing on main
        ("1999-12-31T23:59:00Z", "1999-12-31T23:59:30Z"),
        ("2026-11-27T10:00:00Z", "2026-11-27T10:01:00Z"),  # more than a day ahead
    ],
)
def test_call_times_outside_the_window_are_refused(started: str, ended: str) -> None:
    payload = json.dumps(good(started_at=started, ended_at=ended)).encode()
    assert _reason(payload) == RejectReason.INVALID_FIELD


def test_the_window_is_configurable() -> None:
    payload = json.dumps(good(started_at="1999-12-31T23:59:00Z", ended_at="1999-12-31T23:59:30Z"))
    wide = TimeWindow(earliest=datetime(1990, 1, 1, tzinfo=UTC))
    assert parse_recording_event(payload.encode(), now=NOW, window=wide).recording_id
    tight = TimeWindow(ahead=timedelta(0))
    soon = (NOW + timedelta(seconds=30)).isoformat()
    ahead = json.dumps(good(started_at=NOW.isoformat(), ended_at=soon)).encode()
    assert _reason(ahead, window=tight) == RejectReason.INVALID_FIELD


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_ref", "\ud800"),  # found on main: UnicodeEncodeError in the pseudonym
        ("customer_ref", "abc\x00def"),
        ("customer_ref", "line\nbreak"),
        ("customer_ref", "c1\x85control"),
        ("queue", "\udfff"),
    ],
)
def test_strings_with_surrogates_nul_or_controls_are_refused(field: str, value: str) -> None:
    raw = json.dumps(good(**{field: value})).encode()  # ensure_ascii: \ud800 as an escape
    with pytest.raises(EventRejected) as caught:
        parse_recording_event(raw, now=NOW)
    assert caught.value.reason == RejectReason.INVALID_FIELD
    assert field in caught.value.detail and value not in caught.value.detail
    # the same event as a decoded object (the HTTP path) is refused the same way
    assert _reason(good(**{field: value})) == RejectReason.INVALID_FIELD


def test_a_surrogate_in_a_key_is_refused() -> None:
    assert _reason(b'{"\\ud800": 1}') == RejectReason.INVALID_FIELD


def test_unknown_field_names_in_a_detail_are_bounded() -> None:
    extra = {f"field-{i}-{'x' * 100}": i for i in range(50)}
    with pytest.raises(EventRejected) as caught:
        parse_recording_event(json.dumps(good(**extra)).encode(), now=NOW)
    assert caught.value.reason == RejectReason.SCHEMA
    assert len(caught.value.detail) < 400 and "45 more" in caught.value.detail


def test_nan_and_infinity_are_not_json() -> None:
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(InputRejected) as caught:
            load_json(b'{"a": ' + constant + b"}", max_bytes=100)
        assert caught.value.reason == "malformed"


def test_text_problem_names_each_kind() -> None:
    assert text_problem("plain text, ünïcödé, 漢字 😀") is None
    assert "surrogate" in (text_problem("\ud83d") or "")
    assert "NUL" in (text_problem("\x00") or "")
    assert "control" in (text_problem("\x1b[31m") or "")
    assert text_problem("two\nlines\ttab", multiline=True) is None
    assert text_problem("two\nlines") is not None


def test_parse_instant_refuses_overflowing_years() -> None:
    with pytest.raises(ValueError, match="representable"):
        parse_instant("0001-01-01T00:00:00+01:00")
    with pytest.raises(ValueError, match="representable"):
        parse_instant("9999-12-31T23:00:00-02:00")
    assert parse_instant("2026-11-25T10:00:00+09:00") == datetime(2026, 11, 25, 1, tzinfo=UTC)


def test_pseudonym_of_unencodable_text_is_a_keyring_error() -> None:
    with pytest.raises(KeyringError, match="surrogate"):
        pseudonym(b"k" * 32, "acme", "\ud800")


@pytest.mark.parametrize(
    "when",
    [
        datetime(999, 3, 1, 10, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_catalog_timestamps_always_have_four_digit_years(when: datetime) -> None:
    text = to_db_time(when)
    assert len(text) == 27 and text[4] == "-"
    assert from_db_time(text) == when


def test_catalog_reads_the_unpadded_years_older_versions_wrote() -> None:
    assert from_db_time("999-03-01T10:00:00.000000Z") == datetime(999, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 60_000, "malformed"),
        (b'{"type": "erase", "tenant": "acme", "customer_ref": "\\ud800"}', "malformed"),
        (
            json.dumps(
                {
                    "type": "contract-terminated",
                    "tenant": "acme",
                    "customer_ref": "C-1",
                    "received_at": "0001-01-01T00:00:00+01:00",
                }
            ).encode(),
            "bad-field",
        ),
    ],
)
def test_privacy_requests_on_the_topic_are_bounded(body: bytes, reason: str) -> None:
    with pytest.raises(PrivacyRequestRejected) as caught:
        parse_privacy_request(body, now=NOW)
    assert caught.value.reason == reason
