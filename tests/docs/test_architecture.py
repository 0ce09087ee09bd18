"""docs/concepts/architecture.md is true: its map names real modules and hooks, and every
example under "Where to override what" runs here, as the page shows it.

Each Python block of the page starts with the file it belongs in (``# mysite/access.py``);
it is executed as that module, and the ``CHATKIT["KEY"] = value`` lines of its section are
the settings it runs with. Change the page and these tests run the new code.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import sys
import types
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    InferenceOptions,
    ThreadGetByIdParams,
    ThreadItemDoneEvent,
    ThreadListParams,
    ThreadsGetByIdReq,
    ThreadsListReq,
    UserMessageItem,
    UserMessageTextContent,
)
from django.contrib.auth.models import Group
from django.core.cache import caches
from django.test import AsyncClient
from django.urls import include, path, reverse
from pydantic import TypeAdapter
from rest_framework.authtoken.models import Token

import chatkit_django
from chatkit_django.context import ChatKitContext
from chatkit_django.models import Attachment as AttachmentRow
from chatkit_django.models import Thread
from chatkit_django.server import DjangoChatKitServer
from tests import ROOT
from tests.chatkit_client import create_req, parse_sse, post, read_stream
from tests.factories import PNG, make_upload
from tests.testapp.server import EchoServer

PAGE = ROOT / "docs" / "concepts" / "architecture.md"
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.DOTALL | re.MULTILINE)
FILE_MARKER = re.compile(r"^# (?P<path>mysite/\w+\.py)$")
SETTING = re.compile(r'`CHATKIT\["(?P<key>\w+)"\] = (?P<value>[^`]+)`')


@dataclass
class Example:
    """One ``###`` section of "Where to override what"."""

    heading: str
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (module name, code)
    settings: dict[str, Any] = field(default_factory=dict)


def page_section(title: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def examples() -> dict[str, Example]:
    """The examples, keyed by the start of their heading (up to the colon)."""
    found: dict[str, Example] = {}
    for part in page_section("Where to override what").split("\n### ")[1:]:
        heading = part.splitlines()[0]
        example = Example(heading)
        for fence in FENCE.finditer(part):
            assert fence["lang"] == "python", heading
            first = fence["body"].splitlines()[0]
            marker = FILE_MARKER.match(first)
            assert marker, f"{heading}: a block must start with its file, not {first!r}"
            name = marker["path"].removesuffix(".py").replace("/", ".")
            example.blocks.append((name, fence["body"]))
        for setting in SETTING.finditer(part):
            example.settings[setting["key"]] = ast.literal_eval(setting["value"])
        found[heading.split(":")[0]] = example
    return found


def load(example: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Execute the section's block(s) as the modules they name; the last one is returned."""
    package = types.ModuleType("mysite")
    package.__path__ = []
    monkeypatch.setitem(sys.modules, "mysite", package)
    module = None
    for name, code in examples()[example].blocks:
        module = types.ModuleType(name)
        module.__file__ = f"{PAGE}:{name}"
        monkeypatch.setitem(sys.modules, name, module)
        setattr(package, name.rpartition(".")[2], module)
        exec(compile(code, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the page's code
    assert module is not None
    return module


def configure(example: str, settings: Any, **chatkit: Any) -> None:
    """The section's ``CHATKIT[...]`` lines (and ``chatkit``) over the test settings."""
    settings.CHATKIT = {**settings.CHATKIT, **examples()[example].settings, **chatkit}


# -- the page itself -----------------------------------------------------------------------


def package_modules() -> set[str]:
    """``name.py`` of every module at the top of the package, and ``_internal/``."""
    names = {f"{m.name}.py" for m in pkgutil.iter_modules(chatkit_django.__path__) if not m.ispkg}
    return (names - {"__init__.py"}) | {"_internal/"}


def table_rows() -> dict[str, str]:
    """Module -> its "Hooks it offers" cell, from the table under "Which module owns what"."""
    rows = {}
    for line in page_section("Which module owns what").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    return rows


def test_the_table_names_every_module_of_the_package() -> None:
    rows = table_rows()
    missing = package_modules() - rows.keys()
    assert not missing, f"Add these modules to docs/concepts/architecture.md: {sorted(missing)}"
    assert not rows.keys() - package_modules(), "The table names modules that do not exist"


def test_every_hook_the_page_names_exists() -> None:
    """``Class.method`` in the table and in the section headings: the class is in the package
    and has the method."""
    classes: dict[str, type] = {}
    for info in pkgutil.iter_modules(chatkit_django.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"chatkit_django.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                classes[value.__name__] = value
    named = " ".join(table_rows().values()) + " " + " ".join(examples())
    hooks = re.findall(r"`([A-Z]\w+)\.(\w+)`", named)
    assert len(hooks) > 20
    for class_name, attr in hooks:
        assert class_name in classes, f"{class_name} is not a class of chatkit_django"
        assert hasattr(classes[class_name], attr), f"{class_name}.{attr} does not exist"


def test_the_picture_names_real_modules_and_renders_everywhere() -> None:
    text = PAGE.read_text()
    picture = page_section("The layers").split("```text\n", 1)[1].split("```", 1)[0]
    for name in set(re.findall(r"\b([a-z_]+)\.py\b", picture)):
        assert f"{name}.py" in package_modules(), name
    # Plain ASCII in a fenced block: no snippet include (GitHub shows those raw), no font
    # whose box-drawing characters would break the columns.
    assert picture.isascii()
    assert "--8<--" not in text
    assert max(len(line) for line in picture.splitlines()) <= 100


def test_every_example_is_a_complete_block_of_this_packages_code() -> None:
    found = examples()
    assert list(found) == [
        "Who may do what",
        "What every call knows",
        "A context of your own",
        "Where the bytes go",
        "Who is asking",
        "Refuse before streaming",
        "What the model sees",
        "How fast",
        "What users may mention",
    ]
    for example in found.values():
        assert example.blocks, example.heading
        for _name, code in example.blocks:
            # Nothing from the test suite or the example project: a reader has neither.
            assert not re.search(r"\b(tests|example_project)\.", code)
        for value in example.settings.values():
            paths = value if isinstance(value, list) else [value]
            modules = {name for name, _ in example.blocks}
            assert all(p.rpartition(".")[0] in modules for p in paths), example.heading


# -- the examples, run -------------------------------------------------------------------

# The examples go through the HTTP views, whose sync parts run in other threads.
uses_db = pytest.mark.django_db(transaction=True)


async def logged_in(user: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def stream(client: AsyncClient, request: Any, **extra: Any) -> list[dict[str, Any]]:
    response = await post(client, request, **extra)
    assert response.status_code == 200, response.content
    return parse_sse(await read_stream(response))


async def new_thread(client: AsyncClient) -> str:
    events = await stream(client, create_req("hello"))
    return next(e["thread"]["id"] for e in events if e["type"] == "thread.created")


async def upload(client: AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        reverse("chatkit:upload"),
        {"file": make_upload()},
        **extra,
    )
    assert response.status_code == 201, response.content
    return response.json()


async def content(client: AsyncClient, attachment_id: str) -> Any:
    url = reverse("chatkit:attachment-content", kwargs={"attachment_id": attachment_id})
    return await client.get(url)


def get_by_id(thread_id: str) -> ThreadsGetByIdReq:
    return ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=thread_id))


class QuietServer(DjangoChatKitServer):
    """Answers "ok", reading nothing of the context (which may be a project's own type)."""

    async def respond(self, thread: Any, input_user_message: Any, context: Any) -> Any:
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[AssistantMessageContent(text="ok")],
            )
        )


class LanguageServer(QuietServer):
    """Answers with ``context.extra["language"]``."""

    async def respond(self, thread: Any, input_user_message: Any, context: Any) -> Any:
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[AssistantMessageContent(text=context.extra["language"])],
            )
        )


@uses_db
async def test_access_rule_staff_read_everything_and_change_nothing(
    settings: Any, monkeypatch: pytest.MonkeyPatch, auser_factory: Any
) -> None:
    load("Who may do what", monkeypatch)
    configure("Who may do what", settings)
    owner = await logged_in(await auser_factory())
    staff = await logged_in(await auser_factory(is_staff=True))
    other = await logged_in(await auser_factory())
    thread_id = await new_thread(owner)
    attachment = await upload(owner)

    # The endpoint's store and the sync content view ask the same rule.
    assert (await post(staff, get_by_id(thread_id))).status_code == 200
    response = await content(staff, attachment["id"])
    assert response.status_code == 200
    assert b"".join([chunk async for chunk in response.streaming_content]) == PNG
    assert (await post(other, get_by_id(thread_id))).status_code == 404
    assert (await content(other, attachment["id"])).status_code == 404
    # Viewing is not deleting.
    delete = {"type": "threads.delete", "params": {"thread_id": thread_id}}
    assert (await post(staff, json.dumps(delete))).status_code == 404
    assert await Thread.objects.filter(pk=thread_id).aexists()


@uses_db
async def test_context_factory_reaches_respond(
    settings: Any, monkeypatch: pytest.MonkeyPatch, auser_factory: Any
) -> None:
    load("What every call knows", monkeypatch)
    configure("What every call knows", settings, SERVER_CLASS=LanguageServer)
    client = await logged_in(await auser_factory())
    events = await stream(client, create_req("bonjour"), headers={"Accept-Language": "fr"})
    assert events[-1]["item"]["content"][0]["text"] == "fr"


@uses_db
async def test_a_context_of_your_own_works_on_the_endpoint_and_the_uploads(
    settings: Any, monkeypatch: pytest.MonkeyPatch, auser_factory: Any
) -> None:
    load("A context of your own", monkeypatch)
    configure("A context of your own", settings, SERVER_CLASS=QuietServer)
    user = await auser_factory()
    client = await logged_in(user)

    thread_id = await new_thread(client)
    assert (await Thread.objects.aget(pk=thread_id)).owner_id == user.pk
    attachment = await upload(client)
    assert (await AttachmentRow.objects.aget(pk=attachment["id"])).owner_id == user.pk
    assert "sig=" in attachment["preview_url"]  # the rule let its uploader view it
    assert (await content(client, attachment["id"])).status_code == 200


@uses_db
async def test_each_users_bytes_in_their_own_directory(
    settings: Any, monkeypatch: pytest.MonkeyPatch, auser_factory: Any, tmp_path: Path
) -> None:
    load("Where the bytes go", monkeypatch)
    configure("Where the bytes go", settings)
    settings.MEDIA_ROOT = str(tmp_path)
    alice, bob = await auser_factory(), await auser_factory()
    alice_client = await logged_in(alice)

    attachment = await upload(alice_client)
    row = await AttachmentRow.objects.aget(pk=attachment["id"])
    stored = tmp_path / "chatkit" / str(alice.pk) / row.file.name
    assert stored.read_bytes() == PNG
    assert not (tmp_path / "chatkit" / str(bob.pk)).exists()
    response = await content(alice_client, attachment["id"])
    assert b"".join([chunk async for chunk in response.streaming_content]) == PNG

    delete = {"type": "attachments.delete", "params": {"attachment_id": attachment["id"]}}
    assert (await post(alice_client, json.dumps(delete))).status_code == 200
    assert not stored.exists()


@uses_db
async def test_bearer_tokens_on_every_route(
    settings: Any, monkeypatch: pytest.MonkeyPatch, auser_factory: Any
) -> None:
    load("Who is asking", monkeypatch)
    configure("Who is asking", settings)
    token = await Token.objects.acreate(user=await auser_factory())
    client = AsyncClient(enforce_csrf_checks=True)  # no session: no CSRF token needed
    bearer = {"headers": {"Authorization": f"Bearer {token.key}"}}

    listing = ThreadsListReq(params=ThreadListParams())
    assert (await post(client, listing, **bearer)).status_code == 200
    await upload(client, **bearer)
    search = await client.get(reverse("chatkit:entity-search"), {"q": ""}, **bearer)
    assert search.status_code == 200

    wrong = await post(client, listing, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"] == "Bearer"


@uses_db
async def test_preflight_refuses_a_thread_over_the_cap(
    settings: Any, monkeypatch: pytest.MonkeyPatch, auser_factory: Any
) -> None:
    chat = load("Refuse before streaming", monkeypatch)
    monkeypatch.setattr(chat, "MAX_THREADS", 1)
    server = type("CappedEchoServer", (chat.MyChatKitServer, EchoServer), {})
    configure("Refuse before streaming", settings, SERVER_CLASS=server)
    client = await logged_in(await auser_factory())

    await new_thread(client)
    refused = await post(client, create_req("one more"))
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Delete a conversation to start a new one.",
        "code": "permission_denied",
    }
    assert await Thread.objects.acount() == 1


@uses_db
async def test_converter_describes_images_instead_of_sending_them(
    settings: Any, monkeypatch: pytest.MonkeyPatch, auser_factory: Any
) -> None:
    chat = load("What the model sees", monkeypatch)
    server = type("TextOnlyEchoServer", (chat.MyChatKitServer, EchoServer), {})
    configure("What the model sees", settings, SERVER_CLASS=server)
    user = await auser_factory()
    attachment = TypeAdapter(Attachment).validate_python(await upload(await logged_in(user)))
    context = ChatKitContext(user=user)

    converter = server().get_thread_item_converter(context)
    assert isinstance(converter, chat.TextOnlyConverter)
    message = UserMessageItem(
        id="msg_1",
        thread_id="thr_1",
        created_at=datetime.now(),
        content=[UserMessageTextContent(text="what is this?")],
        attachments=[attachment],
        inference_options=InferenceOptions(),
    )
    model_input = json.dumps(await converter.to_agent_input([message]))
    note = '[The user attached the image "cat.png", which you cannot see.]'
    assert json.dumps(note)[1:-1] in model_input
    assert "input_image" not in model_input


@uses_db
async def test_staff_are_not_throttled(
    settings: Any, monkeypatch: pytest.MonkeyPatch, auser_factory: Any
) -> None:
    views = load("How fast", monkeypatch)
    urls = types.ModuleType("docs_architecture_urls")
    urls.urlpatterns = [
        path("chatkit/", views.MyChatKitView.as_view()),
        path("chatkit/", include("chatkit_django.urls")),
    ]
    monkeypatch.setitem(sys.modules, urls.__name__, urls)
    settings.ROOT_URLCONF = urls.__name__
    settings.CACHES = {
        **settings.CACHES,
        "docs_throttles": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "docs-architecture-throttles",
        },
    }
    configure(
        "How fast", settings, THROTTLE_CACHE="docs_throttles", THROTTLE_RATES={"other": "1/min"}
    )
    listing = ThreadsListReq(params=ThreadListParams())
    staff = await logged_in(await auser_factory(is_staff=True))
    user = await logged_in(await auser_factory())
    try:
        for _ in range(3):
            assert (await post(staff, listing)).status_code == 200
        assert (await post(user, listing)).status_code == 200
        assert (await post(user, listing)).status_code == 429
    finally:
        caches["docs_throttles"].clear()


@uses_db
async def test_mentions_of_colleagues_only(
    settings: Any, monkeypatch: pytest.MonkeyPatch, auser_factory: Any
) -> None:
    load("What users may mention", monkeypatch)
    configure("What users may mention", settings)
    alice = await auser_factory(username="alice")
    bob = await auser_factory(username="bob")
    carol = await auser_factory(username="carol")
    team = await Group.objects.acreate(name="team")
    await team.user_set.aadd(alice, bob)
    client = await logged_in(alice)

    search = await client.get(reverse("chatkit:entity-search"), {"q": ""})
    found = {entity["id"] for entity in search.json()["data"]}
    assert found == {f"people:{alice.pk}", f"people:{bob.pk}"}
    preview = reverse("chatkit:entity-preview")
    assert (await client.get(preview, {"id": f"people:{bob.pk}"})).status_code == 200
    assert (await client.get(preview, {"id": f"people:{carol.pk}"})).status_code == 404
