"""The worker's entry to the sources: one call per message of a source topic.

:class:`Sources` holds one adapter per source over the services' landing area and
catalog, counts what each received, and returns the outcomes; the worker produces
the mapped events to ``callvault.recordings`` and the refusals to ``callvault.dlq``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from storage.catalog import Catalog
from storage.landing import Landing
from streams.errors import SourceRefused
from streams.metrics import Metrics
from streams.sources.base import SkipReason, SourceOutcome
from streams.sources.config import SourceBindings
from streams.sources.connect import ConnectSource
from streams.sources.notifications import parse_filer_event, parse_s3_notification
from streams.sources.s3 import S3Source
from streams.sources.twilio import TwilioSource

__all__ = ["Sources", "S3_EVENTS_TOPIC", "CONNECT_CTR_TOPIC"]

S3_EVENTS_TOPIC = "callvault.s3-events"
CONNECT_CTR_TOPIC = "callvault.connect-ctr"


class Sources:
    """Every adapter of one worker (see the package README for what each maps)."""

    def __init__(
        self,
        *,
        bindings: SourceBindings,
        landing: Landing,
        catalog: Catalog,
        metrics: Metrics,
        clock: Callable[[], datetime],
        max_bytes: int,
    ) -> None:
        self.bindings = bindings
        self.metrics = metrics
        self.connect = ConnectSource(
            bindings=bindings, landing=landing, catalog=catalog, clock=clock
        )
        self.s3 = S3Source(
            bindings=bindings, landing=landing, catalog=catalog, clock=clock, connect=self.connect
        )
        self.twilio = TwilioSource(
            bindings=bindings, landing=landing, clock=clock, max_bytes=max_bytes
        )

    def on_s3_message(self, key: bytes | None, value: bytes) -> list[SourceOutcome]:
        """One message of ``callvault.s3-events``: a JSON notification (AWS S3, MinIO,
        SNS, EventBridge) or a SeaweedFS filer protobuf event (keyed by its path).

        Raises:
            LandingError: S3 failed in a way worth retrying (the message is not acked).
        """
        self.metrics.source_received.labels("s3").inc()
        try:
            if value.lstrip()[:1] == b"{":
                notices = parse_s3_notification(value)
                strict = True
            else:
                notice = parse_filer_event(key, value)
                notices = [notice] if notice is not None else []
                strict = False
        except SourceRefused as exc:
            outcomes = [SourceOutcome.refused("s3", exc)]
        else:
            outcomes = [self.s3.handle(notice, strict=strict) for notice in notices] or [
                SourceOutcome.skipped("s3", SkipReason.NOT_CREATED)
            ]
        for outcome in outcomes:
            outcome.count(self.metrics)
        return outcomes

    def on_ctr_message(self, value: bytes) -> SourceOutcome:
        """One message of ``callvault.connect-ctr`` (an Amazon Connect CTR).

        Raises:
            LandingError: S3 failed in a way worth retrying (the message is not acked).
        """
        self.metrics.source_received.labels("connect").inc()
        outcome = self.connect.on_ctr(value)
        outcome.count(self.metrics)
        return outcome
