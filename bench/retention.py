"""Retention benchmark: expire N recordings on the S3 path (SeaweedFS, the embedded S3 server).

    .venv/bin/python bench/retention.py [--n 2000] [--buckets plain,versioned] [--workers 1]

For each bucket kind it stores N sealed recordings (catalog: SQLite, durable commits)
whose retain-until has passed, then times ``RetentionService.sweep()``: deletion
intents, ``Vault.delete_many`` (S3 multi-object delete; on a versioned bucket every
version of each key is listed and deleted), state ``expired``, one audit record and
one signed receipt per recording. The baseline, in the same run, is raw boto3
``delete_objects`` of the same keys in batches of 1000 on an identical bucket (with
the version ids returned by ``put_object`` on the versioned one: the least work
S3 allows). Printed: expiries/s, baseline deletes/s and ratio = sweep / baseline.
``BENCH_PROFILE=1`` prints a profile of the sweep.

On a versioned bucket ``S3Vault.delete_many`` lists each key's versions (one request
per key; the sweep runs 8 slices in parallel), so a versioned bucket costs one more
request per recording.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callvault.seaweed import EmbeddedS3  # noqa: E402
from callvault.services import build_services  # noqa: E402
from callvault.settings import load_settings  # noqa: E402
from storage.catalog.audit import AuditDraft  # noqa: E402
from storage.types import RecordingRow  # noqa: E402
from streams.ingest import object_key_for  # noqa: E402
from streams.retention import RetentionService  # noqa: E402

AUDIO = os.urandom(16 * 1024)  # a sealed object of ~16 KiB per recording


def run(kind: str, n: int, endpoint: str, workdir: Path) -> tuple[float, float]:
    import boto3

    bucket = f"bench-{kind}-{time.monotonic_ns()}"
    env = {
        "CALLVAULT_DATA_DIR": str(workdir / kind),
        "CALLVAULT_VAULT": f"s3://{bucket}",
        "CALLVAULT_S3_ENDPOINT": endpoint,
        "CALLVAULT_WORKER_ID": "bench",
    }
    services = build_services(load_settings(env))
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    services.vault.ensure_bucket(versioning=kind == "versioned")  # type: ignore[attr-defined]
    raw_bucket = f"{bucket}-raw"
    client.create_bucket(Bucket=raw_bucket)
    if kind == "versioned":
        client.put_bucket_versioning(
            Bucket=raw_bucket, VersioningConfiguration={"Status": "Enabled"}
        )

    policy = services.policy
    now = services.clock()
    ended = now - timedelta(days=400)
    subject = services.keys.subject_ref("acme", "bench-customer")
    sealed = services.keys.seal_recording(
        recording_id="bench-0", tenant="acme", subject_ref=subject, plaintext=AUDIO
    )
    blob = sealed.blob
    rows: list[RecordingRow] = []
    for i in range(n):
        rid = f"bench-{i:06d}"
        rows.append(
            RecordingRow(
                recording_id=rid,
                call_id=f"call-{i}",
                tenant="acme",
                subject_ref=subject,
                agent_id="a1",
                queue="q1",
                direction="inbound",
                started_at=ended - timedelta(minutes=3),
                ended_at=ended,
                duration_ms=180_000,
                consent="notified",
                purposes=tuple(policy.default_purposes),
                retention_class="standard-90d",
                retain_until=ended + timedelta(days=90),
                object_key=object_key_for(services.keys, "acme", rid),
                subject_key_id=sealed.subject_key_id,
                ciphertext_sha256=hashlib.sha256(blob).hexdigest(),
                stored_size=len(blob),
                audio_bytes=len(AUDIO),
                audio_format="wav/pcm_s16le",
                sample_rate=8000,
                channels=1,
                pci_redacted_ms=0,
                created_at=now,
            )
        )
    versions: dict[str, str] = {}

    def put(row: RecordingRow) -> None:
        services.vault.put(row.object_key, blob, tags={"retention-class": "standard-90d"})
        reply = client.put_object(Bucket=raw_bucket, Key=row.object_key, Body=blob)
        if "VersionId" in reply:
            versions[row.object_key] = reply["VersionId"]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, rows))
    for start in range(0, n, 500):
        batch = rows[start : start + 500]
        services.catalog.store_recordings(
            [
                (row, AuditDraft(actor="bench", action="ingest.stored", outcome="ok"))
                for row in batch
            ]
        )

    # baseline: raw multi-object delete of the same keys
    entries = [
        {"Key": row.object_key, **({"VersionId": versions[row.object_key]} if versions else {})}
        for row in rows
    ]
    started = time.perf_counter()
    for start in range(0, n, 1000):
        client.delete_objects(
            Bucket=raw_bucket, Delete={"Objects": entries[start : start + 1000], "Quiet": True}
        )
    baseline = time.perf_counter() - started

    retention = RetentionService(dataclasses.replace(services, policy=policy), actor="bench")
    retention.reschedule_if_policy_changed()  # first start: records the rules digest
    started = time.perf_counter()
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile()
        result = profile.runcall(retention.sweep)
        pstats.Stats(profile).sort_stats("tottime").print_stats(18)
    else:
        result = retention.sweep()
    elapsed = time.perf_counter() - started
    assert len(result.expired) == n and not result.failed, (len(result.expired), result.failed[:3])
    left = client.list_object_versions(Bucket=bucket).get("Versions", [])
    assert not left, f"{len(left)} versions left"
    assert services.audit.verify().ok
    services.close()
    return n / elapsed, n / baseline


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--buckets", default="plain")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedS3(Path(tmp) / "s3") as s3:
        os.environ.update(s3.credentials.env())  # the services sign with them too
        for kind in args.buckets.split(","):
            sweep, raw = run(kind, args.n, s3.endpoint, Path(tmp))
            print(
                f"{kind:9} bucket, N={args.n}: sweep {sweep:8.0f} expiries/s | "
                f"raw delete_objects {raw:8.0f} deletes/s | ratio {sweep / raw:.2f}"
            )


if __name__ == "__main__":
    main()
