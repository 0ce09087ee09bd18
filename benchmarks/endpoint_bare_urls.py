"""The floor for any Django view: the FastAPI baseline's few lines as a plain async view.

Served by the same Django ASGI application as the endpoint (``BENCH_URLCONF`` names this
module), so the difference between this and the FastAPI app is Django's own per-request cost,
and the difference between this and the endpoint is ours.
"""

from importlib import import_module
from types import SimpleNamespace

from asgiref.sync import sync_to_async
from chatkit.server import StreamingResult
from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from chatkit_django.context import ChatKitContext
from chatkit_django.server import get_server

SessionStore = import_module(settings.SESSION_ENGINE).SessionStore


@csrf_exempt
async def chatkit_endpoint(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    session = SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    user = await sync_to_async(get_user)(SimpleNamespace(session=session))
    if not user.is_authenticated:
        return HttpResponse(status=403)
    result = await get_server().process(request.body, ChatKitContext(user=user))
    if isinstance(result, StreamingResult):
        return StreamingHttpResponse(result, content_type="text/event-stream")
    return HttpResponse(result.json, content_type="application/json")


urlpatterns = [path("chatkit/", chatkit_endpoint)]
