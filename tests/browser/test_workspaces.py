"""The example project's two agents, from Chromium: the same user, two separate histories.

The page at ``/?agent=sales`` hands ChatKit.js a ``fetch`` that sends the agent as the scope
header; a real server process keeps each agent's threads apart. ChatKit.js itself comes from
a CDN this machine cannot reach: a stand-in keeps the options (see test_widget_browser.py).
"""

from __future__ import annotations

import json

import pytest
from chatkit.types import ThreadListParams, ThreadsListReq

from tests.browser.chromium import (
    CHATKIT_JS,
    CHROMIUM,
    CHROMIUM_ARGS,
    POST_THROUGH_API_FETCH,
    STAND_IN,
)
from tests.chatkit_client import body, create_req, parse_sse

pytestmark = pytest.mark.browser


def test_each_agent_of_the_example_keeps_its_own_history(example_server):
    from playwright.sync_api import sync_playwright

    base, _ = example_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route(
                CHATKIT_JS,
                lambda route: route.fulfill(
                    status=200, content_type="application/javascript", body=STAND_IN
                ),
            )
            page.goto(f"{base}/admin/login/?next=/")
            page.fill("#id_username", "demo")
            page.fill("#id_password", "demo")
            page.click("input[type=submit]")
            page.wait_for_url(f"{base}/")

            def open_agent(agent: str) -> None:
                page.goto(f"{base}/?agent={agent}")
                page.wait_for_function("window.chatkitOptions !== undefined")

            def start(text: str) -> str:
                answer = page.evaluate(POST_THROUGH_API_FETCH, [body(create_req(text))])
                assert answer["status"] == 200, answer
                return parse_sse(answer["text"].encode())[0]["thread"]["id"]

            def listed() -> list[str]:
                request = body(ThreadsListReq(params=ThreadListParams()))
                answer = page.evaluate(POST_THROUGH_API_FETCH, [request])
                assert answer["status"] == 200, answer
                return [t["id"] for t in json.loads(answer["text"])["data"]]

            open_agent("sales")
            sales = start("a quote for 40 seats")
            assert listed() == [sales]
            open_agent("support")
            assert listed() == []
            support = start("the printer is on fire")
            assert listed() == [support]
            open_agent("sales")
            assert listed() == [sales]
        finally:
            browser.close()
