"""Tests that need ``AUTH_USER_MODEL = "customuser.Member"`` (no ``username``, no ``email``).

Not collected by the main run: ``tests/admin/test_custom_user.py`` runs this file in a pytest
subprocess with ``tests.customuser.settings``.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from tests.factories import give_feedback, make_user_message, store_image, store_thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def members() -> dict[str, Any]:
    Member = get_user_model()
    assert Member._meta.label == "customuser.Member"
    return {
        "root": Member.objects.create_superuser("root", "pw"),
        "alice": Member.objects.create_user("alice", "pw", contact="alice@corp.example"),
        "bob": Member.objects.create_user("bob", "pw", contact="bob@home.example"),
    }


def test_admin_search_follows_username_and_email_fields(
    client: Any, members: dict[str, Any]
) -> None:
    alice, bob = members["alice"], members["bob"]
    mine = store_thread(alice, [make_user_message("x", "hello")], title="Pets")
    theirs = store_thread(bob, [make_user_message("x", "hello")], title="Billing")
    image = store_image(alice, mine.id)
    message = make_user_message("x", "thanks")
    reply = store_thread(bob, [message])
    give_feedback(bob, message.id)
    client.force_login(members["root"])

    def search(model: str, q: str) -> set[str]:
        response = client.get(reverse(f"admin:chatkit_django_{model}_changelist"), {"q": q})
        assert response.status_code == 200
        return {str(row.pk) for row in response.context["cl"].result_list}

    assert search("thread", "alice") == {mine.id}  # USERNAME_FIELD ("handle")
    assert search("thread", "home.example") == {theirs.id, reply.id}  # EMAIL_FIELD ("contact")
    assert search("attachment", "corp.example") == {image.id}
    assert search("attachment", "bob") == set()
    assert len(search("feedback", "bob")) == 1
    assert search("feedback", "alice") == set()


def test_data_protection_commands_find_users_by_username_field(members: dict[str, Any]) -> None:
    alice = members["alice"]
    store_thread(alice, [make_user_message("x", "hello from alice")], title="Pets")
    out = StringIO()
    call_command("chatkit_export_user", "alice", "--format", "markdown", stdout=out)
    assert out.getvalue().startswith("# Pets\n") and "- Owner: alice\n" in out.getvalue()
    out = StringIO()
    call_command("chatkit_erase_user", "alice", "--noinput", stdout=out)
    assert "Erased for alice: 1 threads, 1 items" in out.getvalue()
