"""KmsKeyring against moto's KMS over HTTP: the Keyring contract, sealing through
KeyService with a real SQLite catalog, crypto-shredding, rotation to a new KMS key.

moto, not SeaweedFS: SeaweedFS has no KMS; moto's KMS implements what the keyring
calls (GenerateDataKey, Encrypt/Decrypt with encryption contexts, key states)."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from callvault.errors import ConfigError
from storage.catalog import open_catalog
from storage.crypto.keyring import Keyring, open_keyring
from storage.crypto.keys import KeyService
from storage.crypto.kms import SECRETS_FORMAT, KmsKeyring
from storage.errors import KeyDestroyed, KeyringError

CONTEXT = {"purpose": "subject-key", "tenant": "acme", "subject_ref": "ab" * 32, "key_id": "sk_1"}


@pytest.fixture
def kms_client(moto_endpoint: str, moto_reset: None, moto_credentials: dict[str, str]) -> Any:
    import boto3

    return boto3.session.Session().client("kms", endpoint_url=moto_endpoint, **moto_credentials)


@pytest.fixture
def kms_key(kms_client: Any) -> str:
    return str(kms_client.create_key(Description="callvault test")["KeyMetadata"]["Arn"])


@pytest.fixture
def make_keyring(kms_client: Any, kms_key: str, tmp_path: Path) -> Callable[..., KmsKeyring]:
    def make(key_id: str | None = None, secrets: Path | None = None) -> KmsKeyring:
        return KmsKeyring(
            key_id or kms_key,
            secrets_path=secrets or tmp_path / "keys" / "kms-secrets.json",
            client=kms_client,
        )

    return make


def test_is_a_keyring_and_reports_the_key(
    make_keyring: Callable[..., KmsKeyring], kms_key: str, kms_client: Any
) -> None:
    keyring = make_keyring()
    assert isinstance(keyring, Keyring)
    assert keyring.current_key_id == kms_key
    created = kms_client.describe_key(KeyId=kms_key)["KeyMetadata"]["CreationDate"]
    assert keyring.master_key_created_at() == created
    assert keyring.master_key_created_at().tzinfo is not None


def test_alias_resolves_to_the_key_arn(
    make_keyring: Callable[..., KmsKeyring], kms_client: Any, kms_key: str
) -> None:
    kms_client.create_alias(AliasName="alias/callvault", TargetKeyId=kms_key)
    assert make_keyring("alias/callvault").current_key_id == kms_key


def test_wrap_unwrap_round_trip_with_context(
    make_keyring: Callable[..., KmsKeyring], kms_key: str
) -> None:
    keyring = make_keyring()
    secret = bytes(range(32))
    blob = keyring.wrap_key(secret, CONTEXT)
    assert secret not in blob
    assert kms_key.encode() in blob  # the blob names its key
    assert keyring.unwrap_key(blob, CONTEXT) == secret
    # a second keyring (another process) sharing the secrets file opens it too
    assert make_keyring().unwrap_key(blob, dict(CONTEXT)) == secret


@pytest.mark.parametrize(
    "context",
    [
        {**CONTEXT, "tenant": "other"},
        {k: v for k, v in CONTEXT.items() if k != "subject_ref"},
        {**CONTEXT, "extra": "x"},
        {},
    ],
    ids=["other-tenant", "missing-entry", "extra-entry", "empty"],
)
def test_wrong_context_is_refused(
    make_keyring: Callable[..., KmsKeyring], context: dict[str, str]
) -> None:
    keyring = make_keyring()
    blob = keyring.wrap_key(b"k" * 32, CONTEXT)
    with pytest.raises(KeyringError, match="wrong context"):
        keyring.unwrap_key(blob, context)


def test_tampered_blobs_are_refused(
    make_keyring: Callable[..., KmsKeyring], kms_client: Any
) -> None:
    keyring = make_keyring()
    blob = keyring.wrap_key(b"k" * 32, CONTEXT)
    flipped_tail = blob[:-1] + bytes([blob[-1] ^ 1])
    flipped_mid = blob[: len(blob) - 40] + bytes([blob[-40] ^ 0x80]) + blob[len(blob) - 39 :]
    for bad in (flipped_tail, flipped_mid):
        with pytest.raises(KeyringError):
            keyring.unwrap_key(bad, CONTEXT)
    # the key id in the header edited to name another key: KMS refuses
    other = kms_client.create_key()["KeyMetadata"]["Arn"]
    arn = keyring.current_key_id.encode()
    swapped = blob.replace(arn, other.encode()[: len(arn)].ljust(len(arn), b"0"))
    with pytest.raises(KeyringError):
        keyring.unwrap_key(swapped, CONTEXT)
    for junk in (b"", b"CVKW\x01\x00", b"CVKK\x02\x00abc", b"CVKK\x01\x05abc", b"CVKK\x01\x03abc"):
        with pytest.raises(KeyringError):
            keyring.unwrap_key(junk, CONTEXT)
    with pytest.raises(KeyringError, match="strings"):
        keyring.wrap_key(b"k" * 32, {"tenant": 1})  # type: ignore[dict-item]


def test_pseudonyms_are_stable_per_tenant_across_processes_and_rotation(
    make_keyring: Callable[..., KmsKeyring], kms_client: Any
) -> None:
    keyring = make_keyring()
    first = keyring.pseudonymize("acme", "customer-42")
    assert len(first) == 64 and first == keyring.pseudonymize("acme", "customer-42")
    assert first != keyring.pseudonymize("other", "customer-42")
    assert first != keyring.pseudonymize("acme", "customer-43")
    assert make_keyring().pseudonymize("acme", "customer-42") == first
    keyring.rotate()
    assert keyring.pseudonymize("acme", "customer-42") == first
    # even after moving to a new KMS key
    new_key = kms_client.create_key()["KeyMetadata"]["Arn"]
    moved = make_keyring(new_key)
    moved.rotate()
    assert moved.pseudonymize("acme", "customer-42") == first
    with pytest.raises(KeyringError):
        keyring.pseudonymize("", "x")


def test_sign_verify_and_rotation_of_signing_keys(make_keyring: Callable[..., KmsKeyring]) -> None:
    keyring, other_process = make_keyring(), make_keyring()
    signature = keyring.sign(b"payload")
    assert keyring.verify(b"payload", signature)
    assert other_process.verify(b"payload", signature)
    assert not keyring.verify(b"payload!", signature)
    assert not keyring.verify(b"payload", signature[:-2] + "AA")
    for garbage in ("", "nodot", "a.b.c", "sk-0000000000000000.AAAA", 5):
        assert not keyring.verify(b"payload", garbage)  # type: ignore[arg-type]
    keyring.rotate()
    new_signature = keyring.sign(b"payload")
    assert new_signature.split(".")[0] != signature.split(".")[0]
    assert keyring.verify(b"payload", signature)  # old signing key still accepted
    # the other process learns the new signing key by re-reading the secrets file
    assert other_process.verify(b"payload", new_signature)


def test_secrets_file_holds_only_kms_protected_material(
    make_keyring: Callable[..., KmsKeyring], tmp_path: Path
) -> None:
    keyring = make_keyring()
    path = keyring.secrets_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["format"] == SECRETS_FORMAT
    assert set(document) == {"format", "kms_key_id", "wrapped_data_key", "nonce", "ciphertext"}
    text = path.read_text()
    signature_key_id = keyring.sign(b"x").split(".")[0]
    assert signature_key_id not in text  # nothing in clear, not even key ids
    # tampering with the sealed secrets is detected
    sealed = bytearray(base64.b64decode(document["ciphertext"]))
    sealed[3] ^= 1
    document["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    path.write_text(json.dumps(document))
    with pytest.raises(KeyringError, match="tampered or corrupt"):
        make_keyring()
    path.write_text("not json")
    with pytest.raises(KeyringError, match="corrupt"):
        make_keyring()


def test_unknown_key_and_unreachable_kms_are_keyring_errors(
    kms_client: Any, tmp_path: Path
) -> None:
    with pytest.raises(KeyringError, match="NotFoundException"):
        KmsKeyring("alias/nope", secrets_path=tmp_path / "s.json", client=kms_client)
    with pytest.raises(KeyringError, match="KMS DescribeKey failed"):
        KmsKeyring(
            "alias/x",
            secrets_path=tmp_path / "s.json",
            endpoint="http://127.0.0.1:9",
            region="us-east-1",
        )
    sign_key = kms_client.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"][
        "Arn"
    ]
    with pytest.raises(KeyringError, match="symmetric"):
        KmsKeyring(sign_key, secrets_path=tmp_path / "s.json", client=kms_client)
    disabled = kms_client.create_key()["KeyMetadata"]["KeyId"]
    kms_client.disable_key(KeyId=disabled)
    with pytest.raises(KeyringError, match="not enabled"):
        KmsKeyring(disabled, secrets_path=tmp_path / "s.json", client=kms_client)


def test_open_keyring_kms_urls(
    moto_endpoint: str, moto_env: None, kms_key: str, tmp_path: Path
) -> None:
    keyring = open_keyring(
        f"kms://{kms_key}", endpoint=moto_endpoint, secrets_path=tmp_path / "default.json"
    )
    assert isinstance(keyring, KmsKeyring) and keyring.current_key_id == kms_key
    assert (tmp_path / "default.json").exists()
    chosen = tmp_path / "chosen" / "s.json"
    keyring = open_keyring(f"kms://{kms_key}?secrets={chosen}", endpoint=moto_endpoint)
    assert isinstance(keyring, KmsKeyring) and keyring.secrets_path == chosen and chosen.exists()
    for bad in ("kms://", f"kms://{kms_key}?other=1", f"kms://{kms_key}?secrets=relative.json"):
        with pytest.raises(ConfigError):
            open_keyring(bad, endpoint=moto_endpoint, secrets_path=tmp_path / "x.json")
    with pytest.raises(ConfigError, match="secrets"):
        open_keyring(f"kms://{kms_key}", endpoint=moto_endpoint)


def test_seal_open_shred_and_rotate_through_key_service(
    make_keyring: Callable[..., KmsKeyring], kms_client: Any, tmp_path: Path
) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", migrate=True)
    try:
        keyring = make_keyring()
        keys = KeyService(keyring, catalog)
        sealed = {}
        for n in range(4):
            ref = keys.subject_ref("acme", f"customer-{n % 2}")
            audio = f"audio of call {n}".encode() * 500
            sealed[n] = (
                keys.seal_recording(
                    recording_id=f"rec-{n}",
                    tenant="acme",
                    subject_ref=ref,
                    plaintext=audio,
                    chunk_size=1024,
                ),
                audio,
            )
        live = list(catalog.iter_subject_keys())
        assert len(live) == 2 and {k.master_key_id for k in live} == {keyring.current_key_id}
        # a fresh service (empty cache) opens everything through KMS Decrypt
        fresh = KeyService(make_keyring(), catalog, cache_size=0)
        for blob, audio in sealed.values():
            assert fresh.open_recording(blob.blob) == audio

        # rotate to a new KMS key: subject keys move, audio blobs are untouched
        new_key = kms_client.create_key()["KeyMetadata"]["Arn"]
        moved = make_keyring(new_key)
        assert moved.rotate() == new_key
        moved_keys = KeyService(moved, catalog, cache_size=0)
        assert moved_keys.rewrap_all() == 2
        assert {k.master_key_id for k in catalog.iter_subject_keys()} == {new_key}
        assert moved_keys.rewrap_all() == 0
        for record in catalog.iter_subject_keys():  # the wrapped blobs name the new key only
            assert record.wrapped_key is not None and new_key.encode() in record.wrapped_key
            assert keyring.current_key_id.encode() not in record.wrapped_key
        for blob, audio in sealed.values():
            assert moved_keys.open_recording(blob.blob) == audio

        # crypto-shredding: customer-0's recordings (0 and 2) become unreadable
        assert moved_keys.destroy_subject(keys.subject_ref("acme", "customer-0"))
        for n in (0, 2):
            with pytest.raises(KeyDestroyed):
                moved_keys.open_recording(sealed[n][0].blob)
        assert moved_keys.open_recording(sealed[1][0].blob) == sealed[1][1]
    finally:
        catalog.close()


class CountingClient:
    """Delegates to a real boto3 KMS client and counts Decrypt calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.decrypts = 0

    def decrypt(self, **kwargs: Any) -> Any:
        self.decrypts += 1
        return self._client.decrypt(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_forged_signing_key_ids_cost_no_kms_call(
    kms_client: Any, kms_key: str, tmp_path: Path
) -> None:
    counting = CountingClient(kms_client)
    path = tmp_path / "s.json"
    keyring = KmsKeyring(kms_key, secrets_path=path, client=counting)
    assert counting.decrypts == 1  # the secrets file, once
    for n in range(20):
        assert not keyring.verify(b"x", f"sk-{n:016x}.AAAA")
    assert counting.decrypts == 1
    # after a real rotation elsewhere, the file changed: one re-read picks up the new key
    other = KmsKeyring(kms_key, secrets_path=path, client=kms_client)
    other.rotate()
    assert keyring.verify(b"x", other.sign(b"x"))
    assert counting.decrypts == 2


def test_audit_checkpoints_are_signed_under_the_kms_keyring(
    make_keyring: Callable[..., KmsKeyring], tmp_path: Path
) -> None:
    from dataclasses import replace

    from storage.catalog import open_catalog
    from storage.catalog.audit import AuditDraft
    from storage.checkpoints import AuditCheckpoints, checkpoint_key
    from storage.vault import LocalVault

    keyring = make_keyring()
    catalog = open_catalog(f"sqlite:///{tmp_path}/catalog.sqlite3", migrate=True)
    try:
        vault = LocalVault(tmp_path / "vault")
        for n in range(3):
            catalog.audit.append(AuditDraft(actor="user:a", action="access.play", outcome=str(n)))
        checkpoints = AuditCheckpoints(catalog.audit, vault, keyring)
        written = checkpoints.write(catalog.audit.head(), None)  # type: ignore[arg-type]
        assert written.signature.split(".")[0] == keyring.sign(b"x").split(".")[0]
        assert checkpoints.verify().ok
        forged = replace(written, hash="f" * 64)
        vault.put(checkpoint_key(written.seq), forged.to_bytes(), tags={})
        assert "signature does not verify" in checkpoints.verify().problems[0]
    finally:
        catalog.close()
