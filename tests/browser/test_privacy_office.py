"""The privacy office page in headless Chromium (system browser, Selenium): requests by
status and SLA (overdue first), file a request, verify, approve (a disclosure, with its
export), refuse with a closed reason, legal holds with their scope; a screenshot of
each step in the test's folder."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import Screens, shown, sign_in_with_token, wait
from tests.streams.qa_support import QaEnv

pytestmark = [pytest.mark.browser]

CALLS = {
    "rec-po-1": {"customer": "cust-7"},
    "rec-po-2": {"customer": "cust-7"},
    "rec-po-3": {"customer": "cust-8"},
}


WINDOW = (1280, 1100)


def _rows(driver: Any) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By

    return [
        (row.get_attribute("data-request-id"), row.get_attribute("data-status"))
        for row in driver.find_elements(By.CSS_SELECTOR, "#requests tr")
    ]


def _open(driver: Any, request_id: str) -> None:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.CSS_SELECTOR, f'#requests tr[data-request-id="{request_id}"]')
    row.find_element(By.CSS_SELECTOR, "button.open-request").click()
    wait(driver, lambda d: d.find_element(By.ID, "d-id").text == request_id, "detail")


def _steps(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    items = driver.find_elements(By.CSS_SELECTOR, "#d-timeline li")
    return [item.get_attribute("data-step") for item in items]


def _status_is(driver: Any, wanted: str) -> bool:
    from selenium.webdriver.common.by import By

    return bool(driver.find_element(By.ID, "d-status").text.startswith(wanted))


@pytest.mark.clause("requests.identity")
def test_the_privacy_office_works_a_request_through(
    env: QaEnv, driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    officer = env.token("cora", "compliance-officer")  # tenant demo
    old = (env.clock() - timedelta(days=20)).isoformat()
    for body in (
        {"type": "erase", "customer_ref": "cust-9", "request_id": "PR-OLD", "received_at": old},
        {"type": "restrict", "customer_ref": "cust-8", "request_id": "PR-NEW"},
    ):
        assert env.request("POST", "/v1/privacy-requests", token=officer, body=body).status == 201
    hold = env.request(
        "POST", "/v1/holds", token=officer,
        body={"scope": "recording", "recording_id": "rec-po-3", "reason": "litigation",
              "reference": "CASE-31"},
    )  # fmt: skip
    assert hold.status == 201
    page = env.request("GET", "/privacy")
    assert page.status == 200
    assert (
        page.headers["Content-Security-Policy"]
        == env.request("GET", "/").headers["Content-Security-Policy"]
    )
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    screens = Screens(driver, tmp_path, "privacy_office")

    driver.get(env.server.url + "/privacy")
    screens.shot("sign-in")
    sign_in_with_token(driver, officer)
    wait(driver, lambda d: len(_rows(d)) == 2, "the request list")
    assert _rows(driver) == [("PR-OLD", "received"), ("PR-NEW", "received")]  # overdue first
    overdue = driver.find_element(By.CSS_SELECTOR, '#requests tr[data-request-id="PR-OLD"]')
    assert "overdue" in overdue.get_attribute("class")
    assert "overdue by 6 d (14 d SLA)" in overdue.text
    newer = driver.find_element(By.CSS_SELECTOR, '#requests tr[data-request-id="PR-NEW"]')
    assert "3 d left of 3" in newer.text
    assert "cora · compliance-officer · demo" in driver.find_element(By.ID, "who-text").text
    holds = driver.find_elements(By.CSS_SELECTOR, "#holds tr")
    assert len(holds) == 1 and "recording" in holds[0].text and "rec-po-3" in holds[0].text
    assert "CASE-31" in holds[0].text
    screens.shot("requests-overdue-first-and-holds")

    # File a disclosure: it waits for verification.
    Select(driver.find_element(By.ID, "s-type")).select_by_value("disclose")
    driver.find_element(By.ID, "s-customer").send_keys("cust-7")
    driver.find_element(By.ID, "s-id").send_keys("PR-WEB")
    driver.find_element(By.ID, "submit").click()
    wait(driver, lambda d: d.find_element(By.ID, "d-id").text == "PR-WEB", "the new request")
    assert _status_is(driver, "received")
    assert driver.find_element(By.ID, "verify-block").is_displayed()
    assert not driver.find_element(By.ID, "approve").is_enabled()  # not verified yet
    screens.shot("filed-received")

    Select(driver.find_element(By.ID, "v-method")).select_by_value("callback")
    driver.find_element(By.ID, "verify").click()
    wait(driver, lambda d: _status_is(d, "verified"), "verified")
    assert _steps(driver) == ["received", "verified"]
    verified = driver.find_element(By.CSS_SELECTOR, '#d-timeline li[data-step="verified"]')
    assert "by cora" in verified.text
    screens.shot("identity-verified")

    driver.find_element(By.ID, "approve").click()
    wait(driver, lambda d: _status_is(d, "completed"), "completed")
    assert _steps(driver) == ["received", "verified", "approved", "executing", "completed"]
    assert "exported 2 of 2 stored recordings" in driver.find_element(By.ID, "d-result").text
    download = driver.find_element(By.ID, "download")
    assert download.is_displayed()
    assert download.get_attribute("data-href") == "/v1/privacy-requests/PR-WEB/export"
    screens.shot("approved-completed-with-export")
    # The download fetches the export route with the officer's token (part A's streamed
    # ZIP where that route exists; its refusal, shown inline, where it does not yet).
    served = env.request("GET", "/v1/privacy-requests/PR-WEB/export", token=officer)
    download.click()
    if served.status == 200:
        wait(driver, lambda d: "Export downloaded" in d.find_element(By.ID, "status").text,
             "the export downloaded")  # fmt: skip
    else:
        refusal = wait(driver, lambda d: shown(d, "detail-error"), "the export's refusal")
        json_error = served.headers.get("Content-Type", "").startswith("application/json")
        expected = served.json()["detail"] if json_error else f"HTTP {served.status}"
        assert expected in refusal.text
    screens.shot("export-download")

    # Refuse the restriction request: a closed reason and a note.
    _open(driver, "PR-NEW")
    Select(driver.find_element(By.ID, "r-reason")).select_by_value("manifestly-unfounded")
    driver.find_element(By.ID, "refuse").click()  # no note: refused by the API, shown inline
    error = wait(
        driver,
        lambda d: (
            d.find_element(By.ID, "detail-error")
            if d.find_element(By.ID, "detail-error").is_displayed()
            else None
        ),  # fmt: skip
        "the missing note",
    )
    assert "bad-field" in error.text and error.get_attribute("role") == "alert"
    screens.shot("refusal-needs-a-note")
    driver.find_element(By.ID, "r-note").send_keys("already answered on 2026-11-20")
    driver.find_element(By.ID, "refuse").click()
    wait(driver, lambda d: _status_is(d, "refused"), "refused")
    assert "manifestly-unfounded" in driver.find_element(By.ID, "d-result").text
    assert not driver.find_element(By.ID, "decide-block").is_displayed()
    wait(driver, lambda d: ("PR-NEW", "refused") in _rows(d), "the list updated")
    screens.shot("refused")

    # On a phone-sized window the tables become cards and nothing overflows sideways.
    driver.set_window_size(420, 900)
    wait(driver, lambda d: d.execute_script("return window.innerWidth") <= 420, "resized")
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{overflow}px of horizontal overflow at 420px"
    driver.execute_script("window.scrollTo(0, 0)")
    screens.shot("width-420")

    assert screens.taken == [
        "01-sign-in.png",
        "02-requests-overdue-first-and-holds.png",
        "03-filed-received.png",
        "04-identity-verified.png",
        "05-approved-completed-with-export.png",
        "06-export-download.png",
        "07-refusal-needs-a-note.png",
        "08-refused.png",
        "09-width-420.png",
    ]
    actions = [e.action for e in env.audit_after(0) if e.action.startswith("privacy.")]
    assert actions.count("privacy.verified") == 1 and actions.count("privacy.refused") == 1
