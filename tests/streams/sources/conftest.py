"""Fixtures of the source adapter tests: services whose landing area is a local folder
plus a fresh bucket on the real SeaweedFS server, with source bindings for it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callvault.services import Services, build_services
from callvault.settings import load_settings
from streams.ingest import IngestOutcome, IngestPipeline
from streams.metrics import Metrics
from streams.sources import Sources

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-auth-token-for-tests"
CONNECT_ARN = "arn:aws:connect:us-east-1:123456789012:instance/4f1c2d3e-0000-4000-8000-000000000001"


@dataclass
class SourceWorld:
    """Services, their adapters, and the bucket their S3 sources are bound to."""

    services: Services
    sources: Sources
    metrics: Metrics
    bucket: str
    client: Any
    landing_dir: Path

    def ingest(self, *events: dict[str, Any]) -> list[IngestOutcome]:
        """Run events through the real core path (validation, landing, vault, catalog)."""
        return ingest(self.services, *events)

    def fresh_sources(self) -> Sources:
        """The adapters as a restarted worker has them: nothing remembered."""
        return Sources(
            bindings=self.services.sources,
            landing=self.services.landing,
            catalog=self.services.catalog,
            metrics=self.metrics,
            clock=self.services.clock,
            max_bytes=1 << 26,
        )


def ingest(services: Services, *events: dict[str, Any]) -> list[IngestOutcome]:
    """Run events through the real core path (validation, landing, vault, catalog)."""
    pipeline = IngestPipeline(
        landing=services.landing,
        vault=services.vault,
        keys=services.keys,
        catalog=services.catalog,
        audit=services.audit,
        policy=services.policy,
        metrics=Metrics(),
        actor="worker:test",
        clock=services.clock,
        restrictions=services.restrictions,
    )
    try:
        return pipeline.process_batch([json.dumps(e).encode() for e in events])
    finally:
        pipeline.close()


def sources_toml(bucket: str, **extra: str) -> str:
    return f"""
[[s3]]
prefix = "s3://{bucket}/calls/"
tenant = "acme"
queue = "support"

[[connect]]
instance_arn = "{CONNECT_ARN}"
prefix = "s3://{bucket}/connect/northwind/CallRecordings/"
tenant = "acme"

[[twilio]]
account_sid = "{TWILIO_SID}"
auth_token = "{TWILIO_TOKEN}"
tenant = "acme"
queue = "twilio"
media_hosts = ["{extra.get("media_host", "api.twilio.com")}"]

[[announce]]
tenant = "acme"
queue = "pbx"
"""


@pytest.fixture
def world_factory(
    tmp_path: Path,
    seaweed_env: None,
    seaweed_endpoint: str,
    seaweed_buckets: Any,
    seaweed_client: Any,
) -> Iterator[Callable[..., SourceWorld]]:
    made: list[Services] = []

    def make(**extra: str) -> SourceWorld:
        bucket = seaweed_buckets.make("cv-src")
        data = tmp_path / f"data-{len(made)}"
        (data).mkdir()
        config = data / "sources.toml"
        config.write_text(sources_toml(bucket, **extra))
        landing_dir = data / "landing"
        settings = load_settings(
            {
                "CALLVAULT_DATA_DIR": str(data),
                "CALLVAULT_S3_ENDPOINT": seaweed_endpoint,
                "CALLVAULT_LANDING_ROOTS": f"file://{landing_dir},s3://{bucket}/",
                "CALLVAULT_SOURCES": str(config),
            }
        )
        services = build_services(settings)
        made.append(services)
        metrics = Metrics()
        sources = Sources(
            bindings=services.sources,
            landing=services.landing,
            catalog=services.catalog,
            metrics=metrics,
            clock=services.clock,
            max_bytes=settings.max_audio_bytes,
        )
        return SourceWorld(services, sources, metrics, bucket, seaweed_client, landing_dir)

    yield make
    for services in made:
        services.close()


@pytest.fixture
def world(world_factory: Callable[..., SourceWorld]) -> SourceWorld:
    return world_factory()


def aws_notification(
    bucket: str, key: str, *, event: str = "ObjectCreated:Put", **obj: Any
) -> bytes:
    """An S3 event notification as AWS documents it (keys URL-encoded, '+' for ' ')."""
    from urllib.parse import quote_plus

    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "us-east-1",
                    "eventTime": "2026-11-25T10:00:30.000Z",
                    "eventName": event,
                    "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                    "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                    "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "callvault-landing",
                        "bucket": {
                            "name": bucket,
                            "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                            "arn": f"arn:aws:s3:::{bucket}",
                        },
                        "object": {
                            "key": quote_plus(key, safe="/"),
                            "size": obj.get("size", 0),
                            "eTag": obj.get("etag", "d41d8cd98f00b204e9800998ecf8427e"),
                            "sequencer": "0055AED6DCD90281E5",
                        },
                    },
                }
            ]
        }
    ).encode()
