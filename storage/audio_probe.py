"""A quick look at pushed audio before it is accepted: is it what it claims to be, and
does it decode?

``POST /v1/recordings`` answers at once, so telephony learns about an undecodable or
mislabelled file while it still has it, instead of the recording being dead-lettered
later. :func:`probe` checks, in this order:

1. the container's signature (magic bytes) against the declared format: an MP3 sent as
   ``wav``, a WAV sent as headerless ``ulaw`` -> :class:`~storage.errors.AudioMislabelled`;
2. the container and codec header, and that the first :data:`PROBE_SECONDS` decode
   (:func:`storage.audio.decode` bounded to that duration: ffmpeg is stopped as soon as
   it produced them) -> :class:`~storage.errors.AudioError` /
   :class:`~storage.errors.UnsupportedAudioFormat`.

Headerless formats (``ulaw``, ``alaw``, ``sln``...) have no signature to check; they
are only refused when they carry another container's.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from storage.audio import SUPPORTED_FORMATS, DecodeLimit, Layout, decode
from storage.errors import AudioMislabelled, AudioTooLong, UnsupportedAudioFormat

__all__ = ["PROBE_SECONDS", "ProbeResult", "probe", "sniff"]

PROBE_SECONDS = 2.0

#: Declared format -> the container its bytes must be (None: headerless, no signature).
_CONTAINER = {
    "wav": "wav",
    "mp3": "mp3",
    "ogg": "ogg",
    "opus": "ogg",
    "flac": "flac",
    "m4a": "mp4",
    "webm": "matroska",
    "gsm": None,
    "ulaw": None,
    "mulaw": None,
    "alaw": None,
    "sln": None,
    "sln16": None,
}


@dataclass(frozen=True)
class ProbeResult:
    """What was found: the container signature (None for headerless audio) and the
    declared format it matched."""

    container: str | None
    format: str


def sniff(data: bytes, *, weak: bool = True) -> str | None:
    """The container ``data`` starts with (``wav``, ``mp3``, ``ogg``, ``flac``,
    ``mp4``, ``matroska``), or None when it has no known signature. ``weak=False``
    ignores MP3's bare frame sync (``0xFFE``), which headerless audio can start with
    (mu-law silence is ``0xFF``)."""
    head = bytes(data[:16])
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:3] == b"ID3":
        return "mp3"
    if weak and len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mp3"
    return None


def probe(
    data: bytes,
    fmt: str,
    *,
    seconds: float = PROBE_SECONDS,
    which: Callable[[str], str | None] = shutil.which,
    layout: Layout | None = None,
) -> ProbeResult:
    """Check that ``data`` is the declared ``fmt`` and that its first ``seconds`` decode
    (headerless audio at the declared ``layout``; a container must agree with it).

    Raises:
        AudioMismatch: the container contradicts the declared ``layout``.
        UnsupportedAudioFormat: an unknown format, or a codec callvault cannot decode.
        AudioMislabelled: the bytes are another container than ``fmt`` says.
        AudioError: the header is inconsistent or the audio does not decode.
    """
    name = fmt.strip().lower().lstrip(".") if isinstance(fmt, str) else ""
    if name not in SUPPORTED_FORMATS:
        raise UnsupportedAudioFormat(f"unsupported audio format {fmt!r}")
    expected = _CONTAINER.get(name)
    found = sniff(data, weak=expected is not None)
    if found is not None and found != expected:
        raise AudioMislabelled(f"the audio is {found}, but was declared {name}")
    if expected == "mp3" and found is None:
        raise AudioMislabelled(f"the audio has no MP3 signature, but was declared {name}")
    limit = DecodeLimit(max_duration_ms=int(seconds * 1000))
    # AudioTooLong: more than the probed seconds decoded, so the start of the file is
    # fine (the header is all a WAV needs; ffmpeg was stopped once it got that far).
    with contextlib.suppress(AudioTooLong):
        decode(data, name, which=which, limit=limit, layout=layout)
    return ProbeResult(found, name)
