"""Erasure survives a catalog restore: snapshot the SQLite catalog, erase a customer,
restore the snapshot (the subject key and the rows are back), start a real
``callvault worker``: it re-applies the erasure journal from the vault before serving,
so the audio answers 410 and the key is gone again. The same worker signs audit
checkpoints and sends them to ``callvault.audit`` (one worker start)."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from callvault.broker import EmbeddedBroker
from callvault.cli import cli
from storage.erasures import ERASURE_PREFIX
from storage.types import RecordingState
from streams.http.auth import LocalTokens
from tests.e2e.harness import (
    WorkerProcess,
    consume_messages,
    e2e_settings,
    open_services,
    settings_from,
)
from tests.streams.lifecycle_support import lifecycle_of, store_call, verification

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def env(tmp_path: Path, kafka_broker: EmbeddedBroker) -> dict[str, str]:
    return e2e_settings(tmp_path / "data", kafka_broker.url, CALLVAULT_AUDIT_CHECKPOINT_SECONDS="1")


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(env, tmp_path / "worker.log")
    yield proc
    proc.stop()


def _catalog_file(env: dict[str, str]) -> Path:
    return Path(settings_from(env).catalog.removeprefix("sqlite:///"))


def _audio_status(url: str, token: str) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(
        f"{url}/v1/recordings/rs-1/audio?purpose=quality-improvement&justification=QA-9",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.clause("requests.removal")
def test_an_erasure_survives_restoring_an_older_catalog_backup(
    env: dict[str, str], worker: WorkerProcess, kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    services = open_services(env)
    erased = store_call(services, "rs-1", customer="C-RESTORE")
    store_call(services, "rs-keep", customer="C-KEEP")
    catalog = _catalog_file(env)
    snapshot = tmp_path / "backup.sqlite3"
    with closing(sqlite3.connect(catalog)) as live, closing(sqlite3.connect(snapshot)) as copy:
        live.backup(copy)  # the nightly backup, taken before the erasure
    done = lifecycle_of(services).privacy.submit(
        {
            "type": "erase",
            "tenant": "acme",
            "customer_ref": "C-RESTORE",
            "request_id": "PR-RESTORE-1",
            "identity_verification": verification(),
        },
        requested_by="officer-7",
    )
    assert done.result["subject_key_destroyed"] is True
    assert list(services.vault.iter_keys(ERASURE_PREFIX))  # journaled outside the catalog
    services.close()

    # restore the backup: the key and the row come back
    with closing(sqlite3.connect(snapshot)) as copy, closing(sqlite3.connect(catalog)) as live:
        copy.backup(live)
    restored = open_services(env)
    try:
        back = restored.catalog.get_recording("rs-1")
        assert back is not None and back.state is RecordingState.STORED
        key = restored.catalog.get_subject_key_by_id(erased.subject_key_id)
        assert key is not None and key.wrapped_key is not None
        token = LocalTokens(restored.keyring, frozenset(restored.policy.roles)).issue(
            user="alice", role="qa-reviewer", org=None, ttl=timedelta(hours=1)
        )
    finally:
        restored.close()

    legacy = Path(env["CALLVAULT_DATA_DIR"]) / "exports" / "PR-OLD"
    legacy.mkdir(parents=True)
    (legacy / "r-old.wav").write_bytes(b"RIFF....WAVEfmt ")  # what older versions left
    worker.start()
    assert not legacy.parent.exists()  # no plaintext export survives a start
    status, body = _audio_status(worker.web_url, token)
    assert status == 410, body
    assert body["reason"] in ("recording-not-stored", "key-destroyed")
    after = open_services(env)
    try:
        row = after.catalog.get_recording("rs-1")
        assert row is not None and row.state is RecordingState.ERASED and row.subject_ref == ""
        key = after.catalog.get_subject_key_by_id(erased.subject_key_id)
        assert key is not None and key.wrapped_key is None
        kept = after.catalog.get_recording("rs-keep")
        assert kept is not None and kept.state is RecordingState.STORED
        actions = [e.action for e in after.audit.iter_entries()]
        assert "privacy.erasure-reapplied" in actions
        assert any(
            r.payload["reason"] == "erasure-reapplied" for r in after.receipts.for_recording("rs-1")
        )
    finally:
        after.close()
    # a second reconcile finds nothing left to do
    result = CliRunner().invoke(cli, ["keys", "reconcile"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "0 subject key(s) destroyed again, 0 recording(s) erased again" in result.output

    # the worker's checkpoints are on the audit topic too
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    messages = consume_messages(bootstrap, "callvault.audit", expect=1000, timeout=5)
    signed = [json.loads(m.value)["checkpoint"] for m in messages if m.key == b"checkpoint"]
    assert signed, worker.log()
    assert signed[-1]["payload"]["kind"] == "callvault.audit-checkpoint.v1"
    assert signed[-1]["signature"]
