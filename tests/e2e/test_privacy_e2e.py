"""Privacy requests through the real broker: a ``callvault worker`` process consumes
``callvault.privacy-requests`` and carries them out (one worker start)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from callvault.broker import EmbeddedBroker
from storage.catalog.requests import PrivacyRequestNotFound, PrivacyRequestStore
from storage.errors import KeyDestroyed
from storage.types import RecordingState
from tests.e2e.harness import WorkerProcess, e2e_settings, open_services, produce, wait_until
from tests.streams.lifecycle_support import store_call, verification

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def env(tmp_path: Path, kafka_broker: EmbeddedBroker) -> dict[str, str]:
    return e2e_settings(tmp_path / "data", kafka_broker.url)


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(env, tmp_path / "worker.log")
    yield proc
    proc.stop()


def test_privacy_requests_topic_erases_restricts_and_rejects(
    env: dict[str, str], worker: WorkerProcess, kafka_broker: EmbeddedBroker
) -> None:
    services = open_services(env)
    erased = store_call(services, "e2e-erase", customer="C-ERASE")
    saved = services.vault.get(erased.object_key)
    store_call(services, "e2e-restrict", customer="C-RESTRICT")
    requests = [
        {
            "type": "erase",
            "tenant": "acme",
            "customer_ref": "C-ERASE",
            "request_id": "PR-E2E-1",
            "identity_verification": verification(),
            "requested_by": "officer-7",
        },
        {
            "type": "restrict",
            "tenant": "acme",
            "customer_ref": "C-RESTRICT",
            "request_id": "PR-E2E-2",
            "identity_verification": verification(),
            "requested_by": "officer-7",
        },
        {"type": "erase", "tenant": "acme", "customer_ref": "C-ERASE", "request_id": "PR-E2E-3"},
    ]
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    produce(
        bootstrap,
        "callvault.privacy-requests",
        [json.dumps(r).encode() for r in requests] + [b"{oops"],
    )
    worker.start()
    store = PrivacyRequestStore(services.catalog)

    def status(request_id: str) -> str | None:
        try:
            return store.get(request_id).status.value
        except PrivacyRequestNotFound:
            return None

    wait_until(
        lambda: status("PR-E2E-1") == "completed" and status("PR-E2E-2") == "completed",
        90,
        f"both requests to complete (log: {worker.log()[-2000:]})",
    )
    wait_until(
        lambda: sum(1 for e in services.audit.iter_entries(action_prefix="privacy.rejected")) == 1,
        30,
        "the malformed message to be rejected",
    )
    wait_until(lambda: status("PR-E2E-3") is not None, 30, "the unverified request stored")
    # no identity verification: stored, waiting for an officer, never carried out
    assert status("PR-E2E-3") == "received"
    assert services.catalog.get_recording("e2e-erase").state is RecordingState.ERASED  # type: ignore[union-attr]
    assert services.catalog.get_recording("e2e-restrict").restricted  # type: ignore[union-attr]
    with pytest.raises(KeyDestroyed):
        services.keys.open_recording(saved)
    assert not services.vault.exists(erased.object_key)
    # the worker's start-up sweep recorded the retention rules it applies
    assert any(True for _ in services.audit.iter_entries(action_prefix="retention.rules-applied"))
    assert services.audit.verify().ok
    services.close()
