"""QA review benchmark: the waveform of a long call and the find-the-call listing.

    .venv/bin/python bench/qa.py [--minutes 30] [--recordings 20000] [--runs 5]

Real services (file vault, SQLite catalog, local key file) in a temporary folder:

- ``waveform``: one ``--minutes`` 8 kHz mu-law call stored through the ingest pipeline;
  CPU time (user + sys of this process) of computing its 1200-point waveform from the
  stored object (``streams.http.waveform``: read, decrypt, G.711 expand, per-bucket
  min/max), against the baseline run alongside: reading and decrypting the same object
  window by window (what any playback costs). Printed per minute of audio, with the
  ratio waveform / baseline.
- ``listing``: ``--recordings`` catalog rows (200 agents, 20 queues, 3 directions,
  spread over 30 days), then ``GET /v1/recordings`` through the worker's web app with
  a reviewer's token: by call id, and by agent + queue + direction + length (newest
  first, a page of 50), against the baseline of the same catalog query in process
  (``Catalog.list_recordings``). Each HTTP listing is decided and audited (one durable
  audit append); the ratio says what that costs over the bare query.

Runs vary on the shared machine: min / median / max of ``--runs`` runs are printed.
"""

from __future__ import annotations

import argparse
import http.client
import math
import resource
import statistics
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.catalog.audit import AuditDraft  # noqa: E402
from storage.types import RecordingRow  # noqa: E402
from streams.http.audio_stream import AudioReader  # noqa: E402
from streams.http.waveform import _waveform  # noqa: E402
from tests.streams.qa_support import NOW, QaEnv, make_env  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def mulaw_wav(minutes: float) -> bytes:
    """An 8 kHz mu-law WAV: a second of varying tones, repeated (fast to make)."""
    rate = 8000
    second = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * (200 + 3 * (n // 800)) * n / rate)))
        for n in range(rate)
    )
    codes = audioop.lin2ulaw(second, 2) * int(minutes * 60)
    fmt = struct.pack("<HHIIHH", 7, 1, rate, rate, 1, 8)
    body = b"fmt " + struct.pack("<I", 18) + fmt + b"\0\0"
    body += b"fact" + struct.pack("<II", 4, len(codes)) + b"data" + struct.pack("<I", len(codes))
    return b"RIFF" + struct.pack("<I", 4 + len(body) + len(codes)) + b"WAVE" + body + codes


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def bench_waveform(env: QaEnv, minutes: float, runs: int) -> None:
    row = env.services.catalog.get_recording("bench-long")
    assert row is not None
    vault, keys = env.services.vault, env.services.keys

    def baseline() -> None:
        reader = AudioReader(vault, keys, row)
        size = reader.open().plaintext_size
        for start in range(0, size, 1 << 20):
            reader.read(start, min(size, start + (1 << 20)) - 1)

    def waveform() -> None:
        _waveform(vault, keys, row, 1200)

    results: dict[str, list[float]] = {"baseline": [], "waveform": []}
    for _ in range(runs):
        for name, job in (("baseline", baseline), ("waveform", waveform)):
            before = cpu()
            job()
            results[name].append((cpu() - before) * 1000 / minutes)
    ratios = [w / b for w, b in zip(results["waveform"], results["baseline"], strict=True)]
    mb = row.audio_bytes / 1e6
    print(f"waveform, {minutes:g}-minute 8 kHz mu-law call ({mb:.1f} MB stored), CPU ms per")
    print("audio minute, min / median / max:")
    print(f"  waveform (1200 points)  {spread(results['waveform'])}")
    print(f"  baseline read+decrypt   {spread(results['baseline'])}")
    low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
    print(f"  ratio waveform/baseline {low:.2f} / {mid:.2f} / {high:.2f}")


def fill_catalog(env: QaEnv, count: int) -> RecordingRow:
    template = env.services.catalog.get_recording("bench-long")
    assert template is not None
    rows = []
    for i in range(count):
        started = NOW - timedelta(days=30) + timedelta(seconds=i * 30 * 24 * 3600 // count)
        rows.append(
            replace(
                template,
                recording_id=f"bench-{i:06d}",
                call_id=f"CA-{i:06d}",
                agent_id=f"agent-{i % 200}",
                queue=f"queue-{i % 20}",
                direction=("inbound", "outbound", "internal")[i % 3],
                started_at=started,
                ended_at=started + timedelta(seconds=30 + i % 600),
                duration_ms=(30 + i % 600) * 1000,
                object_key=f"rec/bench/{i:06d}",
            )
        )
    draft = AuditDraft("bench", "ingest.stored", "ok")
    for start in range(0, count, 1000):
        env.services.catalog.store_recordings([(r, draft) for r in rows[start : start + 1000]])
    return rows[count // 2]


def get(port: int, target: str, token: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        start = time.perf_counter()
        conn.request("GET", target, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"listing failed: {response.status} {body[:200]!r}")
        return time.perf_counter() - start
    finally:
        conn.close()


def bench_listing(env: QaEnv, count: int, runs: int) -> None:
    probe = fill_catalog(env, count)
    token = env.token("rita", "qa-reviewer")
    cases: dict[str, tuple[str, Callable[[], object]]] = {
        "by call id": (
            f"/v1/recordings?call_id={probe.call_id}",
            lambda: env.services.catalog.list_recordings(call_id=probe.call_id, newest_first=True),
        ),
        "agent+queue+direction+length": (
            f"/v1/recordings?agent={probe.agent_id}&queue={probe.queue}&direction={probe.direction}"
            "&min_duration=60&limit=50",
            lambda: env.services.catalog.list_recordings(
                agent_id=probe.agent_id,
                queue=probe.queue,
                direction=probe.direction,
                min_duration_ms=60_000,
                newest_first=True,
                limit=100,
            ),
        ),  # fmt: skip
    }
    print(f"listing, {count} recordings in the catalog (SQLite), {runs} runs x 20 requests:")
    for name, (target, baseline) in cases.items():
        http_ms: list[float] = []
        base_ms: list[float] = []
        for _ in range(runs):
            start = time.perf_counter()
            for _ in range(20):
                baseline()
            base_ms.append((time.perf_counter() - start) * 1000 / 20)
            http_ms.append(
                statistics.median(get(env.server.port, target, token) for _ in range(20)) * 1000
            )
        ratios = [h / b for h, b in zip(http_ms, base_ms, strict=True)]
        print(f"  {name}: HTTP (decided + audited) ms min/median/max {spread(http_ms)}; "
              f"bare query {spread(base_ms)}; ratio {statistics.median(ratios):.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--recordings", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cv-bench-qa-") as tmp:
        env = make_env(
            Path(tmp),
            {"bench-long": {"audio": mulaw_wav(args.minutes), "seconds": args.minutes * 60}},
        )
        try:
            bench_waveform(env, args.minutes, args.runs)
            bench_listing(env, args.recordings, args.runs)
        finally:
            env.close()


if __name__ == "__main__":
    main()
