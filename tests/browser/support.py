"""Headless Chromium for the page tests (the QA page and the privacy office page): the
system browser through Selenium, waits, element helpers, the local-token sign-in both
pages share, and screenshots (each saved in the test's folder, and copied to
``$CALLVAULT_TEST_SCREENSHOTS/<test>/`` when that is set, to look at them afterwards).
The ``env`` and ``driver`` fixtures are in ``tests/browser/conftest.py``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "AUDIO_PROBE_JS",
    "CHROMIUM",
    "CHROMEDRIVER",
    "chromium",
    "wait",
    "shown",
    "text_of",
    "sign_in_with_token",
    "Screens",
]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


#: ``execute_async_script(AUDIO_PROBE_JS, url)``: load ``url`` in an ``<audio>``, read the
#: duration, play at 4x for 0.7 s, seek to 1 s before the end; returns what happened.
AUDIO_PROBE_JS = """
const [url, done] = [arguments[0], arguments[arguments.length - 1]];
const a = new Audio(); a.muted = true; a.preload = 'auto';
const out = {};
let finished = false;
const finish = (why) => {
  if (finished) return; finished = true;
  Object.assign(out, {why, error: a.error ? a.error.code : null, ended_at: a.currentTime});
  a.pause(); a.removeAttribute('src'); a.load(); done(out);
};
a.addEventListener('error', () => finish('error'));
a.addEventListener('loadedmetadata', () => {
  out.duration = a.duration; a.playbackRate = 4;
  a.play().then(() => setTimeout(() => {
    out.played = a.currentTime;
    a.addEventListener('seeked', () => setTimeout(() => finish('seeked'), 300), {once: true});
    a.currentTime = Math.max(0, a.duration - 1);
  }, 700)).catch((e) => { out.play_error = String(e); finish('play-error'); });
});
setTimeout(() => finish('timeout'), 15000);
a.src = url;
"""


@contextmanager
def chromium(folder: Path, width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium that plays audio without a gesture (muted) and resolves only
    127.0.0.1 (nothing leaves the machine)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian chromium and chromedriver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cv-chromium-", dir=folder)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


#: What chromedriver answers, as a bare WebDriverException, for an element of a page that
#: was just replaced (seen in CI while the IdP's consent page loaded): a stale element.
_REPLACED_NODE = "does not belong to the document"


def wait(driver: Any, condition: Any, what: str, timeout: float = 20) -> Any:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    def check(d: Any) -> Any:
        try:
            return condition(d)
        except WebDriverException as exc:
            if _REPLACED_NODE in (exc.msg or ""):
                return False  # the page changed under the lookup: look again
            raise

    # A page being replaced (a redirect, a list re-rendered) leaves stale elements: retry.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    waiter = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored)
    return waiter.until(check, message=what)


def text_of(driver: Any, element_id: str) -> str:
    """The visible text of the element ``element_id``."""
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def shown(driver: Any, element_id: str) -> Any:
    """The element ``element_id`` when it is displayed, else None (for ``wait``)."""
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, element_id)
    return element if element.is_displayed() else None


def sign_in_with_token(driver: Any, token: str) -> None:
    """Paste a local token into the sign-in form both pages have, and submit it."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin-button").click()


class Screens:
    """Numbered screenshots of one test: ``shot("sign-in")`` -> ``01-sign-in.png``."""

    def __init__(self, driver: Any, folder: Path, test_name: str) -> None:
        self.driver, self.folder, self.taken = driver, folder, []
        copy = os.environ.get("CALLVAULT_TEST_SCREENSHOTS")
        self.copy_to = Path(copy) / test_name if copy else None

    def shot(self, name: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), f"screenshot {name} failed"
        assert path.stat().st_size > 1000
        self.taken.append(path.name)
        if self.copy_to is not None:
            self.copy_to.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.copy_to / path.name)
        return path
