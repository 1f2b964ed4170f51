"""Served as stored (issue 11): every telephony format, ingested through the real
pipeline, comes back from ``GET /v1/recordings/{id}/audio`` in its stored codec with
its Content-Type (WAV for PCM and G.711), Range works on it, and headless Chromium
plays it through a playback grant with a duration within 1 % of the source.

GSM (WAV49 and raw) is stored and served as sent, but Chromium has no GSM decoder
(``MEDIA_ERR_SRC_NOT_SUPPORTED``, as tests/telephony/test_browser_playback.py shows
for the source files): the test pins that, so a change in either is noticed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from storage.audio_store import content_type_of
from streams.ingest import IngestPipeline
from tests.browser.support import AUDIO_PROBE_JS, chromium
from tests.fixtures.telephony import SAMPLE_NAMES, TelephonySample, TelephonySamples, sample_event
from tests.streams.qa_support import QaEnv, make_env

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SECONDS = 8.0
NOT_PLAYABLE = {"asterisk-wav49"}  # GSM 6.10: Chromium has no decoder
#: One sample per stored codec and layout (the browser costs about 1.5 s per sample).
BROWSER_SAMPLES = (
    "asterisk-wav",  # 16-bit PCM, 8 kHz mono
    "freeswitch-stereo-16k",  # 16-bit PCM, 16 kHz stereo
    "asterisk-d-stereo-sln",  # headerless stereo sln: stored as WAV
    "genesys-wav-ulaw",  # mu-law, stereo
    "asterisk-alaw",  # headerless A-law: stored as WAV
    "asterisk-wav49",  # GSM in WAV
    "twilio-dual-mp3",
    "genesys-webm-opus",
    "genesys-ogg-opus",
    "vapi-flac",
    "zoom-m4a",
)
QA = {"purpose": "quality-improvement", "justification": "EVAL-11"}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, telephony_samples: TelephonySamples
) -> Iterator[tuple[QaEnv, dict[str, TelephonySample]]]:
    env = make_env(tmp_path_factory.mktemp("served"), {})
    samples = {name: telephony_samples.get(name, seconds=SECONDS) for name in SAMPLE_NAMES}
    ended = env.clock() - timedelta(hours=1)
    events = [
        json.dumps(
            sample_event(
                sample, f"srv-{name}", env.services.settings.landing_dir,
                ended_at=ended, tenant="demo",
            )
        ).encode()
        for name, sample in samples.items()
    ]  # fmt: skip
    pipeline = IngestPipeline.over(env.services, actor="worker:test")
    try:
        outcomes = pipeline.process_batch(events)
    finally:
        pipeline.close()
    assert [o.status for o in outcomes] == ["stored"] * len(events), outcomes
    yield env, samples
    env.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        driver.set_script_timeout(30)
        yield driver


def _reviewer(env: QaEnv) -> str:
    return env.token("alice", "qa-reviewer")


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_served_in_the_stored_codec_with_ranges(
    served: tuple[QaEnv, dict[str, TelephonySample]], name: str
) -> None:
    env, _ = served
    rid = f"srv-{name}"
    row = env.services.catalog.get_recording(rid)
    assert row is not None
    stored = env.plaintext(rid)
    whole = env.audio(rid, _reviewer(env), **QA)
    assert whole.status == 200, whole.body
    assert whole.headers["Content-Type"] == content_type_of(row.audio_format)
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.body == stored
    head = env.audio(rid, _reviewer(env), range="bytes=0-99", **QA)
    assert head.status == 206 and head.body == stored[:100]
    assert head.headers["Content-Range"] == f"bytes 0-99/{len(stored)}"
    tail = env.audio(rid, _reviewer(env), range="bytes=-1000", **QA)
    assert tail.status == 206 and tail.body == stored[-1000:]
    middle = len(stored) // 2
    mid = env.audio(rid, _reviewer(env), range=f"bytes={middle}-{middle + 70000}", **QA)
    assert mid.status == 206 and mid.body == stored[middle : middle + 70001]


@pytest.mark.parametrize("name", BROWSER_SAMPLES)
def test_chromium_plays_the_stored_recording(
    served: tuple[QaEnv, dict[str, TelephonySample]], browser: Any, name: str
) -> None:
    env, samples = served
    rid = f"srv-{name}"
    reply = env.request("POST", f"/v1/recordings/{rid}/grants", token=_reviewer(env), body=QA)
    assert reply.status == 201, reply.body
    browser.get(env.server.url + "/healthz")  # same origin, nothing else loaded
    result = browser.execute_async_script(AUDIO_PROBE_JS, env.server.url + reply.json()["url"])
    if name in NOT_PLAYABLE:
        assert result["why"] == "error" and result["error"] == 4, result
        return
    assert result["why"] == "seeked", result
    assert result["duration"] == pytest.approx(samples[name].duration_ms / 1000, rel=0.01)
    assert result["played"] > 0.5
    assert result["ended_at"] >= result["duration"] - 1.01


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_review_waveform_of_every_stored_format(
    served: tuple[QaEnv, dict[str, TelephonySample]], name: str
) -> None:
    """PCM / G.711 WAV read window by window; compressed formats decoded by ffmpeg from
    the decrypted stream (nothing decrypted is written to disk)."""
    env, samples = served
    rid = f"srv-{name}"
    row = env.services.catalog.get_recording(rid)
    assert row is not None
    grant = env.request("POST", f"/v1/recordings/{rid}/grants", token=_reviewer(env), body=QA)
    url = grant.json()["url"].replace("/audio?", "/waveform?") + "&points=200"
    reply = env.get(url)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["channels"] == row.channels and body["points"] == 200
    assert abs(body["duration_ms"] - samples[name].duration_ms) <= 0.01 * row.duration_ms + 30
    for lane in body["peaks"]:  # every lane has speech somewhere, and silence somewhere
        assert max(lane["max"]) > 50 and min(lane["max"]) < 50
