"""The local key file keyring and open_keyring."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC
from pathlib import Path

import pytest

from callvault.errors import ConfigError
from storage.crypto.keyring import Keyring, open_keyring
from storage.crypto.local import LocalKeyring
from storage.errors import KeyringError

CONTEXT = {"tenant": "acme", "purpose": "subject-key"}


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "master.json"


@pytest.fixture
def keyring(key_path: Path) -> LocalKeyring:
    return LocalKeyring(key_path)


def test_key_file_is_created_private(key_path: Path, keyring: LocalKeyring) -> None:
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    data = json.loads(key_path.read_text())
    assert data["format"] == "callvault-keyring/1"
    assert data["current_master_key"] == keyring.current_key_id
    assert not [p for p in key_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert isinstance(keyring, Keyring)


def test_reopening_uses_the_same_keys(key_path: Path, keyring: LocalKeyring) -> None:
    blob = keyring.wrap_key(b"k" * 32, CONTEXT)
    again = LocalKeyring(key_path)
    assert again.current_key_id == keyring.current_key_id
    assert again.unwrap_key(blob, CONTEXT) == b"k" * 32
    assert again.pseudonymize("acme", "cust-1") == keyring.pseudonymize("acme", "cust-1")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_a_key_file_others_can_read(
    key_path: Path, keyring: LocalKeyring, mode: int
) -> None:
    key_path.chmod(mode)
    with pytest.raises(KeyringError, match=f"chmod 600 {key_path}"):
        LocalKeyring(key_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"format": "something-else/9"}',
        b'{"format": "callvault-keyring/1"}',
    ],
)
def test_corrupt_key_file_is_a_clear_error(key_path: Path, content: bytes) -> None:
    key_path.parent.mkdir(parents=True)
    key_path.write_bytes(content)
    key_path.chmod(0o600)
    with pytest.raises(KeyringError, match="corrupt"):
        LocalKeyring(key_path)


def test_corrupt_key_material_is_a_clear_error(key_path: Path, keyring: LocalKeyring) -> None:
    data = json.loads(key_path.read_text())
    data["master_keys"][0]["key"] = "c2hvcnQ="  # 5 bytes
    key_path.write_text(json.dumps(data))
    with pytest.raises(KeyringError, match="corrupt.*not 32 bytes"):
        LocalKeyring(key_path)
    data["master_keys"][0]["key"] = "!!!"
    key_path.write_text(json.dumps(data))
    with pytest.raises(KeyringError, match="corrupt"):
        LocalKeyring(key_path)


def test_wrap_unwrap_round_trip_and_blob_names_the_master_key(keyring: LocalKeyring) -> None:
    secret = os.urandom(32)
    blob = keyring.wrap_key(secret, CONTEXT)
    assert secret not in blob
    assert keyring.current_key_id.encode() in blob
    assert keyring.unwrap_key(blob, dict(reversed(list(CONTEXT.items())))) == secret


def test_unwrap_with_a_wrong_context_fails(keyring: LocalKeyring) -> None:
    blob = keyring.wrap_key(b"k" * 32, CONTEXT)
    for context in ({"tenant": "other", "purpose": "subject-key"}, {"tenant": "acme"}, {}):
        with pytest.raises(KeyringError, match="wrong context or tampered"):
            keyring.unwrap_key(blob, context)


def test_every_tampered_byte_fails_to_unwrap(keyring: LocalKeyring) -> None:
    blob = keyring.wrap_key(b"k" * 32, CONTEXT)
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(KeyringError):
            keyring.unwrap_key(bytes(tampered), CONTEXT)
    for short in (b"", blob[:5], blob[:-1]):
        with pytest.raises(KeyringError):
            keyring.unwrap_key(short, CONTEXT)


def test_blob_from_another_keyring_is_an_unknown_key(tmp_path: Path, keyring: LocalKeyring) -> None:
    other = LocalKeyring(tmp_path / "other.json")
    with pytest.raises(KeyringError, match="unknown master key"):
        keyring.unwrap_key(other.wrap_key(b"k" * 32, CONTEXT), CONTEXT)


def test_context_must_be_strings(keyring: LocalKeyring) -> None:
    with pytest.raises(KeyringError, match="strings"):
        keyring.wrap_key(b"k", {"tenant": 5})  # type: ignore[dict-item]


def test_rotation_keeps_old_blobs_readable_and_wraps_with_the_new_key(
    key_path: Path, keyring: LocalKeyring
) -> None:
    old_id = keyring.current_key_id
    old_created = keyring.master_key_created_at()
    old_blob = keyring.wrap_key(b"a" * 32, CONTEXT)
    pseudonym = keyring.pseudonymize("acme", "cust-1")

    new_id = keyring.rotate()

    assert new_id == keyring.current_key_id != old_id
    assert keyring.master_key_created_at() >= old_created
    assert keyring.master_key_created_at().tzinfo is not None
    new_blob = keyring.wrap_key(b"b" * 32, CONTEXT)
    assert new_id.encode() in new_blob and old_id.encode() not in new_blob
    assert keyring.unwrap_key(old_blob, CONTEXT) == b"a" * 32
    assert keyring.pseudonymize("acme", "cust-1") == pseudonym
    reopened = LocalKeyring(key_path)
    assert reopened.current_key_id == new_id
    assert reopened.unwrap_key(old_blob, CONTEXT) == b"a" * 32
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_rotation_by_another_process_is_seen(key_path: Path, keyring: LocalKeyring) -> None:
    other = LocalKeyring(key_path)  # e.g. `callvault keys rotate` in another process
    new_id = other.rotate()
    blob = other.wrap_key(b"c" * 32, CONTEXT)
    assert keyring.unwrap_key(blob, CONTEXT) == b"c" * 32
    assert keyring.current_key_id == new_id
    assert keyring.verify(b"payload", other.sign(b"payload"))
    # Both rotating keeps every key (the file is re-read under a lock).
    first_blob = keyring.wrap_key(b"d" * 32, CONTEXT)
    keyring.rotate()
    other.rotate()
    assert LocalKeyring(key_path).unwrap_key(first_blob, CONTEXT) == b"d" * 32
    assert len(json.loads(key_path.read_text())["master_keys"]) == 4


def test_pseudonymize_is_stable_hex_and_tenant_separated(
    tmp_path: Path, keyring: LocalKeyring
) -> None:
    value = keyring.pseudonymize("acme", "+15551234567")
    assert len(value) == 64 and int(value, 16) >= 0
    assert value == keyring.pseudonymize("acme", "+15551234567")
    assert value != keyring.pseudonymize("globex", "+15551234567")
    assert value != keyring.pseudonymize("acme", "+15551234568")
    assert keyring.pseudonymize("ab", "c") != keyring.pseudonymize("a", "bc")
    assert value != LocalKeyring(tmp_path / "other.json").pseudonymize("acme", "+15551234567")
    assert "15551234567" not in value
    for tenant, raw in (("", "x"), ("acme", "")):
        with pytest.raises(KeyringError, match="non-empty"):
            keyring.pseudonymize(tenant, raw)


def test_sign_and_verify(tmp_path: Path, keyring: LocalKeyring) -> None:
    signature = keyring.sign(b"receipt:rec-1")
    key_id, _, mac = signature.partition(".")
    assert key_id.startswith("sk-") and "=" not in mac
    assert keyring.verify(b"receipt:rec-1", signature)
    assert not keyring.verify(b"receipt:rec-2", signature)
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert not keyring.verify(b"receipt:rec-1", flipped)
    for garbage in ("", ".", "nodot", "a.b.c", f"{key_id}.!!!", "sk-0000000000000000.AAAA"):
        assert not keyring.verify(b"receipt:rec-1", garbage)
    assert not keyring.verify(b"x", LocalKeyring(tmp_path / "other.json").sign(b"x"))


def test_old_signatures_verify_after_rotation_until_retired(keyring: LocalKeyring) -> None:
    old = keyring.sign(b"token")
    keyring.rotate()
    new = keyring.sign(b"token")
    assert old.split(".")[0] != new.split(".")[0]
    assert keyring.verify(b"token", old) and keyring.verify(b"token", new)
    keyring.retire_signing_key(old.split(".")[0])
    assert not keyring.verify(b"token", old)
    assert keyring.verify(b"token", new)
    with pytest.raises(KeyringError, match="current signing key"):
        keyring.retire_signing_key(new.split(".")[0])
    with pytest.raises(KeyringError, match="unknown"):
        keyring.retire_signing_key("sk-nope")


def test_master_key_created_at_is_utc(keyring: LocalKeyring) -> None:
    assert keyring.master_key_created_at().utcoffset() == UTC.utcoffset(None)


def test_open_keyring_file_url(key_path: Path) -> None:
    keyring = open_keyring(f"file://{key_path}")
    assert isinstance(keyring, LocalKeyring) and keyring.path == key_path
    assert key_path.exists()


@pytest.mark.parametrize(
    "url,match",
    [
        ("kms://alias/callvault", "secrets file needs an absolute path"),  # see test_kms.py
        ("file://relative/master.json", "absolute"),
        ("file://host/etc/master.json", "absolute"),
        ("vault://x", "expected file:///path or kms://key-id"),
        ("", "expected"),
    ],
)
def test_open_keyring_rejects_other_urls(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        open_keyring(url)
