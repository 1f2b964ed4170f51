"""Landing audio to stored plaintext chunk by chunk, in constant memory.

What a caller may rely on:

- :func:`plan_stream` looks at the first bytes of landing audio (a WAV's header, or
  nothing for headerless ``sln``/``ulaw``/``alaw``) and its total size, and says what
  will be stored (:class:`StreamPlan`: codec label, layout, frames, plaintext size) or
  None when the audio needs the in-memory path (compressed formats through ffmpeg, a WAV
  of unknown size or with its header beyond :data:`HEAD_BYTES`, legs).
- :func:`stream_plaintext` then yields the stored WAV (the same bytes
  :func:`storage.audio.encode_wav` would write) piece by piece from the landing stream:
  the header, then the samples :data:`CHUNK_FRAMES` frames at a time, PCI pauses
  silenced on their channels at the exact samples (G.711 codes stay codes, with the
  codec's silence byte), 8/24/32-bit and float PCM converted to 16-bit. It reads the
  whole file (trailing chunks too) so the caller's digest covers every byte, and calls
  ``finish`` once the file is exhausted, before the last piece: a digest that does not
  match raises there, and no complete object is ever written.
- The bounds of :class:`~storage.audio.DecodeLimit` hold as in :func:`~storage.audio.decode`:
  they are checked against the header before anything is read.

Every failure is an :class:`~storage.errors.AudioError` (or a subclass).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from storage.audio import (
    RAW_FORMATS,
    DecodeLimit,
    Layout,
    SilencePlan,
    check_layout,
    pcm_to_s16,
    wav_head_info,
    wav_header,
)
from storage.crypto.envelope import SupportsRead, read_exactly
from storage.errors import AudioError, AudioMismatch, UnsupportedAudioFormat

__all__ = [
    "CHUNK_FRAMES",
    "HEAD_BYTES",
    "StreamPlan",
    "join_plans",
    "plan_stream",
    "read_head",
    "stream_legs",
    "stream_plaintext",
]

#: How much of a file :func:`plan_stream` needs to see (a WAV header with metadata).
HEAD_BYTES = 64 * 1024
#: Frames converted per piece (8 kHz: 32 s; 16 kHz stereo: 2 MiB of PCM).
CHUNK_FRAMES = 1 << 18
_G711_FILL = {"mulaw": b"\xff", "alaw": b"\xd5"}
_WIDTH = {"pcm_u8": 1, "pcm_s16le": 2, "pcm_s24le": 3, "pcm_s32le": 4, "pcm_f32le": 4,
          "pcm_f64le": 8, "mulaw": 1, "alaw": 1}  # fmt: skip


@dataclass(frozen=True)
class StreamPlan:
    """What :func:`stream_plaintext` will produce from one landing file."""

    source_codec: str  # as in DecodedAudio.source_codec
    stored_codec: str  # pcm_s16le, mulaw or alaw
    sample_rate: int
    channels: int
    frames: int
    data_offset: int  # where the samples start in the landing file
    total_size: int  # bytes of the landing file

    @property
    def audio_format(self) -> str:
        return f"wav/{self.stored_codec}"

    @property
    def source_width(self) -> int:
        return _WIDTH[self.source_codec]

    @property
    def stored_width(self) -> int:
        return 2 if self.stored_codec == "pcm_s16le" else 1

    @property
    def data_size(self) -> int:
        return self.frames * self.channels * self.stored_width

    @property
    def plaintext_size(self) -> int:
        header = wav_header(self.stored_codec, self.sample_rate, self.channels, self.frames)
        return len(header) + self.data_size + (self.data_size & 1)

    @property
    def duration_ms(self) -> int:
        return self.frames * 1000 // self.sample_rate


def plan_stream(
    head: bytes, total: int, fmt: str, *, layout: Layout, limit: DecodeLimit
) -> StreamPlan | None:
    """The plan for a landing file of ``total`` bytes starting with ``head``, declared
    ``fmt`` and ``layout``; None when it needs the in-memory path.

    Raises:
        AudioMismatch: a WAV header contradicting ``layout``.
        AudioTooLong: more frames than ``limit`` allows.
        UnsupportedAudioFormat: a WAV codec that cannot be handled.
        AudioError: a truncated or inconsistent header, or no samples.
    """
    name = fmt.strip().lower().lstrip(".")
    if name in RAW_FORMATS:
        codec, default_rate = RAW_FORMATS[name]
        rate, channels = layout.sample_rate or default_rate, layout.channels or 1
        check_layout(rate, channels)
        offset = 0
        frames = total // (_WIDTH[codec] * channels)
    elif name == "wav":
        if len(head) < 12:
            raise AudioError("not a WAV file (no RIFF/WAVE header)")
        try:
            info = wav_head_info(head, total)
        except UnsupportedAudioFormat:
            return None  # a codec only ffmpeg expands (GSM, ADPCM, MP3 in WAV)
        if info is None:
            return None  # metadata chunks beyond HEAD_BYTES before the data: decode whole
        layout.check(info.sample_rate, info.channels, "WAV header")
        codec, rate, channels = info.codec, info.sample_rate, info.channels
        if info.data_offset + info.data_size > total:
            return None
        offset = info.data_offset
        frames = info.data_size // (_WIDTH[codec] * channels)
    else:
        return None
    if frames < 1:
        raise AudioError("audio contains no samples")
    limit.check(frames, rate, channels)
    stored = codec if codec in _G711_FILL else "pcm_s16le"
    return StreamPlan(codec, stored, rate, channels, frames, offset, total)


def read_head(source: SupportsRead, size: int = HEAD_BYTES) -> bytes:
    """Up to ``size`` bytes from the start of ``source`` (fewer only at its end)."""
    return read_exactly(source, size)


def _samples(plan: StreamPlan, head: bytes, source: SupportsRead) -> Iterator[bytes]:
    """The samples of ``plan`` in its stored codec, :data:`CHUNK_FRAMES` frames at a
    time; once they are out, the rest of the file (a partial frame, trailing chunks) is
    read too, for the digest, before the iterator ends."""
    buffered = bytearray(head)

    def take(size: int) -> bytes:
        # Past the head the samples come straight from the source (no staging copy).
        if not buffered:
            return read_exactly(source, size)
        if len(buffered) >= size:
            out = bytes(buffered[:size])
            del buffered[:size]
            return out
        rest = read_exactly(source, size - len(buffered))
        out = bytes(buffered) + rest
        buffered.clear()
        return out

    width, channels = plan.source_width, plan.channels
    take(plan.data_offset)
    frame = 0
    while frame < plan.frames:
        count = min(CHUNK_FRAMES, plan.frames - frame)
        raw = take(count * width * channels)
        if len(raw) != count * width * channels:
            raise AudioError(f"the audio ended after {frame} of {plan.frames} frames")
        frame += count
        yield raw if plan.stored_codec != "pcm_s16le" else pcm_to_s16(raw, plan.source_codec)
    buffered.clear()
    while source.read(1 << 20):
        pass


def _stored_wav(
    stored_codec: str,
    sample_rate: int,
    channels: int,
    frames: int,
    chunks: Iterator[bytes],
    silence: SilencePlan,
    finish: Callable[[], None],
) -> Iterator[bytes]:
    """Header, then ``chunks`` (whole frames) silenced; ``finish`` runs once ``chunks``
    are exhausted, before the last piece (and the pad byte) is yielded."""
    width = 2 if stored_codec == "pcm_s16le" else 1
    fill = _G711_FILL.get(stored_codec, b"\x00\x00")
    yield wav_header(stored_codec, sample_rate, channels, frames)
    frame = 0
    pending: bytes | None = None
    for chunk in chunks:
        count = len(chunk) // (width * channels)
        if silence.touches(frame, count):
            samples = bytearray(chunk)
            silence.apply(samples, frame, width, fill)
            chunk = bytes(samples)
        frame += count
        if pending is not None:
            yield pending
        pending = chunk
    finish()
    if frames * channels * width & 1:
        pending = (pending or b"") + b"\x00"
    if pending is not None:
        yield pending


def stream_plaintext(
    plan: StreamPlan,
    head: bytes,
    source: SupportsRead,
    silence: SilencePlan,
    *,
    finish: Callable[[], None] = lambda: None,
) -> Iterator[bytes]:
    """The stored WAV of ``plan``, piece by piece: ``head`` is what was read of the file
    already, ``source`` the rest of it; ``silence`` the pauses (over ``plan.frames``).

    Raises:
        AudioError: the file ended before its samples did (it was truncated meanwhile).
        Whatever ``finish`` raises (a digest mismatch), before the last piece.
    """
    return _stored_wav(
        plan.stored_codec, plan.sample_rate, plan.channels, plan.frames,
        _samples(plan, head, source), silence, finish,
    )  # fmt: skip


def join_plans(plans: Sequence[StreamPlan]) -> StreamPlan:
    """The plan of one recording of mono ``plans`` (legs), channel ``i`` = leg ``i``,
    as long as the longest; what :func:`stream_legs` produces.

    Raises:
        AudioMismatch: a leg that is not mono, or legs of different rates or codecs.
    """
    if len({p.sample_rate for p in plans}) != 1:
        rates = ", ".join(str(r) for r in sorted({p.sample_rate for p in plans}))
        raise AudioMismatch(f"legs differ in sample rate ({rates} Hz)")
    if any(p.channels != 1 for p in plans):
        raise AudioMismatch("each leg must be one mono direction of the call")
    if len({p.stored_codec for p in plans}) != 1:
        raise AudioMismatch("legs of one recording must share a codec to be streamed")
    first = plans[0]
    frames = max(p.frames for p in plans)
    return StreamPlan(
        first.source_codec, first.stored_codec, first.sample_rate, len(plans), frames, 0,
        sum(p.total_size for p in plans),
    )  # fmt: skip


def stream_legs(
    plans: Sequence[StreamPlan],
    heads: Sequence[bytes],
    sources: Sequence[SupportsRead],
    silence: SilencePlan,
    *,
    finish: Callable[[], None] = lambda: None,
) -> Iterator[bytes]:
    """The stored WAV of mono legs interleaved (what :func:`storage.audio.join_legs`
    and :func:`storage.audio.encode_wav` write), piece by piece: sample-aligned from the
    first sample, a shorter leg padded with the codec's silence.

    Raises:
        AudioMismatch: as :func:`join_plans`.
        AudioError: a leg ended before its samples did.
        Whatever ``finish`` raises, before the last piece.
    """
    joined = join_plans(plans)
    count, width = len(plans), joined.stored_width
    fill = _G711_FILL.get(joined.stored_codec, b"\x00\x00")
    readers = [_samples(p, h, s) for p, h, s in zip(plans, heads, sources, strict=True)]

    def interleaved() -> Iterator[bytes]:
        frame = 0
        while frame < joined.frames:
            n = min(CHUNK_FRAMES, joined.frames - frame)
            out = bytearray(fill * (n * count))
            for index, reader in enumerate(readers):
                have = next(reader, b"") if frame < plans[index].frames else b""
                got = len(have) // width
                for byte in range(width):
                    start = index * width + byte
                    out[start : got * count * width : count * width] = have[byte::width]
            frame += n
            yield bytes(out)
        for reader in readers:  # each leg's tail, for its digest
            for _ in reader:
                pass

    return _stored_wav(
        joined.stored_codec, joined.sample_rate, count, joined.frames, interleaved(),
        silence, finish,
    )  # fmt: skip
