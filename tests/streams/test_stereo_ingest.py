"""Stereo done right (issue 11): headerless audio at the declared rate and channels,
legs joined into one sample-aligned stereo recording, PCI silence on the declared
channels at the exact samples, and every other sample equal to the input.

The inputs are what real systems write (tests/fixtures/telephony.py, made with sox at
test time): Asterisk MixMonitor's ``D``-option interleaved stereo ``.raw`` (sln), Amazon
Connect's 8 kHz stereo PCM WAV (customer left, agent right) and MixMonitor's
``r()``/``t()`` legs. They go through the real ingest pipeline (landing, sha256,
decode, silence, encryption, file vault, SQLite catalog) and are read back decrypted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callvault.services import Services, build_services
from callvault.settings import load_settings
from storage.audio import decode
from streams.http.recordings import public_recording
from streams.ingest import IngestOutcome, IngestPipeline
from tests.fixtures.signals import split_channels, wav_pcm
from tests.fixtures.telephony import TelephonySample, TelephonySamples

SECONDS = 8.0
RATE = 8000


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(tmp_path / "data")}))
    yield built
    built.close()


def _ingest(services: Services, *events: dict[str, Any]) -> list[IngestOutcome]:
    pipeline = IngestPipeline.over(services, actor="worker:test")
    try:
        return pipeline.process_batch([json.dumps(e).encode() for e in events])
    finally:
        pipeline.close()


def _land(services: Services, source: Path, name: str) -> tuple[str, str]:
    target = services.settings.landing_dir / name
    shutil.copyfile(source, target)
    return f"file://{target}", hashlib.sha256(target.read_bytes()).hexdigest()


def _event(rid: str, audio: dict[str, Any], **extra: Any) -> dict[str, Any]:
    end = datetime.now(UTC).replace(microsecond=0)
    return {
        "schema": "callvault.recording.v1",
        "recording_id": rid,
        "call_id": f"call-{rid}",
        "tenant": "acme",
        "started_at": (end - timedelta(seconds=SECONDS)).isoformat(),
        "ended_at": end.isoformat(),
        "agent_id": "a-7",
        "customer_ref": "C-1001",
        "queue": "billing",
        "direction": "inbound",
        "consent": {"recording": "notified"},
        "audio": audio,
        **extra,
    }


def _stored(services: Services, rid: str) -> tuple[Any, list[bytes]]:
    row = services.catalog.get_recording(rid)
    assert row is not None
    plain = services.keys.open_recording(services.vault.get(row.object_key))
    audio = decode(plain, "wav")
    return row, split_channels(audio.pcm, audio.channels)


def _frames(start_ms: int, end_ms: int) -> tuple[int, int]:
    return start_ms * RATE // 1000, -(-end_ms * RATE // 1000)


def _assert_silenced_exactly(
    stored: bytes, sent: bytes, spans: list[tuple[int, int]], *, what: str
) -> None:
    """``stored`` is ``sent`` with exactly the frames of ``spans`` zeroed (mono 16-bit)."""
    assert len(stored) == len(sent), what
    expected = bytearray(sent)
    for start_ms, end_ms in spans:
        first, last = _frames(start_ms, end_ms)
        expected[2 * first : 2 * last] = bytes(2 * (last - first))
        assert any(sent[2 * first : 2 * last]), f"{what}: the pause must hold speech to matter"
    assert stored == bytes(expected), what


def _channels_of(sample: TelephonySample) -> list[bytes]:
    if sample.format == "sln":
        data = sample.path.read_bytes()
    else:
        data = decode(sample.path.read_bytes(), "wav").pcm
    return split_channels(data, sample.channels)


def test_stereo_sln_uses_the_declared_layout_and_silences_one_channel(
    services: Services, telephony_samples: TelephonySamples
) -> None:
    """The issue's bug: a stereo .raw read as 8 kHz mono lasts twice as long and a pause
    at 5.6-7.5 s silences 2.8-3.75 s. Declared, the customer's digits are silenced."""
    sample = telephony_samples.get("asterisk-d-stereo-sln", seconds=SECONDS)
    uri, digest = _land(services, sample.path, "1764590400.17.raw")
    audio = {"uri": uri, "sha256": digest, "format": "sln", "sample_rate": 8000,
             "channels": 2, "channel_roles": ["customer", "agent"]}  # fmt: skip
    pauses = [
        {"start_ms": 5600, "end_ms": 7500, "channels": ["customer"]},
        {"start_ms": 4000, "end_ms": 6000},  # both channels (they overlap on the customer)
    ]
    (outcome,) = _ingest(services, _event("sln-1", audio, pci_pauses=pauses))
    assert outcome.status == "stored", outcome
    row, (left, right) = _stored(services, "sln-1")
    assert (row.channels, row.sample_rate, row.duration_ms) == (2, 8000, 8000)
    assert row.audio_format == "wav/pcm_s16le"
    assert row.channel_roles == ("customer", "agent")
    sent_left, sent_right = _channels_of(sample)
    _assert_silenced_exactly(left, sent_left, [(4000, 6000), (5600, 7500)], what="customer")
    _assert_silenced_exactly(right, sent_right, [(4000, 6000)], what="agent")
    assert row.pci_redacted_ms == 3500  # 4.0-7.5 s on some channel
    shown = public_recording(row, [])
    assert shown["channels"] == 2 and shown["channel_roles"] == ["customer", "agent"]
    assert shown["pci_pauses"] == [
        {"start_ms": 5600, "end_ms": 7500, "channels": [0]},
        {"start_ms": 4000, "end_ms": 6000, "channels": [0, 1]},
    ]


def test_stereo_wav_silences_the_declared_channel_by_index(
    services: Services, telephony_samples: TelephonySamples
) -> None:
    sample = telephony_samples.get("amazon-connect-wav", seconds=SECONDS)
    uri, digest = _land(services, sample.path, "contact.wav")
    audio = {"uri": uri, "sha256": digest, "format": "wav",
             "channel_roles": ["customer", "agent"]}  # fmt: skip
    pauses = [{"start_ms": 2000, "end_ms": 3500, "channels": [1]}]
    (outcome,) = _ingest(services, _event("wav-1", audio, pci_pauses=pauses))
    assert outcome.status == "stored", outcome
    row, (left, right) = _stored(services, "wav-1")
    assert row.channels == 2 and row.channel_roles == ("customer", "agent")
    sent_left, sent_right = _channels_of(sample)
    assert left == sent_left  # untouched, sample for sample
    _assert_silenced_exactly(right, sent_right, [(2000, 3500)], what="agent")


def test_two_legs_become_one_sample_aligned_stereo_recording(
    services: Services, telephony_samples: TelephonySamples
) -> None:
    sample = telephony_samples.get("asterisk-legs", seconds=SECONDS)
    legs = []
    for leg in sample.legs:
        uri, digest = _land(services, leg.path, leg.path.name)
        legs.append({"uri": uri, "sha256": digest, "role": leg.role})
    pauses = [{"start_ms": 5000, "end_ms": 7000, "channels": ["customer"]}]
    event = _event("legs-1", {"format": "wav", "legs": legs}, pci_pauses=pauses)
    (outcome,) = _ingest(services, event)
    assert outcome.status == "stored", outcome
    row, (left, right) = _stored(services, "legs-1")
    assert (row.channels, row.channel_roles) == (2, ("customer", "agent"))
    customer, agent = (wav_pcm(leg.path)[0] for leg in sample.legs)
    _assert_silenced_exactly(left, customer, [(5000, 7000)], what="customer leg")
    assert right == agent
    for leg in legs:  # every leg's landing copy is gone, and its claim released
        assert not Path(leg["uri"].removeprefix("file://")).exists()
    again = _ingest(services, event)  # redelivered: one recording
    assert [o.status for o in again] == ["duplicate"]


def test_legs_of_different_rates_or_a_wrong_digest_are_refused(
    services: Services, telephony_samples: TelephonySamples
) -> None:
    narrow = telephony_samples.get("asterisk-legs", seconds=SECONDS).legs[0]
    wide = telephony_samples.get("freeswitch-stereo-16k", seconds=SECONDS).sources["agent"]
    legs = []
    for role, path in (("customer", narrow.path), ("agent", wide)):
        uri, digest = _land(services, path, f"{role}.wav")
        legs.append({"uri": uri, "sha256": digest, "role": role})
    (mixed,) = _ingest(services, _event("legs-rates", {"format": "wav", "legs": legs}))
    assert (mixed.status, mixed.reason) == ("dlq", "audio-mismatch"), mixed
    assert "sample rate" in mixed.detail
    for leg in legs:  # kept for an operator
        assert Path(leg["uri"].removeprefix("file://")).exists()
    # Both verified files belong to that recording now: another id may not take either.
    (other,) = _ingest(services, _event("legs-other", {"format": "wav", "legs": legs[::-1]}))
    assert (other.status, other.reason) == ("dlq", "landing-claimed")
    legs[1]["sha256"] = "0" * 64
    (bad,) = _ingest(services, _event("legs-rates", {"format": "wav", "legs": legs}))
    assert (bad.status, bad.reason) == ("dlq", "sha256-mismatch")


@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        ({"channels": 1}, "audio-mismatch"),  # the header says 2
        ({"sample_rate": 16000}, "audio-mismatch"),  # the header says 8000
        ({"channel_roles": ["mixed"]}, "audio-mismatch"),  # one role, two channels
    ],
)
def test_a_container_contradicting_the_event_is_refused(
    services: Services,
    telephony_samples: TelephonySamples,
    declared: dict[str, Any],
    reason: str,
) -> None:
    sample = telephony_samples.get("amazon-connect-wav", seconds=SECONDS)
    uri, digest = _land(services, sample.path, "contact.wav")
    audio = {"uri": uri, "sha256": digest, "format": "wav", **declared}
    (outcome,) = _ingest(services, _event("mismatch", audio))
    assert (outcome.status, outcome.reason) == ("dlq", reason), outcome
    assert services.catalog.get_recording("mismatch") is None


def test_a_pause_beyond_the_decoded_audio_is_out_of_range(
    services: Services, telephony_samples: TelephonySamples
) -> None:
    """Mono sln declared as stereo decodes to half the call: the pause at 5.0 s cannot
    land on the samples the event means, so nothing is stored."""
    sample = telephony_samples.get("asterisk-ulaw", seconds=SECONDS)
    uri, digest = _land(services, sample.path, "mono.ulaw")
    audio = {"uri": uri, "sha256": digest, "format": "ulaw", "channels": 2}
    pauses = [{"start_ms": 5000, "end_ms": 6000}]
    (outcome,) = _ingest(services, _event("beyond", audio, pci_pauses=pauses))
    assert (outcome.status, outcome.reason) == ("dlq", "pci-out-of-range"), outcome


def test_headerless_wideband_and_g711_keep_their_declared_rate(
    services: Services, telephony_samples: TelephonySamples
) -> None:
    sample = telephony_samples.get("asterisk-d-stereo-sln16", seconds=SECONDS)
    uri, digest = _land(services, sample.path, "wide.sln16")
    audio = {"uri": uri, "sha256": digest, "format": "sln16", "channels": 2}
    (outcome,) = _ingest(services, _event("sln16", audio))
    assert outcome.status == "stored", outcome
    row, channels = _stored(services, "sln16")
    assert (row.sample_rate, row.channels, row.duration_ms) == (16000, 2, 8000)
    assert channels == split_channels(sample.path.read_bytes(), 2)
    ulaw = telephony_samples.get("asterisk-ulaw", seconds=SECONDS)
    uri, digest = _land(services, ulaw.path, "narrow.ulaw")
    (kept,) = _ingest(services, _event("ulaw", {"uri": uri, "sha256": digest, "format": "ulaw"}))
    assert kept.status == "stored", kept
    row = services.catalog.get_recording("ulaw")
    assert row is not None and row.audio_format == "wav/mulaw"
    plain = services.keys.open_recording(services.vault.get(row.object_key))
    assert plain.endswith(ulaw.path.read_bytes())  # the G.711 codes as sent, behind a header


def test_a_streamed_file_with_a_wrong_digest_leaves_no_object(
    services: Services, telephony_samples: TelephonySamples
) -> None:
    """WAV and headerless audio are sealed and written while they are read; the digest is
    checked at the end of the file, before the object is complete, so a mismatch leaves
    no object (nor temp file) in the vault and the landing copy for an operator."""
    sample = telephony_samples.get("freeswitch-stereo-16k", seconds=SECONDS)
    uri, _ = _land(services, sample.path, "fs.wav")
    audio = {"uri": uri, "sha256": "ab" * 32, "format": "wav"}
    (outcome,) = _ingest(services, _event("wrong-sum", audio))
    assert (outcome.status, outcome.reason) == ("dlq", "sha256-mismatch"), outcome
    vault_dir = services.settings.data_dir / "vault"
    assert not [p for p in vault_dir.rglob("*") if p.is_file()]
    assert Path(uri.removeprefix("file://")).exists()
    assert services.catalog.get_recording("wrong-sum") is None


def test_a_streamed_file_refused_early_is_still_checked_against_its_digest(
    services: Services, telephony_samples: TelephonySamples
) -> None:
    """Refused from its header (longer than the call allows), a file is still read to
    the end: not the event's audio -> sha256-mismatch (as on the whole-file path); the
    event's -> audio-too-long, and the file is claimed for that recording."""
    sample = telephony_samples.get("amazon-connect-wav", seconds=20)  # as the QA page test's
    uri, digest = _land(services, sample.path, "long.wav")
    short_call = _event("too-long", {"uri": uri, "sha256": digest, "format": "wav"})
    ended = datetime.fromisoformat(short_call["ended_at"])
    short_call["started_at"] = (ended - timedelta(seconds=1)).isoformat()  # 1 s + 10 s slack
    wrong = {**short_call, "recording_id": "too-long-wrong",
             "audio": {**short_call["audio"], "sha256": "cd" * 32}}  # fmt: skip
    (mismatch,) = _ingest(services, wrong)
    assert (mismatch.status, mismatch.reason) == ("dlq", "sha256-mismatch"), mismatch
    assert services.claims.get([_landing_key(services, uri)]) == {}
    (too_long,) = _ingest(services, short_call)
    assert (too_long.status, too_long.reason) == ("dlq", "audio-too-long"), too_long
    (claim,) = services.claims.get([_landing_key(services, uri)]).values()
    assert claim.recording_id == "too-long"


def _landing_key(services: Services, uri: str) -> str:
    from streams.refs import landing_key

    return landing_key(services.keyring, services.landing.resolve(uri).uri)
