"""Synthetic, realistic test calls for the demo, the tests and the benchmarks.

What a caller may rely on:

- :func:`speech_wav` speaks ``text`` into a mono WAV (8 kHz mu-law by default, as
  Asterisk and FreeSWITCH record): real synthetic speech from ``espeak-ng``, resampled
  and encoded by ``sox``, when both are installed; otherwise a deterministic
  pure-Python speech-like signal (syllable-rate envelope over formant-shaped
  harmonics, consonant noise, pauses between words). Given ``seconds`` the speech is
  looped (with a pause between repetitions) and cut to exactly
  ``round(seconds * sample_rate)`` samples. The same arguments give the same bytes.
- :func:`synthesize` does the same and also says which engine was used
  (:class:`SpeechSource`); :func:`speech_source` says which one would be used, so
  a CLI can print it. Falling back to the synthetic engine logs a warning.
- :func:`call_wav` is the fast path for benchmarks and bulk tests: a two-party
  dialogue is synthesized once per process and engine, then rotated, tiled and
  gain-varied by ``seed`` to any length (a minute of 8 kHz mu-law costs one to two
  milliseconds after the first call). Different seeds give different bytes.

Every WAV produced here decodes with :func:`storage.audio.decode`.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import re
import shutil
import struct
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from callvault.errors import CallvaultError
from storage.audio import DecodedAudio, decode, encode_wav, wav_info
from storage.errors import AudioError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "SpeechSource",
    "Speech",
    "SynthError",
    "CODECS",
    "speech_source",
    "synthesize",
    "speech_wav",
    "call_wav",
]

log = logging.getLogger(__name__)

Which = Callable[[str], str | None]

CODECS = ("mulaw", "alaw", "pcm16")
_WAV_CODEC = {"mulaw": "mulaw", "alaw": "alaw", "pcm16": "pcm_s16le"}
_SOX_ENCODING = {
    "mulaw": ("-e", "u-law", "-b", "8"),
    "alaw": ("-e", "a-law", "-b", "8"),
    "pcm16": ("-e", "signed-integer", "-b", "16"),
}
_LOOP_GAP_S = 0.5  # pause between repetitions when speech is looped to ``seconds``
_MAX_SECONDS = 4 * 3600.0
_TOOL_TIMEOUT_S = 120.0
_ESPEAK_VOICES = ("en-us+m3", "en-us+f3", "en-gb+m1", "en-us+f2", "en-gb+f4", "en-us+m7")

# A short contact-center exchange: agent and customer take turns.
_DIALOGUE = (
    "Thank you for calling customer care, my name is Alex. How can I help you today?",
    "Hi, I was charged twice for my internet service this month.",
    "I am sorry to hear that. Could you confirm the account number, please?",
    "Sure, it is four seven one, two nine three, eight eight zero.",
    "Thank you. I can see the duplicate charge, and I will refund it now.",
    "Great, how long will the refund take?",
    "It should appear on your statement within three to five business days.",
    "Perfect. Thanks for your help.",
    "You are welcome. Is there anything else I can do for you?",
    "No, that is all. Have a nice day.",
)


class SpeechSource(StrEnum):
    """Which engine produced the speech."""

    ESPEAK = "espeak"  # espeak-ng + sox
    SYNTHETIC = "synthetic"  # the pure-Python speech-like fallback


@dataclass(frozen=True)
class Speech:
    """A spoken WAV and the engine that made it."""

    wav: bytes
    source: SpeechSource


class SynthError(CallvaultError):
    """espeak-ng or sox failed, or produced something that is not the requested audio."""


def speech_source(which: Which = shutil.which) -> SpeechSource:
    """The engine :func:`speech_wav` uses when not told: espeak-ng if it and sox are on PATH."""
    if which("espeak-ng") and which("sox"):
        return SpeechSource.ESPEAK
    return SpeechSource.SYNTHETIC


def synthesize(
    text: str,
    *,
    seconds: float | None = None,
    sample_rate: int = 8000,
    codec: str = "mulaw",
    seed: int = 0,
    source: SpeechSource | None = None,
    which: Which = shutil.which,
) -> Speech:
    """Speak ``text`` into a mono WAV; see the module docstring.

    ``seed`` picks the voice (espeak: voice variant, pitch, speed; fallback: pitch
    and timing). ``source`` forces an engine; ``which`` finds the tools (injectable).

    Raises:
        ValueError: empty text, unknown codec, ``seconds`` not in (0, 4 h], or a
            sample rate outside 4000-48000 Hz.
        SynthError: espeak-ng or sox is missing (when forced) or failed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text to speak must be a non-empty string")
    _check_args(seconds, sample_rate, codec)
    engine = source or speech_source(which)
    if engine is SpeechSource.ESPEAK:
        espeak, sox = which("espeak-ng"), which("sox")
        if not (espeak and sox):
            raise SynthError("espeak-ng and sox must be on PATH for SpeechSource.ESPEAK")
        wav = _espeak_wav(espeak, sox, text, seconds, sample_rate, codec, seed)
    else:
        if source is None:
            log.warning("espeak-ng/sox not found; using the synthetic speech-like fallback")
        pcm = _speech_like_pcm(text, sample_rate, seed)
        if seconds is not None:
            pcm = _loop_to(pcm, sample_rate, round(seconds * sample_rate))
        audio = DecodedAudio(pcm, sample_rate, 1, "pcm_s16le")
        wav, _ = encode_wav(audio, _WAV_CODEC[codec])
    return Speech(wav, engine)


def speech_wav(
    text: str,
    *,
    seconds: float | None = None,
    sample_rate: int = 8000,
    codec: str = "mulaw",
    seed: int = 0,
    source: SpeechSource | None = None,
    which: Which = shutil.which,
) -> bytes:
    """The WAV bytes of :func:`synthesize` (same arguments, same errors)."""
    speech = synthesize(
        text,
        seconds=seconds,
        sample_rate=sample_rate,
        codec=codec,
        seed=seed,
        source=source,
        which=which,
    )
    return speech.wav


def call_wav(
    seconds: float,
    *,
    codec: str = "mulaw",
    seed: int = 0,
    source: SpeechSource | None = None,
    which: Which = shutil.which,
) -> bytes:
    """An 8 kHz mono call of exactly ``round(seconds * 8000)`` samples, fast.

    The dialogue is synthesized once per process (per engine) and cached; ``seed``
    picks the starting point and the level, so calls differ but cost only tiling.

    Raises:
        ValueError: ``seconds`` not in (0, 4 h] or an unknown codec.
        SynthError: espeak-ng or sox failed while making the cached dialogue.
    """
    _check_args(seconds, 8000, codec)
    engine = source or speech_source(which)
    if source is None and engine is SpeechSource.SYNTHETIC:
        _warn_once("espeak-ng/sox not found; call_wav uses the synthetic speech-like fallback")
    tools = (which("espeak-ng"), which("sox")) if engine is SpeechSource.ESPEAK else (None, None)
    base = _dialogue(engine, *tools)
    frames = round(seconds * 8000)
    mix = random.Random(seed)
    gain = 0.55 + 0.45 * mix.random()
    start = mix.randrange(len(base.pcm) // 2)
    if codec == "pcm16":
        pcm = audioop.mul(_rotate_tile(base.pcm, 2 * start, 2 * frames), 2, gain)
        return encode_wav(DecodedAudio(pcm, 8000, 1, "pcm_s16le"), "pcm_s16le")[0]
    codes = base.mulaw if codec == "mulaw" else base.alaw
    # Scaling in the code domain: a 256-entry table, exact for G.711 and C-fast.
    expand, compress = (
        (audioop.ulaw2lin, audioop.lin2ulaw)
        if codec == "mulaw"
        else (audioop.alaw2lin, audioop.lin2alaw)
    )
    table = compress(audioop.mul(expand(bytes(range(256)), 2), 2, gain), 2)
    tiled = _rotate_tile(codes, start, frames).translate(table)
    return encode_wav(decode(tiled, "ulaw" if codec == "mulaw" else "alaw"))[0]


# -- helpers ------------------------------------------------------------------------


def _check_args(seconds: float | None, sample_rate: int, codec: str) -> None:
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, not {codec!r}")
    if seconds is not None and not (0 < seconds <= _MAX_SECONDS and math.isfinite(seconds)):
        raise ValueError(f"seconds must be in (0, {_MAX_SECONDS:.0f}], not {seconds!r}")
    if seconds is not None and round(seconds * sample_rate) < 1:
        raise ValueError(f"seconds={seconds!r} is shorter than one sample")
    if not 4000 <= sample_rate <= 48000:
        raise ValueError(f"sample_rate must be in 4000-48000 Hz, not {sample_rate!r}")


@functools.lru_cache(maxsize=8)
def _warn_once(message: str) -> None:
    log.warning(message)


def _rotate_tile(data: bytes, start: int, size: int) -> bytes:
    """``size`` bytes of ``data`` repeated endlessly, starting at ``start`` (one copy)."""
    view, parts = memoryview(data), []
    while size > 0:
        part = view[start : start + size]
        parts.append(part)
        size -= len(part)
        start = 0
    return b"".join(parts)


def _loop_to(pcm: bytes, sample_rate: int, frames: int) -> bytes:
    """Repeat ``pcm`` with a pause between repetitions, cut to ``frames`` samples."""
    unit = pcm + bytes(2 * round(_LOOP_GAP_S * sample_rate))
    return (unit * (2 * frames // len(unit) + 1))[: 2 * frames]


def _run(command: list[str], *, stdin: bytes | None = None) -> None:
    try:
        subprocess.run(
            command, input=stdin, capture_output=True, check=True, timeout=_TOOL_TIMEOUT_S
        )
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode("utf-8", "replace").strip() or f"exit status {exc.returncode}"
        raise SynthError(f"{Path(command[0]).name} failed: {detail}") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise SynthError(f"{Path(command[0]).name} could not run: {exc}") from exc


def _espeak_wav(
    espeak: str, sox: str, text: str, seconds: float | None, sample_rate: int, codec: str, seed: int
) -> bytes:
    voice = random.Random(seed)
    variant = _ESPEAK_VOICES[seed % len(_ESPEAK_VOICES)]
    pitch, speed = voice.randint(35, 65), voice.randint(145, 175)
    with tempfile.TemporaryDirectory(prefix="callvault-synth-") as tmp:
        spoken, out = Path(tmp, "espeak.wav"), Path(tmp, "out.wav")
        # Text on stdin: nothing in it can be mistaken for an option.
        _run(
            [
                espeak,
                "--stdin",
                "-v",
                variant,
                "-p",
                str(pitch),
                "-s",
                str(speed),
                "-w",
                str(spoken),
            ],
            stdin=text.encode(),
        )
        effects = ["rate", str(sample_rate)]
        if seconds is not None:
            frames = round(seconds * sample_rate)
            try:
                natural = wav_info(spoken.read_bytes()).duration_ms / 1000
            except AudioError as exc:
                raise SynthError(f"espeak-ng wrote an unreadable WAV: {exc}") from exc
            repeats = math.ceil(seconds / (natural + _LOOP_GAP_S))
            effects += [
                "pad",
                "0",
                str(_LOOP_GAP_S),
                "repeat",
                str(repeats),
                "trim",
                "0",
                f"{frames}s",
            ]
        # -R/-D: repeatable and undithered, so the same arguments give the same bytes.
        _run(
            [sox, "-R", "-D", "-V1", str(spoken), "-c", "1", "-r", str(sample_rate),
             *_SOX_ENCODING[codec], str(out), *effects]
        )  # fmt: skip
        wav = out.read_bytes()
    if seconds is not None:
        try:
            info = wav_info(wav)
        except AudioError as exc:
            raise SynthError(f"sox wrote an unreadable WAV: {exc}") from exc
        got = info.data_size * 8 // (info.bits * info.channels)
        if got != round(seconds * sample_rate):
            raise SynthError(f"sox produced {got} samples, not {round(seconds * sample_rate)}")
    return wav


@dataclass(frozen=True)
class _Dialogue:
    pcm: bytes  # 8 kHz mono 16-bit
    mulaw: bytes
    alaw: bytes


@functools.lru_cache(maxsize=4)
def _dialogue(engine: SpeechSource, espeak: str | None, sox: str | None) -> _Dialogue:
    """The two-party dialogue at 8 kHz, made once per process and engine (pure; cached)."""
    turns: list[bytes] = []
    gaps = random.Random(1234)
    found: dict[str, str | None] = {"espeak-ng": espeak, "sox": sox}
    for index, line in enumerate(_DIALOGUE):
        # Agent lines use voice 0, customer lines voice 1 (a different speaker).
        wav = speech_wav(
            line, codec="pcm16", seed=index % 2, source=engine, which=lambda name: found.get(name)
        )
        turns.append(decode(wav, "wav").pcm)
        turns.append(bytes(2 * round(gaps.uniform(0.3, 0.9) * 8000)))
    pcm = b"".join(turns)
    return _Dialogue(pcm, audioop.lin2ulaw(pcm, 2), audioop.lin2alaw(pcm, 2))


# -- the speech-like fallback --------------------------------------------------------

# First two formants (Hz) of a few vowels; enough to make syllables sound different.
_FORMANTS = {
    "a": (730, 1090),
    "e": (530, 1840),
    "i": (300, 2250),
    "o": (570, 840),
    "u": (320, 920),
    "y": (400, 1900),
}
_ENVELOPE = tuple(math.sin(math.pi * (k + 0.5) / 16) ** 0.6 for k in range(16))
_SYLLABLE = re.compile(r"[^aeiouy]*[aeiouy]+", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z']+|\d|[.,;:!?]")


def _speech_like_pcm(text: str, sample_rate: int, seed: int) -> bytes:
    """Deterministic speech-like 16-bit PCM: formant harmonics under a syllable envelope."""
    rng = random.Random(f"{seed}:{text}")
    base_f0 = 105.0 + 110.0 * (seed % 2) + rng.uniform(-10, 10)  # alternate low/high voice
    parts: list[bytes] = []
    tokens = _TOKEN.findall(text) or ["a"]
    for position, token in enumerate(tokens):
        if token in ".,;:!?":
            parts.append(bytes(2 * int(sample_rate * rng.uniform(0.25, 0.5))))
            continue
        decline = 1.0 - 0.15 * position / len(tokens)  # pitch falls through a sentence
        for syllable in _SYLLABLE.findall(token) or [token]:
            vowel = next((c for c in syllable.lower() if c in _FORMANTS), "a")
            if syllable[0].lower() not in _FORMANTS:
                parts.append(_noise(rng, int(sample_rate * rng.uniform(0.02, 0.06)), 0.08))
            f0 = base_f0 * decline * rng.uniform(0.93, 1.07)
            length = int(sample_rate * rng.uniform(0.12, 0.22))
            parts.append(_voiced(sample_rate, f0, _FORMANTS[vowel], length))
        parts.append(bytes(2 * int(sample_rate * rng.uniform(0.04, 0.12))))
    pcm = b"".join(parts)
    # A faint line-noise floor, as on a real phone line.
    return audioop.add(pcm, _noise(rng, len(pcm) // 2, 0.004), 2)


def _voiced(sample_rate: int, f0: float, formants: tuple[int, int], length: int) -> bytes:
    """One syllable: a single pitch period built in Python, tiled and enveloped in C."""
    period = max(2, round(sample_rate / f0))
    f0 = sample_rate / period
    harmonics = [
        (h, sum(1.0 / (1.0 + ((h * f0 - f) / 90.0) ** 2) for f in formants) + 0.3 / h)
        for h in range(1, int(min(3400.0, sample_rate / 2 - 200) / f0) + 1)
    ]
    wave = [
        sum(a * math.sin(2 * math.pi * h * n / period) for h, a in harmonics) for n in range(period)
    ]
    peak = max(abs(v) for v in wave) or 1.0
    one = struct.pack(f"<{period}h", *(int(v / peak * 11000) for v in wave))
    tiled = (one * (length // period + 1))[: 2 * length]
    step = 2 * (length // len(_ENVELOPE))
    shaped = [
        audioop.mul(tiled[k * step : (k + 1) * step if k < len(_ENVELOPE) - 1 else None], 2, gain)
        for k, gain in enumerate(_ENVELOPE)
    ]
    return b"".join(shaped)


def _noise(rng: random.Random, frames: int, level: float) -> bytes:
    return audioop.mul(rng.randbytes(2 * frames), 2, level)
