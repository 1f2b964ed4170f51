"""Telephony formats as stored: bytes sent and stored, and CPU per audio minute.

    .venv/bin/python bench/formats.py [--seconds 60] [--runs 3]

Each recording of tests/fixtures/telephony.py (made at run time with espeak-ng, sox and
ffmpeg: Asterisk, FreeSWITCH, Twilio, Amazon Connect, Genesys, Zoom...), ``--seconds``
long, goes through the real ingest pipeline (file vault, SQLite catalog, local key
file) twice: as sent, and with a 10 s PCI pause (on the agent's channel of the stereo
ones). Printed per format: the stored ``audio_format``, bytes sent, bytes stored (and
the ratio; goal <= 1.05 without a pause, <= 1.5 with one) and CPU time (this process
and its ffmpeg children) per audio minute, min / median / max of ``--runs``. The
baseline in the same run is a durable copy of the sent bytes (read, sha256, write,
fsync): the CPU figure of doing nothing but keeping the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.longcall import cpu_seconds  # noqa: E402
from callvault.services import build_services  # noqa: E402
from callvault.settings import load_settings  # noqa: E402
from streams.ingest import IngestPipeline  # noqa: E402
from tests.fixtures.telephony import SAMPLE_NAMES, TelephonySamples, sample_event  # noqa: E402


def _copy(source: Path, target: Path) -> float:
    began = cpu_seconds()
    digest = hashlib.sha256()
    with source.open("rb") as src, target.open("wb") as out:
        while piece := src.read(1 << 20):
            digest.update(piece)
            out.write(piece)
        out.flush()
        os.fsync(out.fileno())
    return cpu_seconds() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    minutes = args.seconds / 60
    with tempfile.TemporaryDirectory(prefix="callvault-formats-") as folder:
        root = Path(folder)
        samples = TelephonySamples(root / "samples")
        services = build_services(load_settings({"CALLVAULT_DATA_DIR": str(root / "data")}))
        pipeline = IngestPipeline.over(services, actor="worker:bench")
        print(f"{'format':24} {'stored as':14} {'sent':>9} {'stored':>9} {'ratio':>6} "
              f"{'with pause':>10} {'ratio':>6}  CPU ms per audio minute (plain / pause "
              "/ copy baseline, min/median/max)")  # fmt: skip
        for name in SAMPLE_NAMES:
            sample = samples.get(name, seconds=args.seconds)
            stereo = sample.channels == 2 or bool(sample.legs)
            pause = {"start_ms": 2000, "end_ms": 12000}
            if stereo:
                pause["channels"] = ["agent"]
            cpu: dict[str, list[float]] = {"plain": [], "pause": [], "copy": []}
            stored: dict[str, int] = {}
            label = ""
            for run in range(args.runs):
                for kind, extra in (("plain", {}), ("pause", {"pci_pauses": [pause]})):
                    rid = f"{name}-{kind}-{run}"
                    event = sample_event(sample, rid, services.settings.landing_dir,
                                         ended_at=datetime.now(UTC), **extra)  # fmt: skip
                    began = cpu_seconds()
                    (outcome,) = pipeline.process_batch([json.dumps(event).encode()])
                    cpu[kind].append((cpu_seconds() - began) * 1000 / minutes)
                    if outcome.status != "stored":
                        raise SystemExit(f"{name}: {outcome}")
                    row = services.catalog.get_recording(rid)
                    assert row is not None
                    stored[kind], label = row.audio_bytes, row.audio_format
                files = [leg.path for leg in sample.legs] or [sample.path]
                copy = sum(_copy(f, root / f"copy-{f.name}") for f in files)
                cpu["copy"].append(copy * 1000 / minutes)
            sent = sum(leg.path.stat().st_size for leg in sample.legs) or sample.size
            spread = " / ".join(
                f"{min(v):.0f}-{statistics.median(v):.0f}-{max(v):.0f}" for v in cpu.values()
            )
            print(f"{name:24} {label:14} {sent:9d} {stored['plain']:9d} "
                  f"{stored['plain'] / sent:6.3f} {stored['pause']:10d} "
                  f"{stored['pause'] / sent:6.3f}  {spread}")  # fmt: skip
        pipeline.close()
        services.close()


if __name__ == "__main__":
    main()
