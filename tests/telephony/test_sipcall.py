"""A real SIP call between two baresip softphones on 127.0.0.1 (tests/fixtures/sipcall.py):
it is established and hung up, each side records 8 kHz 16-bit mono WAV legs, and what
the callee received is the caller's speech (G.711 mu-law loss and latency tolerated)."""

from __future__ import annotations

import struct
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.signals import align, envelope, ncc, wav_pcm
from tests.fixtures.sipcall import SipCall, SipCallFactory
from tests.fixtures.telephony import TelephonySamples

CALL_SECONDS = 8.0
START_S = 3.5  # into the dialogue: the agent, then the customer, then the agent again


@pytest.fixture(scope="module")
def sources(
    telephony_samples: TelephonySamples, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    dialogue = telephony_samples.dialogue(8000, START_S + CALL_SECONDS + 4)
    folder = tmp_path_factory.mktemp("sip-sources")
    paths = {}
    for role in ("customer", "agent"):
        paths[role] = folder / f"{role}.wav"
        with wave.open(str(paths[role]), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(dialogue.pcm(role)[int(2 * START_S * 8000) :])
    return paths


@pytest.fixture(scope="module")
def call(sip_call_factory: SipCallFactory, sources: dict[str, Path]) -> SipCall:
    # The customer calls in, the agent answers: two voices taking turns.
    return sip_call_factory(sources["customer"], sources["agent"], seconds=CALL_SECONDS)


@pytest.fixture(scope="module")
def speech(sources: dict[str, Path]) -> dict[str, bytes]:
    return {role: wav_pcm(path)[0] for role, path in sources.items()}


def test_a_real_call_is_established_and_hung_up(call: SipCall) -> None:
    for events in (call.caller_events, call.callee_events):
        assert "CALL_ESTABLISHED" in events
        assert "CALL_RTPESTAB" in events  # RTP flowed, not just signalling
        assert events.index("CALL_ESTABLISHED") < events.index("CALL_CLOSED")
    assert "CALL_RINGING" in call.caller_events
    assert call.codec == "PCMU"
    assert call.version != "unknown"


def test_each_side_records_8khz_16bit_mono_wav_legs(call: SipCall) -> None:
    for leg in (call.caller, call.callee):
        for path in (leg.enc, leg.dec):
            assert path.name.startswith("dump-")
            assert path.name.endswith(("-enc.wav", "-dec.wav"))
            head = path.read_bytes()[:36]
            assert head[:4] == b"RIFF" and head[8:12] == b"WAVE"
            assert struct.unpack("<H", head[20:22])[0] == 1  # PCM
            with wave.open(str(path), "rb") as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
                # Hung up after CALL_SECONDS: most of it recorded, nothing far beyond.
                assert 0.8 * CALL_SECONDS <= w.getnframes() / 8000 <= CALL_SECONDS + 2


def test_agent_side_legs_name_their_speakers(call: SipCall) -> None:
    (customer, received), (agent, sent) = call.agent_side_legs()
    assert (customer, agent) == ("customer", "agent")
    assert (received, sent) == (call.callee.dec, call.callee.enc)


def test_sent_legs_are_the_sources_exactly(call: SipCall, speech: dict[str, bytes]) -> None:
    # -enc is recorded before the encoder: the aufile source itself.
    for leg, role in ((call.caller, "customer"), (call.callee, "agent")):
        sent, _, _ = wav_pcm(leg.enc)
        assert sent == speech[role][: len(sent)]


@pytest.mark.parametrize(("receiver", "speaker"), [("callee", "customer"), ("caller", "agent")])
def test_received_leg_is_the_other_sides_speech(
    call: SipCall,
    speech: dict[str, bytes],
    receiver: str,
    speaker: str,
    record_property: Callable[[str, object], None],
) -> None:
    received, _, _ = wav_pcm(getattr(call, receiver).dec)
    found = align(speech[speaker], received, 8000, max_lag_ms=1000)
    record_property("alignment", str(found))  # a plain value: reports cross processes
    print(f"{receiver} received {speaker}: {found}")
    assert 0 <= found.offset_ms <= 500  # network + jitter buffer latency, never early
    assert found.envelope_corr > 0.9
    assert found.sample_corr > 0.9  # G.711 mu-law keeps the waveform (~38 dB SNR)
    # ... and not its own speaker's voice looped back.
    listener = "agent" if speaker == "customer" else "customer"
    assert ncc(envelope(received, 8000), envelope(speech[listener], 8000)) < 0.3
