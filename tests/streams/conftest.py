"""Fixtures shared by the retention and privacy tests: services on every catalog
(SQLite, PostgreSQL) x vault (file, S3 on SeaweedFS: a fresh versioned bucket per test)
combination, with a settable clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callvault.services import Services
from streams.metrics import Metrics
from tests.streams.lifecycle_support import Clock, WebServer, lifecycle_of, make_services


@pytest.fixture(params=["file", "s3"])
def vault_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "s3":
        request.getfixturevalue("seaweed_env")
    return str(request.param)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(
    tmp_path: Path, catalog_url: str, vault_kind: str, clock: Clock, request: pytest.FixtureRequest
) -> Iterator[Services]:
    endpoint = bucket = None
    if vault_kind == "s3":
        endpoint = request.getfixturevalue("seaweed_endpoint")
        bucket = request.getfixturevalue("seaweed_bucket")
    opened = make_services(
        tmp_path, catalog_url, vault_kind, clock, s3_endpoint=endpoint, s3_bucket=bucket
    )
    yield opened
    opened.close()


@pytest.fixture
def file_services(tmp_path: Path, clock: Clock) -> Iterator[Services]:
    opened = make_services(tmp_path, f"sqlite:///{tmp_path}/catalog.sqlite3", "file", clock)
    yield opened
    opened.close()


@pytest.fixture
def s3_services(
    tmp_path: Path,
    catalog_url: str,
    clock: Clock,
    seaweed_env: None,
    seaweed_endpoint: str,
    seaweed_bucket: str,
) -> Iterator[Services]:
    """Services over a fresh versioned SeaweedFS bucket (both catalogs)."""
    opened = make_services(
        tmp_path, catalog_url, "s3", clock, s3_endpoint=seaweed_endpoint, s3_bucket=seaweed_bucket
    )
    yield opened
    opened.close()


@pytest.fixture
def server(file_services: Services) -> Iterator[WebServer]:
    """The web app over ``file_services`` in a thread (privacy requests, holds, audit)."""
    metrics = Metrics()
    started = WebServer(file_services, lifecycle_of(file_services, metrics), metrics).start()
    yield started
    started.stop()
