"""Every request type the SDK defines, through the endpoint as ChatKit.js sends it."""

from __future__ import annotations

import typing

import httpx
import pytest
from asgiref.sync import async_to_sync
from chatkit.types import ChatKitReq
from django.test import AsyncClient, Client, override_settings

from tests.chatkit_client import ENDPOINT, body, read_stream
from tests.endpoint.protocol_cases import CASES, Case, Reply


def sdk_request_types() -> set[str]:
    union = typing.get_args(ChatKitReq)[0]
    return {cls.model_fields["type"].default for cls in typing.get_args(union)}


def test_every_sdk_request_type_has_a_case():
    assert set(CASES) == sdk_request_types()


PROTOCOL_SERVER = "tests.testapp.server.ProtocolServer"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("request_type", sorted(CASES))
async def test_request_type_through_the_async_client(request_type, auser_factory):
    user = await auser_factory()
    client = AsyncClient()
    await client.aforce_login(user)

    async def send(request):
        response = await client.post(ENDPOINT, body(request), content_type="application/json")
        content = await read_stream(response) if response.streaming else response.content
        return Reply(response.status_code, response["Content-Type"], content)

    with override_settings(CHATKIT={"SERVER_CLASS": PROTOCOL_SERVER}):
        await CASES[request_type](Case(send, user))


@pytest.mark.live
def test_every_request_type_over_a_live_server(live_server_factory, user_factory):
    live_server_url = live_server_factory(env={"CHATKIT_TEST_SERVER_CLASS": PROTOCOL_SERVER})
    user = user_factory()
    client = Client()
    client.force_login(user)
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": "c" * 32}
    headers = {"X-CSRFToken": "c" * 32, "Content-Type": "application/json"}

    async def run_all():
        async with httpx.AsyncClient(
            base_url=live_server_url, cookies=cookies, headers=headers, timeout=60
        ) as http:

            async def send(request):
                response = await http.post(ENDPOINT, content=body(request))
                return Reply(
                    response.status_code,
                    response.headers["content-type"],
                    response.content,
                )

            for request_type, case in CASES.items():
                try:
                    await case(Case(send, user))
                except AssertionError as e:
                    raise AssertionError(f"{request_type}: {e}") from e

    async_to_sync(run_all)()
