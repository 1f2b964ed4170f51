"""What is stored of a recording: its audio as sent, in its own codec, rate and channels.

What a caller may rely on (``streams/ingest/preparer.py`` chooses the path):

============================  ==========================  ===========================
sent                          stored without a PCI pause  stored with a PCI pause
============================  ==========================  ===========================
PCM / G.711 WAV, headerless   canonical WAV of the same   the same, silenced samples
``sln``/``ulaw``/``alaw``,    codec (16-bit PCM, mu-law,  zero (mu-law ``0xFF``,
legs                          A-law), rate and channels   A-law ``0xD5``): lossless
MP3, Opus (Ogg, WebM), AAC    the sent bytes              :func:`reencode_file`: same
(M4A), GSM (WAV49, raw)                                   codec, rate, channels and
                                                          bit rate
FLAC                          the sent bytes              re-encoded (lossless)
============================  ==========================  ===========================

PCM WAV of 8/24/32-bit or float samples is stored as 16-bit PCM (what decode gives).

- :func:`stored_label` names what is stored as sent (``mp3``, ``ogg/opus``,
  ``webm/opus``, ``flac``, ``m4a/aac``, ``wav/gsm_ms``); :data:`CONTENT_TYPES` maps each
  ``audio_format`` label (those and ``wav/pcm_s16le``, ``wav/mulaw``, ``wav/alaw``) to
  the ``Content-Type`` it is served with; :func:`content_type_of` and
  :func:`file_extension_of` answer for a label.
- :func:`reencode_file` streams: one ffmpeg decodes (bounded by the call's
  :class:`~storage.audio.DecodeLimit`), the PCI cuts are applied chunk by chunk, a
  second ffmpeg encodes to a file (MP4 seeks back to write its index); each bounded by
  the call's ``DecodeLimit.ffmpeg_seconds()``. Every failure is an
  :class:`~storage.errors.AudioError`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.audio import (
    DecodeLimit,
    Layout,
    PcmStream,
    SilencePlan,
    ffmpeg_decoder,
)
from storage.errors import AudioError, BackendUnavailable, UnsupportedAudioFormat

__all__ = [
    "CONTENT_TYPES",
    "stored_label",
    "reencode_file",
    "transcode_file",
    "STORAGE_CODECS",
    "StorageCodec",
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


def content_type_of(audio_format: str) -> str:
    """The Content-Type of a stored ``audio_format`` (``audio/wav`` for unknown WAVs)."""
    known = CONTENT_TYPES.get(audio_format)
    if known is not None:
        return known
    return "audio/wav" if audio_format.startswith("wav") else "application/octet-stream"


def file_extension_of(audio_format: str) -> str:
    """The file name extension of a stored ``audio_format`` (``wav``, ``mp3``, ``ogg``...)."""
    return _EXTENSIONS.get(audio_format.split("/", 1)[0], "bin")


def stored_label(declared_format: str, codec: str) -> str:
    """The ``audio_format`` label of audio sent as ``declared_format`` in ``codec`` and
    stored as sent (``mp3``, ``ogg/opus``, ``webm/opus``, ``m4a/aac``, ``wav/gsm_ms``)."""
    name = declared_format.strip().lower().lstrip(".")
    return _label(_CONTAINERS.get(name, (name, name))[0], codec)


def _label(container: str, codec: str) -> str:
    codec = _LABEL_CODEC.get(codec, codec)
    if container in ("mp3", "flac", "gsm") and codec in ("mp3", "flac", "gsm"):
        return container
    return f"{container}/{codec}"


def reencode_file(
    source: Path,
    declared_format: str,
    codec: str,
    cuts: SilencePlan,
    *,
    bit_rate: int,
    limit: DecodeLimit,
    folder: Path,
    which: Callable[[str], str | None] = shutil.which,
) -> Path:
    """Re-encode the compressed file ``source`` with ``cuts`` silenced, in its own
    ``codec`` (as ffmpeg names its decoder), rate, channels and ``bit_rate``, streaming:
    one ffmpeg decodes to PCM, the cuts are applied chunk by chunk, a second ffmpeg
    encodes into a file in ``folder`` (returned). Memory stays constant.

    Raises:
        UnsupportedAudioFormat: no encoder for ``codec``, or ffmpeg missing.
        AudioTooLong: the audio decodes to more than ``limit`` allows.
        AudioError: either ffmpeg failed.
    """
    name = declared_format.strip().lower().lstrip(".")
    encoder = _ENCODERS.get(codec)
    if encoder is None or name not in _CONTAINERS:
        raise UnsupportedAudioFormat(f"cannot re-encode {codec} around a PCI pause (no encoder)")
    encoder_name, with_rate = encoder
    options = ["-c:a", encoder_name, *(["-b:a", str(bit_rate)] if with_rate else [])]
    return transcode_file(
        source, name, Layout(), cuts, options=options, muxer=_CONTAINERS[name][1],
        limit=limit, folder=folder, which=which,
    )  # fmt: skip


@dataclass(frozen=True)
class StorageCodec:
    """A codec a retention class may store in instead of the sent one."""

    encoder: tuple[str, ...]  # ffmpeg encoder options
    muxer: str
    label: str  # the stored audio_format
    decoded_rate: int | None = None  # the rate it decodes to (None: the source's)
    bit_rate_per_channel: int | None = None

    def options(self, channels: int) -> tuple[str, ...]:
        """The encoder options for audio of ``channels`` channels."""
        if self.bit_rate_per_channel is None:
            return self.encoder
        return (*self.encoder, "-b:a", str(self.bit_rate_per_channel * channels))


#: ``policies.StorageCodec`` values other than ``as-sent`` -> how they are encoded. Opus
#: gets 16 kb/s per channel: at 16 kb/s for a stereo call libopus folds both channels
#: into one (measured: identical channels), and who said what would be lost.
STORAGE_CODECS: dict[str, StorageCodec] = {
    "opus-16k": StorageCodec(
        ("-c:a", "libopus", "-application", "voip"), "ogg", "ogg/opus", 48000, 16000
    ),
    "flac": StorageCodec(("-c:a", "flac", "-sample_fmt", "s16"), "flac", "flac"),
}


#: ffmpeg's output could not be written for want of space: not the audio's fault.
#: (ffmpeg still exits 0 then, with a truncated output.)
_DISK_ERRORS = tuple(os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT))


def transcode_file(
    source: Path,
    declared_format: str,
    layout: Layout,
    cuts: SilencePlan,
    *,
    options: Sequence[str],
    muxer: str,
    limit: DecodeLimit,
    folder: Path,
    which: Callable[[str], str | None] = shutil.which,
) -> Path:
    """Decode ``source`` (any format; headerless at ``layout``) with ffmpeg as a stream,
    silence ``cuts`` chunk by chunk, and encode with the encoder ``options`` into a
    ``muxer`` file in ``folder`` (returned), at the source's rate and channels.

    Raises:
        UnsupportedAudioFormat: ffmpeg missing, or a format it does not read.
        AudioTooLong: the audio decodes to more than ``limit`` allows.
        AudioError: either ffmpeg failed.
        BackendUnavailable: ``folder`` is full (retried: infrastructure).
    """
    name = declared_format.strip().lower().lstrip(".")
    ffmpeg = which("ffmpeg")
    if ffmpeg is None:
        raise UnsupportedAudioFormat("encoding needs ffmpeg (apt-get install ffmpeg)")
    target = folder / f"encoded.{muxer}"
    log_path = folder / "encoder.log"
    decoder = ffmpeg_decoder(str(source), name, layout=layout, which=which)
    with PcmStream(decoder, limit, what=name) as decoded:
        pieces = iter(decoded)
        first = next(pieces, b"")  # the header tells the layout
        command = [
            ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "s16le", "-ar", str(decoded.sample_rate), "-ac", str(decoded.channels),
            "-i", "pipe:0", *options, "-f", muxer, str(target),
        ]  # fmt: skip
        with log_path.open("wb") as log:
            try:
                process = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log
                )
            except OSError as exc:
                raise AudioError(f"ffmpeg could not start: {exc}") from exc
            assert process.stdin is not None
            timeout = limit.ffmpeg_seconds()
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                with contextlib.suppress(OSError):
                    process.kill()

            timer = threading.Timer(timeout, expire)
            timer.start()
            frame_bytes = 2 * decoded.channels
            position, carry = 0, b""
            try:
                for piece in itertools.chain([first], pieces):
                    data = carry + piece
                    whole = len(data) - len(data) % frame_bytes
                    buffer, carry = bytearray(data[:whole]), data[whole:]
                    cuts.apply(buffer, position, 2, b"\x00\x00")
                    position += whole // frame_bytes
                    process.stdin.write(buffer)
                process.stdin.close()
                returncode = process.wait()
            except BrokenPipeError:
                returncode = process.wait()
            finally:
                timer.cancel()
                if process.poll() is None:
                    process.kill()
                    process.wait()
    if expired.is_set():
        raise AudioError(f"ffmpeg ran longer than {timeout:.0f} s encoding ({' '.join(options)})")
    text = log_path.read_text(errors="replace")
    full = [line for line in text.splitlines() if any(m in line for m in _DISK_ERRORS)]
    if full:  # ffmpeg exits 0 then, its output truncated: infrastructure (retried)
        raise BackendUnavailable(f"ffmpeg could not write {target}: {full[0]}")
    if returncode != 0 or not target.exists():
        lines = [line for line in text.splitlines() if line]
        reason = lines[-1] if lines else f"exit status {returncode}"
        raise AudioError(f"ffmpeg could not encode ({' '.join(options)}): {reason}")
    return target
