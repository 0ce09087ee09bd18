"""The admin in a real browser: Debian's Chromium driven by Playwright.

The example project runs as a real server process (``example_server`` in ``tests/browser/conftest.py``).
Screenshots go to ``test-artifacts/``; with ``CHATKIT_UPDATE_DOCS_SCREENSHOT=1`` the guide's
screenshot in ``docs/`` is refreshed too.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests import ROOT
from tests.browser.chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

DOCS_SCREENSHOT = ROOT / "docs" / "img" / "admin-thread.png"

pytestmark = pytest.mark.browser


def test_admin_shows_a_thread_in_chromium(example_server: tuple[str, dict[str, str]]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, seeded = example_server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"{base}/admin/login/?next=/admin/chatkit_django/thread/")
            page.fill("#id_username", seeded["username"])
            page.fill("#id_password", seeded["password"])
            page.click("input[type=submit]")

            # The list: found by a word of a message, with counts and the latest feedback.
            page.fill("#searchbar", "gasket")
            page.press("#searchbar", "Enter")
            row = page.locator("#result_list tbody tr")
            expect(row).to_have_count(1)
            expect(row).to_contain_text("Broken espresso machine")
            expect(row.locator("td.field-item_count")).to_have_text("5")
            expect(row.locator("td.field-attachment_count")).to_have_text("1")
            expect(row.locator("td.field-latest_feedback")).to_contain_text("negative")
            page.screenshot(path=str(ARTIFACTS / "admin-thread-list.png"), full_page=True)

            # The transcript, as the user saw it.
            row.locator("th a").click()
            transcript = page.locator("#chatkit-transcript")
            expect(transcript).to_be_visible()
            user = page.locator("#item-msg_question")
            expect(user).to_contain_text("leaks water from the bottom")
            expect(user.locator(".chatkit-tag")).to_have_text("@Barista Pro")
            thumbnail = user.locator(".chatkit-chip img")
            expect(thumbnail).to_be_visible()
            # The image really loaded through the access-checked content view.
            page.wait_for_function(
                "img => img.complete && img.naturalWidth === 240", arg=thumbnail.element_handle()
            )
            expect(user.locator("a[download]")).to_have_text("machine-photo.png")
            hidden = page.locator("#item-hcx_plan")
            expect(hidden.locator(".chatkit-badge-hidden")).to_have_text("hidden from the user")
            structured = page.locator("#item-si_details")
            expect(structured).to_contain_text("When does it leak?")
            expect(structured).to_contain_text("While brewing")
            expect(structured.locator(".chatkit-answer").nth(1)).to_have_text("skipped")
            advice = page.locator("#item-msg_advice")
            expect(advice.locator(".chatkit-markdown strong")).to_have_text("group gasket")
            expect(advice.locator(".chatkit-badge-negative")).to_contain_text("negative")
            # Item JSON opens for debugging.
            advice.locator("details.chatkit-json summary").click()
            expect(advice.locator("details.chatkit-json pre")).to_contain_text('"msg_advice"')
            advice.locator("details.chatkit-json summary").click()
            # Read-only: no save button, no editable field.
            expect(page.locator("input[name=_save]")).to_have_count(0)
            expect(page.locator("textarea")).to_have_count(0)

            shot = ARTIFACTS / "admin-thread.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("CHATKIT_UPDATE_DOCS_SCREENSHOT") == "1":
                DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
                shutil.copyfile(shot, DOCS_SCREENSHOT)
        finally:
            browser.close()
