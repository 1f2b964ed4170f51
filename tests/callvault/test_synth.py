"""callvault.synth: synthetic speech and calls, with espeak-ng/sox and with the fallback."""

from __future__ import annotations

import logging
import math
import shutil
import struct
import warnings

import pytest

from callvault import synth
from callvault.synth import (
    CODECS,
    SpeechSource,
    SynthError,
    call_wav,
    speech_source,
    speech_wav,
    synthesize,
)
from storage.audio import DecodedAudio, decode, wav_info

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

HAVE_TOOLS = bool(shutil.which("espeak-ng") and shutil.which("sox"))
ENGINES = [
    pytest.param(
        SpeechSource.ESPEAK,
        marks=pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox not installed"),
    ),
    SpeechSource.SYNTHETIC,
]
TEXT = "Thank you for calling. How can I help you today?"


def _no_tools(_: str) -> None:
    return None


def _format_tag(wav: bytes) -> int:
    return int(struct.unpack_from("<H", wav, 20)[0])


def _frame_levels(audio: DecodedAudio, frame_ms: int = 20) -> list[int]:
    step = 2 * audio.sample_rate * frame_ms // 1000
    return [audioop.rms(audio.pcm[i : i + step], 2) for i in range(0, len(audio.pcm) - step, step)]


def _assert_speech_like(audio: DecodedAudio) -> None:
    """Loud syllables and near-silent gaps: an envelope at speech rate, not a tone or noise."""
    levels = _frame_levels(audio)
    loud = max(levels)
    assert loud > 1000
    assert sum(v > loud * 0.3 for v in levels) > len(levels) * 0.2
    assert sum(v < loud * 0.05 for v in levels) > len(levels) * 0.05
    # Level changes between 20 ms frames are frequent (syllables), not a slow fade.
    swings = sum(abs(a - b) > loud * 0.2 for a, b in zip(levels, levels[1:], strict=False))
    seconds = len(levels) / 50
    assert swings > 2 * seconds


@pytest.mark.parametrize("engine", ENGINES)
def test_speech_is_8khz_mulaw_wav_by_default(engine: SpeechSource) -> None:
    speech = synthesize(TEXT, source=engine)
    assert speech.source is engine
    assert _format_tag(speech.wav) == 7
    audio = decode(speech.wav, "wav")
    assert (audio.sample_rate, audio.channels, audio.source_codec) == (8000, 1, "mulaw")
    assert 1500 < audio.duration_ms < 10000
    _assert_speech_like(audio)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seconds", [0.5, 3.25, 12.0])
def test_speech_has_exactly_the_requested_length(engine: SpeechSource, seconds: float) -> None:
    wav = speech_wav("Hello, billing department.", seconds=seconds, source=engine)
    info = wav_info(wav)
    assert (info.codec, info.sample_rate, info.channels, info.bits) == ("mulaw", 8000, 1, 8)
    assert info.data_size == round(seconds * 8000)
    if seconds > 10:  # looped, not padded with silence: every 2 s window holds speech
        audio = decode(wav, "wav")
        for start in range(0, len(audio.pcm), 32000):
            assert audioop.rms(audio.pcm[start : start + 32000], 2) > 300


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("codec", "tag", "bits"), [("alaw", 6, 8), ("pcm16", 1, 16)])
def test_other_codecs_and_rates(engine: SpeechSource, codec: str, tag: int, bits: int) -> None:
    wav = speech_wav("One two three.", seconds=2.0, sample_rate=16000, codec=codec, source=engine)
    info = wav_info(wav)
    assert _format_tag(wav) == tag
    assert (info.sample_rate, info.bits, info.duration_ms) == (16000, bits, 2000)
    assert audioop.rms(decode(wav, "wav").pcm, 2) > 300


@pytest.mark.parametrize("engine", ENGINES)
def test_speech_is_deterministic_and_varies_with_seed(engine: SpeechSource) -> None:
    first = speech_wav(TEXT, seed=4, source=engine)
    assert speech_wav(TEXT, seed=4, source=engine) == first
    assert speech_wav(TEXT, seed=5, source=engine) != first


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox not installed")
def test_text_is_never_taken_for_an_option() -> None:
    audio = decode(speech_wav("--help -w /tmp/x.wav", source=SpeechSource.ESPEAK), "wav")
    assert audio.duration_ms > 500


def test_fallback_is_chosen_and_announced_without_the_tools(caplog) -> None:
    assert speech_source(_no_tools) is SpeechSource.SYNTHETIC
    with caplog.at_level(logging.WARNING, logger="callvault.synth"):
        speech = synthesize(TEXT, which=_no_tools)
    assert speech.source is SpeechSource.SYNTHETIC
    assert "synthetic speech-like fallback" in caplog.text
    assert speech.wav == speech_wav(TEXT, source=SpeechSource.SYNTHETIC)


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox not installed")
def test_tools_are_used_when_present() -> None:
    assert speech_source() is SpeechSource.ESPEAK
    assert synthesize(TEXT).source is SpeechSource.ESPEAK


def test_forcing_espeak_without_it_is_a_clear_error() -> None:
    with pytest.raises(SynthError, match="espeak-ng and sox must be on PATH"):
        synthesize(TEXT, source=SpeechSource.ESPEAK, which=_no_tools)


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox not installed")
def test_a_failing_tool_becomes_synth_error() -> None:
    false = shutil.which("false")
    assert false

    def broken_sox(name: str) -> str | None:
        return false if name == "sox" else shutil.which(name)

    with pytest.raises(SynthError, match="false failed"):
        synthesize(TEXT, source=SpeechSource.ESPEAK, which=broken_sox)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"text": ""}, "non-empty"),
    ({"text": "   "}, "non-empty"),
    ({"codec": "mp3"}, "codec must be one of mulaw, alaw, pcm16"),
    ({"seconds": 0}, "seconds must be in"),
    ({"seconds": -1.0}, "seconds must be in"),
    ({"seconds": math.nan}, "seconds must be in"),
    ({"seconds": math.inf}, "seconds must be in"),
    ({"seconds": 1e-6}, "shorter than one sample"),
    ({"sample_rate": 1000}, "sample_rate must be in"),
])  # fmt: skip
def test_bad_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"text": TEXT, "source": SpeechSource.SYNTHETIC} | kwargs
    with pytest.raises(ValueError, match=message):
        synthesize(**args)  # type: ignore[arg-type]


# -- call_wav ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_call_wav_has_the_requested_length_and_codec(engine: SpeechSource) -> None:
    for codec, label in (("mulaw", "mulaw"), ("alaw", "alaw"), ("pcm16", "pcm_s16le")):
        wav = call_wav(61.5, codec=codec, seed=2, source=engine)
        info = wav_info(wav)
        assert (info.codec, info.sample_rate, info.channels) == (label, 8000, 1)
        assert info.data_size == 61.5 * 8000 * info.bits // 8
        assert info.duration_ms == 61500
    _assert_speech_like(decode(call_wav(30.0, seed=2, source=engine), "wav"))


@pytest.mark.parametrize("engine", ENGINES)
def test_call_wav_varies_with_seed_and_is_cached(engine: SpeechSource) -> None:
    first = call_wav(10.0, seed=1, source=engine)
    hits = synth._dialogue.cache_info().hits
    assert call_wav(10.0, seed=1, source=engine) == first
    assert synth._dialogue.cache_info().hits == hits + 1  # synthesized once, then tiled
    others = {call_wav(10.0, seed=s, source=engine) for s in range(2, 12)}
    assert first not in others and len(others) == 10


def test_call_wav_defaults_to_mulaw_and_rejects_bad_arguments() -> None:
    assert _format_tag(call_wav(1.0, source=SpeechSource.SYNTHETIC)) == 7
    for seconds in (0, -5, math.nan):
        with pytest.raises(ValueError, match="seconds"):
            call_wav(seconds)
    with pytest.raises(ValueError, match="codec"):
        call_wav(1.0, codec="gsm")


def test_codecs_are_listed() -> None:
    assert CODECS == ("mulaw", "alaw", "pcm16")
