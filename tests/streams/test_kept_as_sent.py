"""Kept as sent (issue 11): every telephony format is stored in its own codec, rate and
channels, never inflated to PCM; a PCI pause inside a compressed stream is re-encoded
in the same codec, rate, channels and bit rate. Measured: stored <= 1.05 x sent bytes
without a pause, <= 1.5 x with one; the lossless formats decode sample-exact (outside
the pause), and the stored object is sealed with the Content-Type it is served with.

Inputs come from tests/fixtures/telephony.py (sox/ffmpeg at test time, cached per
session); they go through the real ingest pipeline into a file vault.
"""

from __future__ import annotations

import io
import warnings
import wave
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from callvault.services import Services, build_services
from callvault.settings import load_settings
from storage.audio import Layout, decode
from tests.fixtures.signals import wav_pcm
from tests.fixtures.telephony import (
    SAMPLE_NAMES,
    TelephonySample,
    TelephonySamples,
    sample_event,
)
from tests.streams.audio_support import store

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SECONDS = 8.0
PAUSE = {"start_ms": 2000, "end_ms": 3500}

#: What each sample is stored as: (audio_format label, Content-Type).
STORED = {
    "asterisk-wav": ("wav/pcm_s16le", "audio/wav"),
    "asterisk-wav49": ("wav/gsm_ms", "audio/wav"),
    "asterisk-ulaw": ("wav/mulaw", "audio/wav"),
    "asterisk-alaw": ("wav/alaw", "audio/wav"),
    "asterisk-d-stereo-sln": ("wav/pcm_s16le", "audio/wav"),
    "asterisk-d-stereo-sln16": ("wav/pcm_s16le", "audio/wav"),
    "asterisk-legs": ("wav/pcm_s16le", "audio/wav"),
    "freeswitch-stereo-8k": ("wav/pcm_s16le", "audio/wav"),
    "freeswitch-stereo-16k": ("wav/pcm_s16le", "audio/wav"),
    "twilio-dual-wav": ("wav/pcm_s16le", "audio/wav"),
    "twilio-dual-mp3": ("mp3", "audio/mpeg"),
    "amazon-connect-wav": ("wav/pcm_s16le", "audio/wav"),
    "genesys-webm-opus": ("webm/opus", "audio/webm"),
    "genesys-ogg-opus": ("ogg/opus", "audio/ogg"),
    "genesys-wav-ulaw": ("wav/mulaw", "audio/wav"),
    "alaw-wav": ("wav/alaw", "audio/wav"),
    "vapi-flac": ("flac", "audio/flac"),
    "zoom-m4a": ("m4a/aac", "audio/mp4"),
}
LOSSLESS = {name for name, (label, _) in STORED.items() if label.startswith("wav/pcm")} | {
    "asterisk-ulaw", "asterisk-alaw", "genesys-wav-ulaw", "alaw-wav", "vapi-flac",
}  # fmt: skip


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    data = tmp_path_factory.mktemp("kept-as-sent")
    built = build_services(load_settings({"CALLVAULT_DATA_DIR": str(data)}))
    yield built
    built.close()


def _event(rid: str, sample: TelephonySample, services: Services, **extra: Any) -> dict[str, Any]:
    ended = datetime.now(UTC).replace(microsecond=0)
    return sample_event(sample, rid, services.settings.landing_dir, ended_at=ended, **extra)


def _stereo_wav(sample: TelephonySample) -> bytes:
    """The legs of ``sample`` as one interleaved 16-bit WAV (what they add up to)."""
    left, right = (wav_pcm(leg.path)[0] for leg in sample.legs)
    pcm = audioop.add(audioop.tostereo(left, 2, 1, 0), audioop.tostereo(right, 2, 0, 1), 2)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(sample.sample_rate)
        w.writeframes(pcm)
    return out.getvalue()


def _decoded(data: bytes, label_or_format: str, sample: TelephonySample) -> Any:
    fmt = {"m4a/aac": "m4a", "ogg/opus": "opus", "webm/opus": "webm"}.get(label_or_format)
    fmt = fmt or label_or_format.split("/", 1)[0]
    return decode(data, fmt, layout=Layout(sample.sample_rate, sample.channels))


def test_every_sample_has_its_expectation() -> None:
    assert set(STORED) == set(SAMPLE_NAMES)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_stored_in_its_own_codec_and_never_inflated(
    name: str, services: Services, telephony_samples: TelephonySamples
) -> None:
    sample = telephony_samples.get(name, seconds=SECONDS)
    sent = sample.path.read_bytes()  # legs: the mixed file, of the same layout per channel
    if sample.legs:
        sample = replace(sample, channels=2, channel_roles=("customer", "agent"))
        sent = _stereo_wav(sample)
    row, plain, content_type = store(services, _event(f"{name}-plain", sample, services))
    label, served_as = STORED[name]
    assert (row.audio_format, content_type) == (label, served_as)
    assert (row.sample_rate, row.channels) == (sample.sample_rate, sample.channels)
    assert len(plain) <= 1.05 * len(sent) + 64, (len(plain), len(sent))  # + a WAV header
    if not label.startswith("wav/pcm") and label not in ("wav/mulaw", "wav/alaw"):
        assert plain == sent  # compressed: the very bytes telephony sent
    sent_pcm = _decoded(sent, sample.format, sample).pcm
    assert _decoded(plain, label, sample).pcm == sent_pcm  # same samples either way

    row, paused, content_type = store(
        services, _event(f"{name}-pci", sample, services, pci_pauses=[PAUSE])
    )
    assert (row.audio_format, content_type) == (label, served_as)
    assert len(paused) <= 1.5 * len(sent) + 64, (len(paused), len(sent))
    audio = _decoded(paused, label, sample)
    assert (audio.sample_rate, audio.channels) == (sample.sample_rate, sample.channels)
    assert abs(audio.duration_ms - row.duration_ms) <= 0.01 * row.duration_ms + 30
    rate, width = audio.sample_rate, 2 * audio.channels
    first, last = PAUSE["start_ms"] * rate // 1000, PAUSE["end_ms"] * rate // 1000
    inside = audio.pcm[first * width : last * width]
    if name in LOSSLESS:
        fill = 8 if "alaw" in label else 0  # A-law's silence decodes to +8
        assert set(inside) <= {0, fill}, name
        assert audio.pcm[: first * width] == sent_pcm[: first * width]
        assert audio.pcm[last * width :] == sent_pcm[last * width :]
    else:
        # Lossy, re-encoded: the pause is near silence, but for the codec's ring-out of
        # the speech before it (GSM's LPC filter: about 100 ms) and look-ahead at its end.
        core = inside[width * rate * 15 // 100 : -width * rate // 20]
        assert max(abs(v) for v in memoryview(core).cast("h")) < 300, name
