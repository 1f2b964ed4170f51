"""Playback grants: signed, bound, expiring, and rotatable with the keyring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policies import Principal
from storage.crypto.local import LocalKeyring
from streams.http.auth import AuthError, LocalTokens
from streams.http.playback import PlaybackGrant, PlaybackGrants

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    from storage.crypto.keyring import open_keyring

    opened = open_keyring(f"file://{tmp_path}/master.json")
    assert isinstance(opened, LocalKeyring)
    return opened


def _grant(**changes: object) -> PlaybackGrant:
    values: dict[str, object] = dict(
        principal=Principal("alice", "qa-vendor", "acme-qa"),
        recording_id="rec-1",
        purpose="quality-improvement",
        mode="play",
        expires_at=NOW + timedelta(minutes=10),
        grant_id=42,
    )
    values.update(changes)
    return PlaybackGrant(**values)  # type: ignore[arg-type]


def test_round_trip_and_binding(keyring: LocalKeyring) -> None:
    grants = PlaybackGrants(keyring)
    text = grants.issue(_grant())
    assert grants.verify(text, "rec-1", NOW) == _grant()
    with pytest.raises(AuthError) as info:
        grants.verify(text, "rec-2", NOW)
    assert info.value.reason == "grant-recording"
    with pytest.raises(AuthError) as info:
        grants.verify(text, "rec-1", NOW + timedelta(minutes=10))
    assert info.value.reason == "grant-expired"


def test_rotation_keeps_old_grants_valid_until_they_expire(keyring: LocalKeyring) -> None:
    grants = PlaybackGrants(keyring)
    old = grants.issue(_grant())
    keyring.rotate()
    new = grants.issue(_grant())
    assert old.split(".")[2] != new.split(".")[2]  # another signing key id
    assert grants.verify(old, "rec-1", NOW).grant_id == 42


def test_grants_and_tokens_cannot_stand_in_for_each_other(keyring: LocalKeyring) -> None:
    grants = PlaybackGrants(keyring)
    tokens = LocalTokens(keyring, frozenset({"qa-vendor"}))
    token = tokens.issue(user="alice", role="qa-vendor", org="acme-qa", ttl=timedelta(hours=1),
                         now=NOW)  # fmt: skip
    grant = grants.issue(_grant())
    with pytest.raises(AuthError):
        grants.verify("pg1." + token.split(".", 1)[1], "rec-1", NOW)
    with pytest.raises(AuthError):
        tokens.verify("cv1." + grant.split(".", 1)[1], NOW)


@pytest.mark.parametrize("bad", ["", "pg1.x.y", "pg1.e30.sk-1.abc", "x" * 3000])
def test_malformed(keyring: LocalKeyring, bad: str) -> None:
    with pytest.raises(AuthError) as info:
        PlaybackGrants(keyring).verify(bad, "rec-1", NOW)
    assert info.value.reason in {"grant-malformed", "grant-signature"}


def test_issue_refuses_bad_mode(keyring: LocalKeyring) -> None:
    with pytest.raises(ValueError, match="mode"):
        PlaybackGrants(keyring).issue(_grant(mode="stream"))
