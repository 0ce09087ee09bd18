"""@-mention search and preview views over CHATKIT['ENTITY_SOURCES']."""

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from chatkit_django.entities import get_entity_sources, resolve_entity
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db

SOURCES = ["tests.testapp.entities.NoteSource", "tests.testapp.entities.PublicNoteSource"]


@pytest.fixture(autouse=True)
def _sources(settings: Any) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "ENTITY_SOURCES": SOURCES[:1]}


@pytest.fixture
def alice(user_factory: Any) -> Any:
    return user_factory(username="alice")


@pytest.fixture
def bob(user_factory: Any) -> Any:
    return user_factory(username="bob")


def search(client: Any, **params: str) -> Any:
    return client.get(reverse("chatkit:entity-search"), params)


def test_search_returns_the_users_matching_entities(client: Any, alice: Any, bob: Any) -> None:
    mine = Note.objects.create(owner=alice, title="Quarterly plan", body="Grow by 10%")
    Note.objects.create(owner=alice, title="Groceries", body="milk")
    Note.objects.create(owner=bob, title="Bob's plan", body="secret")
    client.force_login(alice)

    response = search(client, q="plan")

    assert response.status_code == 200
    assert response.json() == {
        "data": [
            {
                "id": f"note:{mine.pk}",
                "title": "Quarterly plan",
                "interactive": True,
                "data": {"source": "note"},
                "group": "Notes",
                "icon": "document",
            }
        ]
    }


def test_search_matches_every_search_field_case_insensitively(client: Any, alice: Any) -> None:
    Note.objects.create(owner=alice, title="A", body="the PLAN inside")
    Note.objects.create(owner=alice, title="b plan", body="")
    Note.objects.create(owner=alice, title="c", body="nothing")
    client.force_login(alice)

    titles = [e["title"] for e in search(client, q="Plan").json()["data"]]

    assert titles == ["A", "b plan"]  # NoteSource orders by title


def test_empty_query_lists_up_to_the_limit(
    client: Any, alice: Any, settings: Any, django_assert_num_queries: Any
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "ENTITY_SEARCH_LIMIT": 3}
    for n in range(5):
        Note.objects.create(owner=alice, title=f"note {n}")
    client.force_login(alice)

    # Session + user, then one query for the one source.
    with django_assert_num_queries(3):
        data = search(client).json()["data"]

    assert [e["title"] for e in data] == ["note 0", "note 1", "note 2"]


def test_limit_spans_sources_and_source_param_restricts(
    client: Any, alice: Any, settings: Any
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "ENTITY_SOURCES": SOURCES, "ENTITY_SEARCH_LIMIT": 3}
    for n in range(2):
        Note.objects.create(owner=alice, title=f"note {n}")
    client.force_login(alice)

    ids = [e["id"].split(":")[0] for e in search(client).json()["data"]]
    only_public = search(client, source="public").json()["data"]

    assert ids == ["note", "note", "public"]
    assert [e["data"]["source"] for e in only_public] == ["public", "public"]
    assert only_public[0]["interactive"] is False
    assert "group" not in only_public[0]


def test_search_errors_are_json(client: Any, alice: Any) -> None:
    assert search(client, q="x").status_code == 403
    assert search(client, q="x").json()["code"] == "not_authenticated"
    client.force_login(alice)

    too_long = search(client, q="x" * 201)
    unknown = search(client, source="nope")

    assert (too_long.status_code, too_long.json()["code"]) == (400, "query_too_long")
    assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_source")
    assert client.post(reverse("chatkit:entity-search")).status_code == 405


def preview(client: Any, entity_id: str) -> Any:
    return client.get(reverse("chatkit:entity-preview"), {"id": entity_id})


def test_preview_is_a_basic_widget_built_from_the_source(client: Any, alice: Any) -> None:
    note = Note.objects.create(owner=alice, title='Plan "Q3"', body="Grow <fast>")
    client.force_login(alice)

    response = preview(client, f"note:{note.pk}")

    assert response.status_code == 200
    assert response.json() == {
        "preview": {
            "type": "Basic",
            "gap": 2,
            "children": [
                {"type": "Title", "value": 'Plan "Q3"', "size": "sm"},
                {"type": "Caption", "value": "Notes"},
                {"type": "Text", "value": "Grow <fast>"},
            ],
        }
    }


def test_preview_can_be_none(client: Any, alice: Any, settings: Any) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "ENTITY_SOURCES": SOURCES}
    note = Note.objects.create(owner=alice, title="x")
    client.force_login(alice)

    assert preview(client, f"public:{note.pk}").json() == {"preview": None}


def test_another_users_entity_is_not_found(client: Any, alice: Any, bob: Any) -> None:
    note = Note.objects.create(owner=bob, title="secret")
    client.force_login(alice)

    for entity_id in [f"note:{note.pk}", "note:999999", "nope:1", "note:", "note:abc"]:
        response = preview(client, entity_id)
        assert (response.status_code, response.json()) == (
            404,
            {"detail": "Not found.", "code": "not_found"},
        ), entity_id


def test_preview_errors_are_json(client: Any, alice: Any) -> None:
    note = Note.objects.create(owner=alice, title="x")
    assert preview(client, f"note:{note.pk}").status_code == 403
    client.force_login(alice)

    missing = client.get(reverse("chatkit:entity-preview"))

    assert (missing.status_code, missing.json()["code"]) == (400, "missing_id")


@pytest.mark.django_db(transaction=True)
async def test_resolve_entity_checks_the_user(auser_factory: Any) -> None:
    alice, bob = await auser_factory(), await auser_factory()
    note = await Note.objects.acreate(owner=alice, title="x")

    found = await resolve_entity(f"note:{note.pk}", alice)

    assert found is not None and found[1] == note
    assert await resolve_entity(f"note:{note.pk}", bob) is None


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (["tests.testapp.entities.NoteSource"] * 2, "Two entity sources are named 'note'"),
        (["chatkit_django.entities.EntitySource"], "must be a non-empty string"),
    ],
)
def test_bad_sources_are_refused(settings: Any, sources: list[str], message: str) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "ENTITY_SOURCES": sources}

    with pytest.raises(ImproperlyConfigured, match=message):
        get_entity_sources()


@pytest.mark.django_db(transaction=True)
async def test_entity_views_share_the_endpoints_authentication(
    auser_factory: Any, settings: Any
) -> None:
    from django.test import AsyncClient
    from rest_framework.authtoken.models import Token

    settings.CHATKIT = {
        **settings.CHATKIT,
        "AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    }
    user = await auser_factory()
    await Note.objects.acreate(owner=user, title="by token")
    token = await Token.objects.acreate(user=user)
    client = AsyncClient()

    ok = await client.get(
        reverse("chatkit:entity-search"), headers={"Authorization": f"Token {token.key}"}
    )
    wrong = await client.get(
        reverse("chatkit:entity-search"), headers={"Authorization": "Token nope"}
    )

    assert [e["title"] for e in ok.json()["data"]] == ["by token"]
    assert (wrong.status_code, wrong.json()["code"], wrong["WWW-Authenticate"]) == (
        401,
        "authentication_failed",
        "Token",
    )


def test_anonymous_search_with_allow_anonymous_gets_public_sources(
    client: Any, alice: Any, settings: Any
) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "ALLOW_ANONYMOUS": True,
        "ENTITY_SOURCES": ["tests.testapp.entities.PublicNoteSource"],
    }
    Note.objects.create(owner=alice, title="public note")

    response = search(client)

    assert [e["title"] for e in response.json()["data"]] == ["public note"]


def test_other_methods_get_405_json(client: Any, alice: Any) -> None:
    client.force_login(alice)

    response = client.post(reverse("chatkit:entity-preview"))

    assert (response.status_code, response.json()["code"], response["Allow"]) == (
        405,
        "method_not_allowed",
        "GET",
    )
