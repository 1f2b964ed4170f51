"""Audio over HTTP: Range correctness, chunk-wise decryption, audit before bytes,
tamper detection, playback grants, the rate guard, and the S3 vault."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from storage.catalog.audit import AuditDraft
from storage.types import ObjectInfo
from storage.vault import Vault
from streams.http.rateguard import RateGuard
from tests.streams.qa_support import QaEnv, make_env, metric

# 20 s of 8 kHz mu-law = 160 058 bytes of WAV: three 64 KiB chunks.
CALLS = {
    "rec-a": {},
    "rec-b": {},
    "rec-c": {},
    "rec-pcm": {"codec": "pcm16", "seconds": 5.0},
}
QA = {"purpose": "quality-improvement", "justification": "EVAL-77"}
CHUNK = 64 * 1024


@pytest.fixture
def env(tmp_path: Path) -> Iterator[QaEnv]:
    # Small windows so a full GET spans several writes (the tamper test relies on it).
    made = make_env(tmp_path, CALLS, first_window=CHUNK, window=CHUNK)
    yield made
    made.close()


def _reviewer(env: QaEnv, user: str = "alice") -> str:
    return env.token(user, "qa-reviewer")


# -- Range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=100-70000", 100, 70000),  # two chunks
        ("bytes=65530-65545", 65530, 65545),  # across a chunk boundary
        ("bytes=10-160000", 10, 160000),  # all three chunks
        ("bytes=150000-", 150000, None),  # open-ended
        ("bytes=-1000", -1000, None),  # suffix
        ("bytes=-999999", 0, None),  # suffix longer than the audio: all of it
        ("bytes=159000-999999", 159000, None),  # end clipped
    ],
)
def test_range_bytes_equal_the_slice_of_the_decrypted_wav(
    env: QaEnv, header: str, start: int, end: int | None
) -> None:
    plain = env.plaintext("rec-a")
    size = len(plain)
    expected = plain[start:] if end is None else plain[start : end + 1]
    first = start if start >= 0 else size + start
    reply = env.audio("rec-a", _reviewer(env), **QA, range=header)
    assert reply.status == 206
    assert reply.body == expected
    assert reply.headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{size}"
    assert reply.headers["Accept-Ranges"] == "bytes"
    assert int(reply.headers["Content-Length"]) == len(expected)


@pytest.mark.parametrize("header", ["bytes=160058-", "bytes=999999-1000000", "bytes=-0"])
def test_unsatisfiable_range_is_416(env: QaEnv, header: str) -> None:
    reply = env.audio("rec-a", _reviewer(env), **QA, range=header)
    assert reply.status == 416
    assert reply.headers["Content-Range"] == f"bytes */{len(env.plaintext('rec-a'))}"
    assert reply.json()["error"] == "range-not-satisfiable"


@pytest.mark.parametrize("header", ["bytes=0-10,20-30", "items=0-10", "bytes=50-10"])
def test_unusable_range_headers_get_the_whole_audio(env: QaEnv, header: str) -> None:
    reply = env.audio("rec-a", _reviewer(env), **QA, range=header)
    assert reply.status == 200
    assert reply.body == env.plaintext("rec-a")


def test_if_range_with_another_etag_gets_the_whole_audio(env: QaEnv) -> None:
    token = _reviewer(env)
    etag = env.audio("rec-a", token, **QA, range="bytes=0-1").headers["ETag"]
    same = env.get("/v1/recordings/rec-a/audio", token=token, params=QA,
                   headers={"Range": "bytes=0-1", "If-Range": etag})  # fmt: skip
    assert same.status == 206
    other = env.get("/v1/recordings/rec-a/audio", token=token, params=QA,
                    headers={"Range": "bytes=0-1", "If-Range": '"other"'})  # fmt: skip
    assert other.status == 200
    assert other.body == env.plaintext("rec-a")


class CountingVault:
    """Delegates to the real vault and remembers every ranged read."""

    def __init__(self, inner: Vault) -> None:
        self.inner = inner
        self.ranges: list[tuple[int, int]] = []
        self.on_read: Any = None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if self.on_read is not None:
            self.on_read(key)
        self.ranges.append((start, end))
        return self.inner.get_range(key, start, end)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_small_range_reads_and_decrypts_only_its_chunk(env: QaEnv) -> None:
    counting = CountingVault(env.services.vault)
    env.services.vault = counting  # type: ignore[assignment]
    reply = env.audio("rec-a", _reviewer(env), **QA, range="bytes=100000-100099")
    assert reply.status == 206
    assert reply.body == env.plaintext("rec-a")[100000:100100]
    header_read, *chunk_reads = counting.ranges
    assert header_read[0] == 0 and header_read[1] < 4096
    assert len(chunk_reads) == 1
    start, end = chunk_reads[0]
    assert end - start + 1 == CHUNK + 16  # exactly chunk 1 and its tag
    assert start > CHUNK  # chunk 0 was not read


def test_audio_of_a_pcm16_recording(env: QaEnv) -> None:
    reply = env.audio("rec-pcm", _reviewer(env), **QA, range="bytes=44-")
    assert reply.status == 206
    assert reply.body == env.plaintext("rec-pcm")[44:]


# -- audit before bytes ------------------------------------------------------------------


class SlowAudit:
    """The real audit log, slowed down, remembering when each append had committed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.committed: list[tuple[str, float]] = []

    def append(self, draft: AuditDraft, **kwargs: Any) -> Any:
        time.sleep(0.3)  # a slow disk: the response must wait for the commit
        entry = self.inner.append(draft, **kwargs)
        self.committed.append((entry.action, time.monotonic()))
        return entry

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_no_audio_byte_leaves_before_the_grant_is_committed(env: QaEnv) -> None:
    slow = SlowAudit(env.services.audit)
    env.services.audit = slow  # type: ignore[assignment]
    conn = http.client.HTTPConnection("127.0.0.1", env.server.port, timeout=30)
    try:
        conn.request(
            "GET",
            "/v1/recordings/rec-a/audio?" + urlencode(QA),
            headers={"Authorization": f"Bearer {_reviewer(env)}"},
        )
        response = conn.getresponse()
        first_byte_at = time.monotonic()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200
    assert body == env.plaintext("rec-a")
    assert [action for action, _ in slow.committed] == ["access.play"]
    assert slow.committed[0][1] < first_byte_at


def test_a_grant_url_is_handed_out_only_after_its_audit_record(env: QaEnv) -> None:
    counting = CountingVault(env.services.vault)
    env.services.vault = counting  # type: ignore[assignment]
    before = env.audit_head()
    grant = _grant(env, "rec-a", _reviewer(env))
    assert counting.ranges == []  # deciding and auditing never touched the audio
    assert [e.seq for e in env.audit_after(before)] == [grant["grant_id"]]


def _break_access_audit(env: QaEnv) -> None:
    """A real write failure of the audit log (a trigger aborting access.* inserts)."""
    with env.services.catalog.database.transaction() as tx:
        tx.execute(
            "CREATE TRIGGER fail_access_audit BEFORE INSERT ON audit_log "
            "WHEN NEW.action LIKE 'access.%' BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )


def test_audit_failure_means_no_audio(env: QaEnv) -> None:
    _break_access_audit(env)
    reply = env.audio("rec-a", _reviewer(env), **QA)
    assert reply.status == 503
    assert reply.json()["error"] == "audit-unavailable"
    assert b"RIFF" not in reply.body
    grant = env.request("POST", "/v1/recordings/rec-a/grants", token=_reviewer(env), body=QA)
    assert grant.status == 503
    assert "url" not in grant.json()
    assert metric(env, "callvault_access_audio_bytes_served_total", {"mode": "play"}) == 0


# -- tampering ---------------------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.clause("management.safety")
def test_tampered_first_chunk_is_502_audited_counted_and_serves_nothing(env: QaEnv) -> None:
    path = env.object_path("rec-a")
    header_len = len(path.read_bytes()) - len(env.plaintext("rec-a")) - 3 * 16
    _flip(path, header_len + 10)  # inside chunk 0
    reply = env.audio("rec-a", _reviewer(env), **QA)
    assert reply.status == 502
    assert reply.json()["error"] == "integrity-failure"
    assert b"RIFF" not in reply.body
    assert metric(env, "callvault_access_integrity_failures_total") == 1
    last = env.audit_after(0)[-1]
    assert (last.action, last.outcome, last.reason) == (
        "access.integrity-failure", "failed", "integrity-failure"
    )  # fmt: skip
    assert metric(env, "callvault_access_audio_bytes_served_total", {"mode": "play"}) == 0


def test_tampered_later_chunk_cuts_the_response_before_its_bytes(env: QaEnv) -> None:
    plain = env.plaintext("rec-a")
    path = env.object_path("rec-a")
    _flip(path, len(path.read_bytes()) - 100)  # inside the last chunk
    reply = env.audio("rec-a", _reviewer(env), **QA)
    assert reply.status == 200  # the first window was fine and already sent
    assert int(reply.headers["Content-Length"]) == len(plain)
    assert len(reply.body) == 2 * CHUNK  # chunks 0 and 1, nothing of chunk 2
    assert reply.body == plain[: 2 * CHUNK]
    assert metric(env, "callvault_access_integrity_failures_total") == 1
    assert env.audit_after(0)[-1].action == "access.integrity-failure"


def test_truncated_or_missing_object_is_an_integrity_failure(env: QaEnv) -> None:
    path = env.object_path("rec-a")
    path.write_bytes(path.read_bytes()[:-5000])
    assert env.audio("rec-a", _reviewer(env), **QA).json()["error"] == "integrity-failure"
    env.object_path("rec-b").unlink()
    missing = env.audio("rec-b", _reviewer(env), **QA)
    assert missing.status == 502
    assert missing.json()["reason"] == "object-missing"
    assert metric(env, "callvault_access_integrity_failures_total") == 2


# -- playback grants ---------------------------------------------------------------------


def _grant(env: QaEnv, rid: str, token: str, **body: str) -> dict[str, Any]:
    reply = env.request("POST", f"/v1/recordings/{rid}/grants", token=token, body=body or QA)
    assert reply.status == 201, reply.body
    result: dict[str, Any] = reply.json()
    return result


def test_one_grant_one_audit_record_many_range_requests(env: QaEnv) -> None:
    before = env.audit_head()
    grant = _grant(env, "rec-a", _reviewer(env))
    plain = env.plaintext("rec-a")
    for header in ("bytes=0-", "bytes=70000-80000", "bytes=-500", "bytes=0-1"):
        reply = env.get(grant["url"], headers={"Range": header})  # no bearer token
        assert reply.status == 206
        assert reply.body in plain
    records = env.audit_after(before)
    assert [(e.action, e.outcome) for e in records] == [("access.play", "granted")]
    assert records[0].seq == grant["grant_id"]
    assert records[0].details["via"] == "grant"


def test_grant_is_bound_to_its_recording_and_expires(env: QaEnv) -> None:
    grant = _grant(env, "rec-a", _reviewer(env))
    value = grant["url"].split("grant=")[1]
    other = env.get("/v1/recordings/rec-b/audio", params={"grant": value})
    assert other.status == 401
    assert other.json()["reason"] == "grant-recording"
    forged = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    assert env.get("/v1/recordings/rec-a/audio", params={"grant": forged}).json()["reason"] == (
        "grant-signature"
    )
    bearer = env.get("/v1/recordings/rec-a/audio", params={"grant": _reviewer(env)})
    assert bearer.json()["reason"] == "grant-malformed"
    env.clock.now += timedelta(minutes=11, seconds=21)  # 10 min + the call's 20 s
    expired = env.get(grant["url"])
    assert expired.status == 401
    assert expired.json()["reason"] == "grant-expired"
    reasons = [e.reason for e in env.audit_after(0) if e.action == "auth.denied"]
    assert reasons == ["grant-recording", "grant-signature", "grant-malformed", "grant-expired"]


def test_grant_is_rechecked_when_the_recording_changes(env: QaEnv) -> None:
    grant = _grant(env, "rec-a", _reviewer(env))
    assert env.get(grant["url"], headers={"Range": "bytes=0-9"}).status == 206
    env.services.catalog.set_restricted(
        ["rec-a"], True, audit=AuditDraft("user:privacy", "privacy.restricted", "ok")
    )
    reply = env.get(grant["url"], headers={"Range": "bytes=10-19"})
    assert reply.status == 403
    assert reply.json()["reason"] == "recording-restricted"
    last = env.audit_after(0)[-1]
    assert (last.action, last.reason, last.details["grant_id"]) == (
        "access.play", "recording-restricted", grant["grant_id"]
    )  # fmt: skip


def test_download_grant_is_an_attachment_and_a_distinct_action(env: QaEnv) -> None:
    grant = _grant(env, "rec-a", _reviewer(env), **QA, mode="download")
    assert grant["mode"] == "download"
    reply = env.get(grant["url"])
    assert reply.status == 200
    assert reply.headers["Content-Disposition"] == 'attachment; filename="rec-a.wav"'
    assert reply.body == env.plaintext("rec-a")
    assert env.audit_after(0)[-1].action == "access.download"
    play = env.audio("rec-a", _reviewer(env), **QA)
    assert play.headers["Content-Disposition"] == "inline"
    assert env.audit_after(0)[-1].action == "access.play"
    assert env.audio("rec-a", _reviewer(env), **QA, mode="stream").status == 400
    assert metric(env, "callvault_access_audio_bytes_served_total", {"mode": "download"}) == len(
        reply.body
    )


def test_grant_request_must_be_json(env: QaEnv) -> None:
    reply = env.request(
        "POST", "/v1/recordings/rec-a/grants", token=_reviewer(env),
        headers={"Content-Type": "text/plain"},
    )  # fmt: skip
    assert reply.status == 400
    denied = env.request(
        "POST", "/v1/recordings/rec-a/grants", token=_reviewer(env),
        body={"purpose": "quality-improvement"},
    )  # fmt: skip
    assert denied.status == 403
    assert denied.json()["reason"] == "justification-required"


# -- rate guard --------------------------------------------------------------------------


@pytest.mark.clause("management.safety", "purpose.necessary-range")
def test_rate_guard_trips_on_the_third_distinct_recording(tmp_path: Path) -> None:
    env = make_env(tmp_path, CALLS, rate_guard=RateGuard(lambda role: 2))
    try:
        token = _reviewer(env)
        assert env.audio("rec-a", token, **QA).status == 200
        assert env.audio("rec-b", token, **QA, range="bytes=0-9").status == 206
        assert env.audio("rec-a", token, **QA, range="bytes=10-19").status == 206  # same one
        tripped = env.audio("rec-c", token, **QA)
        assert tripped.status == 429
        assert tripped.json()["reason"] == "rate-limited"
        assert int(tripped.headers["Retry-After"]) > 0
        assert b"RIFF" not in tripped.body
        last = env.audit_after(0)[-1]
        assert (last.action, last.outcome, last.reason) == ("access.play", "denied", "rate-limited")
        trips = "callvault_access_rate_guard_trips_total"
        assert metric(env, trips, {"role": "qa-reviewer"}) == 1
        assert f'{trips}{{role="qa-reviewer"}} 1.0' in env.get("/metrics").body.decode()
        # Another reviewer has their own window; after an hour the first one may go on.
        assert env.audio("rec-c", _reviewer(env, "bob"), **QA).status == 200
        env.clock.now += timedelta(hours=1, seconds=1)
        assert env.audio("rec-c", env.token("alice", "qa-reviewer"), **QA).status == 200
    finally:
        env.close()


# -- S3 ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_audio_from_the_s3_vault(
    tmp_path: Path, seaweed_endpoint: str, seaweed_bucket: str, seaweed_env: None
) -> None:
    env = make_env(
        tmp_path, {"rec-s3": {}}, vault=f"s3://{seaweed_bucket}",
        extra_env={"CALLVAULT_S3_ENDPOINT": seaweed_endpoint}, first_window=CHUNK, window=CHUNK,
    )  # fmt: skip
    try:
        plain = env.plaintext("rec-s3")
        token = _reviewer(env)
        whole = env.audio("rec-s3", token, **QA)
        assert whole.status == 200
        assert whole.body == plain
        part = env.audio("rec-s3", token, **QA, range="bytes=65000-140000")
        assert part.status == 206
        assert part.body == plain[65000:140001]
        assert env.audio("rec-s3", token, **QA, range="bytes=-10").body == plain[-10:]
    finally:
        env.close()
