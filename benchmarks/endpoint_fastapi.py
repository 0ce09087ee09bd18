"""The baseline: a bare FastAPI app running the same SDK server, responder and store.

It identifies the user the same way as the endpoint (the session cookie, session and user read
with Django's ``get_user()`` in one thread hop) and hands the body to ``server.process()``, as
the SDK's own FastAPI example does.
"""

import os
from importlib import import_module
from types import SimpleNamespace

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.endpoint_settings")
django.setup()

from asgiref.sync import sync_to_async
from chatkit.server import StreamingResult
from django.conf import settings
from django.contrib.auth import get_user
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from chatkit_django.context import ChatKitContext
from chatkit_django.server import get_server

app = FastAPI()
SessionStore = import_module(settings.SESSION_ENGINE).SessionStore


@app.post("/chatkit/")
async def chatkit_endpoint(request: Request) -> Response:
    session = SessionStore(request.cookies.get(settings.SESSION_COOKIE_NAME))
    user = await sync_to_async(get_user)(SimpleNamespace(session=session))
    if not user.is_authenticated:
        return Response(status_code=403)
    result = await get_server().process(await request.body(), ChatKitContext(user=user))
    if isinstance(result, StreamingResult):
        return StreamingResponse(result, media_type="text/event-stream")
    return Response(content=result.json, media_type="application/json")
