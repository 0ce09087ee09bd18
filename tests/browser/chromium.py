"""Debian's Chromium as Playwright drives it (``make browser`` installs it), and where the
browser tests leave their screenshots."""

from tests import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


CHATKIT_JS = "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"


STAND_IN = """
customElements.define("openai-chatkit", class extends HTMLElement {
  setOptions(options) { window.chatkitOptions = options; }
});
"""


# The requests, made as ChatKit.js makes them: through the options it was given.
POST_THROUGH_API_FETCH = """async ([payload]) => {
  const api = window.chatkitOptions.api;
  const response = await api.fetch(api.url, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: payload,
  });
  return {status: response.status, type: response.headers.get("Content-Type"),
          text: await response.text()};
}"""
