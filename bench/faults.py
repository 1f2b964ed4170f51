"""Fault benchmark (issue 17): what survives worker SIGKILLs, broker memory loss, a
faulty S3 and a faulty catalog, through real ``callvault worker`` processes.

    .venv/bin/python bench/faults.py [--recordings 1000] [--kills 5] [--only R1,R3,S3,PG]

Scenarios (each on a fresh data folder, PBX-style landing: audio + sidecar):

- **R1**: ``--recordings`` produced in waves while ``--kills`` workers in a row are
  SIGKILLed right after a batch's catalog commit (a stored recording's landing copy
  still there), then one worker finishes.
- **R3**: a worker SIGKILLed the same way, then the broker (tansu in memory) restarted:
  every undelivered event is gone; a new worker relies on the reconciler (sidecars)
  and the janitor (landing copies of stored recordings). The audit topic is compared
  with the catalog's audit log, record by record.
- **S3**: the vault on SeaweedFS (versioned bucket) behind the fault proxy: 10 % of the
  requests get a 500, a 503, a reset or a stall past the read timeout, while a quarter
  of ``--recordings`` are ingested; then the faults stop.
- **PG cut / PG blackhole / PG lock**: the catalog on PostgreSQL behind the fault
  proxy: cut (connections reset) for ``--fault-seconds``, blackhole (nothing relayed)
  for as long, and a lock on the audit chain head held by an orphaned session that
  the server ends after ``CALLVAULT_SQL_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS`` (10 here);
  80 recordings are produced during each fault.

Printed per scenario: recordings stored exactly once, lost, duplicated, left behind
(landing audio + sidecars + plaintext files in the vault), the seconds from the end of
the fault (the last start for R1/R3) until every recording is stored and nothing is
left, whether ``/readyz`` went red during the fault (and its reasons), and the
worker's CPU seconds per 1000 recordings (R1, a baseline run without faults beside it:
the ratio is the cost of the kills).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from callvault.broker import EmbeddedBroker, free_port  # noqa: E402
from callvault.seaweed import EmbeddedS3  # noqa: E402
from callvault.services import Services  # noqa: E402
from tests.e2e.faults_support import (  # noqa: E402
    audit_topic_matches,
    kill_in_window,
    leftovers,
    pbx_calls,
    settle,
)
from tests.e2e.harness import WorkerProcess, e2e_settings, open_services, wait_until  # noqa: E402
from tests.fixtures.faults import FaultProxy  # noqa: E402

ADMIN_URL = os.environ.get("CALLVAULT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Row:
    scenario: str
    recordings: int
    stored_once: int = 0
    lost: int = 0
    duplicated: int = 0
    left_behind: int = 0
    recover_seconds: float = 0.0
    red: str = "-"
    extra: dict[str, Any] = field(default_factory=dict)


class ReadyWatch:
    """Polls ``/readyz`` in a thread; collects the reasons seen while armed."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.reasons: set[str] = set()
        self.red = False
        self.armed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            if not self.armed:
                continue
            try:
                with urllib.request.urlopen(f"{self.worker.web_url}/readyz", timeout=3) as r:
                    r.read()
            except urllib.error.HTTPError as exc:
                self.red = True
                self.reasons.update(json.loads(exc.read()).get("reasons", []))
            except OSError:
                pass

    def arm(self, timeout: float = 60) -> ReadyWatch:
        """Start collecting once ``/readyz`` is green (a worker just started is not)."""

        def green() -> bool:
            try:
                with urllib.request.urlopen(f"{self.worker.web_url}/readyz", timeout=3) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(green, timeout, "the worker to be ready", 0.5)
        self.armed = True
        return self

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(5)
        return ("yes: " + ",".join(sorted(self.reasons))) if self.red else "no"


def worker_cpu(worker: WorkerProcess) -> float:
    """CPU seconds the worker process used so far (from /proc; 0 when gone)."""
    assert worker.proc is not None
    try:
        fields = Path(f"/proc/{worker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """Reads the worker's CPU time every 0.1 s; ``last`` is the last reading."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker, self.last = worker, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            value = worker_cpu(self.worker)
            if value:
                self.last = value

    def __enter__(self) -> CpuSampler:
        self.last = worker_cpu(self.worker)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def _fill(row: Row, services: Services, ids: list[str]) -> Row:
    found = leftovers(services, ids)
    row.stored_once, row.lost, row.duplicated = found.stored_once, found.lost, found.duplicated
    row.left_behind = found.left_behind
    return row


# -- R1 / R3 ------------------------------------------------------------------------------
def run_kills(base: Path, count: int, kills: int) -> list[Row]:
    rows = []
    with EmbeddedBroker(free_port(), log_file=base / "broker-base.log") as broker:
        env = e2e_settings(base / "base", broker.url, CALLVAULT_RECONCILE_AFTER_SECONDS="2")
        services = open_services(env)
        ids, producer = pbx_calls(services, broker.url.removeprefix("kafka://"), count, "b")
        worker = WorkerProcess(env, base / "worker-base.log").start()
        cpu0, started = worker_cpu(worker), time.monotonic()
        producer.start()
        producer.join()
        settle(services, ids, 600)
        base_cpu, base_wall = worker_cpu(worker) - cpu0, time.monotonic() - started
        worker.stop()
        services.close()
    with EmbeddedBroker(free_port(), log_file=base / "broker-r1.log") as broker:
        env = e2e_settings(base / "r1", broker.url, CALLVAULT_RECONCILE_AFTER_SECONDS="2")
        services = open_services(env)
        ids, producer = pbx_calls(
            services, broker.url.removeprefix("kafka://"), count, "k", wave=max(10, count // 20)
        )
        worker = WorkerProcess(env, base / "worker-r1.log")
        cpu = 0.0
        windows = []
        started = time.monotonic()
        for i in range(kills):
            worker.start()
            if i == 0:
                producer.start()
            with CpuSampler(worker) as sampler:  # a killed process's CPU is gone with it
                at_least = min(count - 1, (i + 1) * count // (kills + 1))
                windows.append(kill_in_window(services, worker, ids, at_least, timeout=600))
            cpu += sampler.last
        producer.join()
        worker.start()
        cpu0 = worker_cpu(worker)
        seconds = settle(services, ids, 900)
        cpu += worker_cpu(worker) - cpu0
        wall = time.monotonic() - started
        row = _fill(Row(f"R1 SIGKILL x{kills}", count), services, ids)
        row.recover_seconds = seconds
        row.red = "n/a (killed)"
        row.extra = {
            "kills (rows, stored with landing left)": windows,
            "throughput": f"{count / wall:.0f} rec/s (worker starts included) vs baseline "
            f"{count / base_wall:.0f} rec/s without faults: ratio {base_wall / wall:.2f}",
            "worker CPU per 1000 recordings": f"{cpu / count * 1000:.2f} s vs baseline "
            f"{base_cpu / count * 1000:.2f} s: ratio {cpu / max(base_cpu, 1e-9):.2f}",
        }
        worker.stop()
        services.close()
        rows.append(row)
    with EmbeddedBroker(free_port(), log_file=base / "broker-r3.log") as broker:
        bootstrap = broker.url.removeprefix("kafka://")
        env = e2e_settings(base / "r3", broker.url, CALLVAULT_RECONCILE_AFTER_SECONDS="2")
        services = open_services(env)
        ids, producer = pbx_calls(services, bootstrap, count, "m", wave=max(10, count // 20))
        worker = WorkerProcess(env, base / "worker-r3.log").start()
        producer.start()
        window = kill_in_window(services, worker, ids, count // 3, timeout=600)
        producer.join()
        broker.stop()
        broker.start()
        worker.start()
        watch = ReadyWatch(worker).arm()
        seconds = settle(services, ids, 900)
        row = _fill(Row("R3 broker memory loss", count), services, ids)
        row.recover_seconds = seconds
        row.red = watch.stop()
        row.extra = {
            "kill (rows, stored with landing left)": window,
            "audit topic == catalog (records)": audit_topic_matches(services, bootstrap, 120),
        }
        worker.stop()
        services.close()
        rows.append(row)
    return rows


# -- S3 -----------------------------------------------------------------------------------
def run_s3(base: Path, count: int) -> Row:
    s3 = EmbeddedS3(base / "s3").start(timeout=60)
    os.environ.update(s3.credentials.env())  # this process's own services read the bucket
    try:
        bucket = f"faults-{secrets.token_hex(4)}"
        s3.ensure_bucket(bucket, versioning=True)
        port = int(s3.endpoint.rsplit(":", 1)[1])
        with FaultProxy(port, http=True) as proxy, EmbeddedBroker(free_port()) as broker:
            env = e2e_settings(
                base / "s3data",
                broker.url,
                CALLVAULT_VAULT=f"s3://{bucket}",
                CALLVAULT_S3_ENDPOINT=f"http://{proxy.address}",
                CALLVAULT_S3_READ_TIMEOUT_SECONDS="1",
                CALLVAULT_S3_CONNECT_TIMEOUT_SECONDS="1",
                CALLVAULT_S3_MAX_ATTEMPTS="3",
                CALLVAULT_READY_STALL_SECONDS="5",
                CALLVAULT_METRICS_INTERVAL_SECONDS="2",
                **s3.credentials.env(),
            )
            services = open_services(env)
            ids, producer = pbx_calls(services, broker.url.removeprefix("kafka://"), count, "s")
            worker = WorkerProcess(env, base / "worker-s3.log").start()
            watch = ReadyWatch(worker).arm()
            proxy.http_faults(0.10, stall_seconds=2.5, seed=7)
            producer.start()
            producer.join()
            wait_until(lambda: leftovers(services, ids).lost < count // 10, 900, "most stored")
            proxy.heal()
            red = watch.stop()
            seconds = settle(services, ids, 600)
            row = _fill(Row("S3 10% 500/503/reset/stall", count), services, ids)
            row.recover_seconds, row.red = seconds, red
            injected = {k: v for k, v in proxy.stats.items() if k.startswith("fault:")}
            row.extra = {"S3 requests": proxy.stats["requests"], "faults": injected}
            worker.stop()
            services.close()
            return row
    finally:
        s3.stop()


# -- PostgreSQL ---------------------------------------------------------------------------
@contextmanager
def bench_database() -> Iterator[str]:
    name = f"callvault_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def run_catalog(base: Path, fault_seconds: float, per_fault: int = 80) -> list[Row]:
    rows = []
    with bench_database() as url, EmbeddedBroker(free_port()) as broker:
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        proxy = FaultProxy(port).start()
        proxied = url.replace(f":{port}/", f":{proxy.port}/", 1)
        direct = e2e_settings(base / "pg", broker.url, CALLVAULT_CATALOG=url)
        env = dict(
            direct,
            CALLVAULT_CATALOG=proxied,
            CALLVAULT_READY_STALL_SECONDS="5",
            CALLVAULT_METRICS_INTERVAL_SECONDS="2",
            CALLVAULT_SQL_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS="10",
            CALLVAULT_SQL_KEEPALIVE_SECONDS="5",
        )
        services = open_services(direct)
        bootstrap = broker.url.removeprefix("kafka://")
        worker = WorkerProcess(env, base / "worker-pg.log").start()
        warm, producer = pbx_calls(services, bootstrap, 20, "warm")
        producer.start()
        producer.join()
        settle(services, warm, 120)

        def orphaned_lock() -> Callable[[], None]:
            # a callvault-like session (same idle-in-transaction bound) that froze
            # holding the chain head's row lock: the server ends it after 10 s
            orphan = psycopg.connect(url, options="-c idle_in_transaction_session_timeout=10000")
            orphan.execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
            pid = orphan.info.backend_pid

            def end() -> None:
                wait_until(lambda: not _alive(url, pid), 60, "the server to end the orphan")
                orphan.close()

            return end

        faults: list[tuple[str, Callable[[], Callable[[], None]]]] = [
            (f"PG cut {fault_seconds:.0f}s", lambda: _timed(proxy.cut, proxy.heal, fault_seconds)),
            (
                f"PG blackhole {fault_seconds:.0f}s",
                lambda: _timed(proxy.blackhole, proxy.heal, fault_seconds),
            ),
            ("PG orphaned lock", orphaned_lock),
        ]
        for number, (name, start_fault) in enumerate(faults):
            ids, producer = pbx_calls(services, bootstrap, per_fault, f"pg{number}")
            watch = ReadyWatch(worker).arm()
            end_fault = start_fault()
            producer.start()
            end_fault()  # waits for the fault's end
            ended = time.monotonic()
            red = watch.stop()
            producer.join()
            settle(services, ids, 300)
            row = _fill(Row(name, per_fault), services, ids)
            row.recover_seconds, row.red = time.monotonic() - ended, red
            rows.append(row)
        worker.stop()
        proxy.stop()
        services.close()
    return rows


def _alive(url: str, pid: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
        found = row.fetchone()
    return bool(found and found[0])


def _timed(
    begin: Callable[[], None], end: Callable[[], None], seconds: float
) -> Callable[[], None]:
    begin()

    def finish() -> None:
        time.sleep(seconds)
        end()

    return finish


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recordings", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--fault-seconds", type=float, default=20.0)
    parser.add_argument("--only", default="R1,R3,S3,PG", help="comma-separated scenarios")
    args = parser.parse_args()
    only = {part.strip().upper() for part in args.only.split(",")}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cv-faults-") as tmp:
        base = Path(tmp)
        if only & {"R1", "R3"}:
            rows += [
                r for r in run_kills(base, args.recordings, args.kills) if r.scenario[:2] in only
            ]
        if "S3" in only:
            rows.append(run_s3(base, max(50, args.recordings // 4)))
        if "PG" in only:
            rows += run_catalog(base, args.fault_seconds)
    print()
    header = (
        "| scenario | recordings | stored once | lost | duplicated | left behind "
        "| recovered (s) | /readyz red during the fault |"
    )
    print(header)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row.scenario} | {row.recordings} | {row.stored_once} | {row.lost} | "
            f"{row.duplicated} | {row.left_behind} | {row.recover_seconds:.1f} | {row.red} |"
        )
    for row in rows:
        for key, value in row.extra.items():
            print(f"  {row.scenario}: {key}: {value}")


if __name__ == "__main__":
    main()
