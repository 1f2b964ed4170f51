"""Long calls: peak memory of ingesting a two-hour recording, and serving it back.

    .venv/bin/python bench/longcall.py [--minutes 120] [--baseline-minutes 30] [--runs 3]

For each kind (``mulaw-8k-mono``: an 8 kHz G.711 mu-law WAV, 57.6 MB for two hours;
``pcm-16k-stereo``: a 16 kHz 16-bit stereo WAV, customer left and agent right, 460.8
MB; ``legs-8k-pcm``: MixMonitor ``r()``/``t()`` legs, two 8 kHz 16-bit mono WAVs of
115.2 MB, stored as one stereo recording), written to disk chunk by chunk from
espeak-ng speech (tests/fixtures/telephony.py),
a **fresh process** per run builds the worker's services (file vault, SQLite catalog,
local key file; the faust app imported, as a worker has it), reads its ``VmHWM`` (peak
RSS) idle, ingests the call through ``IngestPipeline`` with a 10 s PCI pause at 90 % of the call,
and reads ``VmHWM`` again: the figure is the peak above the idle worker. Its CPU time
(user + sys) per minute of audio is printed too. Then it serves the recording through
the worker's web app (bearer token, purpose-bound, audited): time to the first 64 KiB
from the start, and to 64 KiB near the end (a seek), against the baseline of reading
and decrypting the same ranges in process (``AudioReader``).

Baseline in the same run: the whole-file path (what callvault did before issue 11:
read, decode, silence, encode and seal in memory) on a ``--baseline-minutes`` call of
the same kind, in its own fresh process; its peak grows with the call, so the ratio of
the two peaks per minute of audio says how much the streaming saves. min / median /
max of ``--runs`` runs.

``--vault s3`` stores into a bucket on an embedded SeaweedFS instead of a folder
(streamed puts above 8 MiB are multipart uploads of 8 MiB parts).

Storage codecs (``--codec-minutes``, default 30; 0 skips): the same kinds stored with
each retention-class ``storage_codec`` (``as-sent``, ``opus-16k``, ``flac``; the shipped
policy's ``standard-90d`` class changed), each in a fresh process: stored bytes per
audio minute and the ratio to what telephony sent (for the mu-law call: G.711 as
sent), and CPU per audio minute (the worker and its ffmpeg children).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("mulaw-8k-mono", "pcm-16k-stereo", "legs-8k-pcm")
GOAL_MB = 150.0


def _status(field: str) -> float:
    """A ``/proc/self/status`` figure in MB (``VmHWM``, ``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (ffmpeg)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _policy_with(folder: Path, codec: str) -> Path:
    """The shipped policy with ``standard-90d`` storing in ``codec``."""
    from policies import default_policy_path

    text = default_policy_path().read_text()
    marker = "  standard-90d:\n"
    path = folder / "policy.yaml"
    path.write_text(text.replace(marker, f"{marker}    storage_codec: {codec}\n", 1))
    return path


def child(data_dir: Path, event_path: Path, path: str) -> dict[str, Any]:
    """One fresh worker process: idle peak, ingest, peak, then serve (streamed path)."""
    import streams.app  # noqa: F401 - what a worker imports
    from callvault.services import build_services
    from callvault.settings import load_settings
    from streams.http.audio_stream import AudioReader
    from streams.ingest import IngestPipeline
    from streams.metrics import Metrics
    from tests.streams.qa_support import serve

    env = {"CALLVAULT_DATA_DIR": str(data_dir)}
    for name in ("CALLVAULT_VAULT", "CALLVAULT_S3_ENDPOINT"):  # --vault s3
        if name in os.environ:
            env[name] = os.environ[name]
    if path.startswith("codec:"):
        env["CALLVAULT_POLICY"] = str(_policy_with(data_dir, path.removeprefix("codec:")))
    services = build_services(load_settings(env))
    event = json.loads(event_path.read_text())
    idle = _status("VmHWM")
    pipeline = IngestPipeline.over(services, actor="worker:bench")
    if path == "whole":  # the baseline: the whole-file path, as before issue 11
        pipeline.preparer.prepare = pipeline.preparer.prepare_whole  # type: ignore[method-assign]
    cpu, wall = cpu_seconds(), time.perf_counter()
    (outcome,) = pipeline.process_batch([json.dumps(event).encode()])
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    if path.startswith("codec:"):
        row = services.catalog.get_recording(event["recording_id"])
        services.close()
        return {"status": outcome.status, "reason": outcome.reason, "cpu_s": cpu,
                "stored_bytes": row.audio_bytes if row else 0, "sent_bytes": outcome.bytes_in,
                "audio_format": row.audio_format if row else ""}  # fmt: skip
    peak = _status("VmHWM")
    pipeline.close()
    result: dict[str, Any] = {
        "status": outcome.status, "reason": outcome.reason, "idle_mb": idle,
        "peak_mb": peak, "cpu_s": cpu, "wall_s": wall,
    }  # fmt: skip
    if outcome.status != "stored" or path == "whole":
        services.close()
        return result
    row = services.catalog.get_recording(event["recording_id"])
    assert row is not None
    result.update(stored_bytes=row.audio_bytes, sent_bytes=outcome.bytes_in)
    tokens, server = serve(services, Metrics())
    token = tokens.issue(
        user="alice", role="qa-reviewer", org=None, ttl=timedelta(hours=1),
        now=datetime.now(UTC), tenant="demo",
    )  # fmt: skip
    warm = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    warm.request("GET", "/healthz")  # a running worker: the app is warm
    warm.getresponse().read()
    warm.close()
    size = row.audio_bytes
    spans = {"first": (0, 65535), "seek": (size - 10 * 65536, size - 9 * 65536 - 1)}
    query = "purpose=quality-improvement&justification=EVAL-1"
    for name, (start, end) in spans.items():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        began = time.perf_counter()
        conn.request(
            "GET", f"/v1/recordings/{row.recording_id}/audio?{query}",
            headers={"Authorization": f"Bearer {token}", "Range": f"bytes={start}-{end}"},
        )  # fmt: skip
        response = conn.getresponse()
        body = response.read(1)
        result[f"{name}_byte_ms"] = (time.perf_counter() - began) * 1000
        body += response.read()
        result[f"{name}_range_ms"] = (time.perf_counter() - began) * 1000
        assert response.status == 206 and len(body) == end - start + 1, response.status
        conn.close()
        began = time.perf_counter()
        reader = AudioReader(services.vault, services.keys, row)
        reader.open()
        reader.read(start, end)
        result[f"{name}_baseline_ms"] = (time.perf_counter() - began) * 1000
    result["peak_after_serving_mb"] = _status("VmHWM")
    server.stop()
    services.close()
    return result


def _prepare(
    root: Path, name: str, minutes: float, *, kind: str | None = None
) -> tuple[Path, Path]:
    """A data folder ``name`` with a call of ``kind`` (default: ``name``) in its landing
    area, and the event's file."""
    from tests.fixtures.telephony import TelephonySamples, write_long_call

    kind = kind or name
    data = root / f"{name}-{minutes:g}"
    landing = data / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    rate = 16000 if kind == "pcm-16k-stereo" else 8000
    unit = TelephonySamples(root / "speech")._unit(rate)
    if kind == "legs-8k-pcm":  # MixMonitor r()/t(): one 8 kHz 16-bit mono WAV per direction
        legs = [_write_leg(landing / f"leg-{role}.wav", unit[role], minutes * 60)
                for role in ("customer", "agent")]  # fmt: skip
        audio: dict[str, Any] = {"format": "wav", "legs": [
            {"uri": path.as_uri(), "sha256": _sha256(path), "role": role}
            for path, role in zip(legs, ("customer", "agent"), strict=True)
        ]}  # fmt: skip
        last_ms = int(minutes * 60_000)
    else:
        call = write_long_call(landing / f"{kind}.wav", unit, kind=kind, seconds=minutes * 60)
        audio = {
            "uri": call.path.as_uri(), "format": "wav", "sha256": _sha256(call.path),
            "sample_rate": call.sample_rate, "channels": call.channels,
        }  # fmt: skip
        if call.channels == 2:
            audio["channel_roles"] = list(call.channel_roles)
        last_ms = call.duration_ms
    ended = datetime.now(UTC).replace(microsecond=0)
    event = {
        "schema": "callvault.recording.v1", "recording_id": f"long-{kind}", "call_id": "c-1",
        "tenant": "demo", "started_at": (ended - timedelta(milliseconds=last_ms)).isoformat(),
        "ended_at": ended.isoformat(), "agent_id": "a-1", "customer_ref": "C-1",
        "queue": "billing", "direction": "inbound", "consent": {"recording": "notified"},
        "audio": audio,
        "pci_pauses": [{"start_ms": last_ms * 9 // 10, "end_ms": last_ms * 9 // 10 + 10_000}],
    }  # fmt: skip
    event_path = data / "event.json"
    event_path.write_text(json.dumps(event))
    return data, event_path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while piece := source.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def _write_leg(path: Path, unit: bytes, seconds: float) -> Path:
    """One direction, ``unit`` (mono 16-bit PCM at 8 kHz) looped, written a piece at a time."""
    import wave

    frames = round(seconds * 8000)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        left = 2 * frames
        while left > 0:
            piece = unit[: min(len(unit), left)]
            out.writeframes(piece)
            left -= len(piece)
    return path


def _run_child(data: Path, event: Path, path: str) -> dict[str, Any]:
    # A copy of the data folder per run: the first ingest consumes the landing file.
    work = Path(tempfile.mkdtemp(prefix="longcall-run-", dir=data.parent))
    subprocess.run(["cp", "-a", f"{data}/.", str(work)], check=True)
    moved = json.loads(event.read_text())
    for ref in moved["audio"].get("legs", [moved["audio"]]):
        ref["uri"] = ref["uri"].replace(str(data), str(work))
    (work / "event.json").write_text(json.dumps(moved))
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(work), str(work / "event.json"), path],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    subprocess.run(["rm", "-rf", str(work)], check=True)
    if done.returncode != 0:
        raise RuntimeError(f"child failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--baseline-minutes", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--codec-minutes", type=float, default=30.0)
    parser.add_argument(
        "--vault", choices=("file", "s3"), default="file",
        help="file: a folder; s3: a bucket on an embedded SeaweedFS (multipart uploads)",
    )  # fmt: skip
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), Path(args.child[1]), args.child[2])))
        return
    with tempfile.TemporaryDirectory(prefix="callvault-longcall-") as folder, ExitStack() as stack:
        root = Path(folder)
        if args.vault == "s3":
            from callvault.seaweed import EmbeddedS3

            server = stack.enter_context(EmbeddedS3(root / "s3").start(timeout=60))
            server.ensure_bucket("longcall")
            os.environ.update(server.credentials.env())
            os.environ["CALLVAULT_VAULT"] = "s3://longcall"
            os.environ["CALLVAULT_S3_ENDPOINT"] = server.endpoint
            print(f"vault: s3://longcall on SeaweedFS at {server.endpoint}")
        for kind in args.kinds.split(","):
            data, event = _prepare(root, kind, args.minutes)
            base_data, base_event = _prepare(root, kind, args.baseline_minutes)
            runs = [_run_child(data, event, "streamed") for _ in range(args.runs)]
            bases = [_run_child(base_data, base_event, "whole") for _ in range(args.runs)]
            bad = [r for r in runs + bases if r["status"] != "stored"]
            if bad:
                raise SystemExit(f"not stored: {bad}")
            above = [r["peak_mb"] - r["idle_mb"] for r in runs]
            base_above = [r["peak_mb"] - r["idle_mb"] for r in bases]
            per_min = [a / args.minutes for a in above]
            base_per_min = [b / args.baseline_minutes for b in base_above]
            print(f"\n{kind}, {args.minutes:g} min, {runs[0]['sent_bytes'] / 1e6:.1f} MB sent, "
                  f"{runs[0]['stored_bytes'] / 1e6:.1f} MB stored (min / median / max of "
                  f"{args.runs} runs)")  # fmt: skip
            print(f"  idle worker VmHWM           {_spread([r['idle_mb'] for r in runs])} MB")
            print(f"  peak above idle (streamed)  {_spread(above)} MB   goal <= {GOAL_MB:g} MB: "
                  f"{'met' if max(above) <= GOAL_MB else 'NOT met'}")  # fmt: skip
            print(f"  baseline, whole-file path, {args.baseline_minutes:g} min: "
                  f"{_spread(base_above)} MB above idle")  # fmt: skip
            ratio = [a / b for a, b in zip(per_min, base_per_min, strict=True)]
            print(f"  MB per audio minute: streamed {_spread(per_min)}, whole "
                  f"{_spread(base_per_min)}; ratio {min(ratio):.3f} / "
                  f"{statistics.median(ratio):.3f} / {max(ratio):.3f}")  # fmt: skip
            cpu = [r["cpu_s"] * 1000 / args.minutes for r in runs]
            base_cpu = [r["cpu_s"] * 1000 / args.baseline_minutes for r in bases]
            print(
                f"  ingest CPU per audio minute: streamed {_spread(cpu)} ms, whole "
                f"{_spread(base_cpu)} ms; wall {_spread([r['wall_s'] for r in runs])} s"
            )
            for name in ("first", "seek"):
                byte = [r[f"{name}_byte_ms"] for r in runs]
                whole = [r[f"{name}_range_ms"] for r in runs]
                base = [r[f"{name}_baseline_ms"] for r in runs]
                label = "first 64 KiB" if name == "first" else "seek near the end"
                print(f"  served, {label}: first byte {_spread(byte)} ms, 64 KiB {_spread(whole)} "
                      f"ms; read+decrypt in process {_spread(base)} ms")  # fmt: skip
            served = [r["peak_after_serving_mb"] - r["idle_mb"] for r in runs]
            print(f"  peak above idle after serving {_spread(served)} MB")
            if args.codec_minutes and kind != "legs-8k-pcm":  # legs stay WAV (policies/README)
                _codecs(root, kind, args.codec_minutes, args.runs)


def _codecs(root: Path, kind: str, minutes: float, runs: int) -> None:
    data, event = _prepare(root, f"{kind}-codecs", minutes, kind=kind)
    print(f"  storage codecs, {minutes:g} min call (min / median / max of {runs} runs):")
    for codec in ("as-sent", "opus-16k", "flac"):
        results = [_run_child(data, event, f"codec:{codec}") for _ in range(runs)]
        bad = [r for r in results if r["status"] != "stored"]
        if bad:
            raise SystemExit(f"{codec}: not stored: {bad}")
        per_min = [r["stored_bytes"] / minutes / 1e3 for r in results]
        ratio = [r["stored_bytes"] / r["sent_bytes"] for r in results]
        cpu = [r["cpu_s"] * 1000 / minutes for r in results]
        print(f"    {codec:9} {results[0]['audio_format']:14} {_spread(per_min)} kB per audio "
              f"minute, {statistics.median(ratio):.3f} x sent; CPU {_spread(cpu)} ms per "
              "audio minute")  # fmt: skip


if __name__ == "__main__":
    main()
