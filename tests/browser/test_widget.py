"""``{% chatkit_widget %}``'s JavaScript in Debian's Chromium, against the example project.

ChatKit.js comes from OpenAI's CDN, which this machine cannot reach; a stand-in defines
``<openai-chatkit>`` and keeps the options the page hands to ``setOptions()``. The test then
makes the requests ChatKit.js makes, through those options: ``api.fetch`` to the endpoint
(streaming and JSON), ``api.fetch`` to the direct upload URL, and the @-mention callbacks.
What is checked is our part: the options, the CSRF token and session on every request, and
the answers of a real server process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from chatkit.types import ItemsListParams, ItemsListReq, ThreadListParams, ThreadsListReq

from tests import ROOT
from tests.browser.chromium import (
    ARTIFACTS,
    CHATKIT_JS,
    CHROMIUM,
    CHROMIUM_ARGS,
    POST_THROUGH_API_FETCH,
    STAND_IN,
)
from tests.chatkit_client import body, create_req, parse_sse

pytestmark = pytest.mark.browser


POST_WITHOUT_TOKEN = """async ([payload]) => {
  const response = await fetch(window.chatkitOptions.api.url, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: payload,
    credentials: "same-origin",
  });
  return {status: response.status, body: await response.json()};
}"""
UPLOAD_THROUGH_API_FETCH = """async () => {
  const api = window.chatkitOptions.api;
  const form = new FormData();
  form.append("file", new File(["espresso notes"], "notes.txt", {type: "text/plain"}));
  // With a JSON Content-Type, as a client that sets one on every request would send it.
  const response = await api.fetch(api.uploadStrategy.uploadUrl, {
    method: "POST", body: form, headers: {"Content-Type": "application/json"},
  });
  return {status: response.status, body: await response.json()};
}"""
TAG_SEARCH = """async ([query]) => await window.chatkitOptions.entities.onTagSearch(query)"""
PREVIEW = """async ([entity]) => await window.chatkitOptions.entities.onRequestPreview(entity)"""


def test_the_widget_talks_to_the_example_project_from_chromium(example_server):
    from playwright.sync_api import sync_playwright

    base, _ = example_server
    ARTIFACTS.mkdir(exist_ok=True)
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
            page.wait_for_function("window.chatkitOptions !== undefined")
            options = page.evaluate("JSON.parse(JSON.stringify(window.chatkitOptions))")
            assert options["api"]["url"] == "/chatkit/"
            assert options["api"]["uploadStrategy"] == {
                "type": "direct",
                "uploadUrl": "/chatkit/upload/",
            }

            # Without the widget's fetch, a session request has no CSRF token: refused.
            refused = page.evaluate(POST_WITHOUT_TOKEN, [body(create_req("no token"))])
            assert refused["status"] == 403
            assert refused["body"]["code"] == "permission_denied"
            assert "CSRF" in refused["body"]["detail"]

            # A direct upload through api.fetch: the token and the session go along.
            upload = page.evaluate(UPLOAD_THROUGH_API_FETCH)
            assert upload["status"] == 201, upload
            attachment = upload["body"]
            assert attachment["name"] == "notes.txt"
            assert attachment["mime_type"] == "text/plain"

            # @-mention search and preview, through the widget's callbacks.
            found = page.evaluate(TAG_SEARCH, ["upload"])
            assert [entity["title"] for entity in found] == ["Uploading files"]
            preview = page.evaluate(PREVIEW, [found[0]])
            assert preview["preview"] is not None

            # A message with that attachment streams back the demo's answer.
            request = create_req("hello from chromium", attachments=[attachment["id"]])
            answer = page.evaluate(POST_THROUGH_API_FETCH, [body(request)])
            assert answer["status"] == 200
            assert answer["type"] == "text/event-stream"
            events = parse_sse(answer["text"].encode())
            assert events[0]["type"] == "thread.created"
            done = [e for e in events if e["type"] == "thread.item.done"]
            assert done[0]["item"]["attachments"][0]["id"] == attachment["id"]
            reply = done[-1]["item"]["content"][0]["text"]
            assert "You said: _hello from chromium_" in reply
            assert "- notes.txt (text/plain)" in reply

            # And a JSON request lists the thread it made.
            listing = page.evaluate(
                POST_THROUGH_API_FETCH, [body(ThreadsListReq(params=ThreadListParams()))]
            )
            assert listing["status"] == 200
            assert listing["type"] == "application/json"
            threads = json.loads(listing["text"])["data"]
            assert [t["id"] for t in threads] == [events[0]["thread"]["id"]]
            page.screenshot(path=str(ARTIFACTS / "widget-page.png"))
        finally:
            browser.close()


def test_the_tour_button_opens_the_thread_the_server_started(example_server, tmp_path):
    # The example project's button: its view starts and answers a thread (astart_thread in a
    # real server process), and the page it redirects to hands ChatKit.js initialThread.
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
            page.click("text=Take the tour")
            page.wait_for_url(re.compile(r".*/\?agent=support&thread=thr_\w+$"))
            thread_id = page.url.split("&thread=")[1]
            page.wait_for_function("window.chatkitOptions !== undefined")
            assert page.evaluate("window.chatkitOptions.initialThread") == thread_id

            items = ItemsListReq(params=ItemsListParams(thread_id=thread_id, order="asc"))
            listing = page.evaluate(POST_THROUGH_API_FETCH, [body(items)])
            assert listing["status"] == 200
            question, answer = json.loads(listing["text"])["data"]
            assert question["content"][0]["text"] == "Show me around this demo"
            assert "You said: _Show me around this demo_" in answer["content"][0]["text"]
        finally:
            browser.close()

    # chatkit_send from a shell, on the same database: exit status and output as a script sees.
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "CHATKIT_DEMO_DATA": str(tmp_path),
    }
    # Not in development mode (any value turns it on), which prints the SDK's deprecations.
    for name in ("PYTHONDEVMODE", "CHATKIT_TEST_DB", "OPENAI_API_KEY"):
        env.pop(name, None)

    def chatkit_send(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "manage.py", "chatkit_send", *args]
        return subprocess.run(
            command, check=False, cwd=ROOT, env=env, capture_output=True, text=True
        )

    sent = chatkit_send("--user", "demo", "--thread", thread_id, "Thanks!")
    assert (sent.returncode, sent.stderr) == (0, "")
    assert sent.stdout.splitlines()[0] == thread_id
    assert "You said: _Thanks!_" in sent.stdout
    refused = chatkit_send("--user", "nobody", "hi")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == "CommandError: No user with {'username': 'nobody'}.\n"
