"""Scale-out benchmark: the same backlog of one-minute calls through 1 and then 2 worker
processes (``callvault worker --processes N``, one consumer group) on the file vault.

    .venv/bin/python bench/scaleout.py [--calls 600] [--processes 1,2] [--runs 3]

Each run starts a fresh tansu broker and worker (the worker declares the topics with
CALLVAULT_PARTITIONS, 8 by default), lands the calls, produces their events and times
produce -> last catalog row (bench/ingest.py's pipeline run). Printed per run: calls/s
and the worker's CPU per call (user + sys of the parent and its children, /proc); then
the throughput ratio of each process count to the first (goal for 2 vs 1: >= 1.8x),
min / median / max over the runs. The ratio needs as many idle cores as processes: on
a shared 2-core machine the CPU per call (which should stay flat as processes are
added) is the figure to trust.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import run_pipeline  # noqa: E402

from callvault.synth import call_wav  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--processes", default="1,2", help="process counts to compare")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    clip = call_wav(60.0, codec="mulaw", seed=1)
    print(
        f"{args.calls} one-minute 8 kHz mu-law calls per run, processes {counts}, "
        f"{args.runs} runs, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    rates: dict[int, list[float]] = {n: [] for n in counts}
    cpu: dict[int, list[float]] = {n: [] for n in counts}
    ratios: dict[int, list[float]] = {n: [] for n in counts[1:]}
    with tempfile.TemporaryDirectory(prefix="callvault-scaleout-") as tmp:
        for run in range(1, args.runs + 1):
            for n in counts:  # interleaved: a neighbour's burst hits both counts alike
                result = run_pipeline(
                    "file", args.calls, clip, Path(tmp) / f"run-{run}-p{n}", None, processes=n
                )
                elapsed: float = result["elapsed"]  # type: ignore[assignment]
                used: float = result["cpu"]  # type: ignore[assignment]
                rates[n].append(args.calls / elapsed)
                cpu[n].append(1000 * used / args.calls)
                print(
                    f"[run {run}] {n} process(es): {args.calls / elapsed:7.1f} calls/s, "
                    f"CPU {1000 * used / args.calls:5.2f} ms per call, "
                    f"{used / elapsed:.2f} cores busy, partitions {result['partitions']}, "
                    f"load {os.getloadavg()[0]:.1f}"
                )
            for n in counts[1:]:
                ratios[n].append(rates[n][-1] / rates[counts[0]][-1])

    def mmm(values: list[float]) -> str:
        return f"{min(values):7.2f} / {statistics.median(values):7.2f} / {max(values):7.2f}"

    print("\nmin / median / max over the runs:")
    for n in counts:
        print(f"  {n} process(es): calls/s {mmm(rates[n])}   CPU ms/call {mmm(cpu[n])}")
    for n in counts[1:]:
        print(f"  ratio {n} vs {counts[0]}: {mmm(ratios[n])}   (goal for 2 vs 1: >= 1.8)")


if __name__ == "__main__":
    main()
