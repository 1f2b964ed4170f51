"""Backfill benchmark: N one-minute 8 kHz mu-law calls imported from a folder archive.

    .venv/bin/python bench/import.py [--files 500] [--batch-size 32]

Builds an archive of N one-minute calls and a CSV manifest in a temp folder, then runs
``callvault import`` in-process (the real pipeline: sha256, decode, redact, encrypt,
vault, SQLite catalog, audit) into a fresh data dir with a file vault. The baseline,
run in the same invocation on the same files, is a plain durable copy (read, write,
fsync, rename) of every file into a folder. Printed: files/s and MB/s (of archive
audio) for both, ratio = import files/s / baseline files/s, and the time a re-run
(everything skipped) takes.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callvault.services import build_services  # noqa: E402
from callvault.settings import load_settings  # noqa: E402
from callvault.synth import call_wav  # noqa: E402
from streams.backfill import read_manifest, run_import  # noqa: E402


def make_archive(folder: Path, files: int) -> tuple[Path, int]:
    start = datetime.now(UTC) - timedelta(days=10)
    rows, total = [], 0
    for n in range(files):
        name = f"{n // 100:03}/call-{n:05}.wav"
        path = folder / "archive" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = call_wav(60, seed=n)
        path.write_bytes(data)
        total += len(data)
        began = start + timedelta(minutes=2 * n)
        rows.append(
            {
                "file": name,
                "recording_id": f"bench-{n:05}",
                "call_id": f"c-{n:05}",
                "tenant": "acme",
                "started_at": began.isoformat(),
                "ended_at": (began + timedelta(seconds=60)).isoformat(),
                "agent_id": f"agent-{n % 40}",
                "customer_ref": f"cust-{n % 300}",
                "queue": "billing",
                "direction": "inbound",
                "consent": "notified",
                "format": "wav",
            }
        )
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest, total


def baseline_copy(archive: Path, target: Path) -> float:
    target.mkdir(parents=True)
    started = time.perf_counter()
    for n, source in enumerate(sorted(archive.rglob("*.wav"))):
        data = source.read_bytes()
        tmp = target / f"{n}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target / f"{n}.wav")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cv-bench-import-") as tmp:
        folder = Path(tmp)
        print(f"building an archive of {args.files} one-minute calls ...", file=sys.stderr)
        manifest, total = make_archive(folder, args.files)
        mb = total / 1e6

        base = baseline_copy(folder / "archive", folder / "copy")

        settings = load_settings(
            {"CALLVAULT_DATA_DIR": str(folder / "var"), "CALLVAULT_WORKER_ID": "bench"}
        )
        services = build_services(settings)
        try:
            rows = read_manifest(manifest)
            started = time.perf_counter()
            summary = run_import(
                services, str(folder / "archive"), rows, batch_size=args.batch_size
            )
            took = time.perf_counter() - started
            assert summary.by_status["stored"] == args.files, summary.as_dict()
            started = time.perf_counter()
            again = run_import(services, str(folder / "archive"), rows, batch_size=args.batch_size)
            rerun = time.perf_counter() - started
            assert again.by_status["skipped"] == args.files, again.as_dict()
        finally:
            services.close()

    print(
        f"files: {args.files} one-minute 8 kHz mu-law WAV, {mb:.1f} MB; "
        f"batch size {args.batch_size}; {os.cpu_count()} CPUs"
    )
    for label, seconds in (("baseline (durable file copy):", base), ("callvault import:", took)):
        print(
            f"{label:<30}{args.files / seconds:8.1f} files/s {mb / seconds:8.1f} MB/s "
            f"({seconds:.2f} s)"
        )
    print(f"ratio import/baseline: {base / took:.3f}")
    print(f"re-run (all skipped): {rerun:.2f} s ({args.files / rerun:.0f} rows/s)")


if __name__ == "__main__":
    main()
