"""storage.audio: decoding (WAV, G.711, ffmpeg formats), PCI silencing, stored WAV.

Reference files are made by sox/ffmpeg (the tools telephony systems use) and the
decoded samples are checked against audioop's reference G.711 conversion of the raw
codes that sox extracts, not against our own writer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import struct
import subprocess
import sys
import warnings
import wave
from pathlib import Path

import pytest

from storage.audio import (
    FFMPEG_FORMATS,
    SUPPORTED_FORMATS,
    DecodedAudio,
    DecodeLimit,
    PcmStream,
    decode,
    encode_wav,
    silence,
    wav_info,
)
from storage.errors import AudioError, UnsupportedAudioFormat

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _run(*args: str) -> bytes:
    return subprocess.run(args, check=True, capture_output=True).stdout


def _wav(
    data: bytes,
    *,
    tag: int = 1,
    channels: int = 1,
    rate: int = 8000,
    bits: int = 16,
    extensible: bool = False,
    declared_size: int | None = None,
) -> bytes:
    """An independent minimal WAV writer for hand-made headers."""
    block = channels * max(bits // 8, 1)
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    size = len(data) if declared_size is None else declared_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _ramp(frames: int, channels: int = 1) -> bytes:
    """Non-zero, varied 16-bit samples (so a zeroed sample is always a change)."""
    values = [((i * 37) % 20000) + 100 for i in range(frames * channels)]
    return struct.pack(f"<{len(values)}h", *values)


@pytest.fixture(scope="module")
def sox_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-bit 8 kHz source (tone sweep + noise), and sox's G.711 WAVs and raw codes of it."""
    if shutil.which("sox") is None:
        pytest.skip("sox not installed")
    d = tmp_path_factory.mktemp("sox")
    src = str(d / "src.wav")
    effects = ("synth", "1.5", "sine", "200-3000", "synth", "1.5", "pinknoise", "mix", "vol", "0.8")
    _run("sox", "-R", "-n", "-r", "8000", "-c", "1", "-b", "16", src, *effects)
    for enc, name in (("u-law", "mu"), ("a-law", "a")):
        _run("sox", "-R", "-D", str(d / "src.wav"), "-e", enc, str(d / f"{name}.wav"))
        _run("sox", str(d / f"{name}.wav"), "-t", "raw", str(d / f"{name}.raw"))
    return d


# -- G.711 ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "codec", "reference"), [
    ("mu", "mulaw", audioop.ulaw2lin),
    ("a", "alaw", audioop.alaw2lin),
])  # fmt: skip
def test_sox_g711_wav_decodes_to_reference_16_bit(sox_dir, name, codec, reference) -> None:
    wav_bytes = (sox_dir / f"{name}.wav").read_bytes()
    raw = (sox_dir / f"{name}.raw").read_bytes()
    assert wav_bytes[20:22] == struct.pack("<H", 7 if codec == "mulaw" else 6)

    audio = decode(wav_bytes, "wav")

    assert audio.source_codec == codec
    assert (audio.sample_rate, audio.channels) == (8000, 1)
    assert audio.pcm == reference(raw, 2)
    assert len(audio.pcm) == 2 * len(raw)
    assert audio.duration_ms == 1500
    segment = audio.to_segment()
    assert segment.sample_width == 2  # not pydub's 8-bit path
    assert segment.raw_data == audio.pcm
    assert segment.frame_rate == 8000


@pytest.mark.parametrize(("fmt", "reference"), [
    ("ulaw", audioop.ulaw2lin),
    ("mulaw", audioop.ulaw2lin),
    (".ULAW", audioop.ulaw2lin),
    ("alaw", audioop.alaw2lin),
])  # fmt: skip
def test_headerless_g711_is_8khz_mono(fmt, reference) -> None:
    raw = random.Random(7).randbytes(8001)
    audio = decode(raw, fmt)
    assert audio.pcm == reference(raw, 2)
    assert (audio.sample_rate, audio.channels, audio.duration_ms) == (8000, 1, 1000)


def test_headerless_signed_linear() -> None:
    pcm = _ramp(1600)
    assert decode(pcm, "sln").pcm == pcm
    assert decode(pcm, "sln16").sample_rate == 16000


# -- PCM WAV ----------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_pcm16_wav_round_trips_exactly(tmp_path: Path, channels: int) -> None:
    pcm = _ramp(800, channels)
    with wave.open(str(tmp_path / "x.wav"), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    audio = decode((tmp_path / "x.wav").read_bytes(), "wav")
    assert audio == DecodedAudio(pcm, 16000, channels, "pcm_s16le")
    assert audio.duration_ms == 50


def test_pcm8_wav_is_unsigned_and_widened() -> None:
    audio = decode(_wav(bytes([0, 128, 255, 129]), bits=8), "wav")
    assert audio.source_codec == "pcm_u8"
    assert struct.unpack("<4h", audio.pcm) == (-32768, 0, 32512, 256)


@pytest.mark.parametrize("extensible", [False, True])
def test_pcm24_and_pcm32_wav_keep_the_top_16_bits(extensible: bool) -> None:
    samples = [0x123456, -0x400000, 0x7FFFFF, -1]
    data24 = b"".join(s.to_bytes(3, "little", signed=True) for s in samples)
    data32 = struct.pack("<4i", *(s << 8 for s in samples))
    expected = (0x1234, -0x4000, 0x7FFF, -1)
    a24 = decode(_wav(data24, bits=24, extensible=extensible), "wav")
    a32 = decode(_wav(data32, bits=32, extensible=extensible), "wav")
    assert (a24.source_codec, a32.source_codec) == ("pcm_s24le", "pcm_s32le")
    assert struct.unpack("<4h", a24.pcm) == expected
    assert struct.unpack("<4h", a32.pcm) == expected


@needs_sox
def test_sox_24_bit_wav_decodes_to_its_16_bit_source(sox_dir: Path) -> None:
    src = decode((sox_dir / "src.wav").read_bytes(), "wav")
    _run("sox", str(sox_dir / "src.wav"), "-b", "24", str(sox_dir / "s24.wav"))
    assert decode((sox_dir / "s24.wav").read_bytes(), "wav").pcm == src.pcm


def test_float_wav_is_scaled_and_clipped() -> None:
    data = struct.pack("<6f", 0.0, 0.5, -0.5, 1.5, -1.0, float("nan"))
    audio = decode(_wav(data, tag=3, bits=32), "wav")
    assert audio.source_codec == "pcm_f32le"
    assert struct.unpack("<6h", audio.pcm) == (0, 16384, -16384, 32767, -32768, 0)
    data64 = struct.pack("<2d", 0.25, 0.999999)
    assert struct.unpack("<2h", decode(_wav(data64, tag=3, bits=64), "wav").pcm) == (8192, 32767)


def test_extensible_g711_and_odd_chunks_are_read() -> None:
    codes = bytes(range(256)) * 4
    plain = _wav(codes, tag=7, bits=8, extensible=True)
    # An odd-sized LIST chunk (with its pad byte) before fmt must be skipped correctly.
    listed = plain[:12] + b"LIST" + struct.pack("<I", 3) + b"abc\x00" + plain[12:]
    for blob in (plain, listed):
        assert decode(blob, "wav").pcm == audioop.ulaw2lin(codes, 2)


def test_streamed_wav_with_unknown_data_size_reads_to_the_end() -> None:
    pcm = _ramp(400)
    assert decode(_wav(pcm, declared_size=0xFFFFFFFF), "wav").pcm == pcm


def test_trailing_partial_frame_is_dropped() -> None:
    pcm = _ramp(400, 2)
    assert decode(_wav(pcm + b"\x01\x02", channels=2), "wav").pcm == pcm


# -- ffmpeg formats ---------------------------------------------------------------


@needs_ffmpeg
@needs_sox
def test_flac_decodes_losslessly_through_ffmpeg(sox_dir: Path) -> None:
    _run("sox", str(sox_dir / "src.wav"), str(sox_dir / "src.flac"))
    src = decode((sox_dir / "src.wav").read_bytes(), "wav")
    audio = decode((sox_dir / "src.flac").read_bytes(), "flac")
    assert audio.source_codec == "flac"
    assert audio.pcm == src.pcm
    assert (audio.sample_rate, audio.channels) == (8000, 1)


@needs_ffmpeg
@needs_sox
def test_mp3_decodes_to_16_bit_pcm(sox_dir: Path) -> None:
    mp3 = _run("ffmpeg", "-nostdin", "-i", str(sox_dir / "src.wav"), "-f", "mp3", "-")
    audio = decode(mp3, "mp3")
    assert audio.source_codec == "mp3"
    assert (audio.sample_rate, audio.channels) == (8000, 1)
    assert 1450 <= audio.duration_ms <= 1700  # mp3 adds encoder delay/padding
    assert audio.to_segment().sample_width == 2
    assert max(abs(v) for v in struct.unpack(f"<{len(audio.pcm) // 2}h", audio.pcm)) > 1000


@needs_ffmpeg
@needs_sox
def test_adpcm_wav_goes_through_ffmpeg_or_names_the_tag(sox_dir: Path) -> None:
    _run("sox", str(sox_dir / "src.wav"), "-e", "ima-adpcm", str(sox_dir / "ima.wav"))
    blob = (sox_dir / "ima.wav").read_bytes()
    audio = decode(blob, "wav")
    assert (audio.sample_rate, audio.source_codec) == (8000, "adpcm_ima_wav")
    assert abs(audio.duration_ms - 1500) < 100
    with pytest.raises(UnsupportedAudioFormat, match=r"0x0011.*install ffmpeg"):
        decode(blob, "wav", which=lambda _: None)
    with pytest.raises(UnsupportedAudioFormat, match="0x0011"):
        wav_info(blob)


@needs_ffmpeg
@needs_sox
@pytest.mark.parametrize(("fmt", "args", "codec", "rate"), [
    ("ogg", ("-c:a", "libvorbis", "-f", "ogg"), "vorbis", 8000),
    ("opus", ("-c:a", "libopus", "-f", "ogg"), "opus", 48000),
    ("webm", ("-c:a", "libopus", "-f", "webm"), "opus", 48000),
    ("m4a", ("-c:a", "aac", "-f", "ipod"), "aac", 8000),  # index at the end: needs seeking
    ("gsm", ("-c:a", "libgsm", "-f", "gsm"), "gsm", 8000),
])  # fmt: skip
def test_compressed_formats_decode_through_ffmpeg(sox_dir, fmt, args, codec, rate) -> None:
    src, out = str(sox_dir / "src.wav"), sox_dir / f"out.{fmt}"
    try:  # to a file: the mp4 muxer cannot write to a pipe
        _run("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", src, *args, str(out))
    except subprocess.CalledProcessError:
        pytest.skip(f"this ffmpeg cannot encode {fmt}")
    audio = decode(out.read_bytes(), fmt)
    assert (audio.source_codec, audio.sample_rate, audio.channels) == (codec, rate, 1)
    assert 1450 <= audio.duration_ms <= 1600
    assert audioop.rms(audio.pcm, 2) > 1000


# A decoder whose last log line reaches stderr after it exited (a child still holds the
# pipe): the stream and the process have ended before the stderr drainer read the
# codec line, the order ffmpeg's final lines can arrive in on a loaded machine.
_LATE_LOG = r"""
import os, struct, sys, time
pcm = b"\x00\x10" * 800
sys.stdout.buffer.write(b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt "
    + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    + b"data" + struct.pack("<I", len(pcm)) + pcm)
sys.stdout.flush()
os.close(1)
if os.fork() == 0:
    time.sleep(0.3)
    os.write(2, b"  Stream #0:0: Audio: aac (LC), 8000 Hz, mono, fltp\n")
    os._exit(0)
"""


def test_the_codec_is_read_from_the_whole_log_once_the_stream_ended() -> None:
    with PcmStream([sys.executable, "-c", _LATE_LOG], DecodeLimit(), what="m4a") as run:
        pcm = b"".join(run)
        assert (run.codec, run.sample_rate, run.channels, len(pcm)) == ("aac", 8000, 1, 1600)


@pytest.mark.parametrize("fmt", sorted(FFMPEG_FORMATS))
def test_ffmpeg_formats_without_ffmpeg_say_what_to_install(fmt: str) -> None:
    with pytest.raises(UnsupportedAudioFormat) as info:
        decode(b"\x00" * 100, fmt, which=lambda _: None)
    assert "install ffmpeg (apt-get install ffmpeg); without it only WAV/G.711 is supported" in str(
        info.value
    )


def test_wav_and_g711_need_no_ffmpeg() -> None:
    def no_ffmpeg(_: str) -> None:
        raise AssertionError("ffmpeg looked up for a WAV")

    assert decode(_wav(_ramp(8)), "wav", which=no_ffmpeg).pcm == _ramp(8)
    assert decode(b"\xff" * 8, "ulaw", which=no_ffmpeg).pcm == bytes(16)


@needs_ffmpeg
def test_garbage_through_ffmpeg_is_an_audio_error() -> None:
    with pytest.raises(AudioError, match="ffmpeg could not decode the mp3") as info:
        decode(b"this is not an mp3 at all" * 10, "mp3")
    assert type(info.value) is AudioError


def test_supported_formats_are_listed() -> None:
    assert {"wav", "ulaw", "mulaw", "alaw", "mp3", "ogg", "opus", "flac", "gsm", "m4a", "webm"} <= (
        SUPPORTED_FORMATS
    )


# -- bad input ----------------------------------------------------------------------

_GOOD = _wav(_ramp(80))


@pytest.mark.parametrize(("blob", "fmt", "error", "message"), [
    (b"", "wav", AudioError, "no audio data"),
    (b"", "ulaw", AudioError, "no audio data"),
    (b"hello world, not audio", "wav", AudioError, "not a WAV"),
    (_GOOD[:20], "wav", AudioError, "fmt chunk is truncated"),
    (_GOOD[:36], "wav", AudioError, "no data chunk"),
    (_GOOD[:-10], "wav", AudioError, r"truncated: 160 bytes declared, 150 present"),
    (_wav(b""), "wav", AudioError, "no samples"),
    (_wav(b"\x00\x00" * 4, channels=0), "wav", AudioError, "0 channels"),
    (_wav(b"\x00\x00" * 9, channels=9), "wav", AudioError, "9 channels; at most 8"),
    (_wav(b"\x00\x00", rate=3999), "wav", AudioError, "3999 Hz is outside"),
    (_wav(b"\x00\x00", rate=192001), "wav", AudioError, "192001 Hz is outside"),
    (_wav(b"\x00\x00", tag=0x1234), "wav", UnsupportedAudioFormat, "format tag 0x1234"),
    (_wav(b"\x00\x00", tag=7, bits=16), "wav", UnsupportedAudioFormat, "0x0007 with 16 bits"),
    (_wav(b"\x00\x00" * 3, bits=12), "wav", UnsupportedAudioFormat, "0x0001 with 12 bits"),
    (b"RIFX" + _GOOD[4:], "wav", UnsupportedAudioFormat, "RIFX"),
    (_GOOD[:12] + _GOOD[36:] + _GOOD[12:36], "wav", AudioError, "data chunk comes before"),
    (_GOOD, "aiff", UnsupportedAudioFormat, "unsupported audio format 'aiff'"),
    (_GOOD, "", UnsupportedAudioFormat, "unsupported audio format"),
])  # fmt: skip
def test_bad_input_gets_a_clear_error(blob, fmt, error, message) -> None:
    with pytest.raises(error, match=message):
        decode(blob, fmt)


def test_block_align_mismatch_is_rejected() -> None:
    blob = bytearray(_wav(_ramp(8)))
    blob[32:34] = struct.pack("<H", 3)
    with pytest.raises(AudioError, match="block align 3"):
        decode(bytes(blob), "wav")


def test_no_raw_exception_escapes_on_truncation_or_corruption() -> None:
    blob, _ = encode_wav(decode(random.Random(3).randbytes(400), "ulaw"))
    for cut in range(len(blob)):
        with contextlib.suppress(AudioError):
            decode(blob[:cut], "wav")
    rng = random.Random(11)
    for _ in range(2000):
        corrupt = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(60)] = rng.randrange(256)
        with contextlib.suppress(AudioError):
            decode(bytes(corrupt), "wav")


def test_decoded_audio_checks_its_layout() -> None:
    with pytest.raises(AudioError, match="whole number"):
        DecodedAudio(b"\x00\x00\x00", 8000, 1, "pcm_s16le")
    with pytest.raises(AudioError, match="whole number"):
        DecodedAudio(b"\x00\x00", 8000, 2, "pcm_s16le")
    with pytest.raises(AudioError, match="outside"):
        DecodedAudio(b"", 1000, 1, "pcm_s16le")


# -- silence --------------------------------------------------------------------------


def _samples(audio: DecodedAudio) -> tuple[int, ...]:
    return struct.unpack(f"<{len(audio.pcm) // 2}h", audio.pcm)


@pytest.mark.clause("collection.no-harmful")
def test_silence_is_sample_accurate_at_8khz() -> None:
    audio = DecodedAudio(_ramp(8000), 8000, 1, "pcm_s16le")
    out, ms = silence(audio, [(100, 200)])
    before, after = _samples(audio), _samples(out)
    assert ms == 100
    assert after[800:1600] == (0,) * 800
    assert 0 not in before[800:1600]
    assert out.pcm[:1600] == audio.pcm[:1600]  # sample 799 and earlier untouched
    assert out.pcm[3200:] == audio.pcm[3200:]  # sample 1600 onwards untouched
    assert (out.sample_rate, out.channels, out.source_codec) == (8000, 1, "pcm_s16le")


def test_silence_merges_overlaps_in_any_order() -> None:
    audio = DecodedAudio(_ramp(8000), 8000, 1, "pcm_s16le")
    out, ms = silence(audio, [(300, 500), (100, 350), (450, 460), (600, 700), (700, 710)])
    assert ms == 400 + 110
    s = _samples(out)
    assert s[800:4000] == (0,) * 3200 and s[4800:5680] == (0,) * 880
    assert out.pcm[:1600] == audio.pcm[:1600]
    assert out.pcm[8000:9600] == audio.pcm[8000:9600]
    assert out.pcm[11360:] == audio.pcm[11360:]


def test_silence_clamps_to_the_audio() -> None:
    audio = DecodedAudio(_ramp(8000, 2), 8000, 2, "pcm_s16le")
    out, ms = silence(audio, [(900, 5000), (7000, 8000)])
    assert ms == 100
    assert out.pcm[: 7200 * 4] == audio.pcm[: 7200 * 4]
    assert out.pcm[7200 * 4 :] == bytes(800 * 4)  # both channels
    assert silence(audio, [(1000, 1200)]) == (audio, 0)
    assert silence(audio, []) == (audio, 0)


def test_silence_covers_partial_samples_at_other_rates() -> None:
    audio = DecodedAudio(_ramp(44100), 44100, 1, "pcm_s16le")
    out, ms = silence(audio, [(1, 2)])
    s = _samples(out)
    assert ms == 1
    assert s[44:89] == (0,) * 45  # 44.1 .. 88.2 rounded outwards
    assert 0 not in s[:44] and 0 not in s[89:100]


@pytest.mark.parametrize(
    "interval", [(5, 5), (10, 5), (-1, 10), (1.5, 3), ("0", 2), (True, 3), (1, 2, 3), 7]
)
def test_silence_rejects_bad_intervals(interval) -> None:
    audio = DecodedAudio(_ramp(800), 8000, 1, "pcm_s16le")
    with pytest.raises(AudioError, match="silence interval"):
        silence(audio, [(0, 10), interval])


@needs_sox
@pytest.mark.parametrize(
    ("name", "silence_byte", "silence_value"), [("mu", 0xFF, 0), ("a", 0xD5, 8)]
)
@pytest.mark.clause("collection.no-harmful")
def test_silenced_g711_is_stored_as_the_codec_silence(
    sox_dir, name, silence_byte, silence_value
) -> None:
    audio = decode((sox_dir / f"{name}.wav").read_bytes(), "wav")
    out, ms = silence(audio, [(500, 750)])
    assert ms == 250
    stored, label = encode_wav(out)
    info = wav_info(stored)
    codes = stored[info.data_offset : info.data_offset + info.data_size]
    raw = (sox_dir / f"{name}.raw").read_bytes()
    assert codes[4000:6000] == bytes([silence_byte]) * 2000
    assert codes[:4000] == raw[:4000] and codes[6000:] == raw[6000:]  # source codes kept
    again = decode(stored, "wav")
    assert set(_samples(again)[4000:6000]) == {silence_value}  # A-law has no zero code
    assert again.pcm[:8000] == audio.pcm[:8000] and again.pcm[12000:] == audio.pcm[12000:]


# -- encode_wav / wav_info ------------------------------------------------------------


@needs_sox
@pytest.mark.parametrize(("name", "label", "tag"), [("mu", "wav/mulaw", 7), ("a", "wav/alaw", 6)])
def test_g711_stays_g711_and_round_trips(sox_dir, name, label, tag) -> None:
    audio = decode((sox_dir / f"{name}.wav").read_bytes(), "wav")
    stored, got_label = encode_wav(audio)
    assert got_label == label
    assert struct.unpack_from("<HH", stored, 20) == (tag, 1)
    assert decode(stored, "wav") == audio
    info = wav_info(stored)
    assert (info.codec, info.bits, info.sample_rate, info.channels) == (
        audio.source_codec,
        8,
        8000,
        1,
    )
    assert info.data_size == len(audio.pcm) // 2
    assert info.duration_ms == 1500
    # sox (an independent reader) agrees with the header we wrote.
    (sox_dir / "ours.wav").write_bytes(stored)
    assert _run("soxi", "-e", str(sox_dir / "ours.wav")).strip() == (
        b"u-law" if tag == 7 else b"A-law"
    )
    assert (
        _run("sox", str(sox_dir / "ours.wav"), "-t", "raw", "-")
        == (sox_dir / f"{name}.raw").read_bytes()
    )


def test_pcm_sources_become_pcm16_and_round_trip() -> None:
    for channels in (1, 2):
        audio = decode(_wav(_ramp(801, channels), channels=channels, rate=11025), "wav")
        stored, label = encode_wav(audio)
        assert label == "wav/pcm_s16le"
        assert decode(stored, "wav") == audio
        info = wav_info(stored)
        assert (info.codec, info.bits, info.channels, info.sample_rate) == (
            "pcm_s16le",
            16,
            channels,
            11025,
        )
        assert stored[info.data_offset : info.data_offset + info.data_size] == audio.pcm


def test_explicit_codec_and_odd_g711_length() -> None:
    audio = DecodedAudio(_ramp(801), 8000, 1, "pcm_s24le")
    stored, label = encode_wav(audio, "mulaw")
    assert label == "wav/mulaw"
    assert len(stored) % 2 == 0  # RIFF pad byte after an odd data chunk
    assert struct.unpack_from("<I", stored, 4)[0] == len(stored) - 8
    assert decode(stored, "wav").pcm == audioop.ulaw2lin(audioop.lin2ulaw(audio.pcm, 2), 2)
    assert wav_info(stored).data_size == 801
    g711 = decode(random.Random(5).randbytes(1000), "alaw")
    assert decode(encode_wav(g711, "pcm_s16le")[0], "wav").pcm == g711.pcm
    with pytest.raises(UnsupportedAudioFormat, match="cannot encode WAV as 'mp3'"):
        encode_wav(audio, "mp3")


def test_replaced_pcm_is_re_encoded_not_the_stale_codes() -> None:
    g711 = decode(random.Random(9).randbytes(800), "ulaw")
    changed = dataclasses.replace(g711, pcm=bytes(1600))
    stored, _ = encode_wav(changed)
    assert decode(stored, "wav").pcm == bytes(1600)


def test_wav_info_rejects_non_wav() -> None:
    with pytest.raises(AudioError, match="not a WAV"):
        wav_info(b"ID3\x03\x00 not a wav")
