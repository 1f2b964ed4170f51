"""Every telephony format end to end (issue 11): through the real tansu broker and a real
``callvault worker`` process, each recording as a real system writes it (Asterisk,
FreeSWITCH, Twilio, Amazon Connect, Genesys, Zoom...; tests/fixtures/telephony.py) is
stored in its own codec, rate and channels, silenced where asked (a PCI pause on the
customer's channel for the stereo ones, on the call for the mono ones), sample-exact
elsewhere for the lossless formats, and served back by the worker's web server with its
Content-Type and Range."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callvault.broker import EmbeddedBroker
from storage.audio import Layout, decode
from storage.audio_store import content_type_of
from streams.http.auth import local_tokens
from tests.e2e.harness import WorkerProcess, open_services, produce, wait_until
from tests.fixtures.signals import split_channels, wav_pcm
from tests.fixtures.telephony import SAMPLE_NAMES, TelephonySamples, sample_event

pytestmark = [pytest.mark.e2e]

SECONDS = 8.0
PAUSE = (2000, 3500)  # the agent speaks then (tests/fixtures/telephony.py's dialogue)
LOSSLESS_CODECS = ("wav/pcm_s16le", "wav/mulaw", "wav/alaw", "flac")


def _stored_format(label: str) -> str:
    return {"m4a/aac": "m4a", "ogg/opus": "opus", "webm/opus": "webm"}.get(
        label, label.split("/", 1)[0]
    )


def test_every_format_through_the_broker_and_worker(
    env: dict[str, str],
    worker: WorkerProcess,
    kafka_broker: EmbeddedBroker,
    telephony_samples: TelephonySamples,
) -> None:
    services = open_services(env)
    landing = services.settings.landing_dir
    ended = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    events, samples = {}, {}
    for name in SAMPLE_NAMES:
        sample = telephony_samples.get(name, seconds=SECONDS)
        stereo = sample.channels == 2 or bool(sample.legs)
        pause: dict[str, Any] = {"start_ms": PAUSE[0], "end_ms": PAUSE[1]}
        if stereo:
            pause["channels"] = ["agent"]
        rid = f"fmt-{name}"
        events[rid] = sample_event(
            sample, rid, landing, ended_at=ended, tenant="demo", pci_pauses=[pause]
        )
        samples[rid] = sample
    produce(
        kafka_broker.url.removeprefix("kafka://"),
        "callvault.recordings",
        [json.dumps(e).encode() for e in events.values()],
    )
    worker.start()

    def stored() -> bool:
        done = services.catalog.recording_ids_present(events)
        return len(done) == len(events)

    wait_until(stored, 120, "every format to be stored")
    token = local_tokens(services.keyring, services.policy).issue(
        user="alice", role="qa-reviewer", org=None, ttl=timedelta(hours=1),
        now=datetime.now(UTC), tenant="demo",
    )  # fmt: skip
    query = "purpose=quality-improvement&justification=EVAL-11"
    for rid, sample in samples.items():
        row = services.catalog.get_recording(rid)
        assert row is not None, rid
        stereo = row.channels == 2
        if sample.legs or sample.channels == 2:
            assert row.channel_roles == ("customer", "agent"), rid
        assert row.pci_redacted_ms == PAUSE[1] - PAUSE[0], rid
        plain = services.keys.open_recording(services.vault.get(row.object_key))
        request = urllib.request.Request(
            f"{worker.web_url}/v1/recordings/{rid}/audio?{query}",
            headers={"Authorization": f"Bearer {token}", "Range": "bytes=100-"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 206, rid
            assert response.headers["Content-Type"] == content_type_of(row.audio_format), rid
            assert response.read() == plain[100:], rid
        if row.audio_format not in LOSSLESS_CODECS:
            continue
        got = decode(plain, _stored_format(row.audio_format))
        if sample.legs:
            sent = [wav_pcm(leg.path)[0] for leg in sample.legs]
        else:
            layout = Layout(sample.sample_rate, sample.channels)
            sent = split_channels(
                decode(sample.path.read_bytes(), sample.format, layout=layout).pcm,
                sample.channels,
            )
        channels = split_channels(got.pcm, got.channels)
        first, last = (ms * got.sample_rate // 1000 for ms in PAUSE)
        silent = 8 if "alaw" in row.audio_format else 0
        paused = [1] if stereo else [0]  # the agent's channel, or the mixed call
        for index, (have, want) in enumerate(zip(channels, sent, strict=True)):
            samples_have = memoryview(have).cast("h")
            if index in paused:
                assert set(samples_have[first:last]) == {silent}, (rid, index)
                assert have[: 2 * first] == want[: 2 * first], (rid, index)
                assert have[2 * last :] == want[2 * last :], (rid, index)
            else:
                assert have == want, (rid, index)
    services.close()
