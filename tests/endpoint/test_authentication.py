"""Who may talk to the endpoint: DRF authenticators, the session, and the context hook."""

from __future__ import annotations

import pytest
from chatkit.types import ThreadListParams, ThreadsListReq
from django.test import AsyncClient, override_settings
from django.urls import path
from rest_framework.authtoken.models import Token

from chatkit_django.context import ChatKitContext
from chatkit_django.models import Thread
from chatkit_django.views import ChatKitView
from tests.chatkit_client import create_req, parse_sse, post, read_stream

pytestmark = pytest.mark.django_db(transaction=True)

ECHO = "tests.testapp.server.EchoServer"
TOKEN_AUTH = {
    "SERVER_CLASS": ECHO,
    "AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
}
LIST = ThreadsListReq(params=ThreadListParams())


async def test_token_authentication_needs_no_csrf(auser_factory):
    user = await auser_factory()
    token = await Token.objects.acreate(user=user)
    client = AsyncClient(enforce_csrf_checks=True)
    with override_settings(CHATKIT=TOKEN_AUTH):
        response = await post(
            client, create_req("by token"), headers={"Authorization": f"Token {token.key}"}
        )
        events = parse_sse(await read_stream(response))
    assert response.status_code == 200
    assert events[-1]["item"]["content"][0]["text"] == "echo: by token"


async def test_wrong_token_is_401_with_www_authenticate():
    with override_settings(CHATKIT=TOKEN_AUTH):
        response = await post(AsyncClient(), LIST, headers={"Authorization": "Token nope"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Invalid token.", "code": "authentication_failed"}


async def test_no_credentials_with_authenticators_is_401():
    with override_settings(CHATKIT=TOKEN_AUTH):
        response = await post(AsyncClient(), LIST)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "not_authenticated"


async def test_session_still_works_beside_authenticators(auser_factory):
    client = AsyncClient()
    await client.aforce_login(await auser_factory())
    with override_settings(CHATKIT=TOKEN_AUTH):
        response = await post(client, LIST)
    assert response.status_code == 200


@pytest.mark.parametrize("factory", ["sync_context", "async_context"])
async def test_context_factory_builds_the_sdk_context(factory, auser_factory):
    client = AsyncClient()
    await client.aforce_login(await auser_factory())
    settings = {"SERVER_CLASS": ECHO, "CONTEXT_FACTORY": f"tests.testapp.contexts.{factory}"}
    with override_settings(CHATKIT=settings):
        response = await post(client, create_req("hi"), headers={"Accept-Language": "fr"})
        events = parse_sse(await read_stream(response))
    kind = factory.split("_")[0]
    assert events[-1]["item"]["content"][0]["text"] == f"{kind} fr: hi"


class TenantView(ChatKitView):
    async def get_context(self, request):
        return ChatKitContext(user=request.user, request=request, extra={"echo_prefix": "tenant"})


urlpatterns = [path("tenant/", TenantView.as_view())]


@override_settings(ROOT_URLCONF=__name__)
async def test_get_context_is_overridable_per_view(auser_factory):
    client = AsyncClient()
    await client.aforce_login(await auser_factory())
    response = await client.post(
        "/tenant/", create_req("x").model_dump_json(), content_type="application/json"
    )
    events = parse_sse(await read_stream(response))
    assert events[-1]["item"]["content"][0]["text"] == "tenant: x"


@override_settings(
    MIDDLEWARE=[
        "django.middleware.gzip.GZipMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
)
async def test_streams_are_never_gzipped(auser_factory):
    client = AsyncClient()
    await client.aforce_login(await auser_factory())
    response = await post(client, create_req("x" * 500), headers={"Accept-Encoding": "gzip"})
    raw = await read_stream(response)
    assert not response.has_header("Content-Encoding")
    assert parse_sse(raw)[-1]["item"]["content"][0]["text"].startswith("echo: xxx")
    # JSON answers are left to the project's middleware: compressed when big enough.
    response = await post(client, LIST, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200


@override_settings(MIDDLEWARE=[])
async def test_session_works_without_any_middleware(auser_factory):
    # The endpoint reads the session itself when no middleware put a user on the request;
    # CSRF is still enforced for it.
    user = await auser_factory()
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    response = await post(client, LIST)
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    client.cookies["csrftoken"] = "d" * 32
    response = await post(client, create_req("bare"), headers={"X-CSRFToken": "d" * 32})
    events = parse_sse(await read_stream(response))
    assert events[-1]["item"]["content"][0]["text"] == "echo: bare"
    assert await Thread.objects.filter(owner=user).acount() == 1
    client.cookies["sessionid"] = "not-a-session"
    response = await post(client, LIST, headers={"X-CSRFToken": "d" * 32})
    assert response.status_code == 403
    assert response.json()["code"] == "not_authenticated"


MIDDLEWARE_STACKS = [
    pytest.param([], id="no-middleware"),
    pytest.param(
        [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        id="session-and-auth-middleware",
    ),
]


@pytest.mark.parametrize("middleware", MIDDLEWARE_STACKS)
async def test_a_session_from_before_a_password_change_is_refused(middleware, auser_factory):
    # The session carries a hash of the password; Django's get_user() drops it when it no
    # longer matches, which is what logs out other devices on a password change.
    user = await auser_factory()
    client = AsyncClient()
    await client.aforce_login(user)
    with override_settings(MIDDLEWARE=middleware):
        assert (await post(client, LIST)).status_code == 200
        user.set_password("changed")
        await user.asave()
        response = await post(client, LIST)
    assert response.status_code == 403
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("middleware", MIDDLEWARE_STACKS)
async def test_session_and_user_load_in_one_thread_hop(middleware, auser_factory, monkeypatch):
    from chatkit_django import authentication, streaming

    hops = []
    real = streaming.sync_to_async

    def counting(func, *args, **kwargs):
        hops.append(getattr(func, "__name__", func))
        return real(func, *args, **kwargs)

    monkeypatch.setattr(streaming, "sync_to_async", counting)
    monkeypatch.setattr(authentication, "sync_to_async", counting)
    user = await auser_factory()
    client = AsyncClient()
    await client.aforce_login(user)
    seen = []

    async def context(request):
        # The user the endpoint found is what request.auser() gives: no second lookup.
        seen.append((await request.auser()) is request.user)
        return ChatKitContext(user=request.user, request=request)

    settings = {"SERVER_CLASS": ECHO, "CONTEXT_FACTORY": context}
    with override_settings(MIDDLEWARE=middleware, CHATKIT=settings):
        response = await post(client, LIST)
    assert response.status_code == 200
    # Middleware's session or the one built from the cookie: user and session in one hop.
    assert hops == ["find_session_user"]
    assert seen == [True]
