"""Fixtures shared by the retention and privacy tests: services on every catalog
(SQLite, PostgreSQL) x vault (file, S3 on moto) combination, with a settable clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callvault.services import Services
from tests.streams.lifecycle_support import Clock, make_services


@pytest.fixture(params=["file", "s3"])
def vault_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "s3":
        request.getfixturevalue("s3_reset")
        request.getfixturevalue("s3_env")
    return str(request.param)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(
    tmp_path: Path, catalog_url: str, vault_kind: str, clock: Clock, request: pytest.FixtureRequest
) -> Iterator[Services]:
    endpoint = request.getfixturevalue("s3_endpoint") if vault_kind == "s3" else None
    opened = make_services(tmp_path, catalog_url, vault_kind, clock, s3_endpoint=endpoint)
    yield opened
    opened.close()


@pytest.fixture
def file_services(tmp_path: Path, clock: Clock) -> Iterator[Services]:
    opened = make_services(tmp_path, f"sqlite:///{tmp_path}/catalog.sqlite3", "file", clock)
    yield opened
    opened.close()
