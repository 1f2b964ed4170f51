"""Retention benchmark: expire N recordings on the S3 path (SeaweedFS, the embedded S3 server).

    .venv/bin/python bench/retention.py [--n 2000] [--buckets plain,versioned] [--runs 3]

For each bucket kind it stores N sealed recordings (catalog: SQLite, durable commits;
the version id each put returned kept in the row, as ingest does) whose retain-until
has passed, then times ``RetentionService.sweep()``: deletion intents, the vault
delete (``Vault.delete_many``: the catalog's version ids deleted by id, a listing per
prefix for versions written outside callvault, sorted runs in parallel), state
``expired``, one audit record and one signed receipt per recording. The baseline, in
the same run, is raw boto3 ``delete_objects`` of the same keys in batches of 1000 on
an identical bucket (with the version ids returned by ``put_object`` on the versioned
one: the least work S3 allows).

Printed per run: expiries/s, baseline deletes/s, ratio = sweep / baseline, and the CPU
time (user + sys) per 1000 deletions of this process and of the SeaweedFS process
(``/proc/<pid>/stat``), for the sweep and for the baseline: on a shared machine the
rates move with the neighbours' load, the CPU per deletion much less. With ``--runs``
> 1 the last lines give min / median / max. ``BENCH_PROFILE=1`` prints a profile of
the sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import resource
import statistics
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


@dataclasses.dataclass(frozen=True)
class Figures:
    sweep_rate: float  # expiries/s
    raw_rate: float  # deletes/s
    sweep_cpu: tuple[float, float]  # ms per 1000 deletions: this process, SeaweedFS
    raw_cpu: tuple[float, float]

    @property
    def ratio(self) -> float:
        return self.sweep_rate / self.raw_rate


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall time and CPU time of this process and of the S3 server over a block."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> Meter:
        self.wall = time.perf_counter()
        self.own = _own_cpu()
        self.server = _proc_cpu(self.server_pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.own = _own_cpu() - self.own
        self.server = _proc_cpu(self.server_pid) - self.server

    def per_thousand(self, n: int) -> tuple[float, float]:
        return (self.own * 1e6 / n, self.server * 1e6 / n)


def run(kind: str, n: int, endpoint: str, server_pid: int, workdir: Path) -> Figures:
    import boto3

    bucket = f"bench-{kind}-{time.monotonic_ns()}"
    env = {
        "CALLVAULT_DATA_DIR": str(workdir / bucket),
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

    def put(row: RecordingRow) -> RecordingRow:
        # as ingest does: the catalog keeps the version id the put returned
        written = services.vault.put(row.object_key, blob, tags={"retention-class": "standard-90d"})
        reply = client.put_object(Bucket=raw_bucket, Key=row.object_key, Body=blob)
        if "VersionId" in reply:
            versions[row.object_key] = reply["VersionId"]
        return dataclasses.replace(row, object_version=written.version_id)

    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(put, rows))
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
    with Meter(server_pid) as raw:
        for start in range(0, n, 1000):
            client.delete_objects(
                Bucket=raw_bucket, Delete={"Objects": entries[start : start + 1000], "Quiet": True}
            )

    retention = RetentionService(dataclasses.replace(services, policy=policy), actor="bench")
    retention.reschedule_if_policy_changed()  # first start: records the rules digest
    with Meter(server_pid) as swept:
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            profile = cProfile.Profile()
            result = profile.runcall(retention.sweep)
        else:
            result = retention.sweep()
    if os.environ.get("BENCH_PROFILE"):
        stats = pstats.Stats(profile).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "tottime"))
        stats.print_stats(int(os.environ.get("BENCH_PROFILE_LINES", "18")))
    assert len(result.expired) == n and not result.failed, (len(result.expired), result.failed[:3])
    left = client.list_object_versions(Bucket=bucket).get("Versions", [])
    assert not left, f"{len(left)} versions left"
    assert services.audit.verify().ok
    services.close()
    return Figures(n / swept.wall, n / raw.wall, swept.per_thousand(n), raw.per_thousand(n))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--buckets", default="plain,versioned")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedS3(Path(tmp) / "s3") as s3:
        os.environ.update(s3.credentials.env())  # the services sign with them too
        assert s3.pid is not None
        results: dict[str, list[Figures]] = {}
        for _ in range(args.runs):
            for kind in args.buckets.split(","):
                got = run(kind, args.n, s3.endpoint, s3.pid, Path(tmp))
                results.setdefault(kind, []).append(got)
                print(
                    f"{kind:9} bucket, N={args.n}: sweep {got.sweep_rate:6.0f} expiries/s | "
                    f"raw delete_objects {got.raw_rate:6.0f} deletes/s | ratio {got.ratio:.2f} | "
                    "CPU ms per 1000 (callvault + SeaweedFS): "
                    f"sweep {got.sweep_cpu[0]:.0f} + {got.sweep_cpu[1]:.0f}, "
                    f"raw {got.raw_cpu[0]:.0f} + {got.raw_cpu[1]:.0f}",
                    flush=True,
                )
        if args.runs > 1:
            for kind, runs in results.items():

                def spread(values: list[float], form: str = "{:.0f}") -> str:
                    low, mid, high = min(values), statistics.median(values), max(values)
                    return "/".join(form.format(v) for v in (low, mid, high))

                print(
                    f"{kind:9} min/median/max over {len(runs)} runs: "
                    f"sweep {spread([r.sweep_rate for r in runs])} expiries/s, "
                    f"raw {spread([r.raw_rate for r in runs])} deletes/s, "
                    f"ratio {spread([r.ratio for r in runs], '{:.2f}')}"
                )


if __name__ == "__main__":
    main()
