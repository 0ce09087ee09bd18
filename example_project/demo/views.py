"""The demo page: ChatKit.js through ``{% chatkit_widget %}``."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

UPLOAD_STRATEGIES = {"direct": "direct", "two_phase": "two_phase"}


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """``/?uploads=two_phase`` switches ChatKit.js to two-phase uploads."""
    strategy = UPLOAD_STRATEGIES.get(request.GET.get("uploads", ""), "direct")
    options = {
        "header": {"title": {"text": "chatkit-django demo"}},
        "composer": {
            "placeholder": "Say something, @-mention an article, attach a file…",
            "dictation": {"enabled": True},
        },
        "startScreen": {
            "greeting": f"Hello {request.user.get_username()}!",
            "prompts": [
                {"label": "Say hello", "prompt": "Hello there"},
                {"label": "Take the survey", "prompt": "survey"},
            ],
        },
    }
    return render(
        request,
        "demo/index.html",
        {"chatkit_options": options, "upload_strategy": strategy},
    )
