"""The worker declares its topics with CALLVAULT_PARTITIONS before it subscribes (the
real tansu broker would auto-create them with its own default, 4), and never changes
the count of a topic that exists."""

from __future__ import annotations

import logging

import pytest

from callvault.broker import EmbeddedBroker
from streams.topics import declare_topics


def test_missing_topics_get_their_count_existing_ones_keep_theirs(
    kafka_broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    assert declare_topics(bootstrap, {"cv.in": 8, "cv.audit": 1}) == {"cv.in": 8, "cv.audit": 1}
    with caplog.at_level(logging.WARNING, logger="streams.topics"):
        counts = declare_topics(bootstrap, {"cv.in": 12, "cv.audit": 1, "cv.new": 3})
    assert counts == {"cv.in": 8, "cv.audit": 1, "cv.new": 3}  # raised only by an operator
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "cv.in has 8 partitions, CALLVAULT_PARTITIONS asks for 12" in warning
    assert "--partitions 12" in warning and "never shrink" in warning
    assert declare_topics(bootstrap, {"cv.in": 2}) == {"cv.in": 8}  # never shrunk


def test_an_unreachable_broker_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    from callvault.broker import free_port

    with caplog.at_level(logging.WARNING, logger="streams.topics"):
        assert declare_topics(f"127.0.0.1:{free_port()}", {"cv.in": 8}, timeout=3) == {}
    assert "could not declare topics" in caplog.text
