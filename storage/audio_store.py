"""What is stored of a recording: its audio as sent, in its own codec, rate and channels.

What a caller may rely on:

- :func:`stored_audio` chooses the stored bytes of decoded landing audio:

  ============================  ==========================  ===========================
  sent                          stored without a PCI pause  stored with a PCI pause
  ============================  ==========================  ===========================
  PCM / G.711 WAV, headerless   canonical WAV of the same   the same, silenced samples
  ``sln``/``ulaw``/``alaw``,    codec (16-bit PCM, mu-law,  zero (mu-law ``0xFF``,
  legs                          A-law), rate and channels   A-law ``0xD5``); lossless
  MP3, Opus (Ogg, WebM), AAC    the sent bytes              re-encoded from the silenced
  (M4A), GSM (WAV49, raw)                                   PCM: same codec, rate,
                                                            channels and bit rate
  FLAC                          the sent bytes              re-encoded (lossless)
  ============================  ==========================  ===========================

  PCM WAV of 8/24/32-bit or float samples is stored as 16-bit PCM (what decode gives).
- :data:`CONTENT_TYPES` maps each stored ``audio_format`` label (``wav/mulaw``,
  ``mp3``, ``ogg/opus``, ``webm/opus``, ``flac``, ``m4a/aac``, ``wav/gsm_ms``...) to the
  ``Content-Type`` it is served with; :func:`content_type_of` and
  :func:`file_extension_of` answer for a label.
- The re-encoder is ffmpeg as a subprocess fed the PCM on stdin and writing to a
  temporary file (MP4 seeks back to write its index), bounded by
  :data:`~storage.audio.FFMPEG_TIMEOUT_S`; every failure is an
  :class:`~storage.errors.AudioError`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage.audio import FFMPEG_TIMEOUT_S, DecodedAudio, encode_wav
from storage.errors import AudioError, UnsupportedAudioFormat

__all__ = [
    "CONTENT_TYPES",
    "StoredAudio",
    "stored_audio",
    "content_type_of",
    "file_extension_of",
]

#: Stored ``audio_format`` -> Content-Type it is served with.
CONTENT_TYPES: dict[str, str] = {
    "wav/pcm_s16le": "audio/wav",
    "wav/mulaw": "audio/wav",
    "wav/alaw": "audio/wav",
    "wav/gsm_ms": "audio/wav",
    "gsm": "audio/x-gsm",
    "mp3": "audio/mpeg",
    "ogg/opus": "audio/ogg",
    "ogg/vorbis": "audio/ogg",
    "ogg/flac": "audio/ogg",
    "webm/opus": "audio/webm",
    "webm/vorbis": "audio/webm",
    "flac": "audio/flac",
    "m4a/aac": "audio/mp4",
}
_EXTENSIONS = {"wav": "wav", "gsm": "gsm", "mp3": "mp3", "ogg": "ogg", "webm": "webm",
               "flac": "flac", "m4a": "m4a"}  # fmt: skip
_PCM_CODECS = frozenset(
    {"pcm_s16le", "pcm_u8", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le", "mulaw", "alaw"}
)
# declared format -> (container label, ffmpeg muxer)
_CONTAINERS = {
    "mp3": ("mp3", "mp3"),
    "ogg": ("ogg", "ogg"),
    "opus": ("ogg", "ogg"),
    "webm": ("webm", "webm"),
    "flac": ("flac", "flac"),
    "m4a": ("m4a", "ipod"),
    "gsm": ("gsm", "gsm"),
    "wav": ("wav", "wav"),
}
# ffmpeg decoder name (DecodedAudio.source_codec) -> (encoder, takes a bit rate)
_ENCODERS = {
    "mp3": ("libmp3lame", True),
    "mp3float": ("libmp3lame", True),
    "opus": ("libopus", True),
    "vorbis": ("libvorbis", True),
    "aac": ("aac", True),
    "flac": ("flac", False),
    "gsm_ms": ("libgsm_ms", False),
    "gsm": ("libgsm", False),
}
_LABEL_CODEC = {"mp3float": "mp3", "mp3": "mp3"}
_MIN_BIT_RATE = 6000


@dataclass(frozen=True)
class StoredAudio:
    """The plaintext to seal, its ``audio_format`` label and Content-Type."""

    data: bytes
    audio_format: str
    content_type: str
    reencoded: bool = False  # a compressed stream re-encoded around a PCI pause


def content_type_of(audio_format: str) -> str:
    """The Content-Type of a stored ``audio_format`` (``audio/wav`` for unknown WAVs)."""
    known = CONTENT_TYPES.get(audio_format)
    if known is not None:
        return known
    return "audio/wav" if audio_format.startswith("wav") else "application/octet-stream"


def file_extension_of(audio_format: str) -> str:
    """The file name extension of a stored ``audio_format`` (``wav``, ``mp3``, ``ogg``...)."""
    return _EXTENSIONS.get(audio_format.split("/", 1)[0], "bin")


def _label(container: str, codec: str) -> str:
    codec = _LABEL_CODEC.get(codec, codec)
    if container in ("mp3", "flac", "gsm") and codec in ("mp3", "flac", "gsm"):
        return container
    return f"{container}/{codec}"


def stored_audio(
    sent: bytes | None,
    declared_format: str,
    audio: DecodedAudio,
    *,
    silenced: bool,
    which: Callable[[str], str | None] = shutil.which,
) -> StoredAudio:
    """What to store of ``audio`` (decoded from ``sent``, declared ``declared_format``);
    ``silenced``: PCI pauses were silenced in ``audio``, so ``sent`` must not be kept.
    ``sent`` is None for audio joined from legs (stored as WAV).

    Raises:
        UnsupportedAudioFormat: ffmpeg is needed to re-encode and is missing, or there
            is no encoder for the codec.
        AudioError: ffmpeg failed to re-encode.
    """
    name = declared_format.strip().lower().lstrip(".")
    if audio.source_codec in _PCM_CODECS or sent is None or name not in _CONTAINERS:
        wav, label = encode_wav(audio)
        return StoredAudio(wav, label, "audio/wav")
    container, muxer = _CONTAINERS[name]
    label = _label(container, audio.source_codec)
    if not silenced:
        return StoredAudio(bytes(sent), label, content_type_of(label))
    encoder = _ENCODERS.get(audio.source_codec)
    if encoder is None:
        raise UnsupportedAudioFormat(
            f"cannot re-encode {audio.source_codec} around a PCI pause (no encoder)"
        )
    codec, with_rate = encoder
    seconds = max(audio.frames / audio.sample_rate, 0.001)
    bit_rate = max(_MIN_BIT_RATE, round(len(sent) * 8 / seconds / 1000) * 1000)
    options = ["-b:a", str(bit_rate)] if with_rate else []
    data = _encode(audio, codec, options, muxer, which)
    return StoredAudio(data, label, content_type_of(label), reencoded=True)


def _encode(
    audio: DecodedAudio,
    codec: str,
    options: list[str],
    muxer: str,
    which: Callable[[str], str | None],
) -> bytes:
    ffmpeg = which("ffmpeg")
    if ffmpeg is None:
        raise UnsupportedAudioFormat(f"re-encoding {codec} needs ffmpeg (apt-get install ffmpeg)")
    with tempfile.TemporaryDirectory(prefix="callvault-encode-") as folder:
        target = Path(folder) / f"out.{muxer}"
        command = [
            ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
            "-f", "s16le", "-ar", str(audio.sample_rate), "-ac", str(audio.channels),
            "-i", "pipe:0", "-c:a", codec, *options, "-f", muxer, str(target),
        ]  # fmt: skip
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise AudioError(f"ffmpeg could not start: {exc}") from exc
        timer = threading.Timer(FFMPEG_TIMEOUT_S, process.kill)
        timer.start()
        try:
            _, log = process.communicate(audio.pcm)
        finally:
            timer.cancel()
        if process.returncode != 0 or not target.exists():
            lines = [line for line in log.decode("utf-8", "replace").splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {process.returncode}"
            raise AudioError(f"ffmpeg could not re-encode as {codec}: {reason}")
        return target.read_bytes()
