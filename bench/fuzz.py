"""Fuzz benchmark: hostile events, HTTP requests and audio files through a real worker.

    .venv/bin/python bench/fuzz.py [--inputs 10000] [--seed 1] [--baseline 500]

Starts a fresh tansu broker and a ``callvault worker`` process (file vault, SQLite
catalog), then:

1. baseline: ``--baseline`` good one-second calls alone (events per second);
2. fuzz: ``--inputs`` generated inputs at least -- Kafka events (good calls interleaved
   with malformed JSON, deep nesting, year 1 / year 999, surrogates, NUL, megabyte
   events, unknown fields, bad URIs, missing files, wrong checksums), the audio files
   they name (truncated, lying headers, MP3 labelled WAV, decompression bombs, odd
   containers, FIFOs, hard links) and HTTP requests sent meanwhile (uploads good and
   bad, hostile listing / audit / status / privacy / hold parameters and bodies, Range
   headers with any bytes);
3. then foreign events naming files other recordings claimed, and events reusing
   stored ids naming another call's file (with its correct sha256).

Printed, with the goal in brackets: stalls (0; no progress for --stall seconds while
work remains), worker crashes (0), HTTP 5xx answers (0), good events interleaved and
stored (100 %), dead letters with a reason code (100 %), landing files lost (0: a file
gone although its recording was neither stored nor declined), the worker's CPU time per
input, and the ratio of good calls stored per second during the fuzz to the baseline
measured in the same run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callvault.broker import EmbeddedBroker, free_port  # noqa: E402
from callvault.demo import demo_event  # noqa: E402
from callvault.synth import call_wav  # noqa: E402
from streams.events import RejectReason  # noqa: E402
from streams.http.auth import LocalTokens  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    WorkerProcess,
    e2e_settings,
    multipart_upload,
    open_services,
    produce,
)

TOPIC = "callvault.recordings"
REASONS = {str(reason) for reason in RejectReason}


@dataclass
class Landed:
    """A landing file and what must become of it."""

    path: Path
    fate: str  # "stored" (gone, recording stored), "declined" (gone), "kept"
    recording_id: str | None = None
    claimed: bool = False  # its event verified the audio before rejecting it


@dataclass
class Plan:
    events: list[bytes] = field(default_factory=list)
    good: list[str] = field(default_factory=list)  # recording ids that must be stored
    landed: list[Landed] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    audio_files: int = 0


class Inputs:
    """Generates hostile and good inputs (deterministic for a seed)."""

    def __init__(self, services: Any, rng: random.Random, workdir: Path) -> None:
        self.services = services
        self.rng = rng
        self.landing = services.settings.landing_dir
        self.landing.mkdir(parents=True, exist_ok=True)
        self.outside = workdir / "outside"
        self.outside.mkdir()
        self.clips = [call_wav(1.0, codec="mulaw", seed=seed) for seed in range(4)]
        self.mp3 = _ffmpeg(workdir, self.clips[0], "mp3")
        self.bomb = _bomb(workdir)
        self.counter = 0

    def rid(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:06d}"

    def clip(self) -> bytes:
        return self.rng.choice(self.clips) + os.urandom(2)

    def land(
        self, plan: Plan, name: str, data: bytes, fate: str, rid: str | None, claimed: bool = False
    ) -> Path:
        path = self.landing / name
        path.write_bytes(data)
        plan.landed.append(Landed(path, fate, rid, claimed))
        plan.audio_files += 1
        return path

    def event(self, rid: str, audio: bytes, path: Path | None, **kw: Any) -> dict[str, Any]:
        uri = path.as_uri() if path is not None else (self.landing / f"{rid}.wav").as_uri()
        kw.setdefault("seconds", 1.0)
        kw.setdefault("customer", f"cust-{self.rng.randrange(200)}")
        return demo_event(rid, audio=audio, uri=uri, **kw)

    # -- Kafka events ---------------------------------------------------------------------
    def good(self, plan: Plan) -> bytes:
        rid = self.rid("good")
        audio = self.clip()
        path = self.land(plan, f"{rid}.wav", audio, "stored", rid)
        plan.good.append(rid)
        plan.kinds["good"] += 1
        return json.dumps(self.event(rid, audio, path)).encode()

    def hostile(self, plan: Plan) -> bytes:
        kind = self.rng.choice(HOSTILE_EVENTS)
        plan.kinds[kind] += 1
        return getattr(self, f"_{kind.replace('-', '_')}")(plan)

    def _declined(self, plan: Plan) -> bytes:
        rid = self.rid("declined")
        audio = self.clip()
        path = self.land(plan, f"{rid}.wav", audio, "declined", rid)
        return json.dumps(self.event(rid, audio, path, consent="declined")).encode()

    def _random_bytes(self, plan: Plan) -> bytes:
        return os.urandom(self.rng.randrange(1, 3000))

    def _deep_json(self, plan: Plan) -> bytes:
        return self.rng.choice([b"[", b'{"a":']) * self.rng.randrange(1000, 60_000)

    def _field_mutation(self, plan: Plan) -> bytes:
        rid = self.rid("mut")
        audio = self.clip()
        path = self.land(plan, f"{rid}.wav", audio, "kept", rid)
        event = self.event(rid, audio, path)
        field_name, value = self.rng.choice(FIELD_MUTATIONS)
        if field_name.startswith("audio."):
            event["audio"][field_name[6:]] = value
        elif field_name == "extra":
            event["x-extra"] = value
        else:
            event[field_name] = value
        if field_name in ("started_at", "ended_at") and value == "0999-01-01T00:00:30Z":
            event["started_at"] = "0999-01-01T00:00:00Z"
        return json.dumps(event).encode()

    def _megabyte(self, plan: Plan) -> bytes:
        event = self.event(self.rid("big"), b"x", None)
        event["queue"] = "q" * self.rng.randrange(70_000, 1_200_000)
        return json.dumps(event).encode()

    def _missing(self, plan: Plan) -> bytes:
        rid = self.rid("missing")
        return json.dumps(self.event(rid, self.clip(), None)).encode()

    def _sha_mismatch(self, plan: Plan) -> bytes:
        rid = self.rid("badsum")
        path = self.land(plan, f"{rid}.wav", self.clip(), "kept", rid)
        return json.dumps(self.event(rid, b"other", path, sha256="0" * 64)).encode()

    def _bad_audio(self, plan: Plan) -> bytes:
        rid = self.rid("badaudio")
        kind, data, fmt = self.rng.choice(self.bad_audio())
        plan.kinds[f"audio:{kind}"] += 1
        path = self.land(plan, f"{rid}.{fmt}", data, "kept", rid, claimed=True)
        seconds = 3.0 if kind == "bomb" else 1.0
        event = self.event(rid, data, path, seconds=seconds)
        event["audio"]["format"] = fmt
        return json.dumps(event).encode()

    def bad_audio(self) -> list[tuple[str, bytes, str]]:
        clip = self.clips[0]
        header = bytearray(clip[:44])
        huge = bytearray(clip)
        huge[40:44] = (0x7FFFFFF0).to_bytes(4, "little")  # data size far past the end
        nine = bytearray(clip)
        nine[22:24] = (9).to_bytes(2, "little")  # nine channels
        zero_rate = bytearray(clip)
        zero_rate[24:28] = bytes(4)
        return [
            ("truncated", clip[: self.rng.randrange(1, 44)], "wav"),
            ("header-only", bytes(header), "wav"),
            ("lying-size", bytes(huge), "wav"),
            ("nine-channels", bytes(nine), "wav"),
            ("zero-rate", bytes(zero_rate), "wav"),
            ("mp3-as-wav", self.mp3, "wav"),
            ("wav-as-mp3", clip, "mp3"),
            ("bomb", self.bomb, "flac"),
            ("ogg-junk", b"OggS" + os.urandom(500), "ogg"),
            ("id3-junk", b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(500), "mp3"),
            ("rifx", b"RIFX" + clip[4:], "wav"),
            ("empty", b"", "wav"),
            ("random", os.urandom(2000), self.rng.choice(["m4a", "webm", "opus", "gsm", "flac"])),
        ]

    def _fifo(self, plan: Plan) -> bytes:
        rid = self.rid("fifo")
        path = self.landing / f"{rid}.wav"
        os.mkfifo(path)
        plan.landed.append(Landed(path, "kept", rid))
        plan.audio_files += 1
        return json.dumps(self.event(rid, b"x", path)).encode()

    def _hardlink(self, plan: Plan) -> bytes:
        rid = self.rid("hardlink")
        audio = self.clip()
        secret = self.outside / f"{rid}.wav"
        secret.write_bytes(audio)
        path = self.landing / f"{rid}.wav"
        os.link(secret, path)
        plan.landed.append(Landed(path, "kept", rid))
        plan.audio_files += 1
        return json.dumps(self.event(rid, audio, path)).encode()

    def _bad_uri(self, plan: Plan) -> bytes:
        rid = self.rid("uri")
        uri = self.rng.choice(
            [
                "file:///etc/passwd",
                f"file://{self.landing}/../../etc/passwd",
                f"file://{self.landing}/%2e%2e/x.wav",
                f"file://{self.landing}/x.wav.event.json",
                "s3://elsewhere/key.wav",
                "http://example.com/a.wav",
                f"file://{self.landing}/a\\b.wav",
                f"file://{self.landing}",
            ]
        )
        event = self.event(rid, b"x", None)
        event["audio"]["uri"] = uri
        return json.dumps(event).encode()

    # -- phase 2: ownership -------------------------------------------------------------
    def foreign(self, plan: Plan, kept: list[Landed], stored_ids: list[str]) -> list[bytes]:
        """Events naming files other recordings own, with the correct sha256."""
        out = []
        for landed in kept:
            if not landed.claimed or not landed.path.is_file():
                continue
            audio = landed.path.read_bytes()
            fmt = landed.path.suffix.lstrip(".")
            consent = self.rng.choice(["notified", "declined"])
            rid = self.rng.choice([self.rid("foreign"), *stored_ids[:50]])
            event = self.event(rid, audio, landed.path, consent=consent)
            event["audio"]["format"] = fmt
            out.append(json.dumps(event).encode())
            plan.kinds["foreign"] += 1
        return out


HOSTILE_EVENTS = [
    "declined",
    "random-bytes",
    "deep-json",
    "field-mutation",
    "field-mutation",
    "field-mutation",
    "megabyte",
    "missing",
    "sha-mismatch",
    "bad-audio",
    "bad-audio",
    "bad-audio",
    "fifo",
    "hardlink",
    "bad-uri",
]
FIELD_MUTATIONS: list[tuple[str, Any]] = [
    ("started_at", "0001-01-01T00:00:00+01:00"),
    ("ended_at", "9999-12-31T23:59:59-01:00"),
    ("started_at", "0999-01-01T00:00:30Z"),
    ("ended_at", "0999-01-01T00:00:30Z"),
    ("started_at", "1999-12-31T23:59:59Z"),
    ("started_at", "not a time"),
    ("customer_ref", "\ud800"),
    ("customer_ref", "nul\x00inside"),
    ("customer_ref", ""),
    ("customer_ref", ["a", "list"]),
    ("queue", "\x1b[31mred"),
    ("recording_id", "../../etc/passwd"),
    ("recording_id", "x" * 500),
    ("tenant", "ACME Corp"),
    ("direction", "sideways"),
    ("consent", {"recording": "maybe"}),
    ("purposes", ["sales-promotion"]),
    ("purposes", [[[["deep"]]]]),
    ("pci_pauses", [{"start_ms": 5000, "end_ms": 1000}]),
    ("pci_pauses", [{"start_ms": 10**12, "end_ms": 10**13}]),
    ("pci_pauses", "all of it"),
    ("schema", "callvault.recording.v9"),
    ("audio.sha256", "not-hex"),
    ("audio.format", "exe"),
    ("audio.extra", 1),
    ("extra", {"nested": True}),
]


def _ffmpeg(workdir: Path, wav: bytes, ext: str) -> bytes:
    src, out = workdir / "src.wav", workdir / f"out.{ext}"
    src.write_bytes(wav)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), str(out)], check=True)
    return out.read_bytes()


def _bomb(workdir: Path) -> bytes:
    out = workdir / "bomb.flac"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=192000:cl=7.1",
         "-t", "60", "-c:a", "flac", str(out)],
        check=True,
    )  # fmt: skip
    return out.read_bytes()


# -- HTTP ------------------------------------------------------------------------------------


class Http:
    """Hostile HTTP requests against the worker (counts statuses)."""

    def __init__(self, port: int, tokens: dict[str, str], inputs: Inputs) -> None:
        self.port = port
        self.tokens = tokens
        self.inputs = inputs
        self.statuses: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.five_xx: list[str] = []
        self.accepted: list[str] = []  # good uploads answered 202
        self.accepted_bad: list[str] = []  # probed fine, dead-lettered later (bombs)
        self.lock = threading.Lock()
        self.stored_ids: list[str] = []

    def request(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str | bytes],
    ) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            status = 599
            answer = repr(exc).encode()
        finally:
            conn.close()
        with self.lock:
            self.statuses[status] += 1
            self.kinds[kind] += 1
            if status >= 500:
                self.five_xx.append(f"{kind} {method} {path[:60]} -> {status} {answer[:120]!r}")
        return status

    def one(self, rng: random.Random) -> None:
        kind = rng.choice(HTTP_KINDS)
        getattr(self, f"_{kind.replace('-', '_')}")(rng, kind)

    def _auth(self, role: str) -> dict[str, str | bytes]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def _upload(self, rng: random.Random, kind: str, metadata: bytes, audio: bytes) -> int:
        body, content_type = multipart_upload(metadata, audio)
        headers = self._auth("telephony") | {"Content-Type": content_type}
        return self.request(kind, "POST", "/v1/recordings", body, headers)

    def _meta(self, rid: str, fmt: str = "wav", **kw: Any) -> dict[str, Any]:
        meta = demo_event(rid, audio=b"x", seconds=kw.pop("seconds", 1.0), **kw)
        meta["audio"] = {"format": fmt}
        return meta

    def _upload_good(self, rng: random.Random, kind: str) -> None:
        rid = f"up-{uuid.uuid4().hex[:12]}"
        if self._upload(rng, kind, json.dumps(self._meta(rid)).encode(), self.inputs.clip()) == 202:
            with self.lock:
                self.accepted.append(rid)

    def _upload_bad_audio(self, rng: random.Random, kind: str) -> None:
        rid = f"upbad-{uuid.uuid4().hex[:12]}"
        name, data, fmt = rng.choice(self.inputs.bad_audio())
        meta = self._meta(rid, fmt, seconds=3.0 if name == "bomb" else 1.0)
        if self._upload(rng, kind, json.dumps(meta).encode(), data or b"\x00") == 202:
            with self.lock:
                self.accepted_bad.append(rid)

    def _upload_bad_metadata(self, rng: random.Random, kind: str) -> None:
        rid = f"upmeta-{uuid.uuid4().hex[:12]}"
        meta = self._meta(rid)
        field_name, value = rng.choice(FIELD_MUTATIONS)
        if not field_name.startswith("audio."):
            meta[field_name] = value
        raw = rng.choice([json.dumps(meta).encode(), b"[" * 60_000, os.urandom(300), b""])
        if self._upload(rng, kind, raw, self.inputs.clip()) == 202:
            with self.lock:
                self.accepted.append(rid)  # the mutation was harmless: it must be stored

    def _list(self, rng: random.Random, kind: str) -> None:
        name = rng.choice(["from", "to", "limit", "after", "queue", "agent", "tenant", "purpose"])
        value = rng.choice(QUERY_VALUES)
        path = f"/v1/recordings?{name}={urllib.parse.quote(value, safe='')}"
        self.request(kind, "GET", path, None, self._auth("qa-reviewer"))

    def _audit(self, rng: random.Random, kind: str) -> None:
        name = rng.choice(["after_seq", "limit", "recording_id", "action"])
        value = rng.choice(QUERY_VALUES)
        path = f"/v1/audit?{name}={urllib.parse.quote(value, safe='')}"
        self.request(kind, "GET", path, None, self._auth("compliance-officer"))

    def _range(self, rng: random.Random, kind: str) -> None:
        with self.lock:
            rid = rng.choice(self.stored_ids) if self.stored_ids else "none"
        header = rng.choice(RANGES)
        if "{n}" in header:
            header = header.format(n=rng.randrange(0, 20_000))
        path = f"/v1/recordings/{rid}/audio?purpose=quality-improvement&justification=EVAL-1"
        raw = header.encode("utf-8", "surrogateescape")  # any bytes, as a client may send
        self.request(kind, "GET", path, None, self._auth("qa-reviewer") | {"Range": raw})

    def _status(self, rng: random.Random, kind: str) -> None:
        rid = rng.choice([f"good-{rng.randrange(1, 9999):06d}", "x" * 200, "%00", "a"])
        self.request(kind, "GET", f"/v1/recordings/{rid}/status", None, self._auth("telephony"))

    def _privacy(self, rng: random.Random, kind: str) -> None:
        body = rng.choice(
            [
                b"[" * 60_000,
                json.dumps({"type": "erase", "tenant": "demo", "customer_ref": "\ud800"}).encode(),
                json.dumps({"type": "contract-terminated", "tenant": "demo", "customer_ref": "c",
                            "received_at": "0001-01-01T00:00:00+01:00"}).encode(),
                json.dumps({"type": "disclose", "tenant": "demo", "customer_ref": "c"}).encode(),
                os.urandom(200),
                b"{}",
            ]
        )  # fmt: skip
        headers = self._auth("compliance-officer") | {"Content-Type": "application/json"}
        self.request(kind, "POST", "/v1/privacy-requests", body, headers)

    def _holds(self, rng: random.Random, kind: str) -> None:
        body = rng.choice(
            [
                b'{"scope": "customer", "tenant": "demo", "customer_ref": "\\ud800", '
                b'"reason": "r", "reference": "C-1"}',
                b'{"scope": "call", "tenant": "demo", "call_id": "c", "reason": "a\\u0000b", '
                b'"reference": "C-1"}',
                b"[" * 30_000,
                os.urandom(100),
            ]
        )
        headers = self._auth("compliance-officer") | {"Content-Type": "application/json"}
        self.request(kind, "POST", "/v1/holds", body, headers)


HTTP_KINDS = [
    "upload-good",
    "upload-good",
    "upload-bad-audio",
    "upload-bad-metadata",
    "list",
    "audit",
    "range",
    "range",
    "status",
    "privacy",
    "holds",
]
QUERY_VALUES = [
    "9999-12-31",
    "0001-01-01T00:00:00+01:00",
    "²",
    "٣",
    "-1",
    "99999999999999999999",
    "\x00",
    "2026-11-25",
    "abc",
    "\U0001f600",
    "",
    "1" * 300,
]
RANGES = [
    "bytes=\udcb2-",  # the byte 0xB2 alone
    "bytes=0-",
    "bytes={n}-",
    "bytes=-{n}",
    "bytes=5-1",
    "bytes=99999999999999999999-",
    "bytes=0-1,5-9",
    "items=0-1",
    "bytes=\u0663-",
    "",
]


# -- measuring ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """user + sys CPU of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processed(web_url: str) -> int:
    total = 0
    with urllib.request.urlopen(f"{web_url}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("callvault_ingest_events_total{"):
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def wait_processed(
    worker: WorkerProcess, target: int, stall_after: float, stalls: list[str], what: str
) -> float:
    """Wait until the worker processed ``target`` events; a period of ``stall_after`` s
    without progress is a stall (counted, and the wait ends)."""
    start = last_change = time.monotonic()
    last = -1
    while True:
        assert worker.proc is not None
        if worker.proc.poll() is not None:
            return time.monotonic() - start
        done = processed(worker.web_url)
        if done >= target:
            return time.monotonic() - start
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stall_after:
            stalls.append(f"{what}: stuck at {done}/{target} for {stall_after:.0f} s")
            return time.monotonic() - start
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=10_000, help="fuzz inputs, at least")
    parser.add_argument("--baseline", type=int, default=500, help="good calls, baseline run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--http-threads", type=int, default=4)
    parser.add_argument("--stall", type=float, default=90.0, help="seconds without progress")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="callvault-fuzz-"))
    broker = EmbeddedBroker(free_port(), log_file=workdir / "broker.log").start()
    env = e2e_settings(
        workdir / "data",
        broker.url,
        CALLVAULT_LOG_LEVEL="warning",
        CALLVAULT_RECONCILE_AFTER_SECONDS="86400",
    )
    services = open_services(env)
    worker = WorkerProcess(env, workdir / "worker.log")
    bootstrap = broker.url.removeprefix("kafka://")
    stalls: list[str] = []
    try:
        worker.start()
        assert worker.proc is not None
        inputs = Inputs(services, rng, workdir)
        issuer = LocalTokens(services.keyring, frozenset(services.policy.roles))
        tokens = {
            role: issuer.issue(
                user="fuzz", role=role, org=None, ttl=timedelta(hours=6), tenant="demo"
            )
            for role in ("telephony", "qa-reviewer", "compliance-officer")
        }

        # 1. baseline: good calls alone
        base = Plan()
        base.events = [inputs.good(base) for _ in range(args.baseline)]
        produce(bootstrap, TOPIC, base.events)
        base_time = wait_processed(worker, len(base.events), args.stall, stalls, "baseline")
        base_rate = args.baseline / base_time

        # 2. fuzz: Kafka events (half good, interleaved) while HTTP requests go on
        plan = Plan()
        http_share = 0.3
        n_http = int(args.inputs * http_share)
        n_events = 0
        while n_events + plan.audio_files + n_http < args.inputs:
            plan.events.append(inputs.good(plan) if rng.random() < 0.5 else inputs.hostile(plan))
            n_events += 1
        client = Http(int(env["CALLVAULT_WEB_PORT"]), tokens, inputs)
        client.stored_ids = list(base.good[:100])
        cpu_before = cpu_seconds(worker.proc.pid)
        start = time.monotonic()
        http_rng = [random.Random(args.seed * 1000 + i) for i in range(args.http_threads)]
        with ThreadPoolExecutor(args.http_threads + 1) as pool:
            produced = pool.submit(produce, bootstrap, TOPIC, plan.events)
            futures = [
                pool.submit(client.one, http_rng[i % args.http_threads]) for i in range(n_http)
            ]
            for future in futures:
                future.result()
            produced.result()
        target = args.baseline + len(plan.events) + len(client.accepted) + len(client.accepted_bad)
        fuzz_time = wait_processed(worker, target, args.stall, stalls, "fuzz")
        good_in_fuzz = len(plan.good) + len(client.accepted)
        good_rate = good_in_fuzz / (time.monotonic() - start)

        # 3. ownership: foreign events naming kept (claimed) files, reused stored ids
        stored_now = sorted(services.catalog.recording_ids_present(plan.good))
        kept = [landed for landed in plan.landed if landed.fate == "kept"]
        foreign = inputs.foreign(plan, rng.sample(kept, min(len(kept), 300)), stored_now)
        produce(bootstrap, TOPIC, foreign)
        wait_processed(worker, target + len(foreign), args.stall, stalls, "ownership")
        cpu = cpu_seconds(worker.proc.pid) - cpu_before
        crashed = worker.proc.poll() is not None

        # -- what became of everything --------------------------------------------------
        must_store = base.good + plan.good + client.accepted
        present = services.catalog.recording_ids_present(must_store)
        letters = services.dead_letters.list(state=None, limit=10_000)
        with_reason = [letter for letter in letters if letter.reason in REASONS]
        declined = {landed.recording_id for landed in plan.landed if landed.fate == "declined"}
        stored_any = services.catalog.recording_ids_present(
            landed.recording_id for landed in plan.landed if landed.recording_id
        )
        # lost: a landing file gone although its recording was neither stored nor declined
        lost = [
            landed.path
            for landed in plan.landed + base.landed
            if not os.path.lexists(landed.path)
            and landed.recording_id not in stored_any | present
            and landed.recording_id not in declined
        ]
        gone_declined = [
            landed for landed in plan.landed if landed.fate == "declined" and landed.path.exists()
        ]
        total_inputs = (
            len(plan.events) + len(foreign) + plan.audio_files + sum(client.kinds.values())
        )
        print(
            f"inputs: {total_inputs} = {len(plan.events) + len(foreign)} Kafka events "
            f"+ {plan.audio_files} landing audio files + {sum(client.kinds.values())} HTTP "
            f"requests (seed {args.seed})"
        )
        print("  events:", ", ".join(f"{k} {v}" for k, v in sorted(plan.kinds.items())))
        print("  http:  ", ", ".join(f"{k} {v}" for k, v in sorted(client.kinds.items())))
        print("  http statuses:", dict(sorted(client.statuses.items())))
        print(f"stalls:                         {len(stalls)}  [0]  {'; '.join(stalls)}")
        print(f"worker crashes:                 {int(crashed)}  [0]")
        print(f"HTTP 5xx answers:               {len(client.five_xx)}  [0]")
        for line in client.five_xx[:10]:
            print("    ", line)
        share = 100 * len(present) / len(must_store)
        print(
            f"good events stored:             {len(present)}/{len(must_store)} = {share:.2f} %"
            "  [100 %]"
        )
        reason_share = 100 * len(with_reason) / max(1, len(letters))
        print(
            f"dead letters with a reason code: {len(with_reason)}/{len(letters)} = "
            f"{reason_share:.2f} %  [100 %]"
        )
        print(f"landing files lost:             {len(lost)}  [0]")
        print(f"declined landing files left:    {len(gone_declined)}  [0]")
        reasons = Counter(letter.reason for letter in letters)
        print("  dead letters by reason:", ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
        print(
            f"worker CPU: {cpu:.1f} s user+sys for {total_inputs} inputs = "
            f"{1000 * cpu / total_inputs:.2f} ms per input"
        )
        print(
            f"good calls stored/s: fuzz {good_rate:.1f} (with {total_inputs} hostile and good "
            f"inputs) vs baseline {base_rate:.1f} (good only) -> ratio {good_rate / base_rate:.2f}"
        )
        print(f"fuzz phase {fuzz_time:.0f} s; baseline {base_time:.1f} s; log {worker.log_path}")
        ok = not stalls and not crashed and not client.five_xx and share == 100.0
        ok = ok and reason_share == 100.0 and not lost
        sys.exit(0 if ok else 1)
    finally:
        worker.stop()
        services.close()
        broker.stop()
        if os.environ.get("CALLVAULT_FUZZ_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
