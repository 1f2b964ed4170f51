"""Telephony sources end to end: real SeaweedFS, real tansu, a real worker process."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callvault.broker import EmbeddedBroker
from callvault.seaweed import EmbeddedS3
from storage.audio import decode
from tests.e2e.harness import WorkerProcess, e2e_settings, open_services, wait_until
from tests.fixtures.telephony import TelephonySamples

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def notifying_s3(tmp_path: Path, kafka_broker: EmbeddedBroker) -> Iterator[EmbeddedS3]:
    """A SeaweedFS whose filer publishes its metadata changes to callvault.s3-events on
    the test's broker (its own server: the session one has no notification target)."""
    bootstrap = kafka_broker.url.removeprefix("kafka://")
    server = EmbeddedS3(tmp_path / "s3", kafka_notifications=(bootstrap, "callvault.s3-events"))
    server.start(timeout=60)
    yield server
    server.stop()


def test_a_put_object_on_seaweedfs_reaches_the_vault_through_its_filer_notification(
    tmp_path: Path,
    kafka_broker: EmbeddedBroker,
    notifying_s3: EmbeddedS3,
    telephony_samples: TelephonySamples,
) -> None:
    bucket = "pbx-landing"
    notifying_s3.ensure_bucket(bucket, versioning=True)
    sources = tmp_path / "sources.toml"
    sources.write_text(f'[[s3]]\nprefix = "s3://{bucket}/calls/"\ntenant = "acme"\n')
    data = tmp_path / "data"
    env = e2e_settings(
        data,
        kafka_broker.url,
        CALLVAULT_S3_ENDPOINT=notifying_s3.endpoint,
        CALLVAULT_LANDING_ROOTS=f"file://{data}/landing,s3://{bucket}/",
        CALLVAULT_SOURCES=str(sources),
        **notifying_s3.credentials.env(),
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        services = open_services(env)
        audio = telephony_samples.get("asterisk-wav").path.read_bytes()
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        notifying_s3.client().put_object(
            Bucket=bucket,
            Key="calls/2026/12/01/1764590400.17.wav",
            Body=audio,
            Metadata={
                "recording-id": "pbx-1764590400.17",
                "call-id": "1764590400.17",
                "customer-ref": "C-1001",
                "agent-id": "sip-201",
                "queue": "billing",
                "started-at": start.isoformat(),
                "ended-at": (start + timedelta(seconds=8)).isoformat(),
            },
        )
        row = wait_until(
            lambda: services.catalog.get_recording("pbx-1764590400.17"),
            90,
            f"the recording in the catalog (worker log: {worker.log_path})",
        )
        assert row.tenant == "acme" and row.queue == "billing"
        plain = services.keys.open_recording(services.vault.get(row.object_key))
        assert decode(plain, "wav").pcm == decode(audio, "wav").pcm
        assert hashlib.sha256(audio).hexdigest() != row.ciphertext_sha256
        # The core path owns landing audio: gone from the bucket (every version) once stored.
        wait_until(
            lambda: (
                not notifying_s3.client()
                .list_object_versions(Bucket=bucket, Prefix="calls/")
                .get("Versions")
            ),
            30,
            "the landing object deleted",
        )
        services.close()
    finally:
        worker.stop()
