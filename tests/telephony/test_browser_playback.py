"""Which telephony formats headless Chromium plays through an ``<audio>`` element, and
with which duration: the matrix callvault's QA page has to live with.

Each sample is served from a local HTTP server with its Content-Type and HTTP Range
support; the page loads it, reads ``duration``, plays it at 4x for a moment and seeks
near the end. WAV (PCM, mu-law, A-law; mono and stereo, 8 and 16 kHz), MP3, Opus in
Ogg and WebM, FLAC and AAC in M4A play; GSM WAV ("WAV49") and headerless sln/ulaw/alaw
do not (``MEDIA_ERR_SRC_NOT_SUPPORTED``), so serving those for listening needs a
header (headerless PCM/G.711: a WAV header is enough) or a transcode (GSM).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import AUDIO_PROBE_JS
from tests.fixtures.telephony import SAMPLE_NAMES, TelephonySample, TelephonySamples

pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SECONDS = 8.0
NOT_PLAYABLE = {
    "asterisk-wav49",  # GSM 6.10 in WAV: "FFmpegDemuxer: no supported streams"
    "asterisk-ulaw",  # headerless: "FFmpegDemuxer: open context failed"
    "asterisk-alaw",
    "asterisk-d-stereo-sln",
    "asterisk-d-stereo-sln16",
}


class _Files(BaseHTTPRequestHandler):
    """Serves ``files`` (url path -> (file, content type)) with single-range support."""

    files: dict[str, tuple[Path, str]] = {}

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        if self.path == "/":
            self._send(200, "text/html", b"<!doctype html><title>playback</title>")
            return
        entry = self.files.get(self.path)
        if entry is None:
            self.send_error(404)
            return
        path, content_type = entry
        data = path.read_bytes()
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if wanted is None:
            self._send(200, content_type, data)
            return
        first = int(wanted[1] or 0)
        last = min(int(wanted[2]) if wanted[2] else len(data) - 1, len(data) - 1)
        self._send(206, content_type, data[first : last + 1], f"bytes {first}-{last}/{len(data)}")

    def _send(self, status: int, content_type: str, body: bytes, span: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if span:
            self.send_header("Content-Range", span)
        self.end_headers()
        # The browser stops reading once it has what it needs.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


@pytest.fixture(scope="module")
def served(telephony_samples: TelephonySamples) -> Iterator[tuple[str, dict[str, TelephonySample]]]:
    samples = {name: telephony_samples.get(name, seconds=SECONDS) for name in SAMPLE_NAMES}
    _Files.files = {f"/audio/{name}": (s.path, s.content_type) for name, s in samples.items()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", samples
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian chromium and chromedriver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cv-chromium-", dir=tmp_path_factory.mktemp("chromium"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_chromium_plays_what_it_can_with_the_source_duration(
    served: tuple[str, dict[str, TelephonySample]], browser: Any, name: str
) -> None:
    base, samples = served
    sample = samples[name]
    browser.get(base + "/")
    result = browser.execute_async_script(AUDIO_PROBE_JS, f"{base}/audio/{name}")
    if name in NOT_PLAYABLE:
        assert result["why"] == "error" and result["error"] == 4, result  # SRC_NOT_SUPPORTED
        return
    assert result["why"] == "seeked", result
    assert result["duration"] == pytest.approx(sample.duration_ms / 1000, rel=0.01)
    assert result["played"] > 0.5  # the decoder ran
    assert result["ended_at"] >= result["duration"] - 1.01  # and the seek landed
