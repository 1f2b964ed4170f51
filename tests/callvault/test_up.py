"""``callvault up``, the embedded default, is durable: it starts SeaweedFS and tansu
keeping its topics on it, and the topics (recordings, DLQ, audit, privacy requests),
their offsets and consumer groups survive a kill -9 of ``callvault up``; both children
die with it; Ctrl-C leaves nothing running. Real processes throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from callvault.broker import free_port
from tests.e2e.harness import produce, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # two starts of the whole system

TOPICS = ("callvault.recordings", "callvault.dlq", "callvault.audit", "callvault.privacy-requests")


class Up:
    """``callvault up`` as a child process on free ports."""

    def __init__(self, data_dir: Path, **extra: str) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "AWS_"))},
            "CALLVAULT_DATA_DIR": str(data_dir),
            "CALLVAULT_EMBEDDED_BROKER_PORT": str(free_port()),
            "CALLVAULT_WEB_PORT": str(free_port()),
            "CALLVAULT_RECONCILE_AFTER_SECONDS": "3600",
            "CALLVAULT_WORKER_ID": "up-test",
            **extra,
        }
        self.log_path = data_dir.parent / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.env['CALLVAULT_EMBEDDED_BROKER_PORT']}"

    def start(self) -> Up:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "callvault.cli", "up"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self.healthy, 120, f"callvault up (log: {self.log_path})")
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"callvault up exited: {self.log_path.read_text()[-3000:]}")
        url = f"http://127.0.0.1:{self.env['CALLVAULT_WEB_PORT']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def children(self) -> list[int]:
        assert self.proc is not None
        found: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            found.extend(int(pid) for pid in (task / "children").read_text().split())
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def read_topic(bootstrap: str, topic: str, at_least: int, timeout: float = 60.0) -> list[bytes]:
    """Every message of every partition of ``topic`` from offset 0 (assign: no group join),
    in (partition, offset) order."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    found: list[tuple[int, int, bytes]] = []
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, number, 0) for number in partitions])
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                found.append((message.partition(), message.offset(), message.value()))
                continue
            if len(found) >= at_least:
                quiet_until = quiet_until or time.monotonic() + 2.0
                if time.monotonic() > quiet_until:
                    break
        return [value for _, _, value in sorted(found)]
    finally:
        consumer.close()


def test_topics_survive_kill_9_of_callvault_up_and_children_die_with_it(tmp_path: Path) -> None:
    up = Up(tmp_path / "var").start()
    try:
        children = up.children()
        assert len(children) == 2
        assert {"weed" in command_of(pid) or "tansu" in command_of(pid) for pid in children} == {
            True
        }
        # a broken event (dead-lettered, audited) and a malformed privacy request (audited)
        produce(up.bootstrap, "callvault.recordings", [b"this is not json"])
        produce(up.bootstrap, "callvault.privacy-requests", [b'{"type": "nonsense"}'])
        dlq = wait_until(
            lambda: read_topic(up.bootstrap, "callvault.dlq", 1, timeout=5),
            90,
            "the dead-lettered event",
        )
        assert len(dlq) == 1
        audit_before = wait_until(
            lambda: [
                json.loads(m)
                for m in read_topic(up.bootstrap, "callvault.audit", 2, timeout=5)
                # the topic also carries signed checkpoints ({"checkpoint": ...}), no action
                if json.loads(m).get("action") in ("ingest.rejected", "privacy.rejected")
            ],
            90,
            "the rejections in the audit topic",
        )
        assert {entry["action"] for entry in audit_before} >= {"ingest.rejected"}

        assert up.proc is not None
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(30)
        wait_until(lambda: not any(alive(pid) for pid in children), 30, "the children to die")

        again = Up(tmp_path / "var")
        again.env = up.env  # same ports, same data: a restart
        up = again.start()
        assert read_topic(up.bootstrap, "callvault.recordings", 1) == [b"this is not json"]
        assert read_topic(up.bootstrap, "callvault.privacy-requests", 1) == [
            b'{"type": "nonsense"}'
        ]
        audit_after = [json.loads(m) for m in read_topic(up.bootstrap, "callvault.audit", 2)]
        kept: list[Any] = [
            e for e in audit_after if e.get("seq") in {a["seq"] for a in audit_before}
        ]
        assert [e["hash"] for e in kept] == [e["hash"] for e in audit_before]
        time.sleep(5)  # the worker's committed offsets survived: nothing is processed twice
        assert read_topic(up.bootstrap, "callvault.dlq", 1) == dlq

        # Ctrl-C stops the worker, then the broker, then the S3 server: nothing is left
        children = up.children()
        assert up.proc is not None
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(60) in (0, 130, -signal.SIGINT)
        assert not any(alive(pid) for pid in children)
    finally:
        up.stop()


def test_memory_storage_starts_no_s3_server(tmp_path: Path) -> None:
    up = Up(tmp_path / "var", CALLVAULT_EMBEDDED_BROKER_STORAGE="memory").start()
    try:
        children = up.children()
        assert len(children) == 1 and "weed" not in command_of(children[0])
        assert not (tmp_path / "var" / "s3").exists()
    finally:
        up.stop()
