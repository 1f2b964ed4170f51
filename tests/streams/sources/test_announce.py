"""``callvault announce`` as a dialplan runs it: a real tansu broker, the CLI's exit
codes, the claimed file, its sidecar, and the event the real core path stores."""

from __future__ import annotations

import json
import os
import shutil
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callvault.broker import EmbeddedBroker, free_port
from callvault.cli import cli
from callvault.services import Services, build_services
from callvault.settings import load_settings
from storage.audio import decode
from tests.e2e.harness import consume_all
from tests.fixtures.signals import align, envelope, ncc, split_channels, wav_pcm
from tests.fixtures.sipcall import SipCallFactory
from tests.fixtures.telephony import TelephonySamples
from tests.streams.sources.conftest import ingest


@pytest.fixture
def env(tmp_path: Path, kafka_broker: EmbeddedBroker) -> dict[str, str]:
    sources = tmp_path / "sources.toml"
    sources.write_text('[[announce]]\ntenant = "acme"\nqueue = "pbx"\n')
    return {
        "CALLVAULT_DATA_DIR": str(tmp_path / "data"),
        "CALLVAULT_BROKER": kafka_broker.url,
        "CALLVAULT_SOURCES": str(sources),
    }


@pytest.fixture
def services(env: dict[str, str]) -> Iterator[Services]:
    built = build_services(load_settings(env))
    yield built
    built.close()


def _spool(tmp_path: Path, source: Path, name: str) -> Path:
    """A copy of the sample where the PBX writes it (outside the landing area)."""
    spool = tmp_path / "spool" / "asterisk" / "monitor"
    spool.mkdir(parents=True, exist_ok=True)
    target = spool / name
    shutil.copyfile(source, target)
    return target


def _announce(env: dict[str, str], *args: str) -> Any:
    started = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=0)
    defaults = ["--started-at", str(int(started.timestamp()))]
    return CliRunner().invoke(cli, ["announce", *args, *defaults], env=env, catch_exceptions=False)


def _ingest(services: Services, event: dict[str, Any]) -> None:
    (outcome,) = ingest(services, event)
    assert outcome.status == "stored", outcome


CALL = ["--call-id", "1764590400.17", "--customer-ref", "+15555550100", "--agent-id", "sip-201"]


def test_mixmonitor_s_end_command_claims_the_file_and_produces_the_event(
    tmp_path: Path,
    env: dict[str, str],
    services: Services,
    kafka_broker: EmbeddedBroker,
    telephony_samples: TelephonySamples,
) -> None:
    sample = telephony_samples.get("asterisk-wav")
    spooled = _spool(tmp_path, sample.path, "1764590400.17.wav")
    result = _announce(env, str(spooled), *CALL)
    assert result.exit_code == 0, result.output
    assert "announced 1764590400.17" in result.output
    assert not spooled.exists()  # claimed: moved into the landing area

    (event,) = consume_all(kafka_broker.url.removeprefix("kafka://"), "callvault.recordings", 1)
    assert event["recording_id"] == "1764590400.17" and event["tenant"] == "acme"
    assert event["queue"] == "pbx" and event["agent_id"] == "sip-201"
    landed = Path(event["audio"]["uri"].removeprefix("file://"))
    assert landed.parent == services.settings.landing_dir  # type: ignore[union-attr]
    assert "+1555" not in landed.name and landed.name.startswith(event["audio"]["sha256"][:40])
    assert json.loads(Path(f"{landed}.event.json").read_text()) == event  # for the reconciler

    _ingest(services, event)
    row = services.catalog.get_recording("1764590400.17")
    assert row is not None
    plain = services.keys.open_recording(services.vault.get(row.object_key))
    assert decode(plain, "wav").pcm == decode(sample.path.read_bytes(), "wav").pcm

    again = _announce(env, str(spooled), *CALL)  # the hook run twice
    assert again.exit_code == 66, again.output
    assert "landing-missing" in again.output


def test_exit_codes_a_dialplan_can_test(
    tmp_path: Path, env: dict[str, str], telephony_samples: TelephonySamples
) -> None:
    sample = telephony_samples.get("asterisk-wav")
    bad_time = _spool(tmp_path, sample.path, "bad-time.wav")
    refused = CliRunner().invoke(
        cli,
        ["announce", str(bad_time), *CALL, "--started-at", "when the call began"],
        env=env,
    )
    assert refused.exit_code == 65 and "invalid-metadata" in refused.output
    assert bad_time.exists()  # nothing moved before every field was checked

    other_tenant = _announce(env, str(bad_time), *CALL, "--tenant", "globex")
    assert other_tenant.exit_code == 65 and "tenant-mismatch" in other_tenant.output
    bad_id = _announce(env, str(bad_time), *CALL[2:], "--call-id", "has spaces")
    assert bad_id.exit_code == 65 and "invalid-field" in bad_id.output

    missing = _announce(env, str(tmp_path / "nope.wav"), *CALL)
    assert missing.exit_code == 66
    fifo = tmp_path / "spool" / "asterisk" / "monitor" / "fifo.wav"
    os.mkfifo(fifo)  # read, it would block the hook (and the PBX's channel) forever
    not_a_file = _announce(env, str(fifo), *CALL)
    assert not_a_file.exit_code == 66 and "landing-not-regular" in not_a_file.output
    assert fifo.exists()  # nothing claimed

    one_leg = _announce(env, "--leg", str(bad_time), "--role", "customer", *CALL)
    assert one_leg.exit_code == 65 and "twos" in one_leg.output
    no_file = _announce(env, *CALL)
    assert no_file.exit_code == 2

    # The broker is down: the file is claimed and its event waits in the sidecar (75).
    down = {**env, "CALLVAULT_BROKER": f"kafka://127.0.0.1:{free_port()}"}
    unavailable = _announce(down, str(bad_time), *CALL)
    assert unavailable.exit_code == 75, unavailable.output
    assert "broker-unavailable" in unavailable.output and not bad_time.exists()
    landing = Path(env["CALLVAULT_DATA_DIR"]) / "landing"
    (sidecar,) = landing.glob("*.event.json")
    assert json.loads(sidecar.read_text())["recording_id"] == "1764590400.17"


def test_mixmonitor_r_and_t_legs_become_one_recording(
    tmp_path: Path, env: dict[str, str], services: Services, kafka_broker: EmbeddedBroker,
    telephony_samples: TelephonySamples,
) -> None:  # fmt: skip
    sample = telephony_samples.get("asterisk-legs")
    mixed = _spool(tmp_path, sample.path, "1764590400.17.wav")
    legs = [_spool(tmp_path, leg.path, leg.path.name) for leg in sample.legs]
    result = _announce(
        env, str(mixed), "--leg", str(legs[0]), "--role", "customer",
        "--leg", str(legs[1]), "--role", "agent", *CALL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not mixed.exists()  # the mixed copy holds nothing the legs do not
    (event,) = consume_all(kafka_broker.url.removeprefix("kafka://"), "callvault.recordings", 1)
    assert [leg["role"] for leg in event["audio"]["legs"]] == ["customer", "agent"]
    _ingest(services, event)


def test_a_real_sip_call_s_legs_are_stored_as_one_stereo_recording(
    tmp_path: Path,
    env: dict[str, str],
    services: Services,
    kafka_broker: EmbeddedBroker,
    telephony_samples: TelephonySamples,
    sip_call_factory: SipCallFactory,
) -> None:
    """Two baresip softphones on 127.0.0.1 place and record a call; the callee's (the
    agent's) -dec/-enc WAVs go through `callvault announce` as two legs; the stored
    recording is played back and each channel checked against what each side sent."""
    # From 3.5 s into the dialogue, both speak within the call (the customer is silent
    # for its first 5 s: a leg of silence would prove nothing).
    dialogue = telephony_samples.dialogue(8000, 16.0)
    offset = int(2 * 3.5 * 8000)
    sent = {role: dialogue.pcm(role)[offset:] for role in ("customer", "agent")}
    tracks = {}
    for role, pcm in sent.items():
        tracks[role] = tmp_path / f"source-{role}.wav"
        with wave.open(str(tracks[role]), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(pcm)
    call = sip_call_factory(tracks["customer"], tracks["agent"], seconds=6.0)
    (customer_role, customer_file), (agent_role, agent_file) = call.agent_side_legs()
    received, spoken = customer_file.read_bytes(), agent_file.read_bytes()  # moved by announce
    received_path, spoken_path = tmp_path / "received.wav", tmp_path / "spoken.wav"
    received_path.write_bytes(received)
    spoken_path.write_bytes(spoken)
    result = _announce(
        env, "--leg", str(customer_file), "--role", customer_role,
        "--leg", str(agent_file), "--role", agent_role, *CALL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (event,) = consume_all(kafka_broker.url.removeprefix("kafka://"), "callvault.recordings", 1)
    _ingest(services, event)
    row = services.catalog.get_recording(event["recording_id"])
    assert row is not None and row.channels == 2
    stored = decode(services.keys.open_recording(services.vault.get(row.object_key)), "wav")
    left, right = split_channels(stored.pcm, stored.channels)
    heard = align(sent["customer"], left, 8000, max_lag_ms=1000)  # through PCMU and RTP
    spoke = align(sent["agent"], right, 8000, max_lag_ms=1000)  # before the encoder
    assert heard.envelope_corr > 0.9 and heard.sample_corr > 0.9, heard
    assert spoke.envelope_corr > 0.9 and spoke.sample_corr > 0.9, spoke
    # Each channel is its own speaker, not the other's.
    assert ncc(envelope(left, 8000), envelope(sent["agent"], 8000)) < 0.3
    assert ncc(envelope(right, 8000), envelope(sent["customer"], 8000)) < 0.3
    # Sample-exact: each channel is its leg from the first sample, the shorter padded.
    legs = {
        role: wav_pcm(path)[0]
        for role, path in ((customer_role, received_path), (agent_role, spoken_path))
    }
    for channel, role in ((left, "customer"), (right, "agent")):
        assert channel[: len(legs[role])] == legs[role]
        assert not any(channel[len(legs[role]) :])
    assert row.channel_roles == ("customer", "agent")
