"""Backfill benchmark: N one-minute 8 kHz mu-law calls imported from a folder archive.

    .venv/bin/python bench/import.py [--files 500] [--batch-size 128] [--workers 2] [--runs 3]

Builds an archive of N one-minute calls and a CSV manifest in a temp folder, then runs
``callvault import`` in-process (the real pipeline: sha256, decode, redact, encrypt,
vault, SQLite catalog, audit) into a fresh data dir with a file vault. The baseline,
run in the same invocation on the same files, is a plain durable copy (read, write,
fsync, rename) of every file into a folder. ``--workers N`` imports in N processes
(``callvault import --workers N``). Printed: files/s and MB/s (of archive audio) for
both, ratio = import files/s / baseline files/s, the CPU time per file of the import
(this process and its children, ``os.times``), and the time a re-run (everything
skipped) takes; with ``--runs N``, min / median / max over the runs. Each run starts
from the same disk state: what earlier runs wrote is removed and ``sync`` settles the
disk before the copy (else every run is slower than the one before).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
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
from streams.backfill import DEFAULT_BATCH_SIZE, read_manifest, run_import_workers  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from ingest import summary  # noqa: E402


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


def cpu_seconds() -> float:
    """User + system time of this process and its waited-for children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def one_run(
    folder: Path, manifest: Path, files: int, batch_size: int, workers: int
) -> dict[str, float]:
    os.sync()  # both measurements start from a settled disk (the archive, earlier runs)
    copy = folder / f"copy-{time.monotonic_ns()}"
    base = baseline_copy(folder / "archive", copy)
    data_dir = folder / f"var-{time.monotonic_ns()}"
    settings = load_settings({"CALLVAULT_DATA_DIR": str(data_dir), "CALLVAULT_WORKER_ID": "bench"})
    build_services(settings).close()  # create the key file and migrate the catalog once
    rows = read_manifest(manifest)

    def importing() -> object:
        return run_import_workers(
            lambda: build_services(settings), str(folder / "archive"), rows,
            workers=workers, batch_size=batch_size,
        )  # fmt: skip

    cpu, started = cpu_seconds(), time.perf_counter()
    summary = importing()
    took, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    assert summary.by_status["stored"] == files, summary.as_dict()  # type: ignore[attr-defined]
    started = time.perf_counter()
    again = importing()
    rerun = time.perf_counter() - started
    assert again.by_status["skipped"] == files, again.as_dict()  # type: ignore[attr-defined]
    shutil.rmtree(data_dir)  # the next run finds what this one did: only the archive
    shutil.rmtree(copy)
    return {
        "import files/s": files / took,
        "copy files/s": files / base,
        "ratio": base / took,
        "CPU ms/file": 1000 * cpu / files,
        "re-run s": rerun,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--workers", type=int, default=1, help="import processes")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cv-bench-import-") as tmp:
        folder = Path(tmp)
        print(f"building an archive of {args.files} one-minute calls ...", file=sys.stderr)
        manifest, total = make_archive(folder, args.files)
        mb = total / 1e6
        print(
            f"files: {args.files} one-minute 8 kHz mu-law WAV, {mb:.1f} MB; "
            f"batch size {args.batch_size}; {args.workers} worker(s); {os.cpu_count()} CPUs"
        )
        figures = []
        for run in range(1, args.runs + 1):
            got = one_run(folder, manifest, args.files, args.batch_size, args.workers)
            figures.append(got)
            print(
                f"[run {run}] baseline (durable file copy): {got['copy files/s']:7.1f} files/s "
                f"{mb * got['copy files/s'] / args.files:7.1f} MB/s | callvault import: "
                f"{got['import files/s']:7.1f} files/s "
                f"{mb * got['import files/s'] / args.files:7.1f} MB/s | ratio "
                f"{got['ratio']:.3f} | CPU {got['CPU ms/file']:.2f} ms per file | "
                f"re-run (all skipped) {got['re-run s']:.2f} s | load {os.getloadavg()[0]:.1f}"
            )
    if args.runs > 1:
        summary("import:", figures, digits=3)


if __name__ == "__main__":
    main()
