"""Export benchmark: a customer's disclosure ZIP streamed over HTTP, decrypted on the fly.

    .venv/bin/python bench/export.py [--recordings 10] [--minutes 5] [--downloads 3]

Real services (file vault, SQLite catalog, local key file) in a temporary folder; one
customer with ``--recordings`` mu-law calls of ``--minutes`` each, sealed and stored
as ingest stores them; a ``disclose`` request signs the export manifest; the worker's
aiohttp app, served in a thread of this process, answers
``GET /v1/privacy-requests/{id}/export`` ``--downloads`` times (a compliance officer's
token, fresh connections). Printed per run: MB/s of the ZIP and CPU milliseconds (this
whole process: client, server and decryption) per minute of exported audio, against
the baseline measured in the same invocation: ``vault.get`` + ``KeyService.open_recording``
of the same objects in-process (no HTTP, no ZIP, no policy, no audit). Also the peak
RSS growth during the downloads (the ZIP is never held whole: it streams through a
bounded queue), and that nothing plaintext was written under the data dir.
"""

from __future__ import annotations

import argparse
import http.client
import resource
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callvault.synth import call_wav  # noqa: E402
from streams.metrics import Metrics  # noqa: E402
from tests.streams.lifecycle_support import (  # noqa: E402
    NOW,
    Clock,
    WebServer,
    lifecycle_of,
    make_services,
    store_call,
    verification,
)


def _download(port: int, token: str) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        start = time.perf_counter()
        conn.request(
            "GET", "/v1/privacy-requests/PR-BENCH/export",
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        response = conn.getresponse()
        size = 0
        while chunk := response.read(1 << 20):
            size += len(chunk)
        if response.status != 200:
            raise SystemExit(f"export failed: {response.status}")
        return time.perf_counter() - start, size
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--downloads", type=int, default=3)
    args = parser.parse_args()
    audio = call_wav(args.minutes * 60, codec="mulaw", seed=7)
    with tempfile.TemporaryDirectory(prefix="cv-bench-export-") as tmp:
        root = Path(tmp)
        clock = Clock(NOW)
        services = make_services(root, f"sqlite:///{root}/catalog.sqlite3", "file", clock)
        rows = [
            store_call(services, f"bench-exp-{i}", seconds=args.minutes * 60, audio=audio,
                       ended_at=NOW - timedelta(hours=i + 1))
            for i in range(args.recordings)
        ]  # fmt: skip
        metrics = Metrics()
        lifecycle = lifecycle_of(services, metrics)
        lifecycle.privacy.submit(
            {"type": "disclose", "tenant": "acme", "customer_ref": "C-1001",
             "request_id": "PR-BENCH", "identity_verification": verification()},
            requested_by="officer-7",
        )  # fmt: skip
        server = WebServer(services, lifecycle, metrics).start()
        token = server.token("officer-7", "compliance-officer")
        audio_minutes = args.recordings * args.minutes
        try:
            # baseline: read + decrypt the same objects in-process
            cpu0, t0 = time.process_time(), time.perf_counter()
            plain = sum(
                len(services.keys.open_recording(services.vault.get(row.object_key)))
                for row in rows
            )
            base_s, base_cpu = time.perf_counter() - t0, time.process_time() - cpu0
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            rates, cpus = [], []
            size = 0
            for _ in range(args.downloads):
                cpu0 = time.process_time()
                seconds, size = _download(server.port, token)
                cpus.append((time.process_time() - cpu0) * 1000 / audio_minutes)
                rates.append(size / seconds / 1e6)
            rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        finally:
            server.stop()
        plaintext = [
            p for p in (root / "data").rglob("*")
            if p.is_file() and p.read_bytes()[:4] == b"RIFF"
        ]  # fmt: skip
        services.close()
    base_rate = plain / base_s / 1e6
    base_cpu_min = base_cpu * 1000 / audio_minutes
    print(f"export: {args.recordings} x {args.minutes:g}-min mu-law calls, ZIP {size / 1e6:.1f} MB")
    print(
        f"  download  {min(rates):.0f} / {statistics.median(rates):.0f} / {max(rates):.0f} MB/s "
        f"(min/median/max of {args.downloads}); CPU {min(cpus):.2f} / "
        f"{statistics.median(cpus):.2f} / {max(cpus):.2f} ms per audio minute"
    )
    print(f"  baseline  read + decrypt {base_rate:.0f} MB/s, CPU {base_cpu_min:.2f} ms/min")
    print(f"  ratio     {statistics.median(rates) / base_rate:.2f} (median download / baseline)")
    print(f"  peak RSS growth during the downloads: {rss_growth:.1f} MiB")
    print(f"  plaintext files under the data dir: {len(plaintext)}")


if __name__ == "__main__":
    main()
