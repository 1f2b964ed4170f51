"""Helpers for end-to-end tests: a real worker process against the real broker."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from callvault.broker import free_port
from callvault.demo import demo_event
from callvault.services import Services, build_services
from callvault.settings import Settings, load_settings

__all__ = [
    "WorkerProcess",
    "e2e_settings",
    "wait_until",
    "produce",
    "consume_all",
    "consume_messages",
    "Message",
    "landed_call",
    "multipart_upload",
]


def e2e_settings(data_dir: Path, broker_url: str, **extra: str) -> dict[str, str]:
    env = {
        "CALLVAULT_DATA_DIR": str(data_dir),
        "CALLVAULT_BROKER": broker_url,
        "CALLVAULT_WEB_PORT": str(free_port()),
        "CALLVAULT_RECONCILE_AFTER_SECONDS": "3600",
        "CALLVAULT_LOG_LEVEL": "info",
        "CALLVAULT_WORKER_ID": "e2e",
    }
    env.update(extra)
    return env


def settings_from(env: dict[str, str]) -> Settings:
    return load_settings(env)


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class WorkerProcess:
    """``callvault worker`` as a child process (so it can be SIGKILLed)."""

    env: dict[str, str]
    log_path: Path
    #: ``callvault worker --processes N``: N consumers of one group behind one port.
    processes: int = 1
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.env['CALLVAULT_WEB_PORT']}"

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self.spawn()
        return self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> WorkerProcess:
        wait_until(self._healthy, timeout, f"worker health (log: {self.log_path})")
        return self

    def spawn(self) -> WorkerProcess:
        """Start the process without waiting for it (several workers starting at once)."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
        full_env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "callvault.cli", "worker"]
                + (["--processes", str(self.processes)] if self.processes > 1 else []),
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.web_url}/healthz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def pids(self) -> list[int]:
        """The worker's process and, with ``processes`` > 1, its children."""
        assert self.proc is not None
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *map(int, children)]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker and its live children, from /proc."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields_ = stat.rsplit(")", 1)[1].split()
            total += int(fields_[11]) + int(fields_[12])  # utime, stime
        return total / ticks

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def produce(
    bootstrap: str, topic: str, payloads: Iterable[bytes], keys: Iterable[bytes] | None = None
) -> None:
    """Produce ``payloads`` (keyed by ``keys``, as the worker keys recordings by their id,
    which spreads them over the partitions; unkeyed, librdkafka's sticky partitioner puts
    a burst into few partitions)."""
    from confluent_kafka import Producer

    # message.max.bytes: let a test send what a careless PBX might (the broker decides).
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "message.max.bytes": 4_000_000}
    )
    for payload, key in zip(payloads, keys if keys is not None else repeat(None), strict=False):
        producer.produce(topic, payload, key)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages not delivered"


@dataclass(frozen=True)
class Message:
    """One consumed record: key, value and headers (names to decoded ASCII values)."""

    key: bytes | None
    value: bytes
    headers: dict[str, str]

    def size(self) -> int:
        return (
            len(self.key or b"")
            + len(self.value)
            + sum(len(k) + len(v) for k, v in self.headers.items())
        )


def consume_all(
    bootstrap: str, topic: str, expect: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The JSON values of ``topic`` (at least ``expect`` of them, or what came in time)."""
    return [json.loads(m.value) for m in consume_messages(bootstrap, topic, expect, timeout)]


def consume_messages(
    bootstrap: str, topic: str, expect: int, timeout: float = 30.0
) -> list[Message]:
    """Every record of ``topic`` from the start (at least ``expect``, or what came in time)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # Short group timeouts: the first join takes ~3 s instead of ~30 s on tansu
            # (assign() without a group does not fetch from tansu 0.6 with librdkafka).
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "max.poll.interval.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []

    def keep(msg: Any) -> None:
        headers = {k: (v or b"").decode("ascii") for k, v in msg.headers() or []}
        out.append(Message(msg.key(), msg.value() or b"", headers))

    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            keep(msg)
        # a little longer, to catch anything beyond what was expected
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                keep(msg)
    finally:
        consumer.close()
    return out


def landed_call(
    services: Services, rid: str, audio: bytes, *, write: bool = True, **event_kw: Any
) -> dict[str, Any]:
    """Put ``audio`` in the landing area (unless ``write`` is False) and return its event."""
    path = services.settings.landing_dir / f"{rid}.wav"
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(audio)
    event_kw.setdefault("sha256", hashlib.sha256(audio).hexdigest())
    return demo_event(rid, audio=audio, uri=f"file://{path}", **event_kw)


def multipart_upload(metadata: bytes, audio: bytes, *, closed: bool = True) -> tuple[bytes, str]:
    """A ``POST /v1/recordings`` body of raw ``metadata`` and ``audio`` parts (any bytes,
    as a careless or hostile client sends them) and its Content-Type; ``closed=False``
    leaves out the closing boundary."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'
            "Content-Type: application/json\r\n\r\n".encode(),
            metadata,
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="audio"; '
            'filename="call.wav"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode(),
            audio,
            f"\r\n--{boundary}--\r\n".encode() if closed else b"",
        ]
    )
    return body, f"multipart/form-data; boundary={boundary}"


def open_services(env: dict[str, str]) -> Services:
    return build_services(settings_from(env))
