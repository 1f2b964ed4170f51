"""`callvault keys rotate|status`: rotation rewraps subject keys only, is resumable after
an interruption, is audited with counts; the same through a KMS keyring on moto
(moto for KMS only: SeaweedFS, the S3 server of the tests, has no KMS)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from callvault.cli import cli
from callvault.cli.keys import key_status, rotate_master_key
from callvault.services import Services, build_services
from callvault.settings import load_settings
from storage.crypto.keys import KeyService

SUBJECTS = 7


def invoke(env: dict[str, str], *args: str) -> Result:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CALLVAULT_")}
    clean.update(env)
    return CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)


def seal_some(services: Services) -> dict[str, tuple[str, bytes, str]]:
    """Two recordings per subject, stored in the vault: rid -> (object key, audio, digest)."""
    out = {}
    for n in range(SUBJECTS * 2):
        rid = f"rec-{n}"
        ref = services.keys.subject_ref("acme", f"customer-{n % SUBJECTS}")
        audio = os.urandom(3000)
        sealed = services.keys.seal_recording(
            recording_id=rid, tenant="acme", subject_ref=ref, plaintext=audio, chunk_size=1024
        )
        key = f"rec/acme/{n}.cvlt"
        services.vault.put(key, sealed.blob, tags={"format": "cvlt1"})
        out[rid] = (key, audio, hashlib.sha256(sealed.blob).hexdigest())
    return out


def assert_all_open(services: Services, sealed: dict[str, tuple[str, bytes, str]]) -> None:
    fresh = KeyService(services.keyring, services.catalog, cache_size=0)
    for key, audio, digest in sealed.values():
        blob = services.vault.get(key)
        assert hashlib.sha256(blob).hexdigest() == digest  # the audio object was not touched
        assert fresh.open_recording(blob) == audio


def test_interrupted_rotation_resumes_and_everything_opens(tmp_path: Path) -> None:
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var"), "CALLVAULT_WORKER_ID": "ops"}
    services = build_services(load_settings(env))
    try:
        sealed = seal_some(services)
        old_master = services.keyring.current_key_id
        status = key_status(services)
        assert status.live_by_master_key == {old_master: SUBJECTS} and status.pending_rewrap == 0

        calls = 0

        def crash_after_three(n: int) -> None:
            nonlocal calls
            calls += n
            if calls == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            rotate_master_key(services, actor="cli:ops", progress=crash_after_three)
        new_master = services.keyring.current_key_id
        assert new_master != old_master
        status = key_status(services)
        assert status.live_by_master_key == {new_master: 3, old_master: SUBJECTS - 3}
        assert status.pending_rewrap == SUBJECTS - 3
        assert_all_open(services, sealed)  # half-rotated is a working state
        interrupted = list(services.audit.iter_entries(action_prefix="keys."))
        assert [(e.outcome, e.details) for e in interrupted] == [
            ("interrupted", {"rotated": True, "examined": 3, "remaining": SUBJECTS - 3})
        ]
    finally:
        services.close()

    status_out = invoke(env, "keys", "status")
    assert status_out.exit_code == 0
    assert f"{SUBJECTS} live, 0 destroyed" in status_out.output
    assert f"{SUBJECTS - 3} live subject key(s) are under older master keys" in status_out.output

    result = invoke(env, "keys", "rotate", "--resume")
    assert result.exit_code == 0, result.output
    assert f"resumed under {new_master}: {SUBJECTS - 3} subject key(s) rewrapped" in result.output

    services = build_services(load_settings(env))
    try:
        status = key_status(services)
        assert services.keyring.current_key_id == new_master  # --resume did not rotate again
        assert status.live_by_master_key == {new_master: SUBJECTS} and status.pending_rewrap == 0
        assert_all_open(services, sealed)
        last = list(services.audit.iter_entries(action_prefix="keys."))[-1]
        assert (last.action, last.outcome, last.actor) == ("keys.rotated", "ok", "cli:ops")
        assert last.details == {"rotated": False, "examined": SUBJECTS, "rewrapped": SUBJECTS - 3}
        # crypto-shredding still works after rotation
        ref = services.keys.subject_ref("acme", "customer-0")
        assert services.keys.destroy_subject(ref)
    finally:
        services.close()

    # a full rotation: new master key, every live key rewrapped, the destroyed one skipped
    result = invoke(env, "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert f"{SUBJECTS - 1} subject key(s) rewrapped, {SUBJECTS} examined" in result.output
    status_out = invoke(env, "keys", "status")
    assert f"{SUBJECTS - 1} live, 1 destroyed" in status_out.output
    assert "(current)" in status_out.output and "older master keys" not in status_out.output


def test_rotation_to_a_new_kms_key_through_the_cli(
    tmp_path: Path,
    moto_endpoint: str,
    moto_env: None,
    moto_reset: None,
    moto_credentials: dict[str, str],
) -> None:
    import boto3

    kms: Any = boto3.session.Session().client("kms", endpoint_url=moto_endpoint, **moto_credentials)
    first = kms.create_key()["KeyMetadata"]["Arn"]
    second = kms.create_key()["KeyMetadata"]["Arn"]
    env = {
        "CALLVAULT_DATA_DIR": str(tmp_path / "var"),
        "CALLVAULT_KEYRING": f"kms://{first}",
        "CALLVAULT_KMS_ENDPOINT": moto_endpoint,
    }
    services = build_services(load_settings(env))
    try:
        sealed = seal_some(services)
        pseudonym = services.keys.subject_ref("acme", "customer-1")
    finally:
        services.close()
    assert (tmp_path / "var" / "keys" / "kms-secrets.json").exists()

    env["CALLVAULT_KEYRING"] = f"kms://{second}"  # the operator points every process at the new key
    result = invoke(env, "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert f"rotated to {second}: {SUBJECTS} subject key(s) rewrapped" in result.output
    status = invoke(env, "keys", "status")
    assert (
        "backend:            kms" in status.output
        and f"{SUBJECTS}  {second} (current)" in status.output
    )

    services = build_services(load_settings(env))
    try:
        assert services.keys.subject_ref("acme", "customer-1") == pseudonym
        assert key_status(services).live_by_master_key == {second: SUBJECTS}
        assert_all_open(services, sealed)
    finally:
        services.close()


def test_rotate_with_a_broken_keyring_is_a_clear_error(tmp_path: Path) -> None:
    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var"), "CALLVAULT_KEYRING": "kms://"}
    result = invoke(env, "keys", "rotate")
    assert result.exit_code == 2 and "kms://key-id" in result.output


def test_a_second_rotation_waits_for_the_first_one_s_lease(tmp_path: Path) -> None:
    """Key rotation runs in one worker (or shell) at a time: while another holds the
    key-rotation lease, `callvault keys rotate` refuses and rotates nothing."""
    from datetime import timedelta

    from storage.catalog.leases import KEY_ROTATION_LEASE, LeaseStore

    env = {"CALLVAULT_DATA_DIR": str(tmp_path / "var")}

    def current_master() -> str:
        opened = build_services(load_settings(env))
        try:
            return str(opened.keyring.current_key_id)
        finally:
            opened.close()

    services = build_services(load_settings(env))
    try:
        before = current_master()
        leases = LeaseStore(services.catalog.database)
        assert leases.acquire(KEY_ROTATION_LEASE, "cli:other-host:4242", timedelta(minutes=5))
        result = invoke(env, "keys", "rotate")
        assert result.exit_code == 1, result.output
        assert "key-rotation is running elsewhere (lease held by cli:other-host:4242" in (
            result.output
        )
        assert current_master() == before
        assert leases.release(KEY_ROTATION_LEASE, "cli:other-host:4242")
        assert invoke(env, "keys", "rotate").exit_code == 0
        assert leases.get(KEY_ROTATION_LEASE) is None  # released after the rotation
        assert current_master() != before
    finally:
        services.close()
