"""Fixtures of the end-to-end tests: a worker's settings against the real broker, and
the worker process (stopped after the test; a test starts it when it is ready)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callvault.broker import EmbeddedBroker
from tests.e2e.harness import WorkerProcess, e2e_settings


@pytest.fixture
def env(tmp_path: Path, kafka_broker: EmbeddedBroker) -> dict[str, str]:
    return e2e_settings(tmp_path / "data", kafka_broker.url)


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(env, tmp_path / "worker.log")
    yield proc
    proc.stop()
