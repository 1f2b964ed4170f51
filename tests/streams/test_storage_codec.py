"""A retention class's storage codec (issue 11): ``storage_codec: opus-16k`` or ``flac``
in the policy transcodes at ingest, whatever was sent, PCI pauses silenced on the way;
``as-sent`` (the default) keeps the sent codec. Through the real ingest pipeline with
the shipped policy, its ``standard-90d`` class changed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callvault.services import Services, build_services
from callvault.settings import load_settings
from policies import default_policy_path
from storage.audio import Layout, decode
from tests.fixtures.signals import envelope, ncc, split_channels
from tests.fixtures.telephony import TelephonySamples, sample_event
from tests.streams.audio_support import store

SECONDS = 8.0
PAUSE = {"start_ms": 2000, "end_ms": 3500, "channels": ["agent"]}


@pytest.fixture
def services_with(tmp_path: Path) -> Iterator[Callable[[str], Services]]:
    made: list[Services] = []

    def make(codec: str) -> Services:
        text = default_policy_path().read_text()
        marker = "  standard-90d:\n"
        assert marker in text
        text = text.replace(marker, f"{marker}    storage_codec: {codec}\n", 1)
        folder = tmp_path / codec
        folder.mkdir()
        (folder / "policy.yaml").write_text(text)
        env = {
            "CALLVAULT_DATA_DIR": str(folder / "data"),
            "CALLVAULT_POLICY": str(folder / "policy.yaml"),
        }
        made.append(build_services(load_settings(env)))
        return made[-1]

    yield make
    for services in made:
        services.close()


@pytest.mark.parametrize(
    "name", ["amazon-connect-wav", "genesys-ogg-opus", "asterisk-d-stereo-sln"]
)
def test_flac_class_stores_lossless_flac_with_the_pause_silenced(
    name: str, services_with: Callable[[str], Services], telephony_samples: TelephonySamples
) -> None:
    services = services_with("flac")
    sample = telephony_samples.get(name, seconds=SECONDS)
    ended = datetime.now(UTC).replace(microsecond=0)
    landing = services.settings.landing_dir
    event = sample_event(sample, f"flac-{name}", landing, ended_at=ended, pci_pauses=[PAUSE])
    row, plain, content_type = store(services, event)
    assert (row.audio_format, content_type) == ("flac", "audio/flac")
    assert (row.sample_rate, row.channels) == (sample.sample_rate, 2)
    stored = decode(plain, "flac")
    sent = decode(sample.path.read_bytes(), sample.format,
                  layout=Layout(sample.sample_rate, sample.channels))  # fmt: skip
    (left, right), (sent_left, sent_right) = (
        split_channels(stored.pcm, 2),
        split_channels(sent.pcm, 2),
    )
    assert left == sent_left  # the customer: untouched, sample for sample
    rate = stored.sample_rate
    first, last = 2000 * rate // 1000, 3500 * rate // 1000
    assert not any(right[2 * first : 2 * last])  # the agent's pause: zero
    assert right[: 2 * first] == sent_right[: 2 * first]
    assert right[2 * last :] == sent_right[2 * last :]


def test_opus_class_stores_16_kbps_opus(
    services_with: Callable[[str], Services], telephony_samples: TelephonySamples
) -> None:
    services = services_with("opus-16k")
    sample = telephony_samples.get("amazon-connect-wav", seconds=SECONDS)
    ended = datetime.now(UTC).replace(microsecond=0)
    landing = services.settings.landing_dir
    event = sample_event(sample, "opus-1", landing, ended_at=ended, pci_pauses=[PAUSE])
    row, plain, content_type = store(services, event)
    assert (row.audio_format, content_type) == ("ogg/opus", "audio/ogg")
    assert (row.sample_rate, row.channels) == (48000, 2)
    assert abs(row.duration_ms - sample.duration_ms) <= 30
    # 16 kb/s per channel: about 2 KB per second and channel (and the Ogg pages).
    assert len(plain) <= 2 * 16000 / 8 * SECONDS * 1.3
    stored = decode(plain, "opus")
    assert abs(stored.duration_ms - sample.duration_ms) <= 0.01 * sample.duration_ms + 30
    left, right = split_channels(stored.pcm, 2)
    sent = dict(
        zip(
            ("customer", "agent"),
            split_channels(decode(sample.path.read_bytes(), "wav").pcm, 2),
            strict=True,
        )
    )
    # Each channel keeps its own speaker (speech envelopes; 48 kHz against 8 kHz).
    for channel, role, other in ((left, "customer", "agent"), (right, "agent", "customer")):
        assert ncc(envelope(channel, 48000), envelope(sent[role], 8000)) > 0.85  # pause aside
        assert ncc(envelope(channel, 48000), envelope(sent[other], 8000)) < 0.3
    inside = memoryview(right).cast("h")[int(2.15 * 48000) : int(3.45 * 48000)]
    assert max(abs(v) for v in inside) < 300  # the agent's pause: near silence
