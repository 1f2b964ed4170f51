"""The review player's waveform: per-channel peaks computed window by window from the
stored audio under a playback grant (checked against a direct computation), the
silenced PCI interval flat, and the session's rules (grant required, re-checked)."""

from __future__ import annotations

import io
import math
import struct
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.catalog.audit import AuditDraft
from streams.errors import AudioFailure
from streams.http import waveform as waveform_module
from streams.http.waveform import compute_peaks, wav_layout
from tests.streams.qa_support import QaEnv, make_env

QA = {"purpose": "quality-improvement", "justification": "EVAL-5"}
CALLS = {
    "rec-wave": {"seconds": 20.0, "pci_pauses": [{"start_ms": 5000, "end_ms": 9500}]},
    "rec-plain": {"seconds": 12.0},
}


def _stereo_wav(seconds: float, rate: int = 8000) -> bytes:
    """Left: a 440 Hz tone rising in level; right: silent from 5.0 s to 9.5 s."""
    frames = int(seconds * rate)
    samples = []
    for n in range(frames):
        t = n / rate
        left = int(30000 * (t / seconds) * math.sin(2 * math.pi * 440 * t))
        right = 0 if 5.0 <= t < 9.5 else int(12000 * math.sin(2 * math.pi * 300 * t))
        samples += [left, right]
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return out.getvalue()


def _reference(samples: list[int], points: int) -> tuple[list[int], list[int]]:
    frames = len(samples)
    lows, highs = [], []
    for b in range(points):
        part = samples[-(-b * frames // points) : -(-(b + 1) * frames // points)]
        lows.append(round(min(0, *part) * 1000 / 32768))
        highs.append(round(max(0, *part) * 1000 / 32768))
    return lows, highs


def test_peaks_match_a_direct_computation_window_by_window(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _stereo_wav(12.0)
    layout = wav_layout(data[:4096], len(data))
    assert (layout.channels, layout.sample_rate, layout.frames) == (2, 8000, 96000)
    reads: list[int] = []

    def read(start: int, end: int) -> bytes:
        reads.append(end - start + 1)
        return data[start : end + 1]

    monkeypatch.setattr(waveform_module, "_WINDOW", 40000)  # many windows, odd boundaries
    peaks = compute_peaks(read, layout, 300)
    assert max(reads) <= 40000 and len(reads) > 5  # never the whole file at once
    pcm = struct.unpack(f"<{layout.frames * 2}h", data[layout.data_offset :])
    for channel in (0, 1):
        lows, highs = _reference(list(pcm[channel::2]), 300)
        assert peaks[channel] == {"min": lows, "max": highs}
    # The silenced interval (5.0-9.5 s of 12 s) is flat on the right lane only.
    silent = range(math.ceil(5.0 / 12 * 300) + 1, int(9.5 / 12 * 300) - 1)
    assert all(peaks[1]["max"][b] == 0 == peaks[1]["min"][b] for b in silent)
    assert all(peaks[0]["max"][b] > 0 for b in silent)


def test_other_audio_has_no_waveform() -> None:
    for head in (b"OggS" + b"\0" * 40, b"RIFF\0\0\0\0WAVEfmt "):
        with pytest.raises(AudioFailure) as caught:
            wav_layout(head, 1000)
        assert (caught.value.status, caught.value.reason) == (415, "waveform-unsupported")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[QaEnv]:
    made = make_env(tmp_path, CALLS)
    yield made
    made.close()


def _grant(env: QaEnv, rid: str) -> str:
    reply = env.request(
        "POST", f"/v1/recordings/{rid}/grants", token=env.token("rita", "qa-reviewer"), body=QA
    )
    assert reply.status == 201, reply.body
    url: str = reply.json()["url"]
    return url.split("grant=", 1)[1]


def test_the_waveform_of_a_stored_call_shows_its_pci_silence(env: QaEnv) -> None:
    grant = _grant(env, "rec-wave")
    head = env.audit_head()
    reply = env.get("/v1/recordings/rec-wave/waveform", params={"grant": grant, "points": "200"})
    assert reply.status == 200, reply.body
    body = reply.json()
    assert (body["channels"], body["sample_rate"], body["duration_ms"], body["points"]) == (
        1, 8000, 20000, 200,
    )  # fmt: skip
    peaks = body["peaks"][0]
    # 5.0-9.5 s of 20 s: buckets 50..94 are exact silence (mu-law 0xFF decodes to 0).
    assert all(peaks["min"][b] == 0 == peaks["max"][b] for b in range(51, 94))
    assert max(peaks["max"][:49]) > 50 and max(peaks["max"][96:]) > 50
    # Same as computing it from the plaintext directly.
    plain = env.plaintext("rec-wave")
    layout = wav_layout(plain[:4096], len(plain))
    assert compute_peaks(lambda s, e: plain[s : e + 1], layout, 200) == body["peaks"]
    assert env.audit_after(head) == []  # part of the audited listening session


def test_the_waveform_needs_the_session_and_is_rechecked(env: QaEnv) -> None:
    assert env.get("/v1/recordings/rec-plain/waveform").status == 400
    forged = env.get("/v1/recordings/rec-plain/waveform", params={"grant": "pg1.x.y.z"})
    assert (forged.status, forged.json()["reason"]) == (401, "grant-signature")
    other = env.get("/v1/recordings/rec-plain/waveform", params={"grant": _grant(env, "rec-wave")})
    assert (other.status, other.json()["reason"]) == (401, "grant-recording")
    grant = _grant(env, "rec-plain")
    env.services.catalog.set_restricted(
        ["rec-plain"], True, audit=AuditDraft("user:privacy", "privacy.restricted", "ok")
    )
    reply = env.get("/v1/recordings/rec-plain/waveform", params={"grant": grant})
    assert (reply.status, reply.json()["reason"]) == (403, "recording-restricted")
    assert env.audit_after(0)[-1].action == "access.play"  # the denial is audited
