"""``GET /v1/recordings/{id}/waveform?grant=...&points=N``: the review player's waveform.

Per channel, ``points`` pairs of (min, max) sample values in per mille of full scale
(-1000..1000), over equal slices of the call, computed from the stored (decrypted)
audio while the caller holds a playback grant for the recording: the waveform is part
of that listening session (the grant was decided and audited once; each waveform
request is re-checked against the recording's state, like its Range requests, and is
not audited again). The stored WAV is read window by window (1 MiB), never whole,
so a two-hour call costs constant memory.

Formats: WAV with 8/16/24/32-bit PCM, mu-law or A-law, read window by window; the
compressed formats stored as sent (MP3, Opus in Ogg/WebM, FLAC, AAC in M4A, GSM) are
decrypted window by window into ffmpeg's stdin and decoded as a bounded stream (nothing
decrypted touches the disk), the slices sized from the catalog's duration. What ffmpeg
cannot decode answers 415 ``waveform-unsupported`` (the page then shows the lanes
without a waveform).
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from storage.audio import DecodeLimit, PcmStream, ffmpeg_decoder
from storage.crypto.keys import KeyService
from storage.errors import AudioError, UnsupportedAudioFormat
from storage.types import RecordingRow
from storage.vault import Vault
from streams.errors import AudioFailure, BadRequest
from streams.http.audio import checked_grant
from streams.http.audio_stream import AudioReader
from streams.http.context import ctx_of, run
from streams.http.params import query_int, recording_id_of

with warnings.catch_warnings():
    # Deprecated on 3.11/3.12 (PEP 594); provided by ``audioop-lts`` on 3.13+.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["ROUTES", "WavLayout", "wav_layout", "compute_peaks"]

_HEAD = 4096
_WINDOW = 1 << 20
_TAGS = {0x0001: "pcm", 0x0006: "alaw", 0x0007: "mulaw"}


def _unsupported(detail: str) -> AudioFailure:
    return AudioFailure(415, "unsupported-media-type", "waveform-unsupported", detail)


@dataclass(frozen=True)
class WavLayout:
    codec: str  # pcm, mulaw, alaw
    width: int  # bytes per sample as stored
    sample_rate: int
    channels: int
    data_offset: int
    data_size: int  # whole frames

    @property
    def frame_bytes(self) -> int:
        return self.width * self.channels

    @property
    def frames(self) -> int:
        return self.data_size // self.frame_bytes


def wav_layout(head: bytes, total: int) -> WavLayout:
    """The sample layout of a WAV from its first bytes and its total size.

    Raises:
        AudioFailure: 415 ``waveform-unsupported`` for anything but PCM / G.711 WAV.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise _unsupported("the stored audio is not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt " and body + 16 <= len(head):
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, body)
            if tag == 0xFFFE and body + 26 <= len(head):
                (tag,) = struct.unpack_from("<H", head, body + 24)
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                break
            tag, channels, rate, bits = fmt
            codec = _TAGS.get(tag)
            if codec is None or bits not in (8, 16, 24, 32) or (codec != "pcm" and bits != 8):
                raise _unsupported(f"no waveform for WAV format tag 0x{tag:04X}, {bits} bits")
            if not 1 <= channels <= 8 or rate <= 0:
                raise _unsupported("the WAV header is not usable")
            width = bits // 8
            available = max(0, total - body)
            size = available if size == 0xFFFFFFFF else min(size, available)
            return WavLayout(codec, width, rate, channels, body, size - size % (width * channels))
        pos = body + size + (size & 1)
    raise _unsupported("no WAV data chunk in the first 4 KiB")


def _linear16(data: bytes, layout: WavLayout) -> bytes:
    if layout.codec == "mulaw":
        return audioop.ulaw2lin(data, 2)
    if layout.codec == "alaw":
        return audioop.alaw2lin(data, 2)
    if layout.width == 1:  # 8-bit WAV PCM is unsigned
        return audioop.lin2lin(audioop.bias(data, 1, -128), 1, 2)
    return data if layout.width == 2 else audioop.lin2lin(data, layout.width, 2)


def compute_peaks(
    read: Callable[[int, int], bytes], layout: WavLayout, points: int
) -> list[dict[str, list[int]]]:
    """Per channel ``{"min": [...], "max": [...]}`` of ``points`` slices (fewer for a
    call shorter than ``points`` frames), in per mille of full scale.

    ``read(start, end)`` returns the plaintext bytes ``[start, end]`` (inclusive)."""
    frames = layout.frames
    points = max(1, min(points, frames)) if frames else 0
    lows = [[0] * points for _ in range(layout.channels)]
    highs = [[0] * points for _ in range(layout.channels)]
    if not points:
        return [{"min": [], "max": []} for _ in range(layout.channels)]
    frame_bytes = layout.frame_bytes
    per_window = max(1, _WINDOW // frame_bytes)
    frame = 0
    while frame < frames:
        count = min(per_window, frames - frame)
        start = layout.data_offset + frame * frame_bytes
        pcm = _linear16(read(start, start + count * frame_bytes - 1), layout)
        lanes = [pcm] if layout.channels == 1 else _split(pcm, layout.channels)
        first = frame * points // frames
        last = min(points - 1, (frame + count - 1) * points // frames)
        for bucket in range(first, last + 1):
            lo = max(frame, -(-bucket * frames // points)) - frame
            hi = min(frame + count, -(-(bucket + 1) * frames // points)) - frame
            if hi <= lo:
                continue
            for channel, lane in enumerate(lanes):
                small, big = audioop.minmax(lane[lo * 2 : hi * 2], 2)
                lows[channel][bucket] = min(lows[channel][bucket], small)
                highs[channel][bucket] = max(highs[channel][bucket], big)
        frame += count
    scale = 1000 / 32768
    return [
        {"min": [round(v * scale) for v in lows[c]], "max": [round(v * scale) for v in highs[c]]}
        for c in range(layout.channels)
    ]


def _split(pcm: bytes, channels: int) -> list[bytes]:
    """De-interleave 16-bit frames into one buffer per channel."""
    view = memoryview(pcm).cast("h")
    return [view[c::channels].tobytes() for c in range(channels)]


def _decoded_peaks(
    reader: AudioReader, total: int, row: RecordingRow, points: int
) -> tuple[list[dict[str, list[int]]], int, int, int]:
    """Peaks of a compressed recording, decoded by ffmpeg from the decrypted stream:
    ``(peaks, channels, sample_rate, frames)``.

    Raises:
        AudioFailure: 415 ``waveform-unsupported`` when ffmpeg cannot decode it.
    """
    fmt = {"m4a/aac": "m4a", "ogg/opus": "opus", "webm/opus": "webm"}.get(
        row.audio_format, row.audio_format.split("/", 1)[0]
    )

    def plaintext() -> Iterator[bytes]:
        for start in range(0, total, _WINDOW):
            yield reader.read(start, min(total, start + _WINDOW) - 1)

    limit = DecodeLimit.for_call(row.duration_ms)
    try:
        command = ffmpeg_decoder("pipe:0", fmt)
        with PcmStream(command, limit, what=fmt, feed=plaintext()) as decoded:
            lows: list[list[int]] = []
            highs: list[list[int]] = []
            frame, expected = 0, 0
            for pcm in decoded:
                channels = decoded.channels
                if not lows:
                    expected = max(1, row.duration_ms * decoded.sample_rate // 1000)
                    points = max(1, min(points, expected))
                    lows = [[0] * points for _ in range(channels)]
                    highs = [[0] * points for _ in range(channels)]
                lanes = [pcm] if channels == 1 else _split(pcm, channels)
                count = len(pcm) // (2 * channels)
                for lo in range(0, count, max(1, expected // points)):
                    bucket = min(points - 1, (frame + lo) * points // expected)
                    hi = min(count, lo + max(1, expected // points))
                    for channel, lane in enumerate(lanes):
                        small, big = audioop.minmax(lane[lo * 2 : hi * 2], 2)
                        lows[channel][bucket] = min(lows[channel][bucket], small)
                        highs[channel][bucket] = max(highs[channel][bucket], big)
                frame += count
            if decoded.feed_error is not None:
                raise decoded.feed_error
    except (AudioError, UnsupportedAudioFormat) as exc:
        raise _unsupported(f"the stored {row.audio_format} could not be decoded ({exc})") from exc
    scale = 1000 / 32768
    peaks = [
        {"min": [round(v * scale) for v in low], "max": [round(v * scale) for v in high]}
        for low, high in zip(lows, highs, strict=True)
    ]
    return peaks, len(lows), decoded.sample_rate, frame


def _waveform(vault: Vault, keys: KeyService, row: RecordingRow, points: int) -> dict[str, Any]:
    reader = AudioReader(vault, keys, row)
    header = reader.open()
    total = header.plaintext_size
    if not row.audio_format.startswith("wav/") or row.audio_format == "wav/gsm_ms":
        peaks, channels, rate, frames = _decoded_peaks(reader, total, row, points)
        return {
            "recording_id": row.recording_id,
            "channels": channels,
            "sample_rate": rate,
            "duration_ms": frames * 1000 // rate if rate else 0,
            "points": len(peaks[0]["min"]) if peaks else 0,
            "peaks": peaks,
        }
    head = reader.read(0, min(_HEAD, total) - 1) if total else b""
    layout = wav_layout(head, total)
    peaks = compute_peaks(reader.read, layout, points)
    return {
        "recording_id": row.recording_id,
        "channels": layout.channels,
        "sample_rate": layout.sample_rate,
        "duration_ms": layout.frames * 1000 // layout.sample_rate,
        "points": len(peaks[0]["min"]) if peaks else 0,
        "peaks": peaks,
    }


async def waveform(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    rid = recording_id_of(request)
    grant_text = request.query.get("grant")
    if not grant_text:
        raise BadRequest("the waveform is part of a playback session: pass its grant")
    points = query_int(request.query, "points", 800, 16, 4000)
    _, row = await checked_grant(request, rid, grant_text)
    body = await run(_waveform, ctx.services.vault, ctx.services.keys, row, points)
    return web.json_response(
        body, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


ROUTES = [web.get("/v1/recordings/{recording_id}/waveform", waveform)]
