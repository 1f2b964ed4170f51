"""Typed ingest failures, on the worker's ingest agent (faust ``test_context``, real
services: file vault, SQLite catalog, key file): each input found to stall or crash
ingest on main is dead-lettered with a reason code while the events around it are
stored; only infrastructure failures are retried, and never skipped."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from storage.catalog.claims import ClaimState
from storage.errors import VaultUnavailable
from streams.app import Worker
from streams.dlq import INLINE_MAX
from streams.refs import landing_key, recording_ref
from tests.e2e.harness import landed_call
from tests.streams.test_agents import Recorder


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(tmp_path / "data")}))
    yield built
    built.close()


@pytest.fixture
def worker(services: Services) -> Iterator[Worker]:
    made = Worker(services, broker_url="kafka://127.0.0.1:1", retry_first=0.05, retry_cap=0.2)
    made.dlq.send = Recorder()  # type: ignore[method-assign]
    made.audit_topic.send = Recorder()  # type: ignore[method-assign]
    yield made
    for agent in made.app.agents.values():
        if not agent.loop.is_running() and not agent.loop.is_closed():
            agent.loop.close()
    consumer = made.app._consumer
    if consumer is not None:
        loop = consumer._thread.thread_loop
        if not loop.is_running() and not loop.is_closed():
            loop.close()


def _dlq(worker: Worker) -> Recorder:
    recorder = worker.dlq.send
    assert isinstance(recorder, Recorder)
    return recorder


def run_agent(
    worker: Worker, payloads: list[bytes], done: Callable[[], bool], timeout: float = 30.0
) -> None:
    """Put ``payloads`` on the ingest agent and wait until ``done()``."""

    async def scenario() -> None:
        async with worker.app.agents["ingest"].test_context() as agent:
            for payload in payloads:
                await agent.put(payload)
            for _ in range(int(timeout / 0.05)):
                if done():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the ingest agent did not get through the events")

    asyncio.run(scenario())


def good_event(services: Services, rid: str, seed: int = 1) -> bytes:
    return json.dumps(landed_call(services, rid, call_wav(1.0, codec="mulaw", seed=seed))).encode()


def reasons(worker: Worker) -> list[str]:
    return [
        headers["cv-reason"]
        for headers in map(_dlq(worker).headers, range(len(_dlq(worker).messages)))
    ]


def landing(services: Services) -> Path:
    path = services.settings.landing_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_poison_events_are_dead_lettered_and_the_stream_goes_on(
    services: Services, worker: Worker
) -> None:
    """Found on main: each of these stopped ingest on every partition for good."""
    root = landing(services)
    deep = b"[" * 60_000
    year_one = json.loads(good_event(services, "poison-year", seed=2))
    year_one["started_at"] = "0001-01-01T00:00:00+01:00"
    surrogate = json.loads(good_event(services, "poison-ref", seed=3))
    surrogate["customer_ref"] = "\ud800"
    sock_path = root / "socket.wav"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    fifo_path = root / "fifo.wav"
    os.mkfifo(fifo_path)
    on_socket = landed_call(services, "poison-sock", b"x", write=False)
    on_socket["audio"]["uri"] = sock_path.as_uri()
    on_fifo = landed_call(services, "poison-fifo", b"x", write=False)
    on_fifo["audio"]["uri"] = fifo_path.as_uri()
    poison = [
        deep,
        json.dumps(year_one).encode(),
        json.dumps(surrogate).encode(),  # ensure_ascii: "\ud800" as an escape
        json.dumps(on_socket).encode(),
        json.dumps(on_fifo).encode(),
    ]
    goods = [good_event(services, f"good-{i}", seed=10 + i) for i in range(3)]
    payloads = [goods[0], *poison[:3], goods[1], *poison[3:], goods[2]]
    try:
        run_agent(
            worker,
            payloads,
            lambda: (
                len(_dlq(worker).messages) == 5
                and all(services.catalog.get_recording(f"good-{i}") for i in range(3))
            ),
        )
    finally:
        server.close()
    assert sorted(reasons(worker)) == sorted(
        [
            "malformed",
            "invalid-field",
            "invalid-field",
            "landing-not-regular",
            "landing-not-regular",
        ]
    )
    assert fifo_path.exists() and sock_path.exists()  # nothing lost, nothing opened
    assert worker.metrics.ingest_batch_failures._value.get() == 0  # nothing was retried


def test_an_unexpected_error_is_pinned_on_its_event(services: Services, worker: Worker) -> None:
    """An exception not known to be infrastructure is permanent for that event only."""
    real = worker.pipeline.preparer.prepare

    def fragile(item: Any) -> Any:
        if item.event.recording_id == "bug-1":
            raise ZeroDivisionError("a bug in one code path")
        return real(item)

    worker.pipeline.preparer.prepare = fragile  # type: ignore[method-assign]
    payloads = [good_event(services, "bug-1", seed=1), good_event(services, "ok-1", seed=2)]
    run_agent(
        worker,
        payloads,
        lambda: bool(_dlq(worker).messages) and bool(services.catalog.get_recording("ok-1")),
    )
    headers = _dlq(worker).headers()
    assert (headers["cv-reason"], headers["cv-detail"]) == ("internal-error", "ZeroDivisionError")
    assert (services.settings.landing_dir / "bug-1.wav").exists()  # kept for a replay


def test_infrastructure_is_retried_with_back_off_and_never_skipped(
    services: Services, worker: Worker
) -> None:
    real_put = services.vault.put
    calls = {"n": 0}

    def flaky_put(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise VaultUnavailable("vault folder on a full disk")
        return real_put(*args, **kwargs)

    services.vault.put = flaky_put  # type: ignore[method-assign]
    run_agent(
        worker,
        [good_event(services, "retry-1")],
        lambda: services.catalog.get_recording("retry-1") is not None,
    )
    assert calls["n"] == 4 and not _dlq(worker).messages
    retries = worker.metrics.registry.get_sample_value(
        "callvault_ingest_infrastructure_retries_total", {"backend": "vault"}
    )
    assert retries == 3


def test_an_event_over_a_megabyte_is_dead_lettered_within_the_broker_limit(
    services: Services, worker: Worker
) -> None:
    """Found on main: the DLQ entry embedded the whole event, producing it raised
    MessageSizeTooLargeError outside the retry loop and the agent crashed."""
    big = json.loads(good_event(services, "big-1"))
    big["queue"] = "x" * (1_200_000)
    raw = json.dumps(big).encode()
    run_agent(
        worker,
        [raw, good_event(services, "after-big", seed=5)],
        lambda: bool(_dlq(worker).messages) and bool(services.catalog.get_recording("after-big")),
    )
    message = _dlq(worker).messages[0]
    headers = _dlq(worker).headers()
    assert headers["cv-reason"] == "malformed"
    assert headers["cv-original"].startswith("vault:dlq/")
    size = len(message["value"]) + sum(len(k) + len(v) for k, v in message["headers"])
    assert size < INLINE_MAX < 1_000_000
    (letter,) = services.dead_letters.list()
    assert worker.dead_letters.original(letter) == raw  # the whole original, kept sealed
    blob = services.vault.get(headers["cv-original"].removeprefix("vault:"))
    assert b"xxxxxxxx" not in blob


def test_the_same_poison_event_again_counts_an_attempt_of_one_entry(
    services: Services, worker: Worker
) -> None:
    run_agent(worker, [b"{not json"], lambda: len(_dlq(worker).messages) == 1)
    run_agent(worker, [b"{not json"], lambda: len(_dlq(worker).messages) == 2)
    first, second = _dlq(worker).headers(0), _dlq(worker).headers(1)
    assert first["cv-dlq-id"] == second["cv-dlq-id"]
    assert (first["cv-attempts"], second["cv-attempts"]) == ("1", "2")
    assert second["cv-first-seen"] == first["cv-first-seen"]
    assert len(services.dead_letters.list()) == 1


def _victim(services: Services, rid: str) -> tuple[Path, bytes, dict[str, Any]]:
    audio = call_wav(1.0, codec="mulaw", seed=7)
    event = landed_call(services, rid, audio)
    return Path(event["audio"]["uri"].removeprefix("file://")), audio, event


def test_a_reused_stored_id_cannot_destroy_another_calls_audio(
    services: Services, worker: Worker
) -> None:
    """Found on main: an event reusing a stored recording id, naming another call's
    landing file with its correct sha256, deleted that file."""
    run_agent(
        worker,
        [good_event(services, "stored-1")],
        lambda: bool(services.catalog.get_recording("stored-1")),
    )
    path, audio, victim = _victim(services, "victim-1")
    foreign = json.loads(good_event(services, "stored-1"))  # the stored id again
    foreign["audio"] = dict(victim["audio"])  # the victim's file and correct sha256
    run_agent(worker, [json.dumps(foreign).encode()], lambda: True)
    assert path.read_bytes() == audio
    run_agent(
        worker,
        [json.dumps(victim).encode()],
        lambda: bool(services.catalog.get_recording("victim-1")),
    )


def test_a_declined_event_cannot_destroy_a_claimed_file(services: Services, worker: Worker) -> None:
    """Found on main: a declined event naming another call's file (correct sha256)
    deleted it. A file claimed by its recording (an HTTP upload claims at once, a
    dead-lettered event keeps its claim) or named by its sidecar is refused."""
    path, audio, victim = _victim(services, "victim-2")
    key = landing_key(services.keyring, path.as_uri())
    services.claims.claim([(key, "victim-2", "demo")])  # as POST /v1/recordings does
    foreign = json.loads(good_event(services, "foreign-2", seed=3))
    foreign["consent"] = {"recording": "declined"}
    foreign["audio"] = dict(victim["audio"])
    run_agent(worker, [json.dumps(foreign).encode()], lambda: bool(_dlq(worker).messages))
    assert _dlq(worker).headers()["cv-reason"] == "landing-claimed"
    assert path.read_bytes() == audio
    # a sidecar naming the owner refuses a foreign event just the same
    path3, audio3, victim3 = _victim(services, "victim-3")
    services.landing.write_sidecar(path3.as_uri(), victim3)
    foreign3 = dict(foreign, recording_id="foreign-3", audio=dict(victim3["audio"]))
    run_agent(worker, [json.dumps(foreign3).encode()], lambda: len(_dlq(worker).messages) == 2)
    assert _dlq(worker).headers(1)["cv-reason"] == "landing-claimed"
    assert path3.read_bytes() == audio3
    run_agent(
        worker,
        [json.dumps(victim).encode(), json.dumps(victim3).encode()],
        lambda: (
            bool(services.catalog.get_recording("victim-2"))
            and bool(services.catalog.get_recording("victim-3"))
        ),
    )
    assert not path.exists() and not path3.exists()  # its own event stored and removed it
    assert services.claims.get([key])[key].state is ClaimState.RELEASED


def test_a_hard_link_to_a_file_outside_the_landing_root_is_refused(
    services: Services, worker: Worker, tmp_path: Path
) -> None:
    """Found on main: realpath cannot see hard links; the outside file was ingested."""
    outside = tmp_path / "secret.wav"
    audio = call_wav(1.0, codec="mulaw", seed=9)
    outside.write_bytes(audio)
    link = landing(services) / "linked.wav"
    os.link(outside, link)
    event = landed_call(services, "linked-1", audio, write=False)
    event["audio"]["uri"] = link.as_uri()
    run_agent(worker, [json.dumps(event).encode()], lambda: bool(_dlq(worker).messages))
    assert _dlq(worker).headers()["cv-reason"] == "landing-unsafe"
    assert services.catalog.get_recording("linked-1") is None
    assert outside.read_bytes() == audio


def test_a_decompression_bomb_is_refused_without_decoding_it_whole(
    services: Services, worker: Worker
) -> None:
    """Found on main: a 32 KB FLAC decoded to 184 MB (60 s, 192 kHz, 8 channels) while
    the event said 3 s, all of it held in memory."""
    path = landing(services) / "bomb.flac"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=192000:cl=7.1",
         "-t", "60", "-c:a", "flac", str(path)],
        check=True,
    )  # fmt: skip
    data = path.read_bytes()
    assert len(data) < 64 * 1024
    event = landed_call(services, "bomb-1", data, write=False, seconds=3.0)
    event["audio"].update(uri=path.as_uri(), format="flac")
    run_agent(worker, [json.dumps(event).encode()], lambda: bool(_dlq(worker).messages))
    headers = _dlq(worker).headers()
    assert headers["cv-reason"] == "audio-too-long"
    assert path.exists()  # kept for an operator


def test_no_recording_id_uri_or_sha256_in_logs_or_dlq_headers(
    services: Services, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # `callvault import` (run in-process by other tests) quiets this logger; undo it here
    caplog.set_level(logging.DEBUG, logger="streams.ingest")
    audio = call_wav(1.0, codec="mulaw", seed=4)
    event = landed_call(services, "tel-15550100-call", audio, write=False)
    event["audio"]["uri"] = (landing(services) / "+15550100.wav").as_uri()
    real_put = services.vault.put
    calls = {"n": 0}

    def once_down(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise VaultUnavailable(f"cannot write {event['audio']['uri']}")
        return real_put(*args, **kwargs)

    services.vault.put = once_down  # type: ignore[method-assign]
    stored = landed_call(services, "tel-15550100-ok", audio)
    run_agent(
        worker,
        [json.dumps(event).encode(), json.dumps(stored).encode()],
        lambda: (
            bool(_dlq(worker).messages) and bool(services.catalog.get_recording("tel-15550100-ok"))
        ),
    )
    text = caplog.text + json.dumps(_dlq(worker).headers())
    for secret in ("+15550100", "5550100", hashlib.sha256(audio).hexdigest()):
        assert secret not in text, secret
    assert recording_ref(services.keyring, "tel-15550100-call") in caplog.text
