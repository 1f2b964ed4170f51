"""Fixtures of the page tests: ``env`` (the stream app with the recordings the test
module's ``CALLS`` describe, served over HTTP: :func:`tests.streams.qa_support.make_env`)
and ``driver`` (a headless Chromium whose window is the module's ``WINDOW``, default
1280x900). A module needing more (an identity provider, telephony samples) defines its
own ``env``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import chromium
from tests.streams.qa_support import QaEnv, make_env

DEFAULT_WINDOW = (1280, 900)


@pytest.fixture
def env(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[QaEnv]:
    made = make_env(tmp_path, request.module.CALLS)
    yield made
    made.close()


@pytest.fixture
def driver(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    width, height = getattr(request.module, "WINDOW", DEFAULT_WINDOW)
    with chromium(tmp_path, width=width, height=height) as browser:
        yield browser
