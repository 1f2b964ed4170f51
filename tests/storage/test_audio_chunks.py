"""Streaming preparation (storage/audio_chunks.py): the stored WAV produced chunk by chunk
is byte for byte what the whole-file path writes (decode -> silence -> encode_wav), for
every WAV codec decode handles natively and for headerless audio, with PCI cuts that
straddle chunk boundaries; the digest hook runs before the last piece; the bounds hold.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterator

import pytest

from storage.audio import (
    DecodeLimit,
    Layout,
    SilencePlan,
    decode,
    encode_wav,
    silence,
)
from storage.audio_chunks import HEAD_BYTES, plan_stream, read_head, stream_plaintext
from storage.crypto.envelope import PieceReader
from storage.errors import AudioError, AudioMismatch, AudioTooLong

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000


def _wav(tag: int, bits: int, channels: int, body: bytes, *, extra: bytes = b"") -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, tag, channels, RATE, RATE * block, block, bits)
    data = struct.pack("<4sI", b"data", len(body)) + body + (b"\0" if len(body) % 2 else b"")
    riff = b"WAVE" + fmt + extra + data
    return struct.pack("<4sI", b"RIFF", len(riff)) + riff


def _noise(frames: int, width: int, channels: int) -> bytes:
    return os.urandom(frames * width * channels)


def _floats(frames: int) -> bytes:
    values = [((i * 37) % 200 - 100) / 101 for i in range(frames)]
    return struct.pack(f"<{frames}f", *values)


FRAMES = 300_000  # more than one CHUNK_FRAMES piece
INPUTS = {
    "pcm16-stereo": lambda: _wav(1, 16, 2, _noise(FRAMES, 2, 2)),
    "pcm8": lambda: _wav(1, 8, 1, _noise(FRAMES, 1, 1)),
    "pcm24-stereo": lambda: _wav(1, 24, 2, _noise(FRAMES, 3, 2)),
    "pcm32": lambda: _wav(1, 32, 1, _noise(FRAMES, 4, 1)),
    "float32": lambda: _wav(3, 32, 1, _floats(FRAMES)),
    "mulaw-stereo": lambda: _wav(7, 8, 2, _noise(FRAMES, 1, 2)),
    "alaw": lambda: _wav(6, 8, 1, _noise(FRAMES, 1, 1)),
    "odd-frames-mulaw": lambda: _wav(7, 8, 1, _noise(FRAMES + 1, 1, 1)),
    "trailing-chunk": lambda: _wav(1, 16, 1, _noise(FRAMES, 2, 1)) + b"LIST\x04\0\0\0abcd",
    "list-before-data": lambda: _wav(1, 16, 1, _noise(9, 2, 1), extra=b"LIST\x04\0\0\0abcd"),
}
# Cuts across the chunk boundary (262144 frames = 32.768 s), per channel and overall.
PAUSES = [(1000, 2500), (32_000, 33_500, [1]), (36_000, 36_001, None), (37_400, 99_999, [0])]


def _stream(data: bytes, fmt: str, layout: Layout, pauses: list) -> tuple[bytes, int]:
    source = io.BytesIO(data)
    head = read_head(source)
    plan = plan_stream(head, len(data), fmt, layout=layout, limit=DecodeLimit())
    assert plan is not None
    spans = [p if len(p) == 3 and plan.channels > 1 else p[:2] for p in pauses]
    cuts = SilencePlan.of(
        spans, sample_rate=plan.sample_rate, channels=plan.channels, frames=plan.frames
    )
    out = b"".join(stream_plaintext(plan, head, source, cuts))
    assert len(out) == plan.plaintext_size
    return out, cuts.silenced_ms


@pytest.mark.parametrize("name", INPUTS)
def test_streamed_wav_is_what_the_whole_file_path_writes(name: str) -> None:
    data = INPUTS[name]()
    whole = decode(data, "wav")
    spans = [p if len(p) == 3 and whole.channels > 1 else p[:2] for p in PAUSES]
    silenced, ms = silence(whole, spans)
    expected, _ = encode_wav(silenced)
    streamed, streamed_ms = _stream(data, "wav", Layout(), PAUSES)
    assert streamed == expected
    assert streamed_ms == ms


@pytest.mark.parametrize(
    ("fmt", "channels", "width"), [("sln", 2, 2), ("ulaw", 1, 1), ("alaw", 2, 1), ("sln16", 1, 2)]
)
def test_streamed_headerless_audio_uses_the_declared_layout(
    fmt: str, channels: int, width: int
) -> None:
    data = _noise(FRAMES, width, channels) + b"\x01"  # a partial frame at the end is dropped
    layout = Layout(None, channels)
    whole = decode(data, fmt, layout=layout)
    spans = [p if len(p) == 3 and channels > 1 else p[:2] for p in PAUSES]
    expected, _ = encode_wav(silence(whole, spans)[0])
    streamed, _ = _stream(data, fmt, layout, PAUSES)
    assert streamed == expected


def test_finish_runs_before_the_last_piece_and_reads_every_byte() -> None:
    data = INPUTS["trailing-chunk"]()
    source = io.BytesIO(data)
    head = read_head(source)
    plan = plan_stream(head, len(data), "wav", layout=Layout(), limit=DecodeLimit())
    assert plan is not None
    cuts = SilencePlan.of([], sample_rate=RATE, channels=1, frames=plan.frames)
    seen: list[int] = []

    def finish() -> None:
        seen.append(source.tell())
        raise ValueError("digest mismatch")

    pieces: Iterator[bytes] = stream_plaintext(plan, head, source, cuts, finish=finish)
    got = []
    with pytest.raises(ValueError, match="digest"):
        for piece in pieces:
            got.append(piece)
    assert seen == [len(data)]  # the whole file was read, trailing chunk included
    assert sum(map(len, got)) < plan.plaintext_size  # the last piece never came out


def test_bounds_and_mismatches_are_checked_before_reading() -> None:
    data = _wav(1, 16, 2, _noise(RATE * 20, 2, 2))  # 20 s of stereo
    head = data[:HEAD_BYTES]
    with pytest.raises(AudioTooLong):
        plan_stream(head, len(data), "wav", layout=Layout(),
                    limit=DecodeLimit(max_duration_ms=10_000))  # fmt: skip
    with pytest.raises(AudioMismatch):
        plan_stream(head, len(data), "wav", layout=Layout(channels=1), limit=DecodeLimit())
    with pytest.raises(AudioError, match="truncated"):
        plan_stream(head, len(data) - 1000, "wav", layout=Layout(), limit=DecodeLimit())
    with pytest.raises(AudioTooLong):  # a claimed hour of headerless audio at 192 kHz x 8
        plan_stream(b"", 1 << 30, "sln", layout=Layout(192000, 2),
                    limit=DecodeLimit(max_duration_ms=60_000))  # fmt: skip
    assert plan_stream(b"OggS", 100, "opus", layout=Layout(), limit=DecodeLimit()) is None


def test_a_file_shorter_than_its_header_says_fails_while_streaming() -> None:
    data = _wav(1, 16, 1, _noise(FRAMES, 2, 1))
    head = read_head(io.BytesIO(data))
    plan = plan_stream(head, len(data), "wav", layout=Layout(), limit=DecodeLimit())
    assert plan is not None
    cuts = SilencePlan.of([], sample_rate=RATE, channels=1, frames=plan.frames)
    short = io.BytesIO(data[len(head) : len(data) // 2])
    with pytest.raises(AudioError, match="ended after"):
        b"".join(stream_plaintext(plan, head, short, cuts))


def test_piece_reader_reads_across_pieces() -> None:
    reader = PieceReader(iter([b"ab", b"", b"cdef", b"g"]))
    assert [reader.read(3), reader.read(1), reader.read(10), reader.read(5)] == [
        b"abc", b"d", b"efg", b"",
    ]  # fmt: skip
    assert audioop.rms(b"\0\0", 2) == 0
    rest = PieceReader(iter([b"xy", bytearray(b"z"), memoryview(b"0123")]))
    assert [rest.read(1), rest.read(-1), rest.read(1)] == [b"x", b"yz0123", b""]
    assert all(type(piece) is bytes for piece in (PieceReader([b"ab"]).read(1),))


def test_silence_plan_touches_only_frames_it_cuts() -> None:
    """Chunks no pause falls in are stored as they came (no copy): ``touches`` is exact
    at both edges of a cut."""
    cuts = SilencePlan.of([(1000, 2000)], sample_rate=RATE, channels=1, frames=RATE * 3)
    first, last, _ = cuts.cuts[0]
    assert not cuts.touches(0, first) and cuts.touches(0, first + 1)
    assert cuts.touches(last - 1, 10) and not cuts.touches(last, 10)
    assert not SilencePlan.of([], sample_rate=RATE, channels=1, frames=RATE).touches(0, RATE)


@pytest.mark.parametrize(("tag", "bits"), [(1, 16), (7, 8)])
def test_streamed_legs_are_what_join_legs_writes(tag: int, bits: int) -> None:
    """Two mono legs of different lengths (crossing a chunk boundary), interleaved chunk
    by chunk, with a pause on one channel: the bytes encode_wav(silence(join_legs)) writes."""
    from storage.audio import join_legs
    from storage.audio_chunks import join_plans, stream_legs

    legs = [_wav(tag, bits, 1, _noise(FRAMES, bits // 8, 1)),
            _wav(tag, bits, 1, _noise(FRAMES - 12_345, bits // 8, 1))]  # fmt: skip
    spans = [(1000, 2500, [1]), (33_000, 35_000, None)]
    expected, _ = encode_wav(silence(join_legs([decode(leg, "wav") for leg in legs]), spans)[0])
    sources = [io.BytesIO(leg) for leg in legs]
    heads = [read_head(source) for source in sources]
    plans = []
    for head, leg in zip(heads, legs, strict=True):
        plan = plan_stream(head, len(leg), "wav", layout=Layout(), limit=DecodeLimit())
        assert plan is not None
        plans.append(plan)
    joined = join_plans(plans)
    cuts = SilencePlan.of(spans, sample_rate=RATE, channels=2, frames=joined.frames)
    streamed = b"".join(stream_legs(plans, heads, sources, cuts))
    assert streamed == expected and len(streamed) == joined.plaintext_size
    assert all(source.tell() == len(leg) for source, leg in zip(sources, legs, strict=True))
