"""Ingest benchmark: N one-minute 8 kHz mu-law calls through the real broker into the vault.

    .venv/bin/python bench/ingest.py [--calls 600] [--paths file,s3] [--runs 3]

For each vault path (file folder; S3 on SeaweedFS, the embedded S3 server) it starts a fresh
tansu broker and a ``callvault worker`` process, lands N calls, produces their
events, and times produce -> last catalog row. The baseline, run in the same
invocation, writes the same bytes with a plain durable file write (file path) or a
plain ``put_object`` with the worker's parallelism (S3 path). Printed: calls/s,
MB/s of landing audio, the worker's CPU time per call (user + sys of the worker
process and its children, read from /proc before and after: noise on a shared machine
moves it far less than wall time), the per-stage time breakdown (from the worker's
/metrics), and ratio = pipeline calls/s / baseline calls/s. With ``--runs N`` each path
runs N times and a last line gives min / median / max of each figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callvault.broker import EmbeddedBroker, free_port  # noqa: E402
from callvault.demo import demo_event  # noqa: E402
from callvault.seaweed import EmbeddedS3  # noqa: E402
from callvault.synth import call_wav  # noqa: E402
from streams.metrics import STAGES  # noqa: E402
from tests.e2e.harness import WorkerProcess, e2e_settings, open_services, produce, wait_until  # noqa: E402


def stage_sums(web_url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"{web_url}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("callvault_ingest_stage_seconds_sum{"):
                stage = line.split('stage="', 1)[1].split('"', 1)[0]
                out[stage] = float(line.rsplit(" ", 1)[1])
    return out


def baseline_file(blobs: list[bytes], folder: Path) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, blob in enumerate(blobs):
        tmp = folder / f"{i}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / f"{i}.bin")
    return time.perf_counter() - start


def baseline_s3(blobs: list[bytes], endpoint: str, bucket: str, workers: int = 4) -> float:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                lambda ib: client.put_object(Bucket=bucket, Key=f"baseline/{ib[0]}", Body=ib[1]),
                enumerate(blobs),
            )
        )
    return time.perf_counter() - start


def topic_partitions(bootstrap: str, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return len(metadata.topics[topic].partitions)


#: Seconds to let the consumer group settle after a multi-process worker answers: its
#: children join one after the other, each join a rebalance (faust's rebalance timeout
#: is 6 s); tansu 0.6 does not describe group members, so this cannot be polled.
GROUP_SETTLE_SECONDS = 12.0


def run_pipeline(
    path: str,
    calls: int,
    clip: bytes,
    workdir: Path,
    s3_endpoint: str | None,
    processes: int = 1,
) -> dict[str, object]:
    """Land ``calls`` calls, produce their events to a fresh broker with a fresh
    ``callvault worker [--processes N]`` running, and time produce -> last catalog row."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(free_port(), log_file=workdir / f"broker-{path}.log").start()
    extra: dict[str, str] = {}
    if os.environ.get("BENCH_PARTITIONS"):  # --partitions (WorkerProcess drops CALLVAULT_*)
        extra["CALLVAULT_PARTITIONS"] = os.environ["BENCH_PARTITIONS"]
    if path == "s3":
        assert s3_endpoint
        extra.update(CALLVAULT_VAULT="s3://bench-vault", CALLVAULT_S3_ENDPOINT=s3_endpoint)
    env = e2e_settings(workdir / f"data-{path}", broker.url, CALLVAULT_LOG_LEVEL="warning", **extra)
    services = open_services(env)
    if path == "s3":
        services.vault.ensure_bucket()  # type: ignore[attr-defined]
    worker = WorkerProcess(env, workdir / f"worker-{path}.log", processes=processes)
    try:
        worker.start()
        payloads, blobs = [], []
        for i in range(calls):
            audio = clip[:-1] + bytes([i % 256])
            blobs.append(audio)
            path_ = services.settings.landing_dir / f"bench-{i:05d}.wav"
            path_.write_bytes(audio)
            event = demo_event(
                f"bench-{i:05d}",
                audio=audio,
                uri=f"file://{path_}",
                seconds=60,
                customer=f"cust-{i % 500}",
                sha256=hashlib.sha256(audio).hexdigest(),
            )
            payloads.append(json.dumps(event).encode())
        if processes > 1:
            time.sleep(GROUP_SETTLE_SECONDS)
        before = stage_sums(worker.web_url)
        ids = [f"bench-{i:05d}" for i in range(calls)]
        cpu_before = worker.cpu_seconds()
        start = time.perf_counter()
        produce(
            broker.url.removeprefix("kafka://"),
            "callvault.recordings",
            payloads,
            keys=[rid.encode() for rid in ids],  # as the worker keys them: over all partitions
        )
        wait_until(
            lambda: len(services.catalog.recording_ids_present(ids)) == calls,
            1200,
            "all calls",
            0.05,
        )
        elapsed = time.perf_counter() - start
        cpu = worker.cpu_seconds() - cpu_before
        after = stage_sums(worker.web_url)
        stages = {s: after.get(s, 0.0) - before.get(s, 0.0) for s in STAGES}
        partitions = topic_partitions(broker.url.removeprefix("kafka://"), "callvault.recordings")
        return {
            "elapsed": elapsed,
            "stages": stages,
            "blobs": blobs,
            "cpu": cpu,
            "partitions": partitions,
        }
    finally:
        worker.stop()
        services.close()
        broker.stop()


def one_run(
    path: str, run: int, calls: int, clip: bytes, mb: float, workdir: Path, endpoint: str | None
) -> dict[str, float]:
    """One pipeline run and its baseline on the same bytes; prints and returns figures."""
    result = run_pipeline(path, calls, clip, workdir, endpoint)
    blobs: list[bytes] = result["blobs"]  # type: ignore[assignment]
    before = os.times()  # the baseline runs in this process (its boto3 threads included)
    if path == "file":
        base = baseline_file(blobs, workdir / "baseline")
        base_name = "plain durable file write"
    else:
        import boto3

        bucket = f"bench-base-{run}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        base = baseline_s3(blobs, endpoint or "", bucket)
        base_name = "plain put_object x4 threads"
    after = os.times()
    base_cpu = (after.user - before.user) + (after.system - before.system)
    elapsed: float = result["elapsed"]  # type: ignore[assignment]
    cpu: float = result["cpu"]  # type: ignore[assignment]
    rate, base_rate = calls / elapsed, calls / base
    tag = f"[{path} run {run}]"
    print(f"\n{tag} pipeline: {rate:8.1f} calls/s  {mb / elapsed:7.1f} MB/s  ({elapsed:.2f} s)")
    print(f"{tag} baseline ({base_name}): {base_rate:8.1f} calls/s  {mb / base:7.1f} MB/s")
    print(f"{tag} ratio pipeline/baseline: {rate / base_rate:.2f}")
    print(
        f"{tag} worker CPU: {1000 * cpu / calls:.2f} ms per call (user+sys, /proc), "
        f"{cpu / elapsed:.2f} cores busy; topic partitions: {result['partitions']}"
    )
    print(
        f"{tag} baseline CPU: {1000 * base_cpu / calls:.2f} ms per call; "
        f"worker / baseline CPU: {cpu / max(base_cpu, 1e-9):.2f}"
    )
    stages: dict[str, float] = result["stages"]  # type: ignore[assignment]
    total = sum(stages.values()) or 1.0
    print(f"{tag} stage time (summed over worker threads, ms per call):")
    for stage in STAGES:
        print(
            f"    {stage:<9} {1000 * stages[stage] / calls:7.2f}  "
            f"{100 * stages[stage] / total:5.1f}%"
        )
    return {
        "calls/s": rate,
        "baseline calls/s": base_rate,
        "ratio": rate / base_rate,
        "CPU ms/call": 1000 * cpu / calls,
        "baseline CPU ms": 1000 * base_cpu / calls,
    }


def summary(label: str, figures: list[dict[str, float]], digits: int = 2) -> None:
    """min / median / max of each figure over the runs (bench/import.py uses it too)."""
    print(f"\n{label} {len(figures)} runs, min / median / max:")
    for name in figures[0]:
        values = [f[name] for f in figures]
        low, mid, high = min(values), statistics.median(values), max(values)
        print(f"    {name:<17} {low:8.{digits}f} / {mid:8.{digits}f} / {high:8.{digits}f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--paths", default="file,s3")
    parser.add_argument("--runs", type=int, default=1, help="runs per path (min/median/max)")
    parser.add_argument("--partitions", type=int, default=None, help="CALLVAULT_PARTITIONS")
    args = parser.parse_args()
    if args.partitions:
        os.environ["BENCH_PARTITIONS"] = str(args.partitions)
    clip = call_wav(60.0, codec="mulaw", seed=1)
    mb = len(clip) * args.calls / 1e6
    print(
        f"{args.calls} one-minute 8 kHz mu-law calls, {len(clip) / 1024:.0f} KiB each, "
        f"{mb:.0f} MB in all"
    )
    with tempfile.TemporaryDirectory(prefix="callvault-bench-") as tmp:
        workdir = Path(tmp)
        s3 = None
        endpoint = None
        if "s3" in args.paths:
            s3 = EmbeddedS3(workdir / "s3").start()
            endpoint = s3.endpoint
            os.environ.update(s3.credentials.env())  # the worker signs with them too
        try:
            for path in args.paths.split(","):
                figures: list[dict[str, float]] = []
                for run in range(1, args.runs + 1):
                    figures.append(
                        one_run(path, run, args.calls, clip, mb, workdir / f"run-{run}", endpoint)
                    )
                if args.runs > 1:
                    summary(f"[{path}]", figures)
        finally:
            if s3 is not None:
                s3.stop()


if __name__ == "__main__":
    main()
