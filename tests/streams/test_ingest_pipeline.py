"""IngestPipeline without the broker: every outcome, on the file path and on S3 (a real
S3 server, SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import time
import wave
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import storage.audio
from callvault.demo import demo_event
from callvault.services import Services, build_services
from callvault.settings import load_settings
from callvault.synth import call_wav
from storage import StorageError, decode
from storage.errors import VaultUnavailable
from streams.ingest import IngestPipeline
from streams.metrics import Metrics
from tests.fixtures.seaweedfs import BucketFactory


def _pipeline(
    services: Services, metrics: Metrics | None = None, executor: Executor | None = None
) -> IngestPipeline:
    return IngestPipeline(
        landing=services.landing,
        vault=services.vault,
        keys=services.keys,
        catalog=services.catalog,
        audit=services.audit,
        policy=services.policy,
        metrics=metrics or Metrics(),
        actor="worker:test",
        clock=services.clock,
        executor=executor,
    )


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(tmp_path / "data")}))
    yield built
    built.close()


def _land(services: Services, rid: str, audio: bytes, suffix: str = "wav", **kw: Any) -> bytes:
    path = services.settings.landing_dir / f"{rid}.{suffix}"
    path.write_bytes(audio)
    kw.setdefault("sha256", hashlib.sha256(audio).hexdigest())
    event = demo_event(rid, audio=audio, uri=f"file://{path}", **kw)
    return json.dumps(event).encode()


def test_redelivered_batch_changes_nothing(services: Services) -> None:
    pipeline = _pipeline(services)
    audio = call_wav(3.0, codec="mulaw", seed=1)
    payload = _land(services, "p-1", audio)
    first = pipeline.process_batch([payload])
    assert [o.status for o in first] == ["stored"]
    key = first[0].object_key
    assert key is not None and "p-1" not in key  # no ids in object keys
    stored_blob = services.vault.get(key)
    again = pipeline.process_batch([payload, payload])
    assert [o.status for o in again] == ["duplicate", "duplicate"]
    assert services.vault.get(key) == stored_blob
    assert sum(1 for e in services.audit.iter_entries() if e.action == "ingest.stored") == 1


def test_declined_legs_are_checked_streaming_not_read_whole(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    legs, paths = [], []
    for role, seed in (("customer", 21), ("agent", 22)):
        audio = call_wav(2.0, codec="mulaw", seed=seed)
        path = services.settings.landing_dir / f"dec-legs-{role}.wav"
        path.write_bytes(audio)
        paths.append(path)
        legs.append({"uri": f"file://{path}", "sha256": hashlib.sha256(audio).hexdigest(),
                     "role": role})  # fmt: skip
    event = demo_event("dec-legs", audio=b"", consent="declined", seconds=2.0)
    event["audio"] = {"format": "wav", "legs": legs}

    def whole(*_args: Any, **_kwargs: Any) -> bytes:
        raise AssertionError("a declined leg was read whole into memory")

    monkeypatch.setattr(services.landing, "read", whole)
    pipeline = _pipeline(services)
    bad = json.loads(json.dumps(event))
    bad["recording_id"], bad["audio"]["legs"][1]["sha256"] = "dec-legs-bad", "0" * 64
    assert [o.status for o in pipeline.process_batch([json.dumps(bad).encode()])] == ["declined"]
    assert all(path.exists() for path in paths)  # a leg is not this event's: both kept
    assert [o.status for o in pipeline.process_batch([json.dumps(event).encode()])] == ["declined"]
    assert not any(path.exists() for path in paths)  # verified by streaming, destroyed


def test_declined_consent_destroys_audio_once_even_when_redelivered(services: Services) -> None:
    pipeline = _pipeline(services)
    payload = _land(services, "p-dec", call_wav(2.0, codec="mulaw", seed=2), consent="declined")
    assert [o.status for o in pipeline.process_batch([payload])] == ["declined"]
    assert not (services.settings.landing_dir / "p-dec.wav").exists()
    assert [o.status for o in pipeline.process_batch([payload])] == ["declined"]
    declined = [e for e in services.audit.iter_entries() if e.action == "ingest.declined"]
    assert len(declined) == 1 and declined[0].reason == "consent-declined"
    assert services.catalog.get_recording("p-dec") is None
    assert list(services.vault.iter_keys()) == []


def test_alaw_input_is_stored_as_alaw_and_decodes_to_the_same_samples(services: Services) -> None:
    pipeline = _pipeline(services)
    audio = call_wav(2.0, codec="alaw", seed=3)
    (outcome,) = pipeline.process_batch([_land(services, "p-alaw", audio)])
    assert outcome.status == "stored"
    row = services.catalog.get_recording("p-alaw")
    assert row is not None and row.audio_format == "wav/alaw"
    plain = services.keys.open_recording(services.vault.get(row.object_key))
    assert decode(plain, "wav").pcm == decode(audio, "wav").pcm


def test_ffmpeg_format_is_stored_as_sent(services: Services, tmp_path: Path) -> None:
    pcm_wav = call_wav(2.0, codec="pcm16", seed=4)
    flac = tmp_path / "in.flac"
    src = tmp_path / "in.wav"
    src.write_bytes(pcm_wav)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), str(flac)], check=True)
    audio = flac.read_bytes()
    payload = json.loads(_land(services, "p-flac", audio, suffix="flac"))
    payload["audio"]["format"] = "flac"
    (outcome,) = _pipeline(services).process_batch([json.dumps(payload).encode()])
    assert outcome.status == "stored", outcome
    row = services.catalog.get_recording("p-flac")
    assert row is not None and row.audio_format == "flac"
    assert services.keys.open_recording(services.vault.get(row.object_key)) == audio
    with wave.open(io.BytesIO(pcm_wav)) as w:
        assert decode(audio, "flac").pcm == w.readframes(w.getnframes())


def test_a_hanging_ffmpeg_is_stopped_and_only_its_event_dead_lettered(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ffmpeg that never finishes (a hostile file, a wedged codec) is killed after
    ``DecodeLimit.ffmpeg_seconds()`` (here 1 s; by default 30 s plus 0.1 s per second
    the call may last): its event is dead-lettered with the reason, its landing audio
    kept, and the rest of the batch is stored instead of waiting on it."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "ffmpeg").write_text("#!/bin/sh\nexec sleep 600\n")
    (fake / "ffmpeg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.setattr(storage.audio, "FFMPEG_MIN_S", 1.0)
    monkeypatch.setattr(storage.audio, "FFMPEG_S_PER_AUDIO_S", 0.0)
    flac = json.loads(_land(services, "hang-flac", b"fLaC" + bytes(4000), suffix="flac"))
    flac["audio"]["format"] = "flac"
    batch = [json.dumps(flac).encode()]
    batch += [
        _land(services, f"hang-{i}", call_wav(2.0, codec="mulaw", seed=50 + i)) for i in (1, 2)
    ]
    started = time.monotonic()
    outcomes = _pipeline(services).process_batch(batch)
    took = time.monotonic() - started
    assert [o.status for o in outcomes] == ["dlq", "stored", "stored"]
    assert outcomes[0].reason == "audio-undecodable"
    assert "ran longer than 1 s" in outcomes[0].detail, outcomes[0].detail
    assert (services.settings.landing_dir / "hang-flac.flac").exists()  # kept for a replay
    assert took < 30, took  # the 600 s sleep was killed, not waited out
    leftover = subprocess.run(["pgrep", "-f", "^sleep 600$"], capture_output=True, text=True)
    assert leftover.stdout == "", leftover.stdout


class _CountingPool(ThreadPoolExecutor):
    """A thread pool that counts what is submitted to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_local_calls_are_prepared_in_the_batch_thread_the_others_in_the_pool(
    services: Services, tmp_path: Path
) -> None:
    """Into a folder vault, G.711 / PCM WAV from a local landing file only holds the GIL:
    it is prepared in the caller's thread (threads measured 20 % more CPU per call and no
    speed, README "Where the ingest time goes"); an ffmpeg format waits on ffmpeg and
    still goes to the pool, in the same batch, and both are stored."""
    assert services.vault.puts_wait_on_network is False
    src = tmp_path / "in.wav"
    src.write_bytes(call_wav(2.0, codec="pcm16", seed=7))
    flac = tmp_path / "in.flac"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), str(flac)], check=True)
    compressed = json.loads(_land(services, "route-flac", flac.read_bytes(), suffix="flac"))
    compressed["audio"]["format"] = "flac"
    batch = [
        _land(services, f"route-{i}", call_wav(2.0, codec="mulaw", seed=30 + i)) for i in range(3)
    ]
    batch.append(json.dumps(compressed).encode())
    pool = _CountingPool()
    pipeline = _pipeline(services, executor=pool)
    try:
        outcomes = pipeline.process_batch(batch)
    finally:
        pool.shutdown()
    assert [o.status for o in outcomes] == ["stored"] * 4
    assert pool.submitted == 1  # the FLAC call only


class _NoHashing:
    """Stands in for ``hashlib`` in the preparer: any digest taken there fails the test."""

    def sha256(self, *_args: Any) -> Any:
        raise AssertionError("the preparer hashed audio whose digest nobody claimed")


def test_only_an_in_process_caller_leaves_a_digest_unclaimed(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The importer (a manifest row without sha256) sends a placeholder digest with the
    event's position in ``unclaimed``: the audio is stored as the file holds it, hashed
    nowhere, on the streamed and the ffmpeg path, and a declined call's file is
    destroyed. The same placeholder from anywhere else is a ``sha256-mismatch``, and a
    claimed digest in the same batch is still checked."""
    import streams.ingest.preparer as preparer

    placeholder = "0" * 64
    audio = call_wav(2.0, codec="mulaw", seed=41)
    src = tmp_path / "in.wav"
    src.write_bytes(call_wav(2.0, codec="pcm16", seed=42))
    flac = tmp_path / "in.flac"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), str(flac)], check=True)
    streamed = _land(services, "un-wav", audio, sha256=placeholder)
    compressed = json.loads(
        _land(services, "un-flac", flac.read_bytes(), "flac", sha256=placeholder)
    )
    compressed["audio"]["format"] = "flac"
    declined = _land(services, "un-dec", call_wav(1.0, codec="mulaw", seed=43),
                     consent="declined", sha256=placeholder)  # fmt: skip
    wrong = _land(services, "un-wrong", call_wav(1.0, codec="mulaw", seed=44), sha256="1" * 64)
    batch = [streamed, json.dumps(compressed).encode(), declined, wrong]
    pipeline = _pipeline(services)

    outside = pipeline.process_batch(batch)  # nobody vouches: every digest is a claim
    assert [(o.status, o.reason) for o in outside] == [("dlq", "sha256-mismatch")] * 2 + [
        ("declined", "consent-declined"),  # declined, but not its file: kept
        ("dlq", "sha256-mismatch"),
    ]
    assert (services.settings.landing_dir / "un-dec.wav").exists()

    monkeypatch.setattr(preparer, "hashlib", _NoHashing())
    batch = [streamed, json.dumps(compressed).encode(), declined.replace(b"un-dec", b"un-dec2")]
    (services.settings.landing_dir / "un-dec.wav").rename(
        services.settings.landing_dir / "un-dec2.wav"
    )
    vouched = pipeline.process_batch(batch, unclaimed=[0, 1, 2])
    assert [(o.status, o.reason) for o in vouched] == [
        ("stored", ""),
        ("stored", ""),
        ("declined", "consent-declined"),
    ]
    row = services.catalog.get_recording("un-wav")
    assert row is not None
    assert services.keys.open_recording(services.vault.get(row.object_key)) == audio
    assert services.catalog.get_recording("un-flac") is not None
    assert not (services.settings.landing_dir / "un-dec2.wav").exists()

    monkeypatch.undo()  # a claimed digest beside a vouched one is still checked
    other = _land(services, "un-wav2", call_wav(1.0, codec="mulaw", seed=45), sha256=placeholder)
    mixed = pipeline.process_batch([wrong, other], unclaimed=[1])
    assert [(o.status, o.reason) for o in mixed] == [("dlq", "sha256-mismatch"), ("stored", "")]
    assert (services.settings.landing_dir / "un-wrong.wav").exists()


@pytest.mark.parametrize(
    ("audio", "fmt", "reason"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "wav", "audio-undecodable"),
        (b"not audio at all" * 100, "mp3", "audio-undecodable"),
        (b"", "wav", "audio-undecodable"),
    ],
)
def test_undecodable_audio_is_dead_lettered_and_kept(
    services: Services, audio: bytes, fmt: str, reason: str
) -> None:
    payload = json.loads(_land(services, "p-bad", audio))
    payload["audio"]["format"] = fmt
    (outcome,) = _pipeline(services).process_batch([json.dumps(payload).encode()])
    assert (outcome.status, outcome.reason) == ("dlq", reason)
    assert (services.settings.landing_dir / "p-bad.wav").exists()
    assert outcome.payload is not None and json.loads(outcome.payload)["recording_id"] == "p-bad"


def test_unknown_purpose_is_dead_lettered(services: Services) -> None:
    payload = _land(services, "p-purp", call_wav(1.0, codec="mulaw", seed=5), customer="c")
    event = json.loads(payload)
    event["purposes"] = ["marketing"]
    (outcome,) = _pipeline(services).process_batch([json.dumps(event).encode()])
    assert (outcome.status, outcome.reason) == ("dlq", "unknown-purpose")


def test_a_failing_vault_raises_instead_of_dead_lettering(services: Services) -> None:
    class BrokenVault:
        url = "file:///broken"
        puts_wait_on_network = False

        def put(self, *args: Any, **kwargs: Any) -> Any:
            raise VaultUnavailable("disk full")  # what LocalVault / S3Vault raise when down

        def flush(self) -> None:
            pass

    services.vault = BrokenVault()  # type: ignore[assignment]
    payload = _land(services, "p-down", call_wav(1.0, codec="mulaw", seed=6))
    with pytest.raises(StorageError, match="disk full"):
        _pipeline(services).process_batch([payload])
    # nothing was lost: the landing copy stays for the retry
    assert (services.settings.landing_dir / "p-down.wav").exists()
    assert services.catalog.get_recording("p-down") is None


def test_metrics_count_outcomes_without_identifiers(services: Services) -> None:
    metrics = Metrics()
    pipeline = _pipeline(services, metrics)
    good = _land(
        services, "p-m1", call_wav(1.0, codec="mulaw", seed=7), customer="Jane Roe +1 555 0100"
    )
    pipeline.process_batch([good, b"{oops"])
    text = metrics.exposition().decode()
    assert 'callvault_ingest_events_total{outcome="stored",reason=""} 1.0' in text
    assert 'callvault_ingest_events_total{outcome="dlq",reason="malformed"} 1.0' in text
    labels = " ".join(line.split("}")[0] for line in text.splitlines() if "{" in line)
    assert "p-m1" not in labels and "Jane" not in labels and "555" not in labels


@pytest.mark.integration
def test_s3_landing_and_s3_vault(
    tmp_path: Path,
    seaweed_endpoint: str,
    seaweed_client: Any,
    seaweed_env: None,
    seaweed_buckets: BucketFactory,
) -> None:
    s3_client = seaweed_client
    landing = seaweed_buckets.make("landing", versioning=False)
    vault = seaweed_buckets.make("vault", versioning=False)
    settings = load_settings(
        {
            "CALLVAULT_DATA_DIR": str(tmp_path / "data"),
            "CALLVAULT_VAULT": f"s3://{vault}/recordings",
            "CALLVAULT_S3_ENDPOINT": seaweed_endpoint,
            "CALLVAULT_LANDING_ROOTS": f"s3://{landing}/pbx/",
        }
    )
    services = build_services(settings)
    audio = call_wav(3.0, codec="mulaw", seed=8)
    s3_client.put_object(Bucket=landing, Key="pbx/s3-1.wav", Body=audio)
    s3_client.put_object(Bucket=landing, Key="other/s3-2.wav", Body=audio)
    good = demo_event("s3-1", audio=audio, uri=f"s3://{landing}/pbx/s3-1.wav")
    outside = demo_event("s3-2", audio=audio, uri=f"s3://{landing}/other/s3-2.wav")
    evil = demo_event("s3-3", audio=audio, uri="s3://other-bucket/pbx/x.wav")
    outcomes = _pipeline(services).process_batch(
        [json.dumps(e).encode() for e in (good, outside, evil)]
    )
    assert [(o.status, o.reason) for o in outcomes] == [
        ("stored", ""),
        ("dlq", "uri-outside-landing"),
        ("dlq", "uri-outside-landing"),
    ]
    row = services.catalog.get_recording("s3-1")
    assert row is not None
    listed = s3_client.list_objects_v2(Bucket=vault)["Contents"]
    assert [o["Key"] for o in listed] == [f"recordings/{row.object_key}"]
    tags = {
        t["Key"]: t["Value"]
        for t in s3_client.get_object_tagging(Bucket=vault, Key=listed[0]["Key"])["TagSet"]
    }
    assert tags["retention-class"] == row.retention_class
    assert set(tags["purposes"].split("/")) == set(row.purposes)
    assert "cust-0001" not in json.dumps(tags) and "s3-1" not in json.dumps(tags)
    body = s3_client.get_object(Bucket=vault, Key=listed[0]["Key"])["Body"].read()
    assert b"RIFF" not in body and b"WAVE" not in body
    assert decode(services.keys.open_recording(body), "wav").pcm == decode(audio, "wav").pcm
    # the landing copy is gone (all versions), the outside one untouched
    assert "Contents" not in s3_client.list_objects_v2(Bucket=landing, Prefix="pbx/")
    assert s3_client.list_objects_v2(Bucket=landing, Prefix="other/")["KeyCount"] == 1
    services.close()


def test_a_duplicate_or_declined_event_never_destroys_another_call_s_audio(
    services: Services,
) -> None:
    pipeline = _pipeline(services)
    first = call_wav(2.0, codec="mulaw", seed=20)
    assert pipeline.process_batch([_land(services, "p-dup", first)])[0].status == "stored"
    # Another call's audio waits in the landing area; a stray event reuses the stored
    # id and names that file; a declined event names it too.
    pending = call_wav(2.0, codec="mulaw", seed=21)
    other = services.settings.landing_dir / "pending-call.wav"
    other.write_bytes(pending)
    stray = demo_event("p-dup", audio=first, uri=f"file://{other}")
    declined = demo_event("p-dec2", audio=first, uri=f"file://{other}", consent="declined")
    outcomes = pipeline.process_batch([json.dumps(stray).encode(), json.dumps(declined).encode()])
    assert [o.status for o in outcomes] == ["duplicate", "declined"]
    assert other.read_bytes() == pending
