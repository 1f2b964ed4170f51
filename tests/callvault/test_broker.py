"""The embedded tansu broker: starts, speaks Kafka, stops, refuses a taken port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from callvault.broker import EmbeddedBroker, free_port, wait_for_port
from callvault.errors import BrokerError


def test_broker_round_trips_a_message_and_stops(tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer

    port = free_port()
    with EmbeddedBroker(port, log_file=tmp_path / "broker.log") as broker:
        assert broker.alive()
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}"})
        producer.produce("probe", b"hello")
        assert producer.flush(20) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": f"127.0.0.1:{port}",
                "group.id": "probe",
                "auto.offset.reset": "earliest",
                # Short group timeouts: the first join takes ~3 s instead of ~30 s on tansu.
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                "max.poll.interval.ms": 6000,
            }
        )
        consumer.subscribe(["probe"])
        got = None
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got = msg.value()
                break
        consumer.close()
        assert got == b"hello"
    assert not broker.alive()
    assert not wait_for_port("127.0.0.1", port, 0.5)


def test_taken_port_is_refused_with_a_clear_message() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(BrokerError, match="already in use"):
            EmbeddedBroker(port).start()
