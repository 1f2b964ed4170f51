"""Access benchmark: fetch a 5-minute recording repeatedly through the HTTP API.

    .venv/bin/python bench/access.py [--fetches 60] [--seconds 300] [--codec mulaw]

A server process builds real services (file vault, SQLite catalog, local key file)
in a temporary folder, stores one call through the ingest pipeline and serves the
worker's aiohttp app (with the QA routes) on a free port. This process is the
client (its own interpreter, as a browser or API client would be) and, over fresh
HTTP connections, runs:

- ``bearer``: ``GET /v1/recordings/{id}/audio?purpose=...`` with a bearer token: token
  check, catalog read, policy decision, rate guard, durable audit append, header read
  and chunk-wise decryption, for every fetch;
- ``grant``: the same through one playback grant (what the page's player does);
- ``range``: a 64 KiB Range request in the middle of the recording (bearer).

Printed: p50/p99 time to first byte (request sent -> first body byte), full-fetch
MB/s, and the ratio of full-fetch speed to the baseline run in the same invocation:
read + decrypt of the same object in-process (``vault.get`` + ``KeyService.open_recording``),
without HTTP or policy. Goals: p99 TTFB <= 25 ms (file vault); ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callvault.services import Services, build_services  # noqa: E402
from callvault.settings import load_settings  # noqa: E402
from streams.http.rateguard import RateGuard  # noqa: E402
from tests.streams.qa_support import make_env  # noqa: E402

RID = "bench-access-1"
QA = {"purpose": "quality-improvement", "justification": "BENCH-1"}


def fetch(port: int, target: str, headers: dict[str, str]) -> tuple[float, float, int]:
    """(seconds to first body byte, seconds for the whole body, bytes) on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        start = time.perf_counter()
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        first = response.read(1)
        ttfb = time.perf_counter() - start
        if response.status not in (200, 206):
            raise SystemExit(f"fetch failed: {response.status} {first + response.read()!r}")
        size = len(first)
        while block := response.read(1 << 20):
            size += len(block)
        return ttfb, time.perf_counter() - start, size
    finally:
        conn.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def baseline_once(services: Services, object_key: str) -> tuple[float, int]:
    """One in-process read + decrypt of the whole object: (seconds, plaintext bytes)."""
    start = time.perf_counter()
    size = len(services.keys.open_recording(services.vault.get(object_key)))
    return time.perf_counter() - start, size


def run(
    kind: str, port: int, token: str, fetches: int, base: Callable[[], tuple[float, int]]
) -> tuple[list[float], list[float], int, list[float]]:
    """TTFBs, full-fetch times, body size, and baseline times taken alternately with the
    fetches (so both see the same machine load)."""
    bearer = {"Authorization": f"Bearer {token}"}
    path = f"/v1/recordings/{RID}/audio"
    if kind == "grant":
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(
            "POST", f"/v1/recordings/{RID}/grants", body=json.dumps(QA),
            headers={**bearer, "Content-Type": "application/json"},
        )  # fmt: skip
        target, headers = json.loads(conn.getresponse().read())["url"], {}
        conn.close()
    else:
        target, headers = f"{path}?{urlencode(QA)}", bearer
    if kind == "range":
        headers = {**headers, "Range": "bytes=1200000-1265535"}
    ttfbs, totals, bases, size = [], [], [], 0
    for i in range(fetches + 3):
        ttfb, total, size = fetch(port, target, headers)
        base_seconds, _ = base()
        if i >= 3:  # warm-up
            ttfbs.append(ttfb)
            totals.append(total)
            bases.append(base_seconds)
    return ttfbs, totals, size, bases


def serve(data: Path, seconds: float, codec: str) -> None:
    """Child process: store the call, serve, print the port and a token, wait for EOF."""
    env = make_env(
        data, {RID: {"seconds": seconds, "codec": codec}}, rate_guard=RateGuard(lambda role: None)
    )
    token = env.token("bench", "qa-reviewer", ttl=6 * 3600)
    print(json.dumps({"port": env.server.port, "token": token}), flush=True)
    sys.stdin.read()
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetches", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--codec", choices=("mulaw", "pcm16"), default="mulaw")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.seconds, args.codec)
        return
    with tempfile.TemporaryDirectory(prefix="cv-bench-access-") as tmp:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp, "--seconds", str(args.seconds),
             "--codec", args.codec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdin is not None and server.stdout is not None
        try:
            ready = json.loads(server.stdout.readline())
            port, token = ready["port"], ready["token"]
            services = build_services(load_settings({"CALLVAULT_DATA_DIR": f"{tmp}/data"}))
            row = services.catalog.get_recording(RID)
            assert row is not None
            object_key = row.object_key
            plain_size = baseline_once(services, object_key)[1]
            print(
                f"recording: {args.seconds:.0f} s {args.codec}, {plain_size / 1e6:.2f} MB WAV; "
                f"{args.fetches} fetches per row, new connection each"
            )
            print("baseline: vault.get + decrypt in-process, run alternately with the fetches")
            print(f"{'kind':<7} {'TTFB p50':>9} {'TTFB p99':>9} {'full p50':>9} "
                  f"{'MB/s':>7} {'base MB/s':>9} {'ratio':>6}")  # fmt: skip
            for kind in ("bearer", "grant", "range"):
                ttfbs, totals, size, bases = run(
                    kind, port, token, args.fetches, lambda: baseline_once(services, object_key)
                )
                mbs = size / statistics.median(totals) / 1e6
                base_mbs = plain_size / statistics.median(bases) / 1e6
                ratio = f"{mbs / base_mbs:6.2f}" if kind != "range" else "     -"
                print(
                    f"{kind:<7} {percentile(ttfbs, 50) * 1e3:7.2f}ms "
                    f"{percentile(ttfbs, 99) * 1e3:7.2f}ms "
                    f"{statistics.median(totals) * 1e3:7.2f}ms {mbs:7.0f} {base_mbs:9.0f} {ratio}"
                )
            services.close()
            print("goal: TTFB p99 <= 25 ms; ratio (full-fetch MB/s / baseline MB/s) >= 0.5")
        finally:
            server.stdin.close()
            server.wait(30)


if __name__ == "__main__":
    main()
