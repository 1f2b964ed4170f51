"""One failed listing never aborts a whole deletion (issue 17): the vault deletes every
other run of keys and returns the failed run's keys, so the sweep retries exactly those.
Real SeaweedFS behind the fault proxy, which resets the one listing of one prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from storage._aws import make_client
from storage.vault import S3Vault
from tests.fixtures.faults import FaultProxy
from tests.fixtures.seaweedfs import BucketFactory

pytestmark = [pytest.mark.integration]


@pytest.fixture
def proxy(seaweed_endpoint: str) -> Iterator[FaultProxy]:
    port = urlsplit(seaweed_endpoint).port
    assert port is not None
    with FaultProxy(port, http=True) as started:
        yield started


def test_a_listing_that_fails_fails_its_own_run_only(
    proxy: FaultProxy, seaweed_env: None, seaweed_buckets: BucketFactory, seaweed_client: Any
) -> None:
    bucket = seaweed_buckets.make("cv-runs")  # versioned: deletes list versions first
    keys = [f"{part}/{i:04d}.cvlt" for part in ("a", "b", "c") for i in range(40)]
    for key in keys:
        seaweed_client.put_object(Bucket=bucket, Key=key, Body=b"sealed")
    client = make_client("s3", endpoint_url=f"http://{proxy.address}", max_attempts=1)
    vault = S3Vault(bucket, client=client, workers=3)  # one run per prefix
    proxy.http_faults(1.0, ("reset",), match=b"prefix=b%2F", limit=1)

    failed = vault.delete_many(keys)

    assert sorted(failed) == [k for k in keys if k.startswith("b/")]
    left = seaweed_client.list_object_versions(Bucket=bucket).get("Versions", [])
    assert sorted(v["Key"] for v in left) == sorted(failed)  # the rest went
    assert proxy.stats["fault:reset"] == 1
    assert vault.delete_many(failed) == []  # the retry takes the failed part
    assert not seaweed_client.list_object_versions(Bucket=bucket).get("Versions")
