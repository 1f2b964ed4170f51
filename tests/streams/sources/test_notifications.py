"""Notification shapes (no server): AWS S3, SNS, EventBridge, SeaweedFS filer protobuf;
source bindings and call fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callvault.errors import ConfigError
from streams.errors import SourceRefused
from streams.sources import CallDefaults, build_event, call_fields, load_sources, parse_sources
from streams.sources.notifications import parse_filer_event, parse_s3_notification
from tests.streams.sources.conftest import aws_notification


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _entry(name: str, *, directory: bool = False, size: int = 0) -> bytes:
    attributes = _field(1, size) + _field(2, 1764590400)
    extended = _field(1, b"X-Amz-Meta-Call-Id") + _field(2, b"c-1")
    return (
        _field(1, name.encode())
        + (_field(2, 1) if directory else b"")
        + _field(4, attributes)
        + _field(5, extended)
    )


def test_aws_records_sns_and_eventbridge() -> None:
    (notice,) = parse_s3_notification(aws_notification("pbx", "calls/a b+c.wav", size=7))
    assert (notice.bucket, notice.key, notice.size, notice.created) == (
        "pbx", "calls/a b+c.wav", 7, True,
    )  # fmt: skip
    sns = {"Type": "Notification", "Message": aws_notification("pbx", "k.wav").decode()}
    assert parse_s3_notification(json.dumps(sns).encode())[0].key == "k.wav"
    bridge = {
        "version": "0", "source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": "pbx"}, "object": {"key": "calls/x y.wav", "size": 3}},
    }  # fmt: skip
    (from_bridge,) = parse_s3_notification(json.dumps(bridge).encode())
    assert from_bridge.key == "calls/x y.wav" and from_bridge.created
    minio = json.loads(aws_notification("pbx", "m.wav"))
    minio["Records"][0]["eventName"] = "s3:ObjectCreated:CompleteMultipartUpload"
    minio.update(EventName="s3:ObjectCreated:CompleteMultipartUpload", Key="pbx/m.wav")
    assert parse_s3_notification(json.dumps(minio).encode())[0].created
    removed = aws_notification("pbx", "m.wav", event="ObjectRemoved:Delete")
    assert not parse_s3_notification(removed)[0].created
    assert parse_s3_notification(b'{"Service": "Amazon S3", "Event": "s3:TestEvent"}') == []


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b'{"Records": "x"}', b'{"Records": [{"s3": {}}]}', b"[" * 70000, b"\xff"],
)
def test_malformed_notifications_are_refused(payload: bytes) -> None:
    with pytest.raises(SourceRefused) as refused:
        parse_s3_notification(payload)
    assert refused.value.reason == "malformed"


def test_seaweedfs_filer_events() -> None:
    put = _field(2, _entry("1764590400.17.wav", size=9)) + _field(6, 7)
    notice = parse_filer_event(b"/buckets/pbx/calls/1764590400.17.wav", put)
    assert notice is not None
    assert (notice.bucket, notice.key, notice.size, notice.created) == (
        "pbx", "calls/1764590400.17.wav", 9, True,
    )  # fmt: skip
    versioned = parse_filer_event(
        b"/buckets/pbx/calls/a.wav.versions/v_0a1b", _field(2, _entry("v_0a1b"))
    )
    assert versioned is not None and (versioned.key, versioned.version_id) == (
        "calls/a.wav",
        "0a1b",
    )
    update = _field(1, _entry("a.wav")) + _field(2, _entry("a.wav"))
    retagged = parse_filer_event(b"/buckets/pbx/calls/a.wav", update)
    assert retagged is not None and retagged.created  # tags set after the upload count
    renamed = (
        _field(1, _entry("a.tmp")) + _field(2, _entry("a.wav")) + _field(4, b"/buckets/pbx/in")
    )
    moved = parse_filer_event(b"/buckets/pbx/tmp/a.tmp", renamed)
    assert moved is not None and moved.key == "in/a.wav"
    for key, value in {
        b"/buckets/pbx/calls": _field(2, _entry("calls", directory=True)),
        b"/buckets/pbx/calls/a.wav": _field(1, _entry("a.wav")),  # a delete
        b"/buckets/.system/owners/x": _field(2, _entry("x")),
        b"/buckets/pbx/.uploads/abc/0001.part": _field(2, _entry("0001.part")),
        b"/topics/.system/log": _field(2, _entry("log")),
    }.items():
        assert parse_filer_event(key, value) is None, key
    with pytest.raises(SourceRefused):
        parse_filer_event(b"/buckets/pbx/a.wav", b"\x12\xff\x01")  # truncated


def test_bindings_from_toml(tmp_path: Path) -> None:
    token = tmp_path / "twilio-token"
    token.write_text("s3cr3t\n")
    path = tmp_path / "sources.toml"
    path.write_text(
        '[[s3]]\nprefix = "s3://pbx/calls"\ntenant = "acme"\n'
        '[[s3]]\nprefix = "s3://pbx/calls/vip/"\ntenant = "vip"\n'
        f'[[twilio]]\naccount_sid = "AC{"0" * 32}"\n'
        f'auth_token_file = "{token.name}"\ntenant = "acme"\n'
    )
    bindings = load_sources(path)
    assert bindings.s3_for("pbx", "calls/vip/a.wav").defaults.tenant == "vip"  # type: ignore[union-attr]
    assert bindings.s3_for("pbx", "calls/a.wav").defaults.tenant == "acme"  # type: ignore[union-attr]
    assert bindings.s3_for("pbx", "other/a.wav") is None
    twilio = bindings.twilio_for("AC" + "0" * 32)
    assert twilio is not None and twilio.auth_token.reveal() == "s3cr3t"
    assert "s3cr3t" not in repr(twilio)
    for bad in (
        {"s3": [{"prefix": "http://x/", "tenant": "acme"}]},
        {"s3": [{"prefix": "s3://x/", "tenant": "Not A Tenant"}]},
        {"twilio": [{"account_sid": "AC1", "auth_token": "t", "tenant": "acme"}]},
        {"twilio": [{"account_sid": "AC" + "0" * 32, "tenant": "acme"}]},
        {"kafka": []},
    ):
        with pytest.raises(ConfigError):
            parse_sources(bad)


def test_call_fields_and_build_event() -> None:
    fields = call_fields(
        {"X-Amz-Meta-Call-Id": "c-1", "customer-ref": "C-1"},
        {"agent_id": "a-1", "started_at": "1764590400", "duration-ms": "8000"},
        {"consent": {"recording": "granted"}, "audio": {"format": "ulaw"}, "unknown": 1},
    )
    event = build_event(
        fields,
        CallDefaults(tenant="acme", queue="pbx"),
        {"uri": "file:///landing/x.ulaw", "sha256": "0" * 64},
        recording_id="r-1",
    )
    assert event["call_id"] == "c-1" and event["consent"] == {"recording": "granted"}
    assert event["ended_at"] == "2025-12-01T12:00:08Z" and event["queue"] == "pbx"
    assert event["audio"] == {"uri": "file:///landing/x.ulaw", "sha256": "0" * 64, "format": "ulaw"}
