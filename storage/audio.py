"""Audio decoding, PCI-pause silencing and the canonical stored WAV.

What a caller may rely on:

- :func:`decode` turns landing audio into :class:`DecodedAudio`: 16-bit signed
  little-endian linear PCM, interleaved, with its sample rate, channel count and the
  codec it came from. WAV (PCM 8/16/24/32-bit, IEEE float, A-law, mu-law, also inside
  ``WAVE_FORMAT_EXTENSIBLE``) and headerless G.711 / signed-linear files (as Asterisk
  writes them) are parsed here without any external tool. G.711 is expanded to 16 bits
  with :func:`audioop.ulaw2lin` / :func:`audioop.alaw2lin`, never through pydub's
  8-bit path. Compressed formats (mp3, ogg, opus, flac, gsm, m4a, webm) go through
  ffmpeg with an explicit ``pcm_s16le`` output codec.
- :func:`silence` zeroes time ranges (PCI DSS 3.3.1: card codes spoken during a
  recording pause are never stored); everything outside the ranges is bit-identical.
- :func:`encode_wav` writes the canonical stored WAV: G.711 sources stay G.711
  (8 bits/sample), everything else becomes 16-bit PCM. ``decode(encode_wav(a))``
  gives back ``a.pcm`` exactly for G.711-sourced and PCM audio.
- :func:`wav_info` reads the header of a WAV written by :func:`encode_wav` (or any
  WAV :func:`decode` accepts) without decoding it, for range requests and playback.

:class:`DecodedAudio` converts to a :class:`pydub.AudioSegment` (``to_segment``) for
anything pydub does well (effects, export). Every failure is an
:class:`~storage.errors.AudioError` (or its subclass
:class:`~storage.errors.UnsupportedAudioFormat`); no ``struct``, ``audioop``,
pydub or ffmpeg error escapes.

A-law has no code for zero: its silence byte ``0xD5`` decodes to +8 (of 32768,
about -72 dBFS) under G.711. Silenced A-law regions are therefore stored as
``0xD5`` and decode to that constant, not to 0; mu-law silence (``0xFF``) decodes
to exactly 0.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storage.errors import AudioError, AudioMismatch, AudioTooLong, UnsupportedAudioFormat

with warnings.catch_warnings():
    # Deprecated on 3.11/3.12 (PEP 594); provided by ``audioop-lts`` on 3.13+.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

if TYPE_CHECKING:
    from pydub import AudioSegment

__all__ = [
    "DecodedAudio",
    "DecodeLimit",
    "DEFAULT_MAX_PCM_BYTES",
    "WavInfo",
    "SUPPORTED_FORMATS",
    "FFMPEG_FORMATS",
    "RAW_FORMATS",
    "check_layout",
    "Layout",
    "PcmStream",
    "SilencePlan",
    "Span",
    "decode",
    "ffmpeg_decoder",
    "join_legs",
    "pcm_to_s16",
    "silence",
    "encode_wav",
    "wav_head_info",
    "wav_needs_ffmpeg",
    "wav_header",
    "wav_info",
]

MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 8
#: How long one ffmpeg run may take: FFMPEG_TIMEOUT_S when the audio's length is not
#: bounded, else FFMPEG_MIN_S plus FFMPEG_S_PER_AUDIO_S per second the call may last
#: (:meth:`DecodeLimit.ffmpeg_seconds`: a one-minute call 39 s, two hours 18 min; a
#: decode or an Opus encode takes well under 0.01 s per audio second). An ffmpeg that
#: hangs is killed then, and its event dead-lettered, instead of holding its batch.
FFMPEG_TIMEOUT_S = 300.0
FFMPEG_MIN_S = 30.0
FFMPEG_S_PER_AUDIO_S = 0.1
#: Absolute cap on decoded 16-bit PCM per recording (about 9 h of 16 kHz mono).
DEFAULT_MAX_PCM_BYTES = 1 << 30
#: Decoded audio may last this much longer than the call the event declares...
DURATION_TOLERANCE = 1.5
#: ...or this many milliseconds longer, whichever is more (short calls, PBX clocks).
DURATION_SLACK_MS = 10_000

_FFMPEG_MISSING = "install ffmpeg (apt-get install ffmpeg); without it only WAV/G.711 is supported"
# Declared format -> ffmpeg demuxer name.
_FFMPEG_DEMUXERS = {
    "mp3": "mp3",
    "ogg": "ogg",
    "opus": "ogg",
    "flac": "flac",
    "gsm": "gsm",
    "m4a": "mov",
    "webm": "matroska",
}
# Headerless formats: declared format -> (source codec, default sample rate).
_RAW_FORMATS = {
    "ulaw": ("mulaw", 8000),
    "mulaw": ("mulaw", 8000),
    "alaw": ("alaw", 8000),
    "sln": ("pcm_s16le", 8000),
    "sln16": ("pcm_s16le", 16000),
}
#: Headerless formats: declared format -> (codec, default sample rate).
RAW_FORMATS: Mapping[str, tuple[str, int]] = _RAW_FORMATS
FFMPEG_FORMATS: frozenset[str] = frozenset(_FFMPEG_DEMUXERS)
SUPPORTED_FORMATS: frozenset[str] = frozenset({"wav", *_RAW_FORMATS, *_FFMPEG_DEMUXERS})

_TAG_PCM = 0x0001
_TAG_FLOAT = 0x0003
_TAG_ALAW = 0x0006
_TAG_MULAW = 0x0007
_TAG_EXTENSIBLE = 0xFFFE
# WAV codecs ffmpeg can expand when it is installed.
_FFMPEG_WAV_TAGS = {
    0x0002: "MS ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MPEG layer 3",
}
_UNKNOWN_SIZE = 0xFFFFFFFF  # streaming writers (ffmpeg to a pipe) leave sizes unset
_SILENCE_BYTE = {"mulaw": b"\xff", "alaw": b"\xd5"}
_ENCODE_CODECS = ("pcm_s16le", "mulaw", "alaw")

#: A span to silence: ``(start_ms, end_ms)`` on every channel, or
#: ``(start_ms, end_ms, channels)`` on the listed 0-based channels only (None: all).
Span = tuple[int, int] | tuple[int, int, Sequence[int] | None]


@dataclass(frozen=True)
class Layout:
    """What the sender declared about the audio (``audio.sample_rate``/``channels``):
    headerless formats are decoded with it; a container that says otherwise is refused
    (:class:`~storage.errors.AudioMismatch`). ``None``: not declared."""

    sample_rate: int | None = None
    channels: int | None = None

    def check(self, sample_rate: int, channels: int, what: str) -> None:
        """Raise :class:`AudioMismatch` when the container's layout contradicts this."""
        if self.sample_rate is not None and self.sample_rate != sample_rate:
            raise AudioMismatch(
                f"the event declares {self.sample_rate} Hz, the {what} says {sample_rate} Hz"
            )
        if self.channels is not None and self.channels != channels:
            raise AudioMismatch(
                f"the event declares {self.channels} channel(s), the {what} has {channels}"
            )


@dataclass(frozen=True)
class DecodedAudio:
    """Linear 16-bit little-endian PCM, channels interleaved.

    ``source_codec`` is one of ``pcm_s16le``, ``pcm_u8``, ``pcm_s24le``,
    ``pcm_s32le``, ``pcm_f32le``, ``pcm_f64le``, ``mulaw``, ``alaw`` or the codec
    name ffmpeg reported (``mp3``, ``flac``, ``opus``...).

    Raises:
        AudioError: on construction, if the rate or channel count is out of range
            or ``pcm`` is not a whole number of frames.
    """

    pcm: bytes
    sample_rate: int
    channels: int
    source_codec: str
    # The original G.711 codes, kept by decode()/silence() so encode_wav() need not
    # re-quantize (audioop.lin2ulaw costs ~25x ulaw2lin). Not an init field, so
    # dataclasses.replace() and direct construction never carry stale codes.
    _g711: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_layout(self.sample_rate, self.channels)
        if len(self.pcm) % (2 * self.channels):
            raise AudioError(
                f"PCM length {len(self.pcm)} is not a whole number of "
                f"{self.channels}-channel 16-bit frames"
            )

    @property
    def frames(self) -> int:
        """Number of sample frames (one sample per channel)."""
        return len(self.pcm) // (2 * self.channels)

    @property
    def duration_ms(self) -> int:
        """Duration in whole milliseconds (rounded down)."""
        return self.frames * 1000 // self.sample_rate

    def to_segment(self) -> AudioSegment:
        """This audio as a 16-bit :class:`pydub.AudioSegment` (no re-decoding)."""
        with warnings.catch_warnings():
            # pydub warns at import when ffmpeg is absent; raw PCM does not need it.
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from pydub import AudioSegment

        return AudioSegment(
            data=self.pcm, sample_width=2, frame_rate=self.sample_rate, channels=self.channels
        )


@dataclass(frozen=True)
class WavInfo:
    """Header facts of a WAV file; the samples are ``data[data_offset:data_offset + data_size]``."""

    codec: str  # "pcm_s16le", "mulaw", "alaw", ...
    sample_rate: int
    channels: int
    bits: int
    data_offset: int
    data_size: int
    duration_ms: int


@dataclass(frozen=True)
class _WavLayout:
    format_tag: int
    codec: str | None  # None: a tag only ffmpeg can expand
    sample_rate: int
    channels: int
    bits: int
    block_align: int
    data_offset: int
    data_size: int  # whole frames only


@dataclass(frozen=True)
class DecodeLimit:
    """How much decoded audio :func:`decode` may produce: at most ``max_duration_ms``
    of it (None: no bound by duration) and at most ``max_pcm_bytes`` of 16-bit PCM.

    A compressed file is small; what it decodes to need not be (a 32 KB FLAC can claim
    an hour at 192 kHz x 8 channels), so the decoder is bounded before it allocates.
    """

    max_duration_ms: int | None = None
    max_pcm_bytes: int = DEFAULT_MAX_PCM_BYTES

    @classmethod
    def for_call(
        cls, declared_ms: int, *, max_pcm_bytes: int = DEFAULT_MAX_PCM_BYTES
    ) -> DecodeLimit:
        """The limit for a call that lasted ``declared_ms``: that duration with
        :data:`DURATION_TOLERANCE` and :data:`DURATION_SLACK_MS` of slack (PBX clocks
        and ringing), whichever is larger."""
        allowed = max(int(declared_ms * DURATION_TOLERANCE), declared_ms + DURATION_SLACK_MS)
        return cls(max_duration_ms=allowed, max_pcm_bytes=max_pcm_bytes)

    def ffmpeg_seconds(self) -> float:
        """How long one ffmpeg run over this audio may take (:data:`FFMPEG_MIN_S`)."""
        if self.max_duration_ms is None:
            return FFMPEG_TIMEOUT_S
        return FFMPEG_MIN_S + FFMPEG_S_PER_AUDIO_S * self.max_duration_ms / 1000

    def max_bytes(self, sample_rate: int, channels: int) -> int:
        """The most 16-bit PCM bytes audio of this rate and channel count may decode to."""
        limit = self.max_pcm_bytes
        if self.max_duration_ms is not None:
            frames = -(-self.max_duration_ms * sample_rate // 1000)
            limit = min(limit, frames * 2 * channels)
        return limit

    def check(self, frames: int, sample_rate: int, channels: int) -> None:
        """Raise :class:`AudioTooLong` when ``frames`` frames exceed the limit."""
        if frames * 2 * channels > self.max_bytes(sample_rate, channels):
            raise self.exceeded(sample_rate, channels)

    def exceeded(self, sample_rate: int, channels: int) -> AudioTooLong:
        """The error for audio of this layout that decodes to more than allowed."""
        bound = f"{self.max_pcm_bytes} bytes of PCM"
        if self.max_duration_ms is not None:
            bound = f"{self.max_duration_ms / 1000:.1f} s or {bound}"
        return AudioTooLong(
            f"audio at {sample_rate} Hz x {channels} channels decodes to more than the "
            f"declared call allows ({bound})"
        )


def decode(
    data: bytes,
    fmt: str,
    *,
    which: Callable[[str], str | None] = shutil.which,
    limit: DecodeLimit | None = None,
    layout: Layout | None = None,
) -> DecodedAudio:
    """Decode ``data`` declared as ``fmt`` to 16-bit linear PCM.

    ``fmt`` is case-insensitive, with or without a leading dot: ``wav``; headerless
    8 kHz mono ``ulaw``/``mulaw``/``alaw`` and signed-linear ``sln`` (8 kHz) /
    ``sln16`` (16 kHz); or, through ffmpeg, ``mp3``, ``ogg``, ``opus``, ``flac``,
    ``gsm``, ``m4a``, ``webm``. ``which`` locates ffmpeg (injectable for tests).
    ``limit`` bounds what the data may decode to (default: the absolute cap only);
    ffmpeg's output is read as a stream and ffmpeg is stopped once it is exceeded.
    ``layout`` is what the sender declared: headerless audio is read at that rate and
    channel count (default 8 kHz mono, 16 kHz for ``sln16``, interleaved frames); a
    container whose header (for ffmpeg formats: the decoded stream) contradicts it is
    refused.

    Raises:
        AudioMismatch: ``layout`` contradicts the container.
        UnsupportedAudioFormat: unknown ``fmt``; a WAV codec that cannot be handled
            (the message names the format tag); an ffmpeg format while ffmpeg is not
            installed.
        AudioTooLong: the audio decodes to more than ``limit`` allows.
        AudioError: empty, truncated or garbage data; a data chunk shorter than its
            header says; zero or more than 8 channels; a sample rate outside
            4000-192000 Hz; audio without a single sample.
    """
    limit = limit or DecodeLimit()
    name = fmt.strip().lower().lstrip(".") if isinstance(fmt, str) else ""
    if name not in SUPPORTED_FORMATS:
        raise UnsupportedAudioFormat(
            f"unsupported audio format {fmt!r}; supported: {', '.join(sorted(SUPPORTED_FORMATS))}"
        )
    if not data:
        raise AudioError(f"no audio data (0 bytes declared as {name})")
    layout = layout or Layout()
    if name == "wav":
        decoded = _decode_wav(data, which, limit, layout)
    elif name in _RAW_FORMATS:
        codec, default_rate = _RAW_FORMATS[name]
        rate = layout.sample_rate or default_rate
        channels = layout.channels or 1
        bits = 8 if codec != "pcm_s16le" else 16
        _check_layout(rate, channels)
        limit.check(len(data) // (bits // 8 * channels), rate, channels)
        return _expand(memoryview(data), codec, rate, channels, bits)
    else:
        decoded = _decode_ffmpeg(data, name, _FFMPEG_DEMUXERS[name], which, limit)
    layout.check(decoded.sample_rate, decoded.channels, f"{name} audio")
    return decoded


def join_legs(legs: Sequence[DecodedAudio]) -> DecodedAudio:
    """One interleaved recording of mono ``legs`` (one file per direction), channel ``i``
    being leg ``i``, sample-aligned from the first sample; a shorter leg is padded with
    silence to the longest. G.711 legs of one codec keep their codes (stored as G.711).

    Raises:
        AudioMismatch: fewer than two legs, a leg that is not mono, or legs of
            different sample rates.
    """
    if len(legs) < 2:
        raise AudioMismatch("legs come in twos or more")
    rates = {leg.sample_rate for leg in legs}
    if len(rates) != 1:
        raise AudioMismatch(f"legs differ in sample rate ({', '.join(map(str, sorted(rates)))} Hz)")
    if any(leg.channels != 1 for leg in legs):
        raise AudioMismatch("each leg must be one mono direction of the call")
    count = len(legs)
    frames = max(leg.frames for leg in legs)
    pcm = bytearray(2 * count * frames)
    for index, leg in enumerate(legs):
        n = leg.frames
        for byte in (0, 1):  # C-level strided copies: each leg's low and high bytes
            pcm[2 * index + byte : 2 * count * n : 2 * count] = leg.pcm[byte::2]
    codecs = {leg.source_codec for leg in legs}
    codec = codecs.pop() if len(codecs) == 1 else "pcm_s16le"
    joined = DecodedAudio(bytes(pcm), legs[0].sample_rate, count, codec)
    if codec in _SILENCE_BYTE and all(leg._g711 is not None for leg in legs):
        codes = bytearray(_SILENCE_BYTE[codec] * (count * frames))
        for index, leg in enumerate(legs):
            assert leg._g711 is not None
            codes[index : count * leg.frames : count] = leg._g711
        _attach_g711(joined, bytes(codes))
    return joined


@dataclass(frozen=True)
class SilencePlan:
    """Which frames of which channels a set of pauses silences, for audio of a known
    length: ``cuts`` are ``(first_frame, last_frame, channels)``, sorted (neighbours may
    share the frame their common boundary falls in), ``channels`` a sorted tuple of
    0-based indexes; ``silenced_ms`` is the merged, clamped length of the union (what
    :func:`silence` returns)."""

    cuts: tuple[tuple[int, int, tuple[int, ...]], ...]
    channels: int
    silenced_ms: int

    @classmethod
    def of(
        cls, intervals: Sequence[Span], *, sample_rate: int, channels: int, frames: int
    ) -> SilencePlan:
        """The plan of ``intervals`` (see :func:`silence`) over ``frames`` frames.

        Raises:
            AudioError: a malformed interval, or one naming a channel there is not.
        """
        spans = _check_spans(intervals, channels)
        total_ms = -(-frames * 1000 // sample_rate)  # ceil: the last partial ms counts
        # Cut the timeline at every boundary; each piece silences its channels' union.
        pieces: list[tuple[int, int, tuple[int, ...]]] = []
        bounds = sorted({min(v, total_ms) for s_, e_, _ in spans for v in (s_, e_)})
        for low, high in zip(bounds, bounds[1:], strict=False):
            chans = tuple(
                sorted({c for s_, e_, cs in spans if s_ <= low and high <= e_ for c in cs})
            )
            if not chans or low >= total_ms:
                continue
            if pieces and pieces[-1][1] == low and pieces[-1][2] == chans:
                pieces[-1] = (pieces[-1][0], high, chans)
            else:
                pieces.append((low, high, chans))
        silenced_ms = sum(high - low for low, high, _ in pieces)
        cuts = []
        for low, high, chans in pieces:
            first = low * sample_rate // 1000
            last = min(-(-high * sample_rate // 1000), frames)
            if last > first:  # rounded outwards: neighbours may share a boundary frame
                cuts.append((first, last, chans))
        return cls(tuple(cuts), channels, silenced_ms)

    def touches(self, first_frame: int, frames: int) -> bool:
        """Whether a cut falls in the ``frames`` frames starting at ``first_frame`` (no:
        those samples are stored exactly as they came, without a copy)."""
        end_frame = first_frame + frames
        return any(first < end_frame and first_frame < last for first, last, _ in self.cuts)

    def apply(self, buffer: bytearray, first_frame: int, width: int, fill: bytes) -> None:
        """Silence, in place, the cut samples that fall in ``buffer``: whole frames of
        ``width`` bytes per sample starting at frame ``first_frame``; ``fill`` is one
        silent sample (``width`` bytes)."""
        frame_bytes = width * self.channels
        end_frame = first_frame + len(buffer) // frame_bytes
        for first, last, chans in self.cuts:
            low, high = max(first, first_frame), min(last, end_frame)
            if low >= high:
                continue
            n = high - low
            start, stop = (low - first_frame) * frame_bytes, (high - first_frame) * frame_bytes
            if len(chans) == self.channels:
                buffer[start:stop] = fill * (n * self.channels)
                continue
            for channel in chans:
                for byte in range(width):
                    begin = start + width * channel + byte
                    buffer[begin:stop:frame_bytes] = fill[byte : byte + 1] * n


def _check_spans(
    intervals: Sequence[Span], channels: int
) -> list[tuple[int, int, tuple[int, ...]]]:
    spans: list[tuple[int, int, tuple[int, ...]]] = []
    everything = tuple(range(channels))
    for interval in intervals:
        try:
            start, end, *rest = interval
        except (TypeError, ValueError) as exc:
            raise AudioError(
                f"silence interval {interval!r} is not a (start_ms, end_ms) pair"
            ) from exc
        if len(rest) > 1:
            raise AudioError(f"silence interval {interval!r} has too many fields")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise AudioError(f"silence interval {interval!r} must hold integer milliseconds")
        if start < 0:
            raise AudioError(f"silence interval {interval!r} starts before 0 ms")
        if start >= end:
            raise AudioError(f"silence interval {interval!r} is empty or reversed (start >= end)")
        chosen = everything
        if rest and rest[0] is not None:
            if isinstance(rest[0], str | bytes) or not isinstance(rest[0], Sequence):
                raise AudioError(f"silence interval {interval!r}: channels must be a sequence")
            chosen = tuple(sorted(set(rest[0])))
            if not chosen or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c < channels for c in chosen
            ):
                raise AudioError(
                    f"silence interval {interval!r} names a channel the audio "
                    f"({channels} channel(s)) does not have"
                )
        spans.append((start, end, chosen))
    return spans


def silence(audio: DecodedAudio, intervals: Sequence[Span]) -> tuple[DecodedAudio, int]:
    """Zero every sample in each ``[start_ms, end_ms)``; return the audio and the ms silenced.

    An interval may name the 0-based ``channels`` it silences (a third element; None or
    absent: every channel); only those channels' samples are zeroed, the others stay
    bit-identical. Intervals may be unsorted and overlap (they are merged per channel
    set) and may reach past the end (they are clamped). A sample is zeroed when any
    part of its period falls in an interval, so nothing spoken inside a pause survives
    at the edges. The returned count is the merged, clamped length in milliseconds of
    the union over all channels.

    Raises:
        AudioError: an interval that is not two integers (and channels), has a negative
            start, ``start_ms >= end_ms``, or names a channel the audio does not have.
    """
    plan = SilencePlan.of(
        intervals, sample_rate=audio.sample_rate, channels=audio.channels, frames=audio.frames
    )
    if not plan.cuts:
        return audio, 0
    pcm = bytearray(audio.pcm)
    plan.apply(pcm, 0, 2, b"\x00\x00")
    silenced = DecodedAudio(bytes(pcm), audio.sample_rate, audio.channels, audio.source_codec)
    if audio._g711 is not None and audio.source_codec in _SILENCE_BYTE:
        codes = bytearray(audio._g711)
        plan.apply(codes, 0, 1, _SILENCE_BYTE[audio.source_codec])
        _attach_g711(silenced, bytes(codes))
    return silenced, plan.silenced_ms


def encode_wav(audio: DecodedAudio, codec: str | None = None) -> tuple[bytes, str]:
    """Write the canonical stored WAV; return ``(wav_bytes, "wav/<codec>")``.

    ``codec`` is ``"pcm_s16le"``, ``"mulaw"`` or ``"alaw"``; by default G.711 sources
    stay G.711 (format tag 7/6, 8 bits, half the size) and everything else is 16-bit
    PCM. Zeroed samples become the G.711 silence byte (mu-law ``0xFF``, A-law ``0xD5``).

    Raises:
        UnsupportedAudioFormat: an unknown ``codec``.
    """
    if codec is None:
        codec = audio.source_codec if audio.source_codec in _SILENCE_BYTE else "pcm_s16le"
    if codec not in _ENCODE_CODECS:
        raise UnsupportedAudioFormat(
            f"cannot encode WAV as {codec!r}; choose one of {', '.join(_ENCODE_CODECS)}"
        )
    if codec == "pcm_s16le":
        body = audio.pcm
    elif audio._g711 is not None and codec == audio.source_codec:
        body = audio._g711
    else:
        convert = audioop.lin2ulaw if codec == "mulaw" else audioop.lin2alaw
        body = convert(audio.pcm, 2)
    header = wav_header(codec, audio.sample_rate, audio.channels, audio.frames)
    pad = b"\x00" if len(body) % 2 else b""
    return b"".join((header, body, pad)), f"wav/{codec}"


def wav_head_info(head: bytes, total: int) -> WavInfo | None:
    """:func:`wav_info` from the first bytes of a WAV of ``total`` bytes; None when
    ``head`` ends before the data chunk's header (metadata chunks first: read more). A
    data chunk of unknown size, as streaming writers leave it, runs to the end.

    Raises:
        UnsupportedAudioFormat: a WAV codec :func:`decode` cannot handle natively.
        AudioError: not a WAV, a header beyond ``head``, or a truncated data chunk.
    """
    if len(head) < total and not _reaches_data(head):
        return None
    layout = _parse_wav(memoryview(head), total)
    return _info(layout)


def wav_header(codec: str, sample_rate: int, channels: int, frames: int) -> bytes:
    """The canonical WAV header :func:`encode_wav` writes for ``frames`` frames of
    ``codec`` (``pcm_s16le``, ``mulaw`` or ``alaw``); the samples (and a pad byte when
    their size is odd) follow it.

    Raises:
        UnsupportedAudioFormat: an unknown ``codec``.
    """
    if codec not in _ENCODE_CODECS:
        raise UnsupportedAudioFormat(
            f"cannot encode WAV as {codec!r}; choose one of {', '.join(_ENCODE_CODECS)}"
        )
    _check_layout(sample_rate, channels)
    if codec == "pcm_s16le":
        block = 2 * channels
        fmt_chunk = struct.pack(
            "<4sIHHIIHH", b"fmt ", 16, _TAG_PCM, channels, sample_rate,
            sample_rate * block, block, 16,
        )  # fmt: skip
        fact_chunk = b""
    else:
        block = channels
        tag = _TAG_MULAW if codec == "mulaw" else _TAG_ALAW
        fmt_chunk = struct.pack(
            "<4sIHHIIHHH", b"fmt ", 18, tag, channels, sample_rate, sample_rate * channels,
            channels, 8, 0,
        )  # fmt: skip
        # Non-PCM WAVs carry a fact chunk with the frame count (RIFF spec; sox does too).
        fact_chunk = struct.pack("<4sII", b"fact", 4, frames)
    size = frames * block
    riff_size = 4 + len(fmt_chunk) + len(fact_chunk) + 8 + size + (size & 1)
    return b"".join(
        (
            struct.pack("<4sI4s", b"RIFF", riff_size, b"WAVE"),
            fmt_chunk,
            fact_chunk,
            struct.pack("<4sI", b"data", size),
        )
    )


def wav_info(data: bytes) -> WavInfo:
    """Header facts of a WAV without decoding its samples.

    Raises:
        UnsupportedAudioFormat: a WAV codec :func:`decode` cannot handle natively.
        AudioError: not a WAV, or a truncated / inconsistent header.
    """
    layout = _parse_wav(memoryview(data))
    return _info(layout)


# -- WAV parsing ------------------------------------------------------------------


def check_layout(sample_rate: int, channels: int) -> None:
    """Raise :class:`AudioError` for a rate outside 4000-192000 Hz or 0 / > 8 channels."""
    _check_layout(sample_rate, channels)


def _check_layout(sample_rate: int, channels: int) -> None:
    if channels < 1:
        raise AudioError(f"audio declares {channels} channels")
    if channels > MAX_CHANNELS:
        raise AudioError(f"audio declares {channels} channels; at most {MAX_CHANNELS} supported")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )


def _unsupported_tag(tag: int, *, ffmpeg_would_help: bool = False) -> UnsupportedAudioFormat:
    name = _FFMPEG_WAV_TAGS.get(tag)
    label = f"WAV format tag 0x{tag:04X}" + (f" ({name})" if name else "")
    if ffmpeg_would_help and name:
        return UnsupportedAudioFormat(f"{label} needs ffmpeg: {_FFMPEG_MISSING}")
    return UnsupportedAudioFormat(
        f"{label} is not supported (PCM, IEEE float, A-law and mu-law are)"
    )


def _codec_for(tag: int, bits: int) -> str | None:
    if tag == _TAG_PCM:
        codec = {8: "pcm_u8", 16: "pcm_s16le", 24: "pcm_s24le", 32: "pcm_s32le"}.get(bits)
    elif tag == _TAG_FLOAT:
        codec = {32: "pcm_f32le", 64: "pcm_f64le"}.get(bits)
    elif tag in (_TAG_MULAW, _TAG_ALAW):
        codec = ("mulaw" if tag == _TAG_MULAW else "alaw") if bits == 8 else None
    elif tag in _FFMPEG_WAV_TAGS:
        return None
    else:
        raise _unsupported_tag(tag)
    if codec is None:
        raise UnsupportedAudioFormat(
            f"WAV format tag 0x{tag:04X} with {bits} bits per sample is not supported"
        )
    return codec


def _parse_wav(data: memoryview, total: int | None = None) -> _WavLayout:
    """The layout of a WAV; ``data`` is the whole file, or (with ``total``, the file's
    size) its first bytes, which must reach the data chunk's header."""
    head = bytes(data[0:12])
    if len(head) < 12 or head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        if head[0:4] in (b"RIFX", b"RF64"):
            raise UnsupportedAudioFormat(f"{head[0:4].decode()} WAV files are not supported")
        raise AudioError("not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = bytes(data[pos : pos + 4])
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + size > len(data):
                raise AudioError(f"WAV fmt chunk is truncated ({size} bytes declared)")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _TAG_EXTENSIBLE:
                if size < 40:
                    raise AudioError("WAVE_FORMAT_EXTENSIBLE fmt chunk is shorter than 40 bytes")
                (tag,) = struct.unpack_from("<H", data, body + 24)  # SubFormat GUID prefix
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError("WAV data chunk comes before the fmt chunk")
            available = (len(data) if total is None else total) - body
            if size == _UNKNOWN_SIZE:
                size = available
            elif size > available:
                raise AudioError(
                    f"WAV data chunk is truncated: {size} bytes declared, {available} present"
                )
            return _layout(fmt, body, size)
        pos = body + size + (size & 1)
    if fmt is None:
        raise AudioError("WAV file has no fmt chunk (truncated or not audio)")
    raise AudioError("WAV file has no data chunk (truncated)")


def wav_needs_ffmpeg(head: bytes) -> bool:
    """Whether the WAV starting with ``head`` holds a codec only ffmpeg expands (GSM
    6.10 "WAV49", ADPCM, MP3 in WAV), by its fmt chunk's format tag."""
    pos = 12
    while pos + 8 <= len(head) and head[:4] == b"RIFF":
        chunk, (size,) = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)
        if chunk == b"fmt " and pos + 10 <= len(head):
            (tag,) = struct.unpack_from("<H", head, pos + 8)
            if tag == _TAG_EXTENSIBLE and pos + 8 + 26 <= len(head):
                (tag,) = struct.unpack_from("<H", head, pos + 8 + 24)
            return tag in _FFMPEG_WAV_TAGS
        pos += 8 + size + (size & 1)
    return False


def _info(layout: _WavLayout) -> WavInfo:
    if layout.codec is None:
        raise _unsupported_tag(layout.format_tag, ffmpeg_would_help=True)
    frames = layout.data_size // layout.block_align
    return WavInfo(
        codec=layout.codec,
        sample_rate=layout.sample_rate,
        channels=layout.channels,
        bits=layout.bits,
        data_offset=layout.data_offset,
        data_size=layout.data_size,
        duration_ms=frames * 1000 // layout.sample_rate,
    )


def _reaches_data(head: bytes) -> bool:
    """Whether ``head`` (a WAV's first bytes) holds the data chunk's header."""
    pos = 12
    while pos + 8 <= len(head):
        if head[pos : pos + 4] == b"data":
            return True
        (size,) = struct.unpack_from("<I", head, pos + 4)
        pos += 8 + size + (size & 1)
    return False


def _layout(fmt: tuple[int, int, int, int, int], offset: int, size: int) -> _WavLayout:
    tag, channels, rate, block_align, bits = fmt
    _check_layout(rate, channels)
    codec = _codec_for(tag, bits)
    if codec is not None and block_align != channels * (bits // 8):
        raise AudioError(
            f"WAV block align {block_align} does not match {channels} channels x {bits} bits"
        )
    if block_align < 1:
        raise AudioError(f"WAV block align {block_align} is invalid")
    whole = size - size % block_align  # a trailing partial frame is dropped
    return _WavLayout(tag, codec, rate, channels, bits, block_align, offset, whole)


def _decode_wav(
    data: bytes, which: Callable[[str], str | None], limit: DecodeLimit, declared: Layout
) -> DecodedAudio:
    view = memoryview(data)
    layout = _parse_wav(view)
    declared.check(layout.sample_rate, layout.channels, "WAV header")
    if layout.codec is None:
        if which("ffmpeg") is None:
            raise _unsupported_tag(layout.format_tag, ffmpeg_would_help=True)
        return _decode_ffmpeg(data, "wav", "wav", which, limit)
    limit.check(layout.data_size // layout.block_align, layout.sample_rate, layout.channels)
    samples = view[layout.data_offset : layout.data_offset + layout.data_size]
    return _expand(samples, layout.codec, layout.sample_rate, layout.channels, layout.bits)


def _expand(samples: memoryview, codec: str, rate: int, channels: int, bits: int) -> DecodedAudio:
    """Convert whole frames of ``codec`` samples to 16-bit linear PCM."""
    _check_layout(rate, channels)
    frame_bytes = channels * (bits // 8)
    samples = samples[: len(samples) - len(samples) % frame_bytes]
    if not samples:
        raise AudioError("audio contains no samples")
    if codec in _SILENCE_BYTE:
        expand = audioop.ulaw2lin if codec == "mulaw" else audioop.alaw2lin
        decoded = DecodedAudio(expand(samples, 2), rate, channels, codec)
        _attach_g711(decoded, bytes(samples))
        return decoded
    return DecodedAudio(pcm_to_s16(samples, codec), rate, channels, codec)


def pcm_to_s16(samples: bytes | memoryview, codec: str) -> bytes:
    """Whole samples of linear PCM ``codec`` (``pcm_u8``, ``pcm_s16le``, ``pcm_s24le``,
    ``pcm_s32le``, ``pcm_f32le``, ``pcm_f64le``) as 16-bit little-endian PCM."""
    if codec == "pcm_s16le":
        return bytes(samples)
    if codec == "pcm_u8":
        return audioop.lin2lin(audioop.bias(samples, 1, -128), 1, 2)
    if codec in ("pcm_s24le", "pcm_s32le"):
        return audioop.lin2lin(samples, 3 if codec == "pcm_s24le" else 4, 2)
    # pcm_f32le / pcm_f64le: no C-level float path without numpy
    floats = memoryview(samples).cast("B").cast("f" if codec == "pcm_f32le" else "d")
    return struct.pack(f"<{len(floats)}h", *map(_float_to_s16, floats))


def _attach_g711(audio: DecodedAudio, codes: bytes) -> None:
    object.__setattr__(audio, "_g711", codes)


def _float_to_s16(x: float) -> int:
    # Same scaling and clipping as ffmpeg's flt->s16 conversion; NaN becomes silence.
    if x != x:
        return 0
    if x >= 1.0:
        return 32767
    if x <= -1.0:
        return -32768
    return min(32767, round(x * 32768))


# -- ffmpeg -------------------------------------------------------------------------

_STREAM_CODEC = re.compile(r"Stream #\d+:\d+.*?: Audio: ([\w-]+)")


def _decode_ffmpeg(
    data: bytes,
    name: str,
    demuxer: str,
    which: Callable[[str], str | None],
    limit: DecodeLimit,
) -> DecodedAudio:
    del demuxer  # ffmpeg_decoder knows it
    # A file, not a pipe: m4a/mp4 may keep their index at the end and need seeking.
    try:
        with tempfile.NamedTemporaryFile(prefix="callvault-audio-", suffix=f".{name}") as source:
            source.write(data)
            source.flush()
            with PcmStream(ffmpeg_decoder(source.name, name, which=which), limit, what=name) as run:
                pcm = b"".join(run)
                codec = run.codec or name
                rate, channels = run.sample_rate, run.channels
    except (OSError, subprocess.SubprocessError) as exc:
        raise AudioError(f"ffmpeg could not decode {name}: {exc}") from exc
    decoded = _expand(memoryview(pcm), "pcm_s16le", rate, channels, 16)
    return DecodedAudio(decoded.pcm, decoded.sample_rate, decoded.channels, codec)


_WAV_HEADER_MAX = 64 * 1024  # ffmpeg's header (with metadata chunks) comes first
_STDERR_KEEP = 64 * 1024


def _pcm_start(head: bytes) -> tuple[int, int, int] | None:
    """``(data offset, rate, channels)`` once ``head`` holds the WAV header up to the
    data chunk, else None (read more)."""
    if len(head) < 12:
        return None
    if head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioError("ffmpeg did not write a WAV header")
    pos, rate, channels = 12, 0, 0
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        if chunk_id == b"data":
            if not rate:
                raise AudioError("ffmpeg wrote no fmt chunk")
            return pos + 8, rate, channels
        if chunk_id == b"fmt ":
            if pos + 8 + 16 > len(head):
                return None
            _, channels, rate = struct.unpack_from("<HHI", head, pos + 8)
            _check_layout(rate, channels)
        pos += 8 + size + (size & 1)
    return None


class PcmStream:
    """A running ffmpeg decoding one audio stream to 16-bit WAV on its stdout, read as a
    stream: iterate it for the PCM (``sample_rate``/``channels`` are set before the first
    chunk). At most ``limit.max_bytes(...)`` of samples are read; past that ffmpeg is
    killed and :class:`AudioTooLong` raised. stderr is drained in a thread (its tail is
    kept in :attr:`log`); the run is bounded by ``limit.ffmpeg_seconds()``. Use it as a
    context manager: leaving it stops ffmpeg if it still runs.

    Raises (while iterating):
        AudioTooLong: more samples than ``limit`` allows.
        AudioError: ffmpeg wrote no usable WAV header, or failed (its last log line).
    """

    def __init__(
        self,
        command: list[str],
        limit: DecodeLimit,
        *,
        what: str,
        feed: Iterator[bytes] | None = None,
    ) -> None:
        self.limit, self.what = limit, what
        self.sample_rate = self.channels = self.pcm_bytes = 0
        self.returncode: int | None = None
        self._errors = bytearray()
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL if feed is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise AudioError(f"ffmpeg could not decode {what}: {exc}") from exc
        self._drainer = threading.Thread(target=self._drain, daemon=True, name="ffmpeg-stderr")
        self._drainer.start()
        self._feeder: threading.Thread | None = None
        self.feed_error: BaseException | None = None
        if feed is not None:  # the input from a stream (``-i pipe:0``), written by a thread
            self._feeder = threading.Thread(
                target=self._write, args=(feed,), daemon=True, name="ffmpeg-stdin"
            )
            self._feeder.start()
        self.timeout = limit.ffmpeg_seconds()
        self.timed_out = False
        self._timer = threading.Timer(self.timeout, self._expire)
        self._timer.start()

    def _expire(self) -> None:
        self.timed_out = True
        with contextlib.suppress(OSError):
            self._process.kill()

    def _write(self, feed: Iterator[bytes]) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            for piece in feed:
                stdin.write(piece)
        except (BrokenPipeError, ValueError):
            pass  # ffmpeg stopped reading (it had enough, or was killed)
        except BaseException as exc:  # the source failed: ffmpeg sees a short input
            self.feed_error = exc
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()

    def _drain(self) -> None:
        stderr = self._process.stderr
        assert stderr is not None
        while chunk := stderr.read(8192):
            self._errors.extend(chunk)
            del self._errors[: max(0, len(self._errors) - _STDERR_KEEP)]

    @property
    def log(self) -> str:
        return self._errors.decode("utf-8", "replace")

    @property
    def frames(self) -> int:
        return self.pcm_bytes // (2 * self.channels) if self.channels else 0

    @property
    def codec(self) -> str | None:
        """The codec ffmpeg reported for its input (``opus``, ``mp3``, ``aac``...); read
        it once the stream is exhausted (the stderr log is complete only then)."""
        match = _STREAM_CODEC.search(self.log)
        return match.group(1) if match else None

    def __enter__(self) -> PcmStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        stdout = self._process.stdout
        assert stdout is not None
        head = bytearray()
        allowed = 0
        while chunk := stdout.read(1 << 16):
            if not self.channels:
                head += chunk
                start = _pcm_start(bytes(head[:_WAV_HEADER_MAX]))
                if start is None:
                    if len(head) > _WAV_HEADER_MAX:
                        raise AudioError("ffmpeg wrote a WAV header larger than 64 KiB")
                    continue
                offset, self.sample_rate, self.channels = start
                allowed = self.limit.max_bytes(self.sample_rate, self.channels)
                chunk = bytes(head[offset:])
            self.pcm_bytes += len(chunk)
            if self.pcm_bytes > allowed:
                raise self.limit.exceeded(self.sample_rate, self.channels)
            yield chunk
        self.returncode = self._process.wait()
        # ffmpeg has exited, so stderr is at its end: let the drainer read it all before
        # anything parses the log (the codec line, the failure reason).
        self._drainer.join(5)
        if self.timed_out:
            raise AudioError(
                f"ffmpeg ran longer than {self.timeout:.0f} s on the {self.what} data "
                "and was stopped"
            )
        if self.returncode != 0 or not self.channels:
            lines = [line.strip() for line in self.log.splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {self.returncode}"
            raise AudioError(f"ffmpeg could not decode the {self.what} data: {reason}")

    def close(self) -> None:
        self._timer.cancel()
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._drainer.join(5)
        if self._feeder is not None:
            self._feeder.join(5)
        if self._process.stderr is not None:
            self._process.stderr.close()


def ffmpeg_decoder(
    path: str,
    fmt: str,
    *,
    layout: Layout | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> list[str]:
    """The ffmpeg command decoding the file ``path`` (declared ``fmt``; headerless audio
    at the declared ``layout``) to 16-bit WAV on stdout, for :class:`PcmStream`.

    Raises:
        UnsupportedAudioFormat: ffmpeg is not installed, or ``fmt`` is not one it reads.
    """
    ffmpeg = which("ffmpeg")
    name = fmt.strip().lower().lstrip(".")
    if ffmpeg is None:
        raise UnsupportedAudioFormat(f"cannot decode {name}: {_FFMPEG_MISSING}")
    if name in _RAW_FORMATS:
        codec, default_rate = _RAW_FORMATS[name]
        layout = layout or Layout()
        demuxer = {"pcm_s16le": "s16le", "mulaw": "mulaw", "alaw": "alaw"}[codec]
        source = ["-f", demuxer, "-ar", str(layout.sample_rate or default_rate),
                  "-ac", str(layout.channels or 1)]  # fmt: skip
    elif name in _FFMPEG_DEMUXERS or name == "wav":
        source = ["-f", _FFMPEG_DEMUXERS.get(name, "wav")]
    else:
        raise UnsupportedAudioFormat(f"{name} is not decoded through ffmpeg")
    return [
        ffmpeg, "-nostdin", "-hide_banner", *source, "-i", path,
        "-map", "0:a:0", "-vn", "-acodec", "pcm_s16le", "-f", "wav", "-",
    ]  # fmt: skip
