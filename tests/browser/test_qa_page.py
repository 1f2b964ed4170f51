"""The QA page in headless Chromium (system browser, Selenium): sign in, list, play,
and see why a request is denied."""

from __future__ import annotations

from typing import Any

import pytest

from storage.catalog.audit import AuditDraft
from tests.browser.support import sign_in_with_token, wait
from tests.streams.qa_support import QaEnv

pytestmark = [pytest.mark.browser]

CALLS = {
    "rec-page-1": {"agent": "agent-3", "queue": "billing"},
    "rec-page-2": {"agent": "agent-4", "queue": "support"},
    "rec-page-cr": {"purposes": ["customer-response"]},
}


def _sign_in(driver: Any, env: QaEnv, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(env.server.url + "/")
    assert driver.find_element(By.CSS_SELECTOR, "label[for=token]").text == "Access token"
    sign_in_with_token(driver, token)
    wait(driver, lambda d: d.find_element(By.ID, "tab-search").is_displayed(), "workspace")
    driver.find_element(By.ID, "tab-search").click()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rows tr")) > 0, "recordings")


def _review(driver: Any, rid: str) -> None:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.CSS_SELECTOR, f'#rows tr[data-recording-id="{rid}"]')
    row.find_element(By.CSS_SELECTOR, "button.review-button").click()
    wait(driver, lambda d: d.find_element(By.ID, "review").is_displayed(), "review panel")


def _listed(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#rows tr")
    return [row.get_attribute("data-recording-id") for row in rows]


def test_reviewer_signs_in_lists_and_plays(env: QaEnv, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(driver, env, env.token("alice", "qa-reviewer"))
    assert sorted(_listed(driver)) == ["rec-page-1", "rec-page-2"]  # not the untagged one
    assert "alice" in driver.find_element(By.ID, "who-text").text
    # Filters narrow the list.
    driver.find_element(By.ID, "f-queue").send_keys("billing")
    driver.find_element(By.ID, "search").click()
    wait(driver, lambda d: _listed(d) == ["rec-page-1"], "filtered list")

    _review(driver, "rec-page-1")
    driver.find_element(By.ID, "justification").send_keys("EVAL-2026-314")
    driver.find_element(By.ID, "listen").click()
    state = wait(
        driver,
        lambda d: d.execute_script(
            "const a = document.getElementById('player');"
            "return a.readyState >= 1 && a.duration > 0 ? [a.readyState, a.duration] : null;"
        ),
        "audio metadata",
    )
    assert state[1] == pytest.approx(20.0, abs=0.1)
    # Seeking issues Range requests under the same playback grant.
    driver.execute_script("document.getElementById('player').currentTime = 12;")
    wait(
        driver,
        lambda d: d.execute_script(
            "const a = document.getElementById('player'); return !a.seeking && a.currentTime >= 12;"
        ),
        "seek",
    )
    assert driver.execute_script("return document.getElementById('player').error") is None
    assert not driver.find_element(By.ID, "access-error").is_displayed()
    assert not driver.find_element(By.ID, "player-error").is_displayed()
    assert "audit log" in driver.find_element(By.ID, "grant-info").text
    plays = [e for e in env.audit_after(0) if e.action == "access.play"]
    assert [(e.outcome, e.recording_id) for e in plays] == [("granted", "rec-page-1")]
    assert plays[0].details["justification"] == "EVAL-2026-314"


def test_denied_requests_show_the_reason(env: QaEnv, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(driver, env, env.token("alice", "qa-reviewer"))
    _review(driver, "rec-page-2")
    driver.find_element(By.ID, "listen").click()  # no justification
    error = wait(
        driver,
        lambda d: (
            d.find_element(By.ID, "access-error")
            if d.find_element(By.ID, "access-error").is_displayed()
            else None
        ),
        "denial message",
    )
    assert "justification-required" in error.text
    assert error.get_attribute("role") == "alert"
    assert not driver.find_element(By.ID, "player").is_displayed()

    # The customer asks to stop using it while the reviewer has it open.
    env.services.catalog.set_restricted(
        ["rec-page-2"], True, audit=AuditDraft("user:privacy", "privacy.restricted", "ok")
    )
    driver.find_element(By.ID, "justification").send_keys("EVAL-9")
    driver.find_element(By.ID, "listen").click()
    wait(
        driver,
        lambda d: "recording-restricted" in d.find_element(By.ID, "access-error").text,
        "restriction message",
    )
    denied = [e.reason for e in env.audit_after(0) if e.outcome == "denied"]
    assert denied == ["justification-required", "recording-restricted"]


def test_vendor_outside_its_contract_sees_the_reason(env: QaEnv, driver: Any) -> None:
    from datetime import UTC, datetime

    from selenium.webdriver.common.by import By

    env.clock.now = datetime(2028, 1, 2, tzinfo=UTC)
    driver.get(env.server.url + "/")
    sign_in_with_token(driver, env.token("vera", "qa-vendor", org="acme-qa"))
    wait(
        driver,
        lambda d: "contract-not-live" in d.find_element(By.ID, "error").text,
        "contract message",
    )
    assert _listed(driver) == []
