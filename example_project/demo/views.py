"""The demo page: ChatKit.js through ``{% chatkit_widget %}``."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from chatkit_django.conversations import astart_thread
from example_project.demo.context import AGENTS

UPLOAD_STRATEGIES = {"direct": "direct", "two_phase": "two_phase"}


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """``/?agent=sales`` talks to the sales agent (each agent keeps its own history);
    ``/?uploads=two_phase`` switches ChatKit.js to two-phase uploads; ``?thread=<id>``
    opens that thread."""
    strategy = UPLOAD_STRATEGIES.get(request.GET.get("uploads", ""), "direct")
    agent = request.GET.get("agent", "")
    if agent not in AGENTS:
        agent = next(iter(AGENTS))
    options = {
        "header": {"title": {"text": f"chatkit-django demo · {AGENTS[agent]}"}},
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
        {
            "chatkit_options": options,
            "upload_strategy": strategy,
            "initial_thread": request.GET.get("thread"),
            "agent": agent,
            "agents": AGENTS,
        },
    )


# --8<-- [start:welcome]
@login_required
@require_POST
async def welcome(request: HttpRequest) -> HttpResponse:
    """ "Take the tour": the server starts a thread, answers it, and the page opens it.

    The thread is the current agent's (the form's ``agent``): each agent has its own history.
    """
    agent = request.POST.get("agent")
    if agent not in AGENTS:
        agent = next(iter(AGENTS))
    thread = await astart_thread(
        await request.auser(),
        "Show me around this demo",
        title="Welcome tour",
        metadata={"started_by": "welcome button"},
        scope=agent,
    )
    return redirect(f"{reverse('index')}?agent={agent}&thread={thread.id}")


# --8<-- [end:welcome]
