"""The telephony samples are what each system writes: container, codec, rate, channels,
file name, and the right speaker on the right channel (tests/fixtures/telephony.py)."""

from __future__ import annotations

import re
import struct
import tracemalloc
from pathlib import Path

import pytest

from tests.fixtures.signals import decode_channels, envelope, ncc, wav_pcm
from tests.fixtures.telephony import (
    SAMPLE_NAMES,
    LongCallFactory,
    TelephonySample,
    TelephonySamples,
    probe,
    write_long_call,
)

SECONDS = 8.0
# Per sample: the file name the system gives it.
NAMES = {
    "asterisk-wav": r"\d{10}\.\d+\.wav",
    "asterisk-wav49": r"\d{10}\.\d+\.WAV",
    "asterisk-ulaw": r"\d{10}\.\d+\.ulaw",
    "asterisk-alaw": r"\d{10}\.\d+\.alaw",
    "asterisk-d-stereo-sln": r"\d{10}\.\d+\.raw",
    "asterisk-d-stereo-sln16": r"\d{10}\.\d+\.sln16",
    "asterisk-legs": r"\d{10}\.\d+\.wav",
    "freeswitch-stereo-8k": r"[0-9a-f-]{36}\.wav",
    "freeswitch-stereo-16k": r"[0-9a-f-]{36}\.wav",
    "twilio-dual-wav": r"RE[0-9a-f]{32}\.wav",
    "twilio-dual-mp3": r"RE[0-9a-f]{32}\.mp3",
    "amazon-connect-wav": r"[0-9a-f-]{36}_\d{8}T\d\d:\d\d_UTC\.wav",
    "genesys-webm-opus": r"[0-9a-f-]{36}\.webm",
    "genesys-ogg-opus": r"[0-9a-f-]{36}\.ogg",
    "genesys-wav-ulaw": r"[0-9a-f-]{36}\.wav",
    "alaw-wav": r".+\.wav",
    "vapi-flac": r".+\.flac",
    "zoom-m4a": r"audio\d+\.m4a",
}
LOSSLESS = {"pcm_s16le", "pcm_mulaw", "pcm_alaw", "flac"}


@pytest.fixture(scope="module", params=SAMPLE_NAMES)
def sample(request: pytest.FixtureRequest, telephony_samples: TelephonySamples) -> TelephonySample:
    return telephony_samples.get(request.param, seconds=SECONDS)


def test_every_sample_has_its_file_name() -> None:
    assert set(NAMES) == set(SAMPLE_NAMES)


def test_ffprobe_sees_what_the_sample_declares(sample: TelephonySample) -> None:
    assert re.fullmatch(NAMES[sample.name], sample.path.name), sample.path.name
    info = probe(sample.path, *sample.input_args)
    (stream,) = info["streams"]
    assert stream["codec_name"] == sample.codec
    assert int(stream["sample_rate"]) == sample.sample_rate
    assert stream["channels"] == sample.channels == len(sample.channel_roles)
    if sample.container is not None:
        assert info["format"]["format_name"] == sample.container
        assert sample.input_args == ()
    else:
        assert sample.input_args  # headerless: only the event can say what it is
    container_ms = float(info["format"]["duration"]) * 1000
    if sample.codec in LOSSLESS:
        assert container_ms == sample.duration_ms
    else:
        # A header's estimate may count encoder padding (an 8 kHz MP3: +3 frames of 72 ms);
        # the decoded length (gapless: delay and padding trimmed) is what plays.
        assert abs(container_ms - sample.duration_ms) <= 250
    (decoded, *_) = decode_channels(
        sample.path, rate=8000, channels=sample.channels, input_args=sample.input_args
    )
    decoded_ms = len(decoded) // 2 / 8
    assert abs(decoded_ms - sample.duration_ms) <= 0.01 * sample.duration_ms
    assert sample.duration_ms == SECONDS * 1000
    assert sample.content_type.startswith("audio/")


def test_pcm_sizes_are_exact(telephony_samples: TelephonySamples) -> None:
    widths = {"pcm_s16le": 2, "pcm_mulaw": 1, "pcm_alaw": 1}
    pcm = [telephony_samples.get(name, seconds=SECONDS) for name in SAMPLE_NAMES]
    pcm = [sample for sample in pcm if sample.codec in widths]
    assert len(pcm) >= 10  # every uncompressed sample is checked, the compressed have no size rule
    for sample in pcm:
        payload = int(SECONDS * sample.sample_rate) * sample.channels * widths[sample.codec]
        header = 0 if sample.container is None else sample.size - payload
        assert sample.size == payload + header, sample.name
        assert header in (0, 44, 58), sample.name  # none; RIFF+fmt+data; + fmt ext and fact


def test_wav_format_tags_are_the_systems(telephony_samples: TelephonySamples) -> None:
    tags = {
        "asterisk-wav": 0x0001,
        "asterisk-wav49": 0x0031,  # Microsoft GSM 6.10, "WAV49"
        "genesys-wav-ulaw": 0x0007,
        "alaw-wav": 0x0006,
        "amazon-connect-wav": 0x0001,
    }
    for name, tag in tags.items():
        head = telephony_samples.get(name, seconds=SECONDS).path.read_bytes()[:40]
        assert head[:4] == b"RIFF" and head[8:16] == b"WAVEfmt "
        assert struct.unpack("<H", head[20:22])[0] == tag, name
    wav49 = telephony_samples.get("asterisk-wav49", seconds=SECONDS).path.read_bytes()
    assert struct.unpack("<H", wav49[32:34])[0] == 65  # block align: 65 bytes per 320 samples


def _source_envelopes(sample: TelephonySample, rate: int) -> dict[str, list[float]]:
    envelopes = {}
    for role, path in sample.sources.items():
        pcm, src_rate, channels = wav_pcm(path)
        assert (src_rate, channels) == (rate, 1)
        envelopes[role] = envelope(pcm, rate)
    return envelopes


def test_each_channel_carries_its_declared_speaker(sample: TelephonySample) -> None:
    rate = 8000 if sample.codec == "opus" else sample.sample_rate
    sources = _source_envelopes(sample, rate)
    channels = decode_channels(
        sample.path, rate=rate, channels=sample.channels, input_args=sample.input_args
    )
    mixed = [a + c for a, c in zip(sources["agent"], sources["customer"], strict=True)]
    floor = 0.97 if sample.codec in LOSSLESS else 0.85
    for role, pcm in zip(sample.channel_roles, channels, strict=True):
        got = envelope(pcm, rate)
        if role == "mixed":
            assert ncc(got, mixed) > floor
            continue
        other = "agent" if role == "customer" else "customer"
        assert ncc(got, sources[role]) > floor, role
        assert ncc(got, sources[other]) < 0.2, f"{role} channel holds the {other}"


def test_legs_are_one_speaker_each(telephony_samples: TelephonySamples) -> None:
    sample = telephony_samples.get("asterisk-legs", seconds=SECONDS)
    assert [(leg.role, leg.path.name[-7:]) for leg in sample.legs] == [
        ("customer", "-in.wav"),
        ("agent", "out.wav"),
    ]
    sources = _source_envelopes(sample, 8000)
    for leg in sample.legs:
        pcm, rate, channels = wav_pcm(leg.path)
        assert (rate, channels, leg.sample_rate, leg.channels) == (8000, 1, 8000, 1)
        assert ncc(envelope(pcm, rate), sources[leg.role]) > 0.99


def test_samples_are_made_once(telephony_samples: TelephonySamples) -> None:
    first = telephony_samples.get("asterisk-wav", seconds=SECONDS)
    assert telephony_samples.get("asterisk-wav", seconds=SECONDS) is first
    longer = telephony_samples.get("asterisk-wav", seconds=SECONDS + 1)
    assert longer.path != first.path and longer.duration_ms == (SECONDS + 1) * 1000


# -- long calls ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mulaw-8k-mono", "pcm-16k-stereo"])
def test_long_call_memory_does_not_grow_with_length(
    telephony_samples: TelephonySamples, tmp_path: Path, kind: str
) -> None:
    rate = 8000 if kind == "mulaw-8k-mono" else 16000
    unit = telephony_samples._unit(rate)
    peaks = []
    for seconds in (60, 900):
        tracemalloc.start()
        call = write_long_call(tmp_path / f"{seconds}.wav", unit, kind=kind, seconds=seconds)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        info = probe(call.path)
        (stream,) = info["streams"]
        assert (int(stream["sample_rate"]), stream["channels"]) == (rate, call.channels)
        assert float(info["format"]["duration"]) == seconds
        width = 1 if kind == "mulaw-8k-mono" else 2
        header = 58 if kind == "mulaw-8k-mono" else 44
        assert call.path.stat().st_size == header + seconds * rate * call.channels * width
    # 15x longer, same footprint: a 10 s chunk plus the dialogue, never the call.
    assert peaks[1] < peaks[0] * 1.2 + 64 * 1024
    assert peaks[1] < 16 * 1024 * 1024  # one interleaved dialogue pass (~3 MB) + chunks


def test_two_hour_mulaw_call_is_written_to_disk(long_call_factory: LongCallFactory) -> None:
    call = long_call_factory("mulaw-8k-mono", seconds=7200)
    assert call.path.stat().st_size == 58 + 7200 * 8000
    assert call.duration_ms == 7_200_000
    assert float(probe(call.path)["format"]["duration"]) == 7200.0
